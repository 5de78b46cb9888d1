// Layout ops: copies that move elements without arithmetic (permute, slice, concat, pad,
// space-to-depth and back, the DiT and VAE patch layouts). Also the element-range binder the conv
// kernel shares. The VAE's nearest 2x upsampling and the Wan2.2 shortcut resamplers AvgDown3D /
// DupUp3D live in engine/ops/vae.ts (they gather channels that straddle buffer segments).
import type { Gpu } from '../device.ts';
import { type DType, dtypeBytes, encode } from '../dtype.ts';
import { Uniforms, type Engine } from '../engine.ts';
import { numelOf, type Tensor } from '../tensor.ts';
import type { Binding } from '../windows.ts';
import { cast } from './elementwise.ts';

/** A binding over part of a tensor: `base` is the tensor element at the binding's first byte. */
export interface RangeBinding {
  binding: Binding;
  base: number;
}

/**
 * Binds elements [elem0, elem1) of `t` (and possibly a few before elem0, to meet the offset
 * alignment), or returns null when that range does not lie in one segment or exceeds one binding.
 * Kernels address the binding with (tensor element - base).
 */
export function bindElements(gpu: Gpu, t: Tensor, elem0: number, elem1: number): RangeBinding | null {
  const b = dtypeBytes(t.dtype);
  if (elem1 <= elem0) elem1 = elem0 + 1;
  const seg = t.storage.segments.find((s) => elem0 >= s.elem0 && elem0 < s.elem0 + s.elems);
  if (!seg || elem1 > seg.elem0 + seg.elems) return null;
  const alignElems = gpu.storageAlign / b;
  const local0 = Math.floor((elem0 - seg.elem0) / alignElems) * alignElems;
  const size = Math.ceil(((elem1 - seg.elem0 - local0) * b) / 4) * 4;
  if (size > gpu.maxBindingBytes) return null;
  return { binding: { buffer: seg.buffer, offset: local0 * b, size: Math.max(4, size) }, base: seg.elem0 + local0 };
}

// ------------------------------------------------------------------ strided box copies

/**
 * One strided copy: for every index i of `box`,
 *   dst[dstOffset + sum i_d * dstStrides_d] = src[srcOffset + sum (i_d - lo_d) * srcStrides_d]
 * when every coordinate i_d - lo_d lies in [0, srcExtent_d), else `fill`. Strides are >= 0 (0 broadcasts).
 */
export interface BoxCopy {
  src: Tensor;
  box: number[];
  srcStrides: number[];
  srcOffset?: number;
  dstStrides: number[];
  dstOffset?: number;
  /** Padding: box index of source coordinate 0 per dim (default 0) and source extents (default: no bound). */
  lo?: number[];
  srcExtent?: number[];
  fill?: number;
}

const MAX_DIMS = 8;
const NO_BOUND = 0x7fffffff;

interface NormalBox {
  ext: number[];
  is: number[];
  os: number[];
  lo: number[];
  ie: number[];
  srcOffset: number;
  dstOffset: number;
}

