// Dispatch of elementwise kernels: activations and dtype casts, windowed over elements so that
// tensors of any size work under any storage binding limit.
import { Uniforms, type Engine } from '../engine.ts';
import { dtypeBytes, storageBytes, type DType } from '../dtype.ts';
import { Storage, Tensor, numelOf } from '../tensor.ts';
import { planWindows, type Binding } from '../windows.ts';

export type Activation = 'silu' | 'gelu_tanh';

export function requireDtype(op: string, t: Tensor, dtypes: DType[]): void {
  if (!dtypes.includes(t.dtype)) throw new Error(`${op}: "${t.label}" is ${t.dtype}, expected ${dtypes.join(' or ')}`);
}

/** unary.wgsl: 64 threads x 4 vec4s per workgroup. */
const unaryWorkgroups = (elements: number) => Math.ceil(elements / 1024);

/** y = act(x), f32. */
export function activation(e: Engine, fn: Activation, x: Tensor): Tensor {
  requireDtype(fn, x, ['f32']);
  const y = e.empty(x.shape, 'f32', fn);
  const pipeline = e.pipeline('unary', { FN: fn });
  for (const w of planWindows(e.gpu, fn, x.numel, [{ tensor: x, rowElems: 1 }, { tensor: y, rowElems: 1 }])) {
    e.dispatch({ op: fn, pipeline, params: new Uniforms().u32(w.rows), buffers: w.bindings.map(vec4Binding), workgroups: unaryWorkgroups(w.rows) });
  }
  return y;
}

export const silu = (e: Engine, x: Tensor) => activation(e, 'silu', x);
export const geluTanh = (e: Engine, x: Tensor) => activation(e, 'gelu_tanh', x);

/** Converts between f32 and the packed half types (f16 rounding is the adapter's; bf16 rounds to nearest even). */
export function cast(e: Engine, x: Tensor, to: DType): Tensor {
  const op = `cast ${x.dtype}->${to}`;
  if (x.dtype === to) throw new Error(`${op}: already ${to}`);
  const y = e.empty(x.shape, to, op);
  let pipeline: GPUComputePipeline;
  let perThread: number;
  if (x.dtype === 'f32' && (to === 'f16' || to === 'bf16')) {
    pipeline = e.pipeline('pack_half', { FMT: to });
    perThread = 2;
  } else if ((x.dtype === 'f16' || x.dtype === 'bf16') && to === 'f32') {
    pipeline = e.pipeline('unpack_half', { FMT: x.dtype });
    perThread = 1;
  } else {
    throw new Error(`${op}: unsupported conversion`);
  }
  for (const w of planWindows(e.gpu, op, x.numel, [{ tensor: x, rowElems: 1 }, { tensor: y, rowElems: 1 }])) {
    e.dispatch({ op, pipeline, params: new Uniforms().u32(w.rows), buffers: w.bindings, workgroups: Math.ceil(w.rows / perThread / 256) });
  }
  return y;
}

// ---------------------------------------------------------------- shared by the elementwise families

/**
 * A fresh output tensor whose storage segments hold the largest trailing block of dimensions that
 * fits one buffer. `e.empty(shape)` segments on rows of shape[0], which for a batch of one
 * ([1, L, C]) is the whole tensor; here a [1, L, C] output segments on tokens, so later row kernels
 * (norms over C, RoPE over tokens) can window it.
 */
export function emptyOutput(e: Engine, shape: readonly number[], dtype: DType = 'f32', label = 'tensor'): Tensor {
  const bytes = dtypeBytes(dtype);
  let k = 0;
  while (k < shape.length - 1 && numelOf(shape.slice(k)) * bytes > e.gpu.maxBufferBytes) k++;
  if (k <= 1) return e.empty(shape, dtype, label);
  const rows = e.empty([numelOf(shape.slice(0, k)), numelOf(shape.slice(k))], dtype, label);
  const view = rows.reshape(shape);
  rows.dispose();
  return view;
}

