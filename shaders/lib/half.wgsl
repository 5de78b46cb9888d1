// Packed half-precision pairs: element 2i in the low 16 bits of word i, 2i+1 in the high bits.
//!include bf16
fn pack_f16(a: f32, b: f32) -> u32 { return pack2x16float(vec2<f32>(a, b)); }
fn pack_bf16(a: f32, b: f32) -> u32 { return f32_to_bf16_bits(a) | (f32_to_bf16_bits(b) << 16u); }
fn unpack_f16(w: u32, hi: bool) -> f32 { let v = unpack2x16float(w); return select(v.x, v.y, hi); }
fn unpack_bf16(w: u32, hi: bool) -> f32 { return select(bf16_lo(w), bf16_hi(w), hi); }
