// Normalisations over the last dim (layer norm, RMS norm, layer norm fused with the DiT's adaLN
// modulation) and the Wan VAE's channel RMS norm (F.normalize over the channel axis). Row kernels
// run one workgroup per row and window x/y over rows, so any number of rows works under any binding
// limit; a single row (at most a few K elements) always fits one binding.
import { Uniforms, type Engine } from '../engine.ts';
import type { Tensor } from '../tensor.ts';
import { planWindows, wholeBinding, type Binding, type WindowOperand } from '../windows.ts';
import { outputFor, requireDtype, vec4Binding } from './elementwise.ts';
import { planModulation, resolveModulation, type Modulation } from './binary.ts';

/**
 * How a row is reduced: 'subgroup' = one subgroup per row with subgroupAdd (no barriers; chosen
 * when the adapter has subgroups and reports its minimum subgroup size), 'workgroup' = portable
 * shared-memory tree. Tests force each one.
 */
export type RowReduction = 'subgroup' | 'workgroup';

export interface RowNormOptions {
  eps?: number;
  /** Write into this tensor (x's shape and outDtype; must not alias x). */
  out?: Tensor;
  /** Output dtype (default f32). x may be f32 or f16; statistics are always accumulated in f32. 'f16' needs shader-f16. */
  outDtype?: 'f32' | 'f16';
  reduction?: RowReduction;
}

const WORKGROUP_WG = 64;
const MAX_SUBGROUP_WG = 64;

function reductionDefines(e: Engine, forced?: RowReduction): Record<string, string | number> {
  const min = Number((e.gpu.adapter.info as { subgroupMinSize?: number } | undefined)?.subgroupMinSize ?? 0);
  const canSubgroup = e.gpu.hasSubgroups && min >= 4 && (min & (min - 1)) === 0;
  if (forced === 'subgroup' && !canSubgroup) throw new Error(`subgroup reduction unavailable on this adapter (subgroups: ${e.gpu.hasSubgroups}, min size ${min})`);
  if (forced !== 'workgroup' && canSubgroup) return { ENABLE: 'enable subgroups;', WG: Math.min(min, MAX_SUBGROUP_WG), SUM: 'subgroupAdd(h)' };
  return { ENABLE: '', WG: WORKGROUP_WG, SUM: 'workgroup_sum(h, lid)' };
}

type Stats = 'stats_layer' | 'stats_rms' | 'stats_l2';
type Affine = 'affine_none' | 'affine_w' | 'affine_wb' | 'affine_mod';

/** A per-channel vector (weight or bias) addressed like a modulation broadcast over every row. */
function channelVector(op: string, t: Tensor, C: number) {
  requireDtype(op, t, ['f32']);
  if (t.numel !== C) throw new Error(`${op}: "${t.label}" [${t.shape}] must hold ${C} values (one per channel)`);
  return { tensor: t, perToken: false, div: 0xffffffff, stride: 0, off: 0 };
}