/**
 * A fresh tensor with `like`'s storage layout (the same segments), so windows planned over both
 * line up exactly as they do over `like` alone: a row kernel's output never has segment boundaries
 * its input lacks. Same element size as `like` required.
 */
export function emptyLike(e: Engine, like: Tensor, shape: readonly number[], dtype: DType = like.dtype, label = 'tensor'): Tensor {
  const numel = numelOf(shape);
  if (numel !== like.numel || dtypeBytes(dtype) !== dtypeBytes(like.dtype)) throw new Error(`emptyLike: [${shape}] ${dtype} does not match "${like.label}" [${like.shape}] ${like.dtype}`);
  like.assertAlive(label);
  const segs = like.storage.segments;
  if (segs.length === 1) return e.empty(shape, dtype, label);
  e.gpu.check(`allocating "${label}"`);
  const segments = segs.map((s) => ({ buffer: e.pool.acquire(storageBytes(dtype, s.elems), label), elem0: s.elem0, elems: s.elems }));
  return new Tensor(e, new Storage(dtype, numel, segments), shape, label);
}

/**
 * Validates a caller-provided output tensor, or allocates one (laid out like `like` when given,
 * else segmented on the largest trailing block that fits a buffer).
 */
export function outputFor(e: Engine, op: string, shape: readonly number[], out: Tensor | undefined, like?: Tensor, dtype: DType = 'f32'): Tensor {
  if (!out) {
    const sameLayout = like && like.numel === numelOf(shape) && dtypeBytes(like.dtype) === dtypeBytes(dtype);
    return sameLayout ? emptyLike(e, like, shape, dtype, op) : emptyOutput(e, shape, dtype, op);
  }
  out.assertAlive(op);
  if (out.dtype !== dtype || out.shape.length !== shape.length || out.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${op}: out "${out.label}" is ${out.dtype} [${out.shape}], expected ${dtype} [${shape}]`);
  }
  return out;
}

function unaryWithParams(e: Engine, fn: 'scale_by' | 'clamp_to', op: string, x: Tensor, a: number, b: number, out?: Tensor): Tensor {
  requireDtype(op, x, ['f32']);
  if (out && out.storage === x.storage) throw new Error(`${op}: out must not alias the input`);
  const y = outputFor(e, op, x.shape, out, x);
  const pipeline = e.pipeline('unary', { FN: fn });
  for (const w of planWindows(e.gpu, op, x.numel, [{ tensor: x, rowElems: 1 }, { tensor: y, rowElems: 1 }])) {
    e.dispatch({ op, pipeline, params: new Uniforms().u32(w.rows).f32(a).f32(b), buffers: w.bindings.map(vec4Binding), workgroups: unaryWorkgroups(w.rows) });
  }
  return y;
}

/** y = x * s (s a host scalar, rounded to f32), f32. */
export function scale(e: Engine, x: Tensor, s: number, opts: { out?: Tensor } = {}): Tensor {
  return unaryWithParams(e, 'scale_by', 'scale', x, s, 0, opts.out);
}

/** y = min(max(x, lo), hi) like torch.clamp (lo > hi gives hi everywhere), f32. */
export function clamp(e: Engine, x: Tensor, lo: number, hi: number, opts: { out?: Tensor } = {}): Tensor {
  return unaryWithParams(e, 'clamp_to', 'clamp', x, lo, hi, opts.out);
}

/**
 * A binding widened to whole vec4s for kernels that bind f32 data as array<vec4<f32>>. Safe: pool
 * buffers are multiples of 16 bytes and windows start 256-byte aligned, so the widened range stays in
 * the buffer; only the last window of a tensor can end inside a vec4, and its tail is padding.
 */
export function vec4Binding(b: Binding): Binding {
  const size = Math.ceil(b.size / 16) * 16;
  if (b.offset + size > b.buffer.size) throw new Error(`vec4 binding of ${size} bytes at ${b.offset} exceeds its buffer of ${b.buffer.size}`);
  return { buffer: b.buffer, offset: b.offset, size };
}
