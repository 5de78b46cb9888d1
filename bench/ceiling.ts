// What this adapter can do at best, measured in the same run as the kernels:
// - compute ceiling: the FMA-chain probe (shaders/bench_ceiling.wgsl) in several variants, best kept;
// - stream bandwidth: a WGSL copy kernel (shaders/bench_stream.wgsl) in several variants, or a host
//   memcpy if that is faster (lavapipe), best kept.
// Both run through the engine exactly like our kernels (same dispatch path, same sync, same polling).
import { Uniforms, type Engine } from '../engine/index.ts';
import { gently } from './idle.ts';
import { median } from './timing.ts';

export interface ProbeResult {
  variant: string;
  medianMs: number;
  /** GFLOP/s for the compute probe, GB/s for the stream probe. */
  rate: number;
}

export interface CeilingOptions {
  /** Target wall time of one timed dispatch, ms (iterations are calibrated to it). */
  targetMs: number;
  /** Timed repetitions per variant (median kept). */
  reps: number;
  /** Try every variant (false: a short list that was best on lavapipe and is sane on GPUs). */
  allVariants: boolean;
}

interface ComputeVariant {
  type: 'f32' | 'vec4<f32>';
  wg: number;
  acc: number;
  op: 'fma' | 'muladd';
}

const COMPUTE_VARIANTS: ComputeVariant[] = [
  { type: 'f32', wg: 64, acc: 8, op: 'muladd' },
  { type: 'vec4<f32>', wg: 64, acc: 4, op: 'muladd' },
  { type: 'vec4<f32>', wg: 256, acc: 8, op: 'fma' },
  { type: 'vec4<f32>', wg: 8, acc: 8, op: 'muladd' },
];

const EXTRA_COMPUTE_VARIANTS: ComputeVariant[] = [
  { type: 'f32', wg: 256, acc: 16, op: 'fma' },
  { type: 'f32', wg: 8, acc: 8, op: 'muladd' },
  { type: 'vec4<f32>', wg: 64, acc: 8, op: 'fma' },
  { type: 'vec4<f32>', wg: 256, acc: 4, op: 'muladd' },
];

function describe(v: ComputeVariant): string {
  return `fma-chain ${v.type} wg${v.wg} acc${v.acc} ${v.op}`;
}

/** The text defines that spell out the accumulator declarations, one loop step and the final sum. */
function computeDefines(v: ComputeVariant): Record<string, string | number> {
  const vec = v.type !== 'f32';
  const init = (k: number) =>
    vec ? `vec4<f32>(x0 + ${k}.0 * 0.01, x0 + ${k}.0 * 0.01 + 0.125, x0 + ${k}.0 * 0.01 + 0.25, x0 + ${k}.0 * 0.01 + 0.375)` : `x0 + ${k}.0 * 0.01`;
  const ks = [...Array(v.acc).keys()];
  return {
    T: v.type,
    WG: v.wg,
    OP: v.op === 'fma' ? 'fma(a, m, c)' : 'a * m + c',
    DECL: ks.map((k) => `  var a${k} = ${init(k)};`).join('\n'),
    STEP: '   ' + ks.map((k) => ` a${k} = mad(a${k}, m, c);`).join(''),
    SUM: ks.map((k) => `  s += a${k};`).join('\n'),
  };
}

const INVOCATIONS = 32768;

/** Runs one variant: calibrates iterations to ~targetMs, then times `reps` dispatches. */
async function probeCompute(e: Engine, v: ComputeVariant, o: CeilingOptions): Promise<ProbeResult> {
  const pipeline = e.pipeline('bench_ceiling', computeDefines(v));
  const out = e.empty([INVOCATIONS], 'f32', 'ceiling out');
  const width = v.type === 'f32' ? 1 : 4;
  const flopsPerIter = INVOCATIONS * 2 * width * v.acc * 8;
  const run = async (iters: number) => {
    e.dispatch({ op: 'bench_ceiling', pipeline, params: new Uniforms().u32(iters).f32(0.5), buffers: [{ buffer: out.storage.segments[0].buffer, offset: 0, size: INVOCATIONS * 4 }], workgroups: INVOCATIONS / v.wg });
    const t0 = performance.now();
    await gently(() => e.sync());
    return performance.now() - t0;
  };
  try {
    // Calibrate: grow the iteration count until a dispatch takes a measurable time, then scale to target.
    await run(16); // warm-up: lavapipe compiles the shader at its first dispatch
    let iters = 16;
    let ms = await run(iters);
    while (ms < 20 && iters < 1 << 24) {
      iters *= 4;
      ms = await run(iters);
    }
    iters = Math.max(1, Math.round((iters * o.targetMs) / ms));
    const samples: number[] = [];
    for (let r = 0; r < o.reps; r++) samples.push(await run(iters));
    const med = median(samples);
    return { variant: describe(v), medianMs: med, rate: (flopsPerIter * iters) / (med * 1e6) };
  } finally {
    out.dispose();
  }
}