function rowNorm(e: Engine, op: string, stats: Stats, affine: Affine, x: Tensor, u: Tensor | Modulation | null, v: Tensor | Modulation | null, opts: RowNormOptions): Tensor {
  requireDtype(op, x, ['f32', 'f16']);
  const yDtype = opts.outDtype ?? 'f32';
  if ((x.dtype === 'f16' || yDtype === 'f16') && !e.gpu.hasF16) throw new Error(`${op}: f16 activations need the shader-f16 feature, which this adapter lacks`);
  const C = x.shape[x.shape.length - 1];
  if (!C) throw new Error(`${op}: x [${x.shape}] has an empty last dimension`);
  const rows = x.numel / C;
  if (opts.out && opts.out.storage === x.storage) throw new Error(`${op}: out must not alias x`);
  const y = outputFor(e, op, x.shape, opts.out, x, yDtype);
  if (rows === 0) return y;
  const W = C % 4 === 0 ? 4 : 1;
  const windowed: WindowOperand[] = [
    { tensor: x, rowElems: C },
    { tensor: y, rowElems: C },
  ];
  const address = (m: Tensor | Modulation) => (affine === 'affine_mod' ? resolveModulation(op, m, rows, C) : channelVector(op, m as Tensor, C));
  const uPlan = u ? planModulation(e, op, address(u), windowed) : null;
  const vPlan = v ? planModulation(e, op, address(v), windowed) : null;
  if (opts.out) {
    for (const m of [u, v]) if (m && ('storage' in m ? m : m.tensor).storage === opts.out.storage) throw new Error(`${op}: out must not alias an input`);
  }
  const pipeline = e.pipeline('norm', {
    ...reductionDefines(e, opts.reduction),
    STATS: stats,
    AFFINE: affine,
    T: W === 4 ? 'vec4<f32>' : 'f32',
    XS: W === 4 ? `vec4<${x.dtype}>` : x.dtype,
    YS: W === 4 ? `vec4<${yDtype}>` : yDtype,
    W,
    HSUM: W === 4 ? 'hsum4' : 'hsum1',
    FIRST: W === 4 ? 'ld(base).x' : 'ld(base)',
  });
  const eps = opts.eps ?? 1e-6;
  const widen = (b: Binding) => (W === 4 ? vec4Binding(b) : b);
  for (const w of planWindows(e.gpu, op, rows, windowed)) {
    const params = new Uniforms().u32(w.rows).u32(C).u32(w.row0).f32(eps);
    for (const p of [uPlan, vPlan]) {
      if (p) p.uniforms(params, w.row0);
      else params.u32(0).u32(1).u32(0).u32(0).u32(0);
    }
    const buffers = [w.bindings[0], w.bindings[1]];
    if (uPlan) buffers.push(uPlan.binding(w.bindings));
    if (vPlan) buffers.push(vPlan.binding(w.bindings));
    e.dispatch({ op, pipeline, params, buffers: buffers.map(widen), workgroups: w.rows });
  }
  return y;
}

export interface LayerNormOptions extends RowNormOptions {
  weight?: Tensor;
  bias?: Tensor;
}

/** nn.LayerNorm over the last dim (biased variance, eps 1e-6 by default); affine when weight (and bias) are given. */
export function layerNorm(e: Engine, x: Tensor, opts: LayerNormOptions = {}): Tensor {
  const { weight, bias } = opts;
  if (bias && !weight) throw new Error('layerNorm: a bias without a weight is not supported');
  const affine: Affine = weight ? (bias ? 'affine_wb' : 'affine_w') : 'affine_none';
  return rowNorm(e, 'layerNorm', 'stats_layer', affine, x, weight ?? null, bias ?? null, opts);
}

/** x * rsqrt(mean(x^2) + eps) * weight over the last dim (WanRMSNorm, T5LayerNorm); eps 1e-6 by default. */
export function rmsNorm(e: Engine, x: Tensor, weight: Tensor | null, opts: RowNormOptions = {}): Tensor {
  return rowNorm(e, 'rmsNorm', 'stats_rms', weight ? 'affine_w' : 'affine_none', x, weight, null, opts);
}

/**
 * layerNorm(x) * (1 + scale) + shift in one pass (DiT norm1/norm2/head before their modulation; no
 * affine). x [B, L, C] (or [L, C]); shift/scale [B, 1, C] broadcast over each batch element's tokens,
 * [B, L, C] per token, or chunks of Wan's e0 (see Modulation).
 */
export function layerNormModulate(e: Engine, x: Tensor, shift: Modulation, scale: Modulation, opts: RowNormOptions = {}): Tensor {
  return rowNorm(e, 'layerNormModulate', 'stats_layer', 'affine_mod', x, scale, shift, opts);
}

export interface ChannelRmsNormOptions {
  bias?: Tensor;
  /** The channel axis (0 for the VAE's [C, T, H, W]; 1 for [B, C, T, H, W]). Default 0. */
  channelDim?: number;
  out?: Tensor;
}

