// Binary elementwise ops with numpy broadcasting (add, sub, mul) and the fused DiT row ops
// (modulate, gated residual). Windowed over output elements / rows, so tensors of any size work
// under any storage binding limit; small broadcast operands are bound whole.
import { Uniforms, type Engine } from '../engine.ts';
import type { Tensor } from '../tensor.ts';
import { planWindows, wholeBinding, type Binding, type WindowOperand } from '../windows.ts';
import { outputFor, requireDtype, vec4Binding } from './elementwise.ts';

export type BinaryOp = 'add' | 'sub' | 'mul';

export interface OutOption {
  /** Write into this tensor (shape of the result, f32). It may be the first input: computed in place. */
  out?: Tensor;
}

/** numpy broadcast of two shapes; throws on incompatible dimensions. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let k = 0; k < r; k++) {
    const da = a[a.length - r + k] ?? 1;
    const db = b[b.length - r + k] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`shapes [${a}] and [${b}] do not broadcast`);
    out.push(da === 1 ? db : da);
  }
  return out;
}

interface Collapsed {
  /** Four collapsed output dims, outermost first. */
  dims: number[];
  /** Element strides of each operand over those dims (0 where broadcast). */
  strides: number[][];
}

const MAX_DIMS = 4;

/**
 * Merges neighbouring output dims that every operand either broadcasts or reads contiguously, so
 * the kernel indexes with at most four dims (e.g. [B,1,C] over [B,L,C] becomes dims [B, L, C]).
 */
export function collapseBroadcast(out: readonly number[], shapes: readonly (readonly number[])[]): Collapsed {
  const r = out.length;
  const groups: { size: number; bcast: boolean[] }[] = [];
  for (let k = 0; k < r; k++) {
    if (out[k] === 1) continue;
    const bcast = shapes.map((s) => (s[s.length - r + k] ?? 1) === 1);
    const last = groups[groups.length - 1];
    if (last && last.bcast.every((v, i) => v === bcast[i])) last.size *= out[k];
    else groups.push({ size: out[k], bcast });
  }
  if (groups.length > MAX_DIMS) throw new Error(`broadcast of [${shapes.map((s) => `[${s}]`).join(', ')}] to [${out}] needs ${groups.length} > ${MAX_DIMS} dims`);
  while (groups.length < MAX_DIMS) groups.unshift({ size: 1, bcast: shapes.map(() => true) });
  const strides = shapes.map((_, o) => {
    const st: number[] = new Array(MAX_DIMS).fill(0);
    let acc = 1;
    for (let g = MAX_DIMS - 1; g >= 0; g--) {
      if (groups[g].bcast[o]) continue;
      st[g] = acc;
      acc *= groups[g].size;
    }
    return st;
  });
  return { dims: groups.map((g) => g.size), strides };
}

/** binary.wgsl / binary_mod.wgsl: 64 threads x 4 items. */
const ITEMS_PER_WORKGROUP = 256;

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Y = a OP b with numpy broadcasting, f32. */
export function binary(e: Engine, op: BinaryOp, a: Tensor, b: Tensor, opts: OutOption = {}): Tensor {
  requireDtype(op, a, ['f32']);
  requireDtype(op, b, ['f32']);
  const shape = broadcastShapes(a.shape, b.shape);
  const numel = shape.reduce((x, y) => x * y, 1);
  const out = opts.out;
  // In place into b: swap the operands when the op commutes.
  if (out && out.storage === b.storage && out.storage !== a.storage) {
    if (op === 'sub') throw new Error(`sub: out must not alias the second operand`);
    [a, b] = [b, a];
  }
  const inPlace = !!out && out.storage === a.storage;
  if (inPlace) {
    if (!sameShape(out!.shape, shape) || a.numel !== numel) throw new Error(`${op}: in place needs out = a with the result's shape [${shape}]`);
    if (b.storage === a.storage) throw new Error(`${op}: in place with both operands the same tensor is not supported`);
  }
  const y = inPlace ? a : outputFor(e, op, shape, out, a.numel === numel ? a : b);
  if (numel === 0) return y;
  const inputs = [a, b];
  const full = inputs.map((t) => t.numel === numel);
  const col = collapseBroadcast(shape, [a.shape, b.shape]);
  // vec4 threads when 4 consecutive outputs share their broadcast coordinates.
  const W = col.dims[3] % 4 === 0 || full.every(Boolean) ? 4 : 1;
  const T = W === 4 ? 'vec4<f32>' : 'f32';
  const types: string[] = [];
  const loads: string[] = [];
  const starts: string[] = [];
  inputs.forEach((_, k) => {
    const name = k === 0 ? 'A' : 'B';
    const idx = k === 0 ? 'ia' : 'ib';
    starts.push(full[k] ? '0u' : `bcast_${name.toLowerCase()}(g)`);
    if (full[k]) {
      types.push(T);
      loads.push(`${name}[i]`);
    } else if (W === 4 && col.strides[k][3] === 0) {
      types.push('f32');
      loads.push(`vec4<f32>(${name}[${idx}])`);
    } else {
      types.push(T);
      loads.push(W === 4 ? `${name}[${idx} / 4u]` : `${name}[${idx}]`);
    }
  });
  const pipeline = e.pipeline('binary', {
    T,
    W,
    OP: `op_${op}`,
    TA: types[0],
    TB: types[1],
    LA: loads[0],
    LB: loads[1],
    IA0: starts[0],
    IB0: starts[1],
    BODY: full.every(Boolean) ? 'items_same' : 'items_bcast',
    A_ACCESS: inPlace ? 'read_write' : 'read',
    OUT: inPlace ? 'A' : 'Y',
  });
  // Operands in binding order; broadcast ones are bound whole, the others windowed with the output.
  const windowed: WindowOperand[] = [];
  const slots: (Binding | number)[] = [];
  inputs.forEach((t, k) => {
    if (full[k]) {
      slots.push(windowed.length);
      windowed.push({ tensor: t, rowElems: 1 });
    } else {
      const whole = wholeBinding(e.gpu, t, op);
      slots.push(types[k] === 'f32' ? whole : vec4Binding(whole));
    }
  });
  if (!inPlace) {
    slots.push(windowed.length);
    windowed.push({ tensor: y, rowElems: 1 });
  }
  for (const w of planWindows(e.gpu, op, numel, windowed)) {
    const params = new Uniforms().u32(Math.ceil(w.rows / W)).u32(w.row0).u32(col.dims[1]).u32(col.dims[2]).u32(col.dims[3]);
    for (const st of col.strides) for (const s of st) params.u32(s);
    const buffers = slots.map((s) => (typeof s === 'number' ? (W === 4 ? vec4Binding(w.bindings[s]) : w.bindings[s]) : s));
    e.dispatch({ op, pipeline, params, buffers, workgroups: Math.ceil(w.rows / W / ITEMS_PER_WORKGROUP) });
  }
  return y;
}

