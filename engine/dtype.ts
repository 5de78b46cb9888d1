// Element types of engine tensors and their host-side conversions.
// f16 and bf16 are stored packed two per u32 on the device (element 2i in the low half),
// so a buffer of n half-precision elements occupies ceil(n/2) words.
import { getFloat16, setFloat16 } from '@petamoriken/float16';

export type DType = 'f32' | 'f16' | 'bf16' | 'i32' | 'u32';

export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'i32', 'u32'];

/** Bytes one element occupies on the device (half types are packed, so 2). */
export function dtypeBytes(dtype: DType): number {
  return dtype === 'f16' || dtype === 'bf16' ? 2 : 4;
}

export function isFloat(dtype: DType): boolean {
  return dtype === 'f32' || dtype === 'f16' || dtype === 'bf16';
}

/** Device bytes for n elements, rounded up to whole u32 words. */
export function storageBytes(dtype: DType, n: number): number {
  return Math.ceil((n * dtypeBytes(dtype)) / 4) * 4;
}

/**
 * How a tensor of `shape` is laid out in device buffers: one segment, or (above the buffer limit)
 * whole rows of the largest trailing block that fits one buffer ([1, L, C] splits on rows of C, not
 * on its single leading row), an even element count per segment so half types stay packed. Returns
 * each segment's first element and element count. The engine allocates by it; the memory planner
 * counts by it.
 */
export function storageSegments(shape: readonly number[], dtype: DType, maxBufferBytes: number, label = 'tensor'): { elem0: number; elems: number }[] {
  const numel = shape.reduce((a, b) => a * b, 1);
  if (storageBytes(dtype, numel) <= maxBufferBytes) return [{ elem0: 0, elems: numel }];
  let rowElems = 1;
  for (let k = 1; k <= shape.length; k++) {
    const r = shape.slice(k).reduce((a, b) => a * b, 1);
    if (r > 0 && storageBytes(dtype, r) <= maxBufferBytes) {
      rowElems = r;
      break;
    }
  }
  const b = dtypeBytes(dtype);
  const rowBytes = rowElems * b;
  let rowsPer = Math.floor(maxBufferBytes / rowBytes);
  if (b === 2 && rowElems % 2 === 1 && rowsPer % 2 === 1) rowsPer--;
  if (rowsPer < 1) throw new Error(`"${label}": one row of ${rowBytes} bytes exceeds the device buffer limit ${maxBufferBytes}`);
  const out: { elem0: number; elems: number }[] = [];
  const rows = numel / rowElems;
  for (let r = 0; r < rows; r += rowsPer) out.push({ elem0: r * rowElems, elems: Math.min(rowsPer, rows - r) * rowElems });
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> bfloat16 bits, round to nearest even; NaN stays NaN (quiet), overflow rounds to inf like torch. */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return ((bits >>> 16) | 0x0040) & 0xffff;
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/** Host array -> the exact bytes a tensor of `dtype` holds on the device (length padded to 4 bytes). */
export function encode(dtype: DType, data: ArrayLike<number>): Uint8Array {
  const n = data.length;
  const out = new Uint8Array(storageBytes(dtype, n));
  const view = new DataView(out.buffer);
  switch (dtype) {
    case 'f32':
      for (let i = 0; i < n; i++) view.setFloat32(i * 4, data[i], true);
      break;
    case 'i32':
      for (let i = 0; i < n; i++) view.setInt32(i * 4, data[i], true);
      break;
    case 'u32':
      for (let i = 0; i < n; i++) view.setUint32(i * 4, data[i], true);
      break;
    case 'f16':
      for (let i = 0; i < n; i++) setFloat16(view, i * 2, data[i], true);
      break;
    case 'bf16':
      for (let i = 0; i < n; i++) view.setUint16(i * 2, f32ToBf16Bits(data[i]), true);
      break;
  }
  return out;
}

/** Device bytes of `n` elements -> a host array (floats widen to Float32Array). */
export function decode(dtype: DType, bytes: Uint8Array, n: number): Float32Array | Int32Array | Uint32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'f32':
      return new Float32Array(bytes.slice(0, n * 4).buffer);
    case 'i32':
      return new Int32Array(bytes.slice(0, n * 4).buffer);
    case 'u32':
      return new Uint32Array(bytes.slice(0, n * 4).buffer);
    case 'f16': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = getFloat16(view, i * 2, true);
      return out;
    }
    case 'bf16': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = bf16BitsToF32(view.getUint16(i * 2, true));
      return out;
    }
  }
}
