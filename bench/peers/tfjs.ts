// Peer: TensorFlow.js with its WebGPU backend, over the same `webgpu` package (Dawn) as our engine,
// in its own process with its own Dawn instance. Operands are created on the device once per case;
// each timed execution records the op, submits tfjs's command encoder and awaits
// queue.onSubmittedWorkDone() (nothing is read back), polling gently like our engine (bench/idle.ts).
import { create, globals } from 'webgpu';
import type { BenchCase } from '../cases.ts';
import { gently } from '../idle.ts';
import { timeRuns } from '../timing.ts';
import { randomFill, readJob, reportInfo, runJob } from './protocol.ts';

// tfjs looks for navigator.gpu and the GPU* constants as browser globals. The object create()
// returns must stay referenced for the life of the process (Dawn aborts otherwise): it is kept here.
Object.assign(globalThis, globals);
const gpu = create([]);
Object.defineProperty(globalThis, 'navigator', { value: { gpu, userAgent: 'node' }, configurable: true, writable: true });

type Tf = typeof import('@tensorflow/tfjs-core');
type Tensor = import('@tensorflow/tfjs-core').Tensor;

/** The slice of the WebGPU backend's internals needed to submit its work and wait for it. */
interface WebGpuBackend {
  device: GPUDevice;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

/** Largest scores block (bytes) materialised at once by the unfused attention (fits one binding). */
const SCORES_BYTES = 64 * 1024 * 1024;

function op(tf: Tf, c: BenchCase): { inputs: Tensor[]; run: (xs: Tensor[]) => Tensor[]; note: string } {
  const rnd = (shape: number[], seed: number) => tf.tensor(randomFill(shape.reduce((a, b) => a * b, 1), seed), shape);
  switch (c.kernel) {
    case 'matmul':
      return { inputs: [rnd([c.M, c.K], 1), rnd([c.K, c.N], 2)], run: ([x, w]) => [tf.matMul(x, w)], note: 'tf.matMul, f32 weights (ours: bf16)' };
    case 'attention': {
      const shape = [c.H, c.S, c.D];
      const chunk = Math.max(1, Math.min(c.H, Math.floor(SCORES_BYTES / (c.S * c.S * 4))));
      const scale = 1 / Math.sqrt(c.D);
      return {
        inputs: [rnd(shape, 1), rnd(shape, 2), rnd(shape, 3)],
        run: ([q, k, v]) => {
          const outs: Tensor[] = [];
          for (let h = 0; h < c.H; h += chunk) {
            const n = Math.min(chunk, c.H - h);
            outs.push(
              tf.tidy(() => {
                const qh = tf.slice(q, [h, 0, 0], [n, c.S, c.D]);
                const kh = tf.slice(k, [h, 0, 0], [n, c.S, c.D]);
                const vh = tf.slice(v, [h, 0, 0], [n, c.S, c.D]);
                const p = tf.softmax(tf.mul(tf.matMul(qh, kh, false, true), scale));
                return tf.matMul(p, vh);
              }),
            );
          }
          return outs;
        },
        note: `unfused matMul/softmax/matMul, ${chunk} head(s) of scores at a time`,
      };
    }
    case 'conv3d':
      return {
        inputs: [rnd([1, c.T, c.H, c.W, c.C], 1), rnd([3, 3, 3, c.C, c.O], 2)],
        run: ([x, w]) => [tf.conv3d(x as any, w as any, [1, 1, 1], 'same')],
        note: 'tf.conv3d NDHWC',
      };
    case 'layernorm':
      return {
        inputs: [rnd([c.rows, c.cols], 1)],
        run: ([x]) => {
          const { mean, variance } = tf.moments(x, -1, true);
          return [tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-6)))];
        },
        note: 'no fused op: moments + sub/mul/rsqrt',
      };
  }
}

async function main(): Promise<void> {
  const job = readJob();
  const tf: Tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-webgpu');
  // Keep small ops on the GPU too (by default tfjs may run them on the CPU backend).
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend did not initialise');
  await tf.ready();
  reportInfo({ version: `tfjs ${tf.version_core}` });
  const backend = tf.backend() as unknown as WebGpuBackend;
  const finish = async () => {
    backend.ensureCommandEncoderReady();
    backend.endComputePassEncoder();
    backend.submitQueue();
    await gently(() => backend.device.queue.onSubmittedWorkDone());
  };
  // tfjs does not check WebGPU errors: a buffer over the binding limit makes the op a silent no-op.
  // Every timed execution runs inside error scopes, and an error fails the case.
  const checked = async (work: () => Promise<void>) => {
    const device = backend.device;
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    await work();
    const errors = [await device.popErrorScope(), await device.popErrorScope()].filter((x) => x !== null);
    if (errors.length) throw new Error(`WebGPU error: ${errors[0]!.message.split('\n')[0]}`);
  };
  await runJob(job, async (c) => {
    const o = op(tf, c);
    try {
      // Upload the operands before timing (tfjs uploads lazily, at first use).
      await checked(async () => {
        const warm = tf.tidy(() => o.inputs.map((t) => tf.add(t, 0)));
        await finish();
        tf.dispose(warm);
      });
      const t = await timeRuns(
        () =>
          checked(async () => {
            const ys = tf.tidy(() => o.run(o.inputs));
            await finish();
            tf.dispose(ys);
          }),
        job.policy,
      );
      return { ...t, note: [o.note, 'device-resident operands, no readback', t.note].filter(Boolean).join('; ') };
    } finally {
      tf.dispose(o.inputs);
    }
  });
}

await main();
