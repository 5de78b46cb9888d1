// Wan's sinusoidal_embedding_1d(dim, position): emb[i] = cat(cos(p_i * w), sin(p_i * w)) with
// w_j = 10000^(-j/half), computed by the official code in float64 and then cast to float32.
// Two paths:
//  - host positions (the scheduler's timesteps): computed here in float64 and uploaded, exact;
//  - device positions (ti2v's per-token timestep vector, up to ~75k tokens): an f32 kernel with
//    error-compensated angles (about 1e-7, see shaders/sinusoidal.wgsl).
import { Uniforms, type Engine } from '../engine.ts';
import type { Tensor } from '../tensor.ts';
import { planWindows, wholeBinding } from '../windows.ts';
import { emptyOutput, outputFor, requireDtype } from './elementwise.ts';

function checkDim(dim: number): number {
  if (!Number.isInteger(dim) || dim <= 0 || dim % 2 !== 0) throw new Error(`sinusoidalEmbedding: dim ${dim} must be a positive even integer`);
  return dim / 2;
}

/** The frequencies w_j = 10000^(-j/half) in float64, as torch.pow(10000, -arange(half)/half). */
export function sinusoidalFrequencies(dim: number): Float64Array {
  const half = checkDim(dim);
  return Float64Array.from({ length: half }, (_, j) => Math.pow(10000, -(j / half)));
}

/** The embedding on the host in float64: [n, dim] row-major. */
export function sinusoidalEmbeddingHost(positions: ArrayLike<number>, dim = 256): Float64Array {
  const half = checkDim(dim);
  const w = sinusoidalFrequencies(dim);
  const out = new Float64Array(positions.length * dim);
  for (let i = 0; i < positions.length; i++) {
    const p = Number(positions[i]);
    for (let j = 0; j < half; j++) {
      const a = p * w[j];
      out[i * dim + j] = Math.cos(a);
      out[i * dim + half + j] = Math.sin(a);
    }
  }
  return out;
}

/** sinusoidal_embedding_1d(dim, positions).float() for host positions: [n, dim] f32, computed in float64. */
export function sinusoidalEmbedding(e: Engine, positions: ArrayLike<number>, dim = 256): Tensor {
  return e.upload(sinusoidalEmbeddingHost(positions, dim), [positions.length, dim], 'f32', 'sinusoidal embedding');
}

/** v truncated to its `bits` leading significant bits (so products with short numbers are exact). */
function truncateBits(v: number, bits: number): number {
  if (v === 0 || !Number.isFinite(v)) return v;
  const ulp = 2 ** (Math.floor(Math.log2(Math.abs(v))) - (bits - 1));
  return Math.trunc(v / ulp) * ulp;
}

const TWO_PI = 2 * Math.PI;

/**
 * sinusoidal_embedding_1d for positions already on the device (f32, any shape, n values):
 * [n, dim] f32, computed on the GPU in f32 with compensated angles (|error| ~1e-7).
 */
export function sinusoidalEmbeddingGpu(e: Engine, positions: Tensor, dim = 256, opts: { out?: Tensor } = {}): Tensor {
  const op = 'sinusoidalEmbeddingGpu';
  requireDtype(op, positions, ['f32']);
  const half = checkDim(dim);
  const n = positions.numel;
  if (opts.out && opts.out.storage === positions.storage) throw new Error(`${op}: out must not alias the positions`);
  const y = opts.out ? outputFor(e, op, [n, dim], opts.out) : emptyOutput(e, [n, dim], 'f32', 'sinusoidal embedding');
  if (n === 0) return y;
  const w = sinusoidalFrequencies(dim);
  const table = new Float32Array(half * 2);
  for (let j = 0; j < half; j++) {
    const hi = truncateBits(w[j], 12);
    table[2 * j] = hi;
    table[2 * j + 1] = w[j] - hi;
  }
  const c1 = truncateBits(TWO_PI, 12);
  const c2 = truncateBits(TWO_PI - c1, 12);
  const c3 = Math.fround(TWO_PI - c1 - c2);
  const pio2_1 = truncateBits(Math.PI / 2, 20);
  const pio2_2 = Math.fround(Math.PI / 2 - pio2_1);
  const freq = e.upload(table, [half, 2], 'f32', 'sinusoidal frequencies');
  try {
    const pipeline = e.pipeline('sinusoidal');
    const freqBinding = wholeBinding(e.gpu, freq, op);
    // Positions are small (4 bytes per row): bound whole; the embedding rows are windowed.
    const posBinding = wholeBinding(e.gpu, positions, op);
    for (const win of planWindows(e.gpu, op, n, [{ tensor: y, rowElems: dim }])) {
      const params = new Uniforms().u32(win.rows * half).u32(half).u32(win.row0).f32(1 / TWO_PI).f32(c1).f32(c2).f32(c3).f32(pio2_1).f32(pio2_2);
      e.dispatch({ op, pipeline, params, buffers: [posBinding, win.bindings[0], freqBinding], workgroups: Math.ceil((win.rows * half) / 64) });
    }
  } finally {
    freq.dispose();
  }
  return y;
}
