// Deterministic synthetic weights for the demo checkpoint: every tensor is drawn from its own
// seeded generator (seeded by a hash of "<model seed>/<tensor name>", so a tensor does not depend
// on which others exist or their order), then rounded to bfloat16 values.
//
// Only integer arithmetic and correctly rounded IEEE operations (+, -, *, /, sqrt) are used, no
// Math.log / Math.cos (whose last bits may differ between JavaScript engines): the same code gives
// the same bytes on every machine.
import type { StDType } from '../../loaders/safetensors.ts';

/** How a tensor's values are drawn: mean + std * (approximately standard normal). */
export interface Init {
  mean: number;
  std: number;
}

/** 32-bit FNV-1a of a string's UTF-16 code units. */
export function hashName(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** mulberry32 (as test/helpers.ts): uniform in [0, 1) with 32-bit resolution. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round a number to float32, then to the nearest bfloat16 (ties to even); returns the 16 bits. Finite inputs only. */
export function bf16Bits(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The float value of bfloat16 bits. */
export function bf16Value(bits: number): number {
  u32[0] = bits << 16;
  return f32[0]!;
}

/**
 * `n` values mean + std * z, z the Irwin-Hall sum of 4 uniforms (centred, unit variance: mean 0,
 * std 1, tails cut at +-3.46), each rounded to bfloat16. Returned as the bf16 bit patterns.
 */
export function syntheticBf16(n: number, seed: number, init: Init): Uint16Array {
  const r = mulberry32(seed);
  const out = new Uint16Array(n);
  // Var(U) = 1/12, so the sum of 4 has variance 1/3: scale by sqrt(3).
  const k = Math.sqrt(3);
  for (let i = 0; i < n; i++) {
    const z = (r() + r() + r() + r() - 2) * k;
    out[i] = bf16Bits(init.mean + init.std * z);
  }
  return out;
}

/** Little-endian bytes of bf16 values stored as `dtype` (BF16 as is, F32 widened exactly). */
export function encodeBf16As(bits: Uint16Array, dtype: Extract<StDType, 'BF16' | 'F32'>): Uint8Array {
  if (dtype === 'BF16') {
    const out = new Uint8Array(bits.length * 2);
    for (let i = 0; i < bits.length; i++) {
      out[2 * i] = bits[i]! & 0xff;
      out[2 * i + 1] = bits[i]! >>> 8;
    }
    return out;
  }
  const out = new Uint8Array(bits.length * 4);
  for (let i = 0; i < bits.length; i++) {
    // float32 bits = bf16 bits << 16: the low two bytes are zero.
    out[4 * i + 2] = bits[i]! & 0xff;
    out[4 * i + 3] = bits[i]! >>> 8;
  }
  return out;
}
