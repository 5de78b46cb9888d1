// bfloat16 <-> float32 on packed pairs (element 2i in the low half of word i).
fn bf16_lo(w: u32) -> f32 { return bitcast<f32>(w << 16u); }
fn bf16_hi(w: u32) -> f32 { return bitcast<f32>(w & 0xffff0000u); }

// Round to nearest even, like torch's float -> bfloat16; NaN stays a quiet NaN.
fn f32_to_bf16_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu) != 0u) {
    return ((b >> 16u) | 0x40u) & 0xffffu;
  }
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}