/** Contiguous (row-major) strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d];
  }
  return s;
}

/** Drops extent-1 dims without padding and merges neighbours that are contiguous in both tensors. */
function normalize(c: BoxCopy): NormalBox {
  const n = c.box.length;
  const lo = c.lo ?? new Array(n).fill(0);
  const ie = c.srcExtent ?? new Array(n).fill(NO_BOUND);
  const dims: { ext: number; is: number; os: number; lo: number; ie: number }[] = [];
  for (let d = 0; d < n; d++) {
    const dim = { ext: c.box[d], is: c.srcStrides[d], os: c.dstStrides[d], lo: lo[d], ie: ie[d] };
    if (dim.is < 0 || dim.os < 0) throw new Error('layout: negative strides are not supported');
    const padded = dim.lo !== 0 || dim.ie < dim.ext;
    if (dim.ext === 1 && !padded) continue;
    const prev = dims[dims.length - 1];
    const prevPadded = prev && (prev.lo !== 0 || prev.ie < prev.ext);
    if (prev && !padded && !prevPadded && prev.is === dim.is * dim.ext && prev.os === dim.os * dim.ext) {
      prev.ext *= dim.ext;
      prev.is = dim.is;
      prev.os = dim.os;
      prev.ie = NO_BOUND;
      continue;
    }
    dims.push(dim);
  }
  if (dims.length > MAX_DIMS) throw new Error(`layout: the copy needs ${dims.length} dims after merging (at most ${MAX_DIMS})`);
  while (dims.length < MAX_DIMS) dims.unshift({ ext: 1, is: 0, os: 0, lo: 0, ie: NO_BOUND });
  return {
    ext: dims.map((d) => d.ext),
    is: dims.map((d) => d.is),
    os: dims.map((d) => d.os),
    lo: dims.map((d) => d.lo),
    ie: dims.map((d) => d.ie),
    srcOffset: c.srcOffset ?? 0,
    dstOffset: c.dstOffset ?? 0,
  };
}

/** Half types are copied in output words: the innermost dim must be contiguous, even and word aligned. */
function pairable(b: NormalBox): boolean {
  const L = MAX_DIMS - 1;
  return b.os[L] === 1 && b.ext[L] % 2 === 0 && b.dstOffset % 2 === 0 && b.os.every((s, d) => d === L || s % 2 === 0);
}

function fillBits(dtype: DType, v: number): number {
  const bytes = encode(dtype, [v]);
  const view = new DataView(bytes.buffer);
  return dtypeBytes(dtype) === 2 ? view.getUint16(0, true) : view.getUint32(0, true);
}

/** Runs the copies into `dst` (same dtype as every source), windowing both sides to fit bindings. */
function runCopies(e: Engine, op: string, dst: Tensor, copies: BoxCopy[]): void {
  const half = dtypeBytes(dst.dtype) === 2;
  const pipeline = e.pipeline('layout_copy', { HALF: String(half) });
  const gpu = e.gpu;
  for (const c of copies) {
    if (c.src.dtype !== dst.dtype) throw new Error(`${op}: source "${c.src.label}" is ${c.src.dtype}, output is ${dst.dtype}`);
    if (c.box.some((x) => x === 0)) continue;
    const b = normalize(c);
    if (half && !pairable(b)) throw new Error(`${op}: internal: unpaired half copy`);
    const fill = fillBits(dst.dtype, c.fill ?? 0);
    const L = MAX_DIMS - 1;
    const windows: { start: number[]; ext: number[]; ib: RangeBinding; ob: RangeBinding }[] = [];
    const plan = (start: number[], ext: number[], depth: number): void => {
      // Source span over the coordinates that are inside the source.
      let inputless = false;
      let imin = b.srcOffset;
      let imax = b.srcOffset;
      let omin = b.dstOffset;
      let omax = b.dstOffset;
      for (let d = 0; d < MAX_DIMS; d++) {
        const v0 = Math.max(start[d], b.lo[d]);
        const v1 = Math.min(start[d] + ext[d], b.lo[d] + b.ie[d]);
        if (v1 <= v0) inputless = true;
        imin += (v0 - b.lo[d]) * b.is[d];
        imax += (v1 - 1 - b.lo[d]) * b.is[d];
        omin += start[d] * b.os[d];
        omax += (start[d] + ext[d] - 1) * b.os[d];
      }
      const ib = inputless ? bindElements(gpu, c.src, 0, 1) : bindElements(gpu, c.src, imin, imax + 1);
      const ob = bindElements(gpu, dst, omin, omax + 1);
      if (ib && ob) {
        windows.push({ start, ext, ib, ob });
        return;
      }
      // Split the dim that spreads the failing side the most.
      let best = -1;
      let bestSpan = 0;
      for (let d = 0; d < MAX_DIMS; d++) {
        const minExt = half && d === L ? 2 : 1;
        if (ext[d] <= minExt) continue;
        const span = Math.max(ib ? 0 : b.is[d] * (ext[d] - 1), ob ? 0 : b.os[d] * (ext[d] - 1));
        if (span > bestSpan) {
          bestSpan = span;
          best = d;
        }
      }
      if (best < 0 || depth > 64) throw new Error(`${op}: cannot window a copy of "${c.src.label}" [${c.src.shape}] into bindings of ${gpu.maxBindingBytes} bytes`);
      let h = Math.floor(ext[best] / 2);
      if (half && best === L) h = Math.max(2, h - (h % 2));
      const s2 = [...start];
      const e1 = [...ext];
      const e2 = [...ext];
      e1[best] = h;
      e2[best] = ext[best] - h;
      s2[best] = start[best] + h;
      plan(start, e1, depth + 1);
      plan(s2, e2, depth + 1);
    };
    plan(new Array(MAX_DIMS).fill(0), [...b.ext], 0);
    for (const w of windows) {
      let n = w.ext.reduce((p, q) => p * q, 1);
      if (half) n /= 2;
      let obase = b.dstOffset - w.ob.base;
      for (let d = 0; d < MAX_DIMS; d++) obase += w.start[d] * b.os[d];
      const u = new Uniforms().u32(n).i32(b.srcOffset - w.ib.base).i32(obase).u32(fill);
      for (const v of w.ext) u.u32(v);
      for (const v of b.is) u.i32(v);
      for (const v of b.os) u.i32(v);
      for (let d = 0; d < MAX_DIMS; d++) u.i32(b.lo[d] - w.start[d]);
      for (const v of b.ie) u.i32(v);
      e.dispatch({ op, pipeline, params: u, buffers: [w.ib.binding, w.ob.binding], workgroups: Math.ceil(n / 256) });
    }
  }
}