export const add = (e: Engine, a: Tensor, b: Tensor, opts?: OutOption) => binary(e, 'add', a, b, opts);
export const sub = (e: Engine, a: Tensor, b: Tensor, opts?: OutOption) => binary(e, 'sub', a, b, opts);
export const mul = (e: Engine, a: Tensor, b: Tensor, opts?: OutOption) => binary(e, 'mul', a, b, opts);

// ---------------------------------------------------------------- modulation vectors

/**
 * A DiT modulation vector for x viewed as rows of C: a tensor [B, 1, C] (one vector per batch element,
 * broadcast over its tokens; also [1, C] or [C]), [B, L, C] (one per token, as Wan2.2 ti2v's per-token
 * timesteps give), or chunk k of a [B, 1|L, K, C] tensor (e.g. Wan's e0 [B, L, 6, C] unchunked).
 * With `split` the tensor holds two vectors per batch element ([2B, K, C]): the first for its
 * first `split` tokens, the second for the rest (ti2v's per-token timesteps take just two values).
 */
export type Modulation = Tensor | { tensor: Tensor; chunk: number; split?: number };

/** How a kernel addresses a modulation vector for row r and channel c (see binary_mod.wgsl). */
export interface ModAddress {
  tensor: Tensor;
  /** Per-token vectors are windowed with x (rows of `stride` elements); per-batch ones bound whole. */
  perToken: boolean;
  div: number;
  stride: number;
  off: number;
  /** > 0: two vectors per `div` rows, the first for the first `split` of them. */
  split?: number;
}

export function resolveModulation(op: string, m: Modulation, rows: number, C: number): ModAddress {
  const chunked = !('storage' in m);
  const tensor = chunked ? m.tensor : m;
  const chunk = chunked ? m.chunk : 0;
  requireDtype(op, tensor, ['f32']);
  const s = tensor.shape;
  const K = chunked ? s[s.length - 2] : 1;
  if (s[s.length - 1] !== C || (chunked && (s.length < 2 || !Number.isInteger(chunk) || chunk < 0 || chunk >= K))) {
    throw new Error(`${op}: modulation "${tensor.label}" [${s}]${chunked ? ` chunk ${chunk}` : ''} does not fit rows of ${C}`);
  }
  const vectors = tensor.numel / (K * C);
  const split = chunked ? (m.split ?? 0) : 0;
  if (split > 0) {
    const groups = vectors / 2;
    if (!Number.isInteger(groups) || groups < 1 || rows % groups !== 0 || !Number.isInteger(split) || split >= rows / groups) {
      throw new Error(`${op}: split modulation "${tensor.label}" [${s}] (split ${split}) needs two vectors per batch element of ${rows} rows`);
    }
    return { tensor, perToken: false, div: rows / groups, stride: K * C, off: chunk * C, split };
  }
  if (vectors === rows) return { tensor, perToken: true, div: 1, stride: K * C, off: chunk * C };
  if (vectors > 0 && rows % vectors === 0) return { tensor, perToken: false, div: rows / vectors, stride: K * C, off: chunk * C };
  throw new Error(`${op}: modulation "${tensor.label}" [${s}] has ${vectors} vectors, neither 1 per row nor per batch element of ${rows} rows`);
}