/**
 * The Wan VAE's RMS_norm: F.normalize(x, dim=channel) * sqrt(C) * gamma (+ bias), i.e.
 * x / max(||x||_2 over channels, 1e-12) * sqrt(C) * gamma. gamma/bias hold C values (any shape,
 * e.g. the checkpoint's [C, 1, 1, 1]). Two passes: per-position sums of squares (accumulated over
 * windows of channel planes), then the scaling. A channel-last x uses the row kernel.
 * Each channel plane (the dims after the channel axis) must fit one binding.
 */
export function channelRmsNorm(e: Engine, x: Tensor, gamma: Tensor, opts: ChannelRmsNormOptions = {}): Tensor {
  const op = 'channelRmsNorm';
  requireDtype(op, x, ['f32']);
  const cd = opts.channelDim ?? 0;
  if (!Number.isInteger(cd) || cd < 0 || cd >= x.shape.length) throw new Error(`${op}: channelDim ${cd} out of range for [${x.shape}]`);
  const C = x.shape[cd];
  const S = x.shape.slice(cd + 1).reduce((a, b) => a * b, 1);
  const B = x.shape.slice(0, cd).reduce((a, b) => a * b, 1);
  const g = channelVector(op, gamma, C);
  if (opts.bias) channelVector(op, opts.bias, C);
  if (opts.out && opts.out.storage === x.storage) throw new Error(`${op}: out must not alias x`);
  if (S === 1) {
    // Channel-last: a row norm whose scale is sqrt(C) / max(||x||, 1e-12).
    return channelLast(e, x, gamma, opts.bias ?? null, B, C, opts.out);
  }
  const y = outputFor(e, op, x.shape, opts.out, x);
  if (x.numel === 0) return y;
  const W = S % 4 === 0 ? 4 : 1;
  const T = W === 4 ? 'vec4<f32>' : 'f32';
  const widen = (b: Binding) => (W === 4 ? vec4Binding(b) : b);
  const rows = B * C;
  const ss = e.empty([B, S], 'f32', `${op} sumsq`);
  try {
    const ssBinding = widen(wholeBinding(e.gpu, ss, op));
    const sumsq = e.pipeline('norm_channel_sumsq', { T, W });
    for (const w of planWindows(e.gpu, op, rows, [{ tensor: x, rowElems: S }])) {
      const params = new Uniforms().u32(w.rows).u32(S / W).u32(w.row0).u32(C);
      e.dispatch({ op: `${op} sumsq`, pipeline: sumsq, params, buffers: [widen(w.bindings[0]), ssBinding], workgroups: Math.ceil(S / W / 64) });
    }
    const apply = e.pipeline('norm_channel_apply', { T, W, AFFINE: opts.bias ? 'with_gamma_bias' : 'with_gamma' });
    const affine = [wholeBinding(e.gpu, g.tensor, op)];
    if (opts.bias) affine.push(wholeBinding(e.gpu, opts.bias, op));
    for (const w of planWindows(e.gpu, op, rows, [{ tensor: x, rowElems: S }, { tensor: y, rowElems: S }])) {
      const params = new Uniforms().u32((w.rows * S) / W).u32(S / W).u32(w.row0).u32(C).f32(Math.sqrt(C));
      const buffers = [widen(w.bindings[0]), ssBinding, widen(w.bindings[1]), ...affine];
      e.dispatch({ op, pipeline: apply, params, buffers, workgroups: Math.ceil((w.rows * S) / W / 256) });
    }
  } finally {
    ss.dispose();
  }
  return y;
}

/** Channel-last (nothing after the channel axis): a row norm over [B, C] views. */
function channelLast(e: Engine, x: Tensor, gamma: Tensor, bias: Tensor | null, B: number, C: number, out?: Tensor): Tensor {
  const rows = x.reshape([B, C]);
  const outRows = out?.reshape([B, C]);
  try {
    const y = rowNorm(e, 'channelRmsNorm', 'stats_l2', bias ? 'affine_wb' : 'affine_w', rows, gamma, bias, { out: outRows });
    if (out) return out;
    const shaped = y.reshape(x.shape);
    y.dispose();
    return shaped;
  } finally {
    rows.dispose();
    outRows?.dispose();
  }
}