/** Copies all of `src` into `dst` (same dtype and element count) buffer to buffer, segment by segment. */
function copyWhole(e: Engine, op: string, src: Tensor, dst: Tensor): void {
  const b = dtypeBytes(src.dtype);
  for (const ds of dst.storage.segments) {
    const ss = src.storage.segments.find((s) => s.elem0 === ds.elem0 && s.elems === ds.elems);
    if (!ss) throw new Error(`${op}: the given out tensor [${dst.shape}] is split into buffers differently from the result`);
    const bytes = Math.ceil((ds.elems * b) / 4) * 4;
    e.copy({ buffer: ss.buffer, offset: 0, size: bytes }, { buffer: ds.buffer, offset: 0, size: bytes }, bytes, op);
  }
}

/**
 * A new tensor of `shape` written by `copies` (which together cover it). Half types whose copies
 * cannot be done in whole output words go through f32 (exact: f32 holds every half value).
 */
export function layoutOp(e: Engine, op: string, shape: number[], dtype: DType, copies: BoxCopy[], out?: Tensor): Tensor {
  if (out && (out.dtype !== dtype || out.numel !== numelOf(shape))) throw new Error(`${op}: out [${out.shape}] ${out.dtype} does not hold ${dtype} [${shape}]`);
  if (dtypeBytes(dtype) === 2 && !copies.every((c) => c.box.some((x) => x === 0) || pairable(normalize(c)))) {
    return e.scope(() => {
      const wide = copies.map((c) => ({ ...c, src: cast(e, c.src, 'f32') }));
      const y32 = layoutOp(e, op, shape, 'f32', wide);
      const y = cast(e, y32, dtype);
      if (!out) return y;
      copyWhole(e, op, y, out);
      return out;
    });
  }
  const y = out ?? e.empty(shape, dtype, op);
  runCopies(e, op, y, copies);
  return y;
}

// ------------------------------------------------------------------ general layout ops

function checkAxes(op: string, x: Tensor, n: number, what: string): void {
  if (n !== x.shape.length) throw new Error(`${op}: ${what} has ${n} entries, x [${x.shape}] has ${x.shape.length} dims`);
}

