// The memory planner (model/pipelines/memory-plan.ts) against the buffer pool's measured peak: a DiT
// forward (resident and streamed, f32 and f16 activations, one timestep or one per token) and a
// umT5 encode at small widths with random weights; the byte-size parser; the mode choice.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceMemoryError, Engine } from '../engine/index.ts';
import { WanDiT } from '../model/dit.ts';
import { inferDitConfig } from '../model/dit-config.ts';
import { ditConfigJson, ditTensors, t5Tensors } from '../model/demo/architecture.ts';
import { demoDit } from '../model/demo/checkpoint.ts';
import { SyntheticTensorSource } from '../model/demo/source.ts';
import { UmT5Encoder } from '../model/t5.ts';
import { inferT5Config } from '../model/t5-config.ts';
import { choosePlan, ditForwardPeak, ditWeightBytes, parseByteSize, planMemory, residentWeightBytes, t5EncodePeak, t5WeightBytes, type PlanDevice } from '../model/pipelines/memory-plan.ts';
import { join } from 'node:path';
import { loadFixture } from '../loaders/fixture.ts';
import { generate, type GenerateResult } from '../model/pipelines/generate.ts';
import { UMT5_XXL_CONFIG, latentGeometry, officialDitConfig, taskSpec } from '../model/pipelines/tasks.ts';
import type { MemoryMode } from '../model/pipelines/memory-plan.ts';
import { WanVAE } from '../model/vae/index.ts';
import { officialVaeArchitecture, vaeDecodePeakBytes } from '../model/vae/memory.ts';
import { SyntheticVaeSource } from '../model/vae/synthetic.ts';
import { fixturesDir, randn, relL2, untilNoLiveTensors } from './helpers.ts';

let e: Engine;
let dev: PlanDevice;
beforeAll(async () => {
  e = await Engine.create();
  dev = { maxBufferBytes: e.gpu.maxBufferBytes, maxBindingBytes: e.gpu.maxBindingBytes, storageAlign: e.gpu.storageAlign };
});
afterAll(async () => {
  await e?.destroy();
});

/** Peak live pool bytes of `run`, above what was live before it. */
async function measure(run: () => Promise<void>): Promise<number> {
  e.pool.trim();
  const base = e.memory().liveBytes;
  e.pool.resetPeaks();
  await run();
  return e.memory().peakLiveBytes - base;
}

