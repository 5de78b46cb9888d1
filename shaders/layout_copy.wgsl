// Strided box copy, the kernel behind every layout op (permute, slice, concat, pad, nearest upsampling,
// patch layouts): for each index (i_0 .. i_7) of a box of up to 8 dims (unused dims have extent 1)
//   coord_d = i_d - lo_d;  inside = every 0 <= coord_d < in_ext_d
//   OUT[obase + sum i_d * ostride_d] = inside ? IN[ibase + sum coord_d * istride_d] : fill
// Strides may be 0 (broadcast). Addresses are relative to this window's bindings.
// Variants:
//   HALF = false: one 32-bit word per element (f32, i32, u32 copied as raw bits).
//   HALF = true:  f16 / bf16 packed pairs; each invocation writes one output word = two consecutive
//                 box elements along dim 7 (the host guarantees ext_7 and every output offset are even).
//!include index

struct Params {
  n: u32,          // invocations of this window (box elements, or pairs when HALF)
  ibase: i32,
  obase: i32,
  fill: u32,       // raw bits of the fill value (16 bits when HALF)
  ext0: vec4<u32>, ext1: vec4<u32>,
  is0: vec4<i32>, is1: vec4<i32>,
  os0: vec4<i32>, os1: vec4<i32>,
  lo0: vec4<i32>, lo1: vec4<i32>,
  ie0: vec4<i32>, ie1: vec4<i32>,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> IN: array<u32>;
@group(0) @binding(2) var<storage, read_write> OUT: array<u32>;

const HALF = {{HALF}};

fn ext(d: u32) -> u32 { if (d < 4u) { return P.ext0[d]; } return P.ext1[d - 4u]; }
fn istr(d: u32) -> i32 { if (d < 4u) { return P.is0[d]; } return P.is1[d - 4u]; }
fn ostr(d: u32) -> i32 { if (d < 4u) { return P.os0[d]; } return P.os1[d - 4u]; }
fn lo(d: u32) -> i32 { if (d < 4u) { return P.lo0[d]; } return P.lo1[d - 4u]; }
fn iext(d: u32) -> i32 { if (d < 4u) { return P.ie0[d]; } return P.ie1[d - 4u]; }

// 16-bit element e of the packed input.
fn in_half(e: i32) -> u32 {
  return (IN[u32(e) >> 1u] >> ((u32(e) & 1u) * 16u)) & 0xffffu;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let q = flat_workgroup(wid, nwg) * 256u + lid;
  if (q >= P.n) { return; }
  // Decompose the flat index (dim 7 fastest); in HALF mode dim 7 counts pairs.
  var rest = q;
  var ia = P.ibase;
  var oa = P.obase;
  var others = true;  // dims 0..6 inside the input
  var c7 = 0;
  for (var k = 0u; k < 8u; k++) {
    let d = 7u - k;
    var e = ext(d);
    if (HALF && d == 7u) { e = e / 2u; }
    var i = rest % e;
    rest = rest / e;
    if (HALF && d == 7u) { i = i * 2u; }
    let c = i32(i) - lo(d);
    if (d == 7u) { c7 = c; } else { others = others && c >= 0 && c < iext(d); }
    ia += c * istr(d);
    oa += i32(i) * ostr(d);
  }
  let inside0 = others && c7 >= 0 && c7 < iext(7u);
  if (!HALF) {
    OUT[u32(oa)] = select(P.fill, IN[u32(select(0, ia, inside0))], inside0);
    return;
  }
  // The pair's second element is one step further along dim 7.
  let inside1 = others && c7 + 1 >= 0 && c7 + 1 < iext(7u);
  let v0 = select(P.fill, in_half(select(0, ia, inside0)), inside0);
  let v1 = select(P.fill, in_half(select(0, ia + istr(7u), inside1)), inside1);
  OUT[u32(oa) >> 1u] = v0 | (v1 << 16u);
}