/** y = x.permute(perm) (contiguous copy). */
export function permute(e: Engine, x: Tensor, perm: readonly number[], out?: Tensor): Tensor {
  const op = 'permute';
  checkAxes(op, x, perm.length, `perm [${perm}]`);
  if ([...perm].sort((a, b) => a - b).some((p, i) => p !== i)) throw new Error(`${op}: [${perm}] is not a permutation`);
  const shape = perm.map((p) => x.shape[p]);
  const xs = stridesOf(x.shape);
  return layoutOp(e, op, shape, x.dtype, [{ src: x, box: shape, srcStrides: perm.map((p) => xs[p]), dstStrides: stridesOf(shape) }], out);
}

/** y = x[starts[0]:ends[0], ...] (a copy; negative indices count from the end, like Python). */
export function slice(e: Engine, x: Tensor, starts: readonly number[], ends: readonly number[], out?: Tensor): Tensor {
  const op = 'slice';
  checkAxes(op, x, starts.length, 'starts');
  checkAxes(op, x, ends.length, 'ends');
  const norm = (v: number, d: number) => Math.min(Math.max(v < 0 ? v + x.shape[d] : v, 0), x.shape[d]);
  const s0 = starts.map(norm);
  const shape = ends.map((v, d) => Math.max(0, norm(v, d) - s0[d]));
  const xs = stridesOf(x.shape);
  const srcOffset = s0.reduce((acc, v, d) => acc + v * xs[d], 0);
  return layoutOp(e, op, shape, x.dtype, [{ src: x, box: shape, srcStrides: xs, srcOffset, dstStrides: stridesOf(shape) }], out);
}

/** Concatenation along `axis` (tensors of equal dtype and equal other dims). */
export function concat(e: Engine, tensors: readonly Tensor[], axis: number, out?: Tensor): Tensor {
  const op = 'concat';
  if (tensors.length === 0) throw new Error(`${op}: no tensors`);
  const first = tensors[0];
  const nd = first.shape.length;
  const ax = axis < 0 ? axis + nd : axis;
  if (ax < 0 || ax >= nd) throw new Error(`${op}: axis ${axis} out of range for [${first.shape}]`);
  for (const t of tensors) {
    if (t.dtype !== first.dtype || t.shape.length !== nd || t.shape.some((v, d) => d !== ax && v !== first.shape[d])) {
      throw new Error(`${op}: "${t.label}" [${t.shape}] ${t.dtype} does not match [${first.shape}] ${first.dtype} outside axis ${ax}`);
    }
  }
  const shape = [...first.shape];
  shape[ax] = tensors.reduce((acc, t) => acc + t.shape[ax], 0);
  const ys = stridesOf(shape);
  let at = 0;
  const copies = tensors.map((t) => {
    const c: BoxCopy = { src: t, box: [...t.shape], srcStrides: stridesOf(t.shape), dstStrides: ys, dstOffset: at * ys[ax] };
    at += t.shape[ax];
    return c;
  });
  return layoutOp(e, op, shape, first.dtype, copies, out);
}

/** Constant padding: pads[d] = [before, after] elements of axis d (>= 0). */
export function pad(e: Engine, x: Tensor, pads: readonly (readonly [number, number])[], value = 0, out?: Tensor): Tensor {
  const op = 'pad';
  checkAxes(op, x, pads.length, 'pads');
  if (pads.some(([a, b]) => !(Number.isInteger(a) && Number.isInteger(b) && a >= 0 && b >= 0))) throw new Error(`${op}: pads must be non-negative integers`);
  const shape = x.shape.map((v, d) => v + pads[d][0] + pads[d][1]);
  return layoutOp(
    e,
    op,
    shape,
    x.dtype,
    [{ src: x, box: shape, srcStrides: stridesOf(x.shape), dstStrides: stridesOf(shape), lo: pads.map((p) => p[0]), srcExtent: [...x.shape], fill: value }],
    out,
  );
}