describe('DiT forward: predicted vs measured peak device memory', () => {
  const cases = [
    { name: 'ti2v, one timestep, resident, f32', perToken: false, stream: false, activations: 'f32' as const },
    { name: 'ti2v, per-token timesteps, streamed, f32', perToken: true, stream: true, activations: 'f32' as const },
    { name: 'ti2v, one timestep, streamed, f16', perToken: false, stream: true, activations: 'f16' as const },
    { name: 'ti2v, per-token timesteps, resident, f32, FFN in token chunks', perToken: true, stream: false, activations: 'f32' as const, ffnChunkBytes: 60000 },
    { name: 'ti2v, one timestep, streamed, f16, FFN in token chunks', perToken: false, stream: true, activations: 'f16' as const, ffnChunkBytes: 40000 },
    { name: 'ti2v, one context (no batch), streamed, f32', perToken: false, stream: true, activations: 'f32' as const, batch: 1 },
    { name: 'ti2v, one context (no batch), resident, f32, seqLen = tokens', perToken: false, stream: false, activations: 'f32' as const, batch: 1, noPad: true },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      if (c.activations === 'f16' && !e.gpu.hasF16) return;
      const arch = { ...demoDit('ti2v-5B'), dim: 192, ffnDim: 768, numHeads: 3, numLayers: 6 };
      const specs = ditTensors(arch);
      const shape: [number, number, number, number] = [48, 2, 8, 12];
      const tokens = 2 * 4 * 6;
      const seqLen = c.noPad ? tokens : tokens + 5;
      const t = c.perToken ? new Float32Array(seqLen).fill(500).fill(0, 0, 24) : 500;
      const contexts = [randn(7 * arch.textDim, 2, 0.5), randn(arch.textLen * arch.textDim, 3, 0.5)].slice(0, c.batch ?? 2);
      const input = { x: randn(48 * 2 * 8 * 12, 1, 1), shape, t, contexts, seqLen };
      const src = new SyntheticTensorSource(specs);
      const cfg = inferDitConfig(src, ditConfigJson(arch));
      let outs: Float32Array[] = [];
      const measured = await measure(async () => {
        const dit = await WanDiT.load(e, src, ditConfigJson(arch), { stream: c.stream, activations: c.activations });
        if (c.ffnChunkBytes) dit.ffnChunkBytes = c.ffnChunkBytes;
        await dit.forward(input);
        outs = await dit.forward(input);
        dit.dispose();
      });
      if (c.ffnChunkBytes) {
        // The chunked FFN computes the same rows (up to the matmul variant a chunk's row count selects).
        const whole = await WanDiT.load(e, src, ditConfigJson(arch), { activations: c.activations });
        const want = await whole.forward(input);
        whole.dispose();
        for (let b = 0; b < contexts.length; b++) expect(relL2(outs[b], want[b])).toBeLessThan(c.activations === 'f16' ? 1e-3 : 1e-6);
      }
      await untilNoLiveTensors(e);
      const w = ditWeightBytes(cfg, 'bf16', dev);
      const act = ditForwardPeak(cfg, { batch: c.batch ?? 2, tokens, seqLen, perTokenTimesteps: c.perToken, gridMax: 6, activations: c.activations, ffnChunkBytes: c.ffnChunkBytes }, dev);
      const predicted = residentWeightBytes(w, c.stream) + act.peakBytes;
      console.log(`dit ${c.name}: predicted ${predicted} B (weights ${residentWeightBytes(w, c.stream)}, peak at ${act.at}), measured ${measured} B`);
      expect(Math.abs(predicted - measured) / measured).toBeLessThan(0.02); // the issue asks for 10%; the replay is exact here
    });
  }
});

describe('umT5 encode: predicted vs measured peak device memory', () => {
  for (const stream of [false, true]) {
    it(stream ? 'streamed' : 'resident', async () => {
      const arch = { vocab: 512, dim: 128, dimAttn: 128, dimFfn: 320, numHeads: 4, numLayers: 4, numBuckets: 32 };
      const src = new SyntheticTensorSource(t5Tensors(arch));
      const cfg = inferT5Config(src);
      const textLen = 40;
      const ids = new Int32Array(2 * textLen);
      const mask = new Int32Array(2 * textLen);
      for (let i = 0; i < 30; i++) [ids[i], mask[i]] = [3 + i, 1];
      for (let i = 0; i < 12; i++) [ids[textLen + i], mask[textLen + i]] = [40 + i, 1];
      const measured = await measure(async () => {
        const t5 = await UmT5Encoder.load(e, src, { stream });
        await t5.encode(ids, mask, 2, textLen);
        t5.dispose();
      });
      await untilNoLiveTensors(e);
      const w = t5WeightBytes(cfg, 'bf16', dev);
      const predicted = residentWeightBytes(w, stream) + t5EncodePeak(cfg, 2, 30, dev).peakBytes;
      console.log(`umT5 ${stream ? 'streamed' : 'resident'}: predicted ${predicted} B, measured ${measured} B`);
      expect(Math.abs(predicted - measured) / measured).toBeLessThan(0.02); // the issue asks for 10%; the replay is exact here
    });
  }
});

describe('parseByteSize', () => {
  it('reads decimal and binary units and plain byte counts; refuses the rest', () => {
    expect(parseByteSize('8GB')).toBe(8e9);
    expect(parseByteSize('8 GiB')).toBe(8 * 2 ** 30);
    expect(parseByteSize('512MiB')).toBe(512 * 2 ** 20);
    expect(parseByteSize('1.5g')).toBe(1.5e9);
    expect(parseByteSize('8000000000')).toBe(8e9);
    expect(() => parseByteSize('lots')).toThrow(/--max-device-memory: "lots" is not a size/);
    expect(() => parseByteSize('100')).toThrow(/less than 1 MiB/);
  });
});

