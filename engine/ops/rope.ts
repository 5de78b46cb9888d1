// Wan's 3-axis rotary position embedding (model.py rope_apply): x [B, L, N, D], per-sample grids
// (F, H, W); the D/2 complex pairs are split [c - 2(c//3), c//3, c//3] over frame/height/width, each
// axis with its own rope_params(1024, dim_axis) table. Tables are computed on the host in float64
// (as the official code) and uploaded as f32 (cos, sin); the rotation runs in f32.
import { Uniforms, type Engine } from '../engine.ts';
import type { Tensor } from '../tensor.ts';
import { planWindows, wholeBinding } from '../windows.ts';
import { outputFor, requireDtype } from './elementwise.ts';

/** Complex pairs per axis (frame, height, width) for a head dim D. */
export function ropeSplit(headDim: number): [number, number, number] {
  if (headDim % 2 !== 0 || headDim < 6) throw new Error(`rope: head dim ${headDim} must be even and >= 6`);
  const c = headDim / 2;
  const k = Math.floor(c / 3);
  return [c - 2 * k, k, k];
}

/**
 * The official freqs table: rows 0..rows-1 of cat(rope_params(1024, D - 4(D//6)),
 * rope_params(1024, 2(D//6)) x 2) as [rows, D/2, (cos, sin)] float64, where
 * rope_params(n, dim)[p, i] = exp(i * p / theta^(2i/dim)).
 */
export function ropeFreqs(headDim: number, rows = 1024, theta = 10000): Float64Array {
  const split = ropeSplit(headDim);
  const c = headDim / 2;
  const omega: number[] = [];
  for (const pairs of split) {
    const dim = 2 * pairs;
    for (let i = 0; i < pairs; i++) omega.push(1 / Math.pow(theta, (2 * i) / dim));
  }
  const out = new Float64Array(rows * c * 2);
  for (let p = 0; p < rows; p++) {
    for (let j = 0; j < c; j++) {
      const a = p * omega[j];
      out[(p * c + j) * 2] = Math.cos(a);
      out[(p * c + j) * 2 + 1] = Math.sin(a);
    }
  }
  return out;
}

/** The freqs table on the device ([rows, D/2, 2] f32), to reuse across layers and steps. */
export function ropeTable(e: Engine, headDim: number, rows = 1024, theta = 10000): Tensor {
  return e.upload(ropeFreqs(headDim, rows, theta), [rows, headDim / 2, 2], 'f32', `rope table d${headDim}`);
}

export type GridSize = readonly [number, number, number];

export interface RopeOptions {
  out?: Tensor;
  /** Output dtype (default f32); x may be f32 or f16, the rotation is computed in f32. 'f16' needs shader-f16. */
  outDtype?: 'f32' | 'f16';
}

/**
 * rope_apply(x, grid_sizes, freqs). x [B, L, N, D] f32 or f16; gridSizes one (F, H, W) per sample with
 * F*H*W <= L (later rows are copied unrotated). freqs: a device table from ropeTable, a host table
 * [rows, D/2, (re, im)] (e.g. the official freqs), or omitted (built for the positions needed).
 */
export function ropeApply(e: Engine, x: Tensor, gridSizes: readonly GridSize[], freqs?: Tensor | ArrayLike<number>, opts: RopeOptions = {}): Tensor {
  const op = 'ropeApply';
  requireDtype(op, x, ['f32', 'f16']);
  const yDtype = opts.outDtype ?? 'f32';
  if ((x.dtype === 'f16' || yDtype === 'f16') && !e.gpu.hasF16) throw new Error(`${op}: f16 activations need the shader-f16 feature, which this adapter lacks`);
  if (x.shape.length !== 4) throw new Error(`${op}: x [${x.shape}] must be [B, L, N, D]`);
  const [B, L, N, D] = x.shape;
  const c = D / 2;
  const [c0, c1] = ropeSplit(D);
  if (gridSizes.length !== B) throw new Error(`${op}: ${gridSizes.length} grid sizes for a batch of ${B}`);
  let maxPos = 0;
  for (const g of gridSizes) {
    if (g.length !== 3 || g.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`${op}: invalid grid size [${g}]`);
    if (g[0] * g[1] * g[2] > L) throw new Error(`${op}: grid [${g}] has ${g[0] * g[1] * g[2]} tokens, more than L = ${L}`);
    maxPos = Math.max(maxPos, ...g);
  }
  if (opts.out && opts.out.storage === x.storage) throw new Error(`${op}: out must not alias x`);
  const y = outputFor(e, op, x.shape, opts.out, x, yDtype);
  if (x.numel === 0) return y;

  let table: Tensor;
  let ownTable = false;
  if (freqs === undefined) {
    table = ropeTable(e, D, Math.max(1, maxPos));
    ownTable = true;
  } else if ('storage' in freqs) {
    table = freqs as Tensor;
    requireDtype(op, table, ['f32']);
  } else {
    const host = freqs as ArrayLike<number>;
    if (host.length % (c * 2) !== 0) throw new Error(`${op}: host freqs of ${host.length} values is not rows of ${c} (re, im) pairs`);
    // Only the positions this call needs (a 1024-row table is 512 KB at D = 128).
    const rows = Math.min(host.length / (c * 2), Math.max(1, maxPos));
    table = e.upload(Array.prototype.slice.call(host, 0, rows * c * 2), [rows, c, 2], 'f32', 'rope table');
    ownTable = true;
  }
  try {
    const tableRows = table.numel / (c * 2);
    if (!Number.isInteger(tableRows) || tableRows < maxPos) {
      throw new Error(`${op}: freqs [${table.shape}] has ${tableRows} rows of ${c} pairs; positions up to ${maxPos - 1} need ${maxPos}`);
    }
    const tab = wholeBinding(e.gpu, table, op);
    const pipeline = e.pipeline('rope', { XS: x.dtype, YS: yDtype });
    for (const w of planWindows(e.gpu, op, B * L, [{ tensor: x, rowElems: N * D }, { tensor: y, rowElems: N * D }])) {
      // A window may span samples: one dispatch per (window, sample) overlap.
      for (let b = Math.floor(w.row0 / L); b * L < w.row0 + w.rows; b++) {
        const r0 = Math.max(w.row0, b * L);
        const r1 = Math.min(w.row0 + w.rows, (b + 1) * L);
        const [F, H, W] = gridSizes[b];
        const params = new Uniforms()
          .u32((r1 - r0) * c)
          .u32(r0 - w.row0)
          .u32(r0 - b * L)
          .u32(F * H * W)
          .u32(H * W)
          .u32(W)
          .u32(N)
          .u32(c)
          .u32(c0)
          .u32(c0 + c1);
        e.dispatch({ op, pipeline, params, buffers: [w.bindings[0], w.bindings[1], tab], workgroups: Math.ceil(((r1 - r0) * c) / 64) });
      }
    }
  } finally {
    if (ownTable) table.dispose();
  }
  return y;
}
