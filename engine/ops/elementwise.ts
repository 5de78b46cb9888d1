// Dispatch of elementwise kernels: activations and dtype casts, windowed over elements so that
// tensors of any size work under any storage binding limit.
import { Uniforms, type Engine } from '../engine.ts';
import type { DType } from '../dtype.ts';
import type { Tensor } from '../tensor.ts';
import { planWindows } from '../windows.ts';

export type Activation = 'silu' | 'gelu_tanh';

function requireDtype(op: string, t: Tensor, dtypes: DType[]): void {
  if (!dtypes.includes(t.dtype)) throw new Error(`${op}: "${t.label}" is ${t.dtype}, expected ${dtypes.join(' or ')}`);
}

/** y = act(x), f32. */
export function activation(e: Engine, fn: Activation, x: Tensor): Tensor {
  requireDtype(fn, x, ['f32']);
  const y = e.empty(x.shape, 'f32', fn);
  const pipeline = e.pipeline('unary', { FN: fn });
  for (const w of planWindows(e.gpu, fn, x.numel, [{ tensor: x, rowElems: 1 }, { tensor: y, rowElems: 1 }])) {
    e.dispatch({ op: fn, pipeline, params: new Uniforms().u32(w.rows), buffers: w.bindings, workgroups: Math.ceil(w.rows / 256) });
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