/**
 * Adds a modulation operand to a windowed dispatch plan: per-token vectors join the windows,
 * per-batch vectors are bound whole. Returns how to fill its binding and uniforms per window.
 */
export function planModulation(e: Engine, op: string, m: ModAddress, windowed: WindowOperand[]) {
  let slot = -1;
  let whole: Binding | null = null;
  if (m.perToken) {
    slot = windowed.length;
    windowed.push({ tensor: m.tensor, rowElems: m.stride });
  } else {
    whole = wholeBinding(e.gpu, m.tensor, op);
  }
  return {
    binding: (bindings: Binding[]) => (whole ?? bindings[slot]),
    /** base, div, stride, off, split for a window starting at row0. */
    uniforms: (u: Uniforms, row0: number) => u.u32(m.perToken ? row0 : 0).u32(m.div).u32(m.stride).u32(m.off).u32(m.split ?? 0),
  };
}

type ModFn = 'modulate' | 'gated';

function rowMod(e: Engine, fn: ModFn, op: string, x: Tensor, u: Tensor | Modulation, uIsFull: boolean, v: Modulation, out?: Tensor): Tensor {
  requireDtype(op, x, ['f32']);
  const C = x.shape[x.shape.length - 1];
  if (!C) throw new Error(`${op}: x [${x.shape}] has no last dimension`);
  const rows = x.numel / C;
  const inPlace = !!out && out.storage === x.storage;
  const y = inPlace ? x : outputFor(e, op, x.shape, out, x);
  if (inPlace && !sameShape(out!.shape, x.shape)) throw new Error(`${op}: in place needs out = x`);
  const windowed: WindowOperand[] = [{ tensor: x, rowElems: C }];
  let uSlot = -1;
  let uMod: ReturnType<typeof planModulation> | null = null;
  if (uIsFull) {
    const ut = u as Tensor;
    requireDtype(op, ut, ['f32']);
    if (!sameShape(ut.shape, x.shape)) throw new Error(`${op}: y [${ut.shape}] must have x's shape [${x.shape}]`);
    if (inPlace && ut.storage === x.storage) throw new Error(`${op}: in place with y = x is not supported`);
    uSlot = windowed.length;
    windowed.push({ tensor: ut, rowElems: C });
  } else {
    uMod = planModulation(e, op, resolveModulation(op, u as Modulation, rows, C), windowed);
  }
  const vMod = planModulation(e, op, resolveModulation(op, v, rows, C), windowed);
  let ySlot = -1;
  if (!inPlace) {
    ySlot = windowed.length;
    windowed.push({ tensor: y, rowElems: C });
  }
  if (out && !inPlace) {
    const inputs = [u, v].map((m) => ('storage' in m ? m : m.tensor));
    if (inputs.some((t) => t.storage === out.storage)) throw new Error(`${op}: out must not alias an input other than x`);
  }
  const W = C % 4 === 0 ? 4 : 1;
  const pipeline = e.pipeline('binary_mod', {
    T: W === 4 ? 'vec4<f32>' : 'f32',
    W,
    FN: `fn_${fn}`,
    IU: uIsFull ? 'i' : 'ub + c',
    IV: 'vb + c',
    ...Object.fromEntries([0, 1, 2, 3].flatMap((k) => [
      [`IU${k}`, uIsFull ? `i0 + ${k}u` : `ub + c + ${k}u`],
      [`IV${k}`, `vb + c + ${k}u`],
    ])),
    X_ACCESS: inPlace ? 'read_write' : 'read',
    OUT: inPlace ? 'X' : 'Y',
  });
  const widen = (b: Binding) => (W === 4 ? vec4Binding(b) : b);
  for (const w of planWindows(e.gpu, op, rows, windowed)) {
    const params = new Uniforms().u32((w.rows * C) / W).u32(w.row0).u32(C);
    if (uMod) uMod.uniforms(params, w.row0);
    else params.u32(0).u32(1).u32(0).u32(0).u32(0);
    vMod.uniforms(params, w.row0);
    const buffers = [w.bindings[0], uMod ? uMod.binding(w.bindings) : w.bindings[uSlot], vMod.binding(w.bindings)];
    if (!inPlace) buffers.push(w.bindings[ySlot]);
    e.dispatch({ op, pipeline, params, buffers: buffers.map(widen), workgroups: Math.ceil((w.rows * C) / W / ITEMS_PER_WORKGROUP) });
  }
  return y;
}

/** x * (1 + scale) + shift: the DiT's adaLN modulation (x [.., C]; shift/scale see Modulation). */
export function modulate(e: Engine, x: Tensor, shift: Modulation, scale: Modulation, opts: OutOption = {}): Tensor {
  return rowMod(e, 'modulate', 'modulate', x, scale, false, shift, opts.out);
}

/** x + y * gate: the DiT's gated residual (y shaped like x; gate see Modulation). `out: x` updates x in place. */
export function gatedResidual(e: Engine, x: Tensor, y: Tensor, gate: Modulation, opts: OutOption = {}): Tensor {
  return rowMod(e, 'gated', 'gatedResidual', x, y, true, gate, opts.out);
}