/**
 * Depth to space per frame: [C*r*r, T, H, W] -> [C, T, H*r, W*r] (also [C*r*r, H, W] and a leading
 * batch of 1). Input channel c*r*r + a*r + b holds row offset a, column offset b (torch PixelShuffle)
 * or, with `colFirst`, column offset a and row offset b (Wan2.2 VAE unpatchify).
 */
function depthToSpace(e: Engine, op: string, x: Tensor, r: number, colFirst: boolean, out?: Tensor): Tensor {
  const [cr, T, H, W] = channelFramesHW(op, x);
  if (!(Number.isInteger(r) && r >= 1) || cr % (r * r)) throw new Error(`${op}: ${cr} channels are not divisible by ${r}^2`);
  const C = cr / (r * r);
  const xs = stridesOf([C, r, r, T, H, W]); // x viewed as [c, a, b, t, h, w]
  const [rowS, colS] = colFirst ? [xs[2], xs[1]] : [xs[1], xs[2]];
  const box = [C, T, H, r, W, r]; // y[c, t, h, i (row offset), w, j (column offset)]
  const srcStrides = [xs[0], xs[3], xs[4], rowS, xs[5], colS];
  return layoutOp(e, op, outShape(x, [C, H * r, W * r], T), x.dtype, [{ src: x, box, srcStrides, dstStrides: stridesOf(box) }], out);
}

/** Space to depth, the inverse of depthToSpace: [C, T, H*r, W*r] -> [C*r*r, T, H, W]. */
function spaceToDepth(e: Engine, op: string, x: Tensor, r: number, colFirst: boolean, out?: Tensor): Tensor {
  const [C, T, Hr, Wr] = channelFramesHW(op, x);
  if (!(Number.isInteger(r) && r >= 1) || Hr % r || Wr % r) throw new Error(`${op}: spatial size ${Hr}x${Wr} is not divisible by ${r}`);
  const H = Hr / r;
  const W = Wr / r;
  const xs = stridesOf([C, T, H, r, W, r]); // x viewed as [c, t, h, i (row), w, j (column)]
  const [aS, bS] = colFirst ? [xs[5], xs[3]] : [xs[3], xs[5]];
  const box = [C, r, r, T, H, W]; // y[c, a, b, t, h, w]
  const srcStrides = [xs[0], aS, bS, xs[1], xs[2], xs[4]];
  return layoutOp(e, op, outShape(x, [C * r * r, H, W], T), x.dtype, [{ src: x, box, srcStrides, dstStrides: stridesOf(box) }], out);
}

/** torch.nn.PixelShuffle per frame: [C*r*r, (T,) H, W] -> [C, (T,) H*r, W*r], channel c*r*r + row*r + col. */
export const pixelShuffle = (e: Engine, x: Tensor, r: number, out?: Tensor) => depthToSpace(e, 'pixelShuffle', x, r, false, out);
/** torch.nn.PixelUnshuffle per frame, the inverse of pixelShuffle. */
export const pixelUnshuffle = (e: Engine, x: Tensor, r: number, out?: Tensor) => spaceToDepth(e, 'pixelUnshuffle', x, r, false, out);
/**
 * Wan2.2 VAE patchify (wan/modules/vae2_2.py, patch_size p): "c f (h q) (w r) -> (c r q) f h w", i.e.
 * output channel c*p*p + col*p + row (the COLUMN offset before the row offset). [C, F, H, W] or [C, H, W].
 */
export const vaePatchify = (e: Engine, x: Tensor, p = 2, out?: Tensor) => spaceToDepth(e, 'vaePatchify', x, p, true, out);
/** Wan2.2 VAE unpatchify: "(c r q) f h w -> c f (h q) (w r)", the inverse of vaePatchify. */
export const vaeUnpatchify = (e: Engine, x: Tensor, p = 2, out?: Tensor) => depthToSpace(e, 'vaeUnpatchify', x, p, true, out);