describe('BufferPool.limitBytes (--max-device-memory)', () => {
  it('frees cached buffers before refusing, then refuses with a DeviceMemoryError naming the budget', async () => {
    e.pool.trim();
    const before = e.memory().allocatedBytes;
    e.pool.limitBytes = before + 2.5 * 2 ** 20;
    try {
      const a = e.zeros([2 ** 18], 'f32', 'a'); // 1 MiB
      a.dispose(); // cached, still allocated
      const b = e.zeros([2 ** 19], 'f32', 'b'); // 2 MiB: fits only once the cached 1 MiB is destroyed
      expect(e.memory().allocatedBytes - before).toBe(2 ** 21);
      expect(() => e.zeros([2 ** 19], 'f32', 'c')).toThrow(DeviceMemoryError);
      expect(() => e.zeros([2 ** 19], 'f32', 'c')).toThrow(/"?c"?: 2097152 more bytes would exceed the device-memory budget of \d+ bytes.*--max-device-memory/);
      expect(Array.from((await b.toArray()).slice(0, 4))).toEqual([0, 0, 0, 0]);
      b.dispose();
    } finally {
      e.pool.limitBytes = null;
    }
  });
});

describe('generate(): every memory mode gives the same video, and the plan predicts the measured peaks', () => {
  for (const name of ['pipeline.t2v', 'pipeline.ti2v_i2v']) {
    it(name, async () => {
      const fx = await loadFixture(join(fixturesDir, name));
      const c = fx.config as any;
      const task = taskSpec(c.task);
      let image;
      if (fx.spec.inputs.includes('image')) {
        const im = fx.input('image');
        image = { width: im.shape[1], height: im.shape[0], rgb: Uint8Array.from(im.f64()) };
      }
      const size: [number, number] = c.size ?? [c.latent_shape[3] * task.vaeStride[2], c.latent_shape[2] * task.vaeStride[1]];
      const runs: Partial<Record<MemoryMode, GenerateResult>> = {};
      for (const mode of ['resident', 'offload', 'stream'] as MemoryMode[]) {
        const g = c.guide_scale;
        const res = await generate(e, {
          task, ckptDir: join(fx.dir, 'ckpt'), prompt: c.prompt, negativePrompt: c.n_prompt, image, size, maxArea: c.max_area,
          frameNum: c.frame_num, seed: c.seed, solver: c.sample_solver, steps: c.sampling_steps, shift: c.shift,
          guideScale: typeof g === 'number' ? [g, g] : g, memoryMode: mode,
        });
        runs[mode] = res;
        expect(res.memory.plan.mode).toBe(mode);
        for (const st of res.memory.plan.stages) {
          const m = res.memory.measured[st.stage]!;
          console.log(`${name} ${mode} ${st.stage}: predicted ${st.peakBytes} B, measured ${m} B`);
          // The encoder's own activations are not replayed: a decode of the same size bounds them. The
          // decode estimate is that of a steady chunk (caches full): with only 2 latent frames it is an
          // upper bound, within the 10%.
          if (st.stage === 'encode') expect(st.peakBytes).toBeGreaterThanOrEqual(m);
          else if (st.stage === 'decode') {
            expect(st.peakBytes).toBeGreaterThanOrEqual(m);
            expect((st.peakBytes - m) / m).toBeLessThan(0.1);
          } else expect(Math.abs(m - st.peakBytes) / m).toBeLessThan(0.02);
        }
        await untilNoLiveTensors(e);
        expect(e.liveTensors).toBe(0);
      }
      expect(Buffer.compare(Buffer.from(runs.offload!.frames), Buffer.from(runs.resident!.frames))).toBe(0);
      expect(Buffer.compare(Buffer.from(runs.stream!.frames), Buffer.from(runs.resident!.frames))).toBe(0);
      const peak = (m: MemoryMode) => runs[m]!.memory.measured.denoise!;
      expect(peak('stream')).toBeLessThan(peak('offload'));
      expect(peak('offload')).toBeLessThanOrEqual(peak('resident'));
    });
  }
});