/** Best FMA-chain variant: the compute ceiling (GFLOP/s) of this adapter, plus every variant tried. */
export async function measureComputeCeiling(e: Engine, o: CeilingOptions): Promise<{ best: ProbeResult; all: ProbeResult[] }> {
  const variants = o.allVariants ? [...COMPUTE_VARIANTS, ...EXTRA_COMPUTE_VARIANTS] : COMPUTE_VARIANTS;
  const all: ProbeResult[] = [];
  for (const v of variants) all.push(await probeCompute(e, v, o));
  const best = all.reduce((a, b) => (b.rate > a.rate ? b : a));
  return { best, all };
}

interface StreamVariant {
  wg: number;
  per: number;
}

const STREAM_VARIANTS: StreamVariant[] = [
  { wg: 64, per: 4 },
  { wg: 256, per: 1 },
  { wg: 256, per: 4 },
  { wg: 256, per: 16 },
];

/** Host memcpy (TypedArray.set, one thread) of `bytes`: GB/s counting bytes read + written. */
function measureHostCopy(bytes: number, reps: number): ProbeResult {
  const src = new Uint8Array(bytes).fill(1);
  const dst = new Uint8Array(bytes);
  dst.set(src); // first touch of the destination pages
  const samples: number[] = [];
  for (let r = 0; r < Math.max(3, reps); r++) {
    const t0 = performance.now();
    dst.set(src);
    samples.push(performance.now() - t0);
  }
  const med = median(samples);
  return { variant: `host memcpy, 1 thread (${(bytes / 2 ** 20).toFixed(0)} MiB)`, medianMs: med, rate: (2 * bytes) / (med * 1e6) };
}

/**
 * Stream bandwidth (GB/s, bytes read + written) over `mib` MiB buffers: the best of the WGSL copy
 * variants and a host memcpy. On lavapipe the "GPU" memory is host memory and a single-threaded memcpy
 * can beat the copy kernel (whose loads and stores are bounds-checked per lane); on a real GPU the
 * copy kernel wins by far. The row says which one set the number.
 */
export async function measureStream(e: Engine, o: CeilingOptions, mib: number): Promise<{ best: ProbeResult; all: ProbeResult[] }> {
  const bytes = Math.min(mib * 1024 * 1024, Math.floor(e.gpu.maxBindingBytes / 16) * 16);
  const words = bytes / 16;
  const src = e.empty([bytes / 4], 'u32', 'stream src');
  const dst = e.empty([bytes / 4], 'u32', 'stream dst');
  const all: ProbeResult[] = [];
  try {
    // Touch the source once so its pages exist before timing (lavapipe buffers are host memory).
    e.writeTensor(src, new Uint8Array(bytes).fill(1));
    for (const v of STREAM_VARIANTS) {
      const pipeline = e.pipeline('bench_stream', { WG: v.wg, PER: v.per });
      const bind = (t: typeof src) => ({ buffer: t.storage.segments[0].buffer, offset: 0, size: bytes });
      const run = async () => {
        e.dispatch({ op: 'bench_stream', pipeline, params: new Uniforms().u32(words), buffers: [bind(src), bind(dst)], workgroups: Math.ceil(words / (v.wg * v.per)) });
        const t0 = performance.now();
        await gently(() => e.sync());
        return performance.now() - t0;
      };
      // Repeat the copy inside a sample until it lasts ~targetMs, so short copies are not all overhead.
      await run(); // warm-up: shader compilation and first touch of the destination pages
      const once = await run();
      const copiesPerSample = Math.max(1, Math.min(64, Math.round(o.targetMs / Math.max(once, 0.5))));
      const sample = async () => {
        for (let c = 0; c < copiesPerSample; c++) {
          e.dispatch({ op: 'bench_stream', pipeline, params: new Uniforms().u32(words), buffers: [bind(src), bind(dst)], workgroups: Math.ceil(words / (v.wg * v.per)) });
        }
        const t0 = performance.now();
        await gently(() => e.sync());
        return (performance.now() - t0) / copiesPerSample;
      };
      const samples: number[] = [];
      for (let r = 0; r < o.reps; r++) samples.push(await sample());
      const med = median(samples);
      all.push({ variant: `copy vec4<u32> wg${v.wg} x${v.per} (${(bytes / 2 ** 20).toFixed(0)} MiB)`, medianMs: med, rate: (2 * bytes) / (med * 1e6) });
    }
  } finally {
    src.dispose();
    dst.dispose();
  }
  all.push(measureHostCopy(bytes, o.reps));
  return { best: all.reduce((a, b) => (b.rate > a.rate ? b : a)), all };
}