/** [C, H, W] or [C, T, H, W] (a leading batch of 1 allowed) as [C, T (1 for 3-D), H, W]. */
function channelFramesHW(op: string, x: Tensor): [number, number, number, number] {
  const s = x.shape.length === 5 && x.shape[0] === 1 ? x.shape.slice(1) : [...x.shape];
  if (s.length === 3) return [s[0], 1, s[1], s[2]];
  if (s.length === 4) return [s[0], s[1], s[2], s[3]];
  throw new Error(`${op}: x [${x.shape}] must be [C, H, W], [C, T, H, W] or [1, C, T, H, W]`);
}

/** The output shape in the input's rank: [C', H', W'], [C', T, H', W'] or [1, C', T, H', W']. */
function outShape(x: Tensor, chw: [number, number, number], T: number): number[] {
  if (x.shape.length === 3) return chw;
  const batch = x.shape.length === 5 ? [1] : [];
  return [...batch, chw[0], T, chw[1], chw[2]];
}

// ------------------------------------------------------------------ DiT patch layouts

/**
 * DiT patchify as a matrix: x [C, F, H, W] (or [1, C, F, H, W]) -> [L, C*pt*ph*pw] with tokens in
 * (f, h, w) order and columns in (c, dt, dh, dw) order, i.e. the flattened Conv3d weight's order, so
 * that tokens · weight.reshape([dim, -1])ᵀ equals the patch embedding.
 */
export function ditPatchify(e: Engine, x: Tensor, patch: readonly [number, number, number] = [1, 2, 2], out?: Tensor): Tensor {
  const op = 'ditPatchify';
  const [C, F, H, W] = channelFramesHW(op, x);
  const [pt, ph, pw] = patch;
  if (F % pt || H % ph || W % pw) throw new Error(`${op}: [${F}, ${H}, ${W}] is not divisible by the patch [${patch}]`);
  const [f, h, w] = [F / pt, H / ph, W / pw];
  const xs = stridesOf([C, f, pt, h, ph, w, pw]);
  const box = [f, h, w, C, pt, ph, pw];
  const srcStrides = [xs[1], xs[3], xs[5], xs[0], xs[2], xs[4], xs[6]];
  return layoutOp(e, op, [f * h * w, C * pt * ph * pw], x.dtype, [{ src: x, box, srcStrides, dstStrides: stridesOf(box) }], out);
}

/**
 * WanModel.unpatchify for one sample: head output u [L, pt*ph*pw*c] (or [1, L, ...]; rows past
 * F*H*W are padding and ignored) -> [c, F*pt, H*ph, W*pw]. The head's channel index is
 * ((p*ph + q)*pw + r)*c + ch: the output channel is the FASTEST axis ("fhwpqrc->cfphqwr").
 */
export function ditUnpatchify(e: Engine, u: Tensor, grid: readonly [number, number, number], patch: readonly [number, number, number] = [1, 2, 2], out?: Tensor): Tensor {
  const op = 'ditUnpatchify';
  const [F, H, W] = grid;
  const [pt, ph, pw] = patch;
  const D = u.shape[u.shape.length - 1];
  const L = u.numel / D;
  const c = D / (pt * ph * pw);
  if (!Number.isInteger(c) || L < F * H * W) throw new Error(`${op}: u [${u.shape}] does not hold ${F * H * W} tokens of patch [${patch}] x channels`);
  const us = stridesOf([F, H, W, pt, ph, pw, c]);
  const box = [c, F, pt, H, ph, W, pw];
  const srcStrides = [us[6], us[0], us[3], us[1], us[4], us[2], us[5]];
  return layoutOp(e, op, [c, F * pt, H * ph, W * pw], u.dtype, [{ src: u, box, srcStrides, dstStrides: stridesOf(box) }], out);
}

/** Channel-major [C, ...spatial] -> token-major [L, C] (e.g. the patch embedding's conv output -> tokens). */
export function channelsToTokens(e: Engine, y: Tensor, out?: Tensor): Tensor {
  const s = y.shape.length > 0 && y.shape[0] === 1 && y.shape.length === 5 ? y.shape.slice(1) : y.shape;
  const C = s[0];
  return permute(e, y.reshape([C, y.numel / C]), [1, 0], out);
}