describe('sequential guidance passes', () => {
  it('auto takes them only after streaming and tiling, and they halve the DiT activations (t2v-A14B 720p, official widths)', () => {
    const task = taskSpec('t2v-A14B');
    const g = latentGeometry(task, 1280, 720, 81);
    const input = { task, dit: officialDitConfig(task), t5: UMT5_XXL_CONFIG, latentShape: g.latentShape, seqLen: g.seqLen, image: false, activations: 'f16' as const };
    const batched = planMemory(input, 'stream', true, false);
    const seq = planMemory(input, 'stream', true, true);
    const den = (p: typeof seq) => p.stages.find((s) => s.stage === 'denoise')!;
    const actB = den(batched).peakBytes - den(batched).weightBytes;
    const actS = den(seq).peakBytes - den(seq).weightBytes;
    expect(actS / actB).toBeGreaterThan(0.4);
    expect(actS / actB).toBeLessThan(0.6);
    const budget = (den(seq).peakBytes + den(batched).peakBytes) / 2;
    const c = choosePlan(input, budget);
    expect([c.plan.mode, c.plan.vaeTile, c.plan.cfgSequential]).toEqual(['stream', true, true]);
    expect(c.tried.map((p) => p.mode)).toEqual(['resident', 'offload', 'stream', 'stream', 'stream']);
    expect(() => choosePlan(input, den(seq).peakBytes / 2)).toThrow(/lightest plan \(--memory-mode stream, tiled VAE, guidance passes one at a time\) needs/);
  });

  it('generate(): the same video as the batched passes, the plan exact', async () => {
    const fx = await loadFixture(join(fixturesDir, 'pipeline.t2v'));
    const c = fx.config as any;
    const task = taskSpec(c.task);
    const size: [number, number] = c.size ?? [c.latent_shape[3] * task.vaeStride[2], c.latent_shape[2] * task.vaeStride[1]];
    const opts = {
      task, ckptDir: join(fx.dir, 'ckpt'), prompt: c.prompt, negativePrompt: c.n_prompt, size, frameNum: c.frame_num, seed: c.seed,
      solver: c.sample_solver, steps: c.sampling_steps, shift: c.shift, guideScale: (typeof c.guide_scale === 'number' ? [c.guide_scale, c.guide_scale] : c.guide_scale) as [number, number],
    };
    const batched = await generate(e, { ...opts, memoryMode: 'stream' });
    const seq = await generate(e, { ...opts, memoryMode: 'stream', cfgSequential: true });
    expect(seq.memory.plan.cfgSequential).toBe(true);
    expect(relL2(seq.x0, batched.x0)).toBeLessThan(1e-5);
    const den = seq.memory.plan.stages.find((s) => s.stage === 'denoise')!;
    expect(seq.memory.measured.denoise).toBe(den.peakBytes);
    expect(seq.memory.measured.denoise!).toBeLessThan(batched.memory.measured.denoise!);
  });
});

describe('VAE encode: the decode estimate of the same size bounds its peak', () => {
  // The planner's encode stage (not replayed on its own); frames at several levels of the encoder.
  it.each([
    { v: '2.1' as const, enc: 32, dec: 32, px: [128, 96], frames: 9 },
    { v: '2.2' as const, enc: 16, dec: 32, px: [64, 64], frames: 1 },
    { v: '2.2' as const, enc: 16, dec: 32, px: [64, 64], frames: 5 },
  ])('Wan$v $enc/$dec, $px, $frames frames', async ({ v, enc, dec, px, frames }) => {
    const architecture = { ...officialVaeArchitecture(v), encoderDim: enc, decoderDim: dec };
    const vae = await WanVAE.load(e, new SyntheticVaeSource(v, architecture), v, { dtype: 'f32' });
    try {
      e.pool.trim();
      const base = e.memory().liveBytes;
      e.pool.resetPeaks();
      await vae.encode(randn(3 * frames * px[0] * px[1], 7, 0.5), [3, frames, px[1], px[0]]);
      const measured = e.memory().peakLiveBytes;
      const est = vaeDecodePeakBytes(v, px[0], px[1], { architecture, maxBufferBytes: e.gpu.maxBufferBytes });
      expect(est.weightBytes).toBe(base);
      console.log(`Wan${v} encode ${px.join('x')}x${frames}: measured ${measured} B, bound ${est.peakBytes} B`);
      expect(est.peakBytes).toBeGreaterThanOrEqual(measured);
    } finally {
      vae.dispose();
      e.pool.trim();
    }
  });
});
