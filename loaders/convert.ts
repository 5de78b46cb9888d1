// Stored dtype -> engine storage dtype, chunk by chunk on the way to the device.
// float -> bf16 rounds to nearest even; float -> f16 rounds to nearest and counts values that
// overflow to infinity (the caller reports them: an f16 weight that became inf is a silent bug).
import { setFloat16 } from '@petamoriken/float16';
import { f32ToBf16Bits, type DType } from '../engine/index.ts';
import { DTYPE_SIZE, decodeToFloat32, type StDType } from './safetensors.ts';

export interface ConvertResult {
  bytes: Uint8Array;
  /** Finite values that became +-inf (f16 only). */
  overflows: number;
}

export function convertChunk(src: StDType, raw: Uint8Array, dst: DType): ConvertResult {
  const n = raw.byteLength / DTYPE_SIZE[src];
  // Same representation: pass through.
  if ((src === 'F32' && dst === 'f32') || (src === 'BF16' && dst === 'bf16') || (src === 'F16' && dst === 'f16')) {
    return { bytes: raw, overflows: 0 };
  }
  if (dst === 'i32' || dst === 'u32') throw new Error(`cannot convert stored ${src} to ${dst}`);
  const values = decodeToFloat32(src, raw);
  if (dst === 'f32') return { bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength), overflows: 0 };
  const out = new Uint8Array(n * 2);
  const view = new DataView(out.buffer);
  let overflows = 0;
  if (dst === 'bf16') {
    for (let i = 0; i < n; i++) view.setUint16(i * 2, f32ToBf16Bits(values[i]), true);
  } else {
    for (let i = 0; i < n; i++) {
      setFloat16(view, i * 2, values[i], true);
      if (Number.isFinite(values[i]) && Math.abs(values[i]) >= 65520) overflows++;
    }
  }
  return { bytes: out, overflows };
}
