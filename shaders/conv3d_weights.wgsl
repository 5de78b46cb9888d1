// Conv3d weight preparation for one input-channel group: weight [C_out, C_in, KK] (f32, or f16 / bf16
// packed pairs) -> W' rows [C_out][KK][cg_pad] in the same storage type: input channel fastest,
// channels c0 .. c0 + cg of the group, zeros up to cg_pad. One window writes `rows` whole W' rows
// (output channels n0 ..), one output word per invocation (a word holds 1 f32 or 2 halves).
// Variants: HALF = false (f32 words) | true (packed pairs; cg_pad is even, so a word never spans rows).
//!include index

struct Params {
  n0: u32, rows: u32, cin: u32, kk: u32, cg_pad: u32, c0: u32, cg: u32,
  src_off: i32,  // source element index of weight element 0 relative to the source binding
  dst_off: u32,  // first word of the window relative to the destination binding
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> WS: array<u32>;
@group(0) @binding(2) var<storage, read_write> WD: array<u32>;

const HALF = {{HALF}};

// Source element (n, c0 + cp, tap) as raw bits (16 bits for halves), 0 in the padding.
fn source(n: u32, tap: u32, cp: u32) -> u32 {
  if (cp >= P.cg) { return 0u; }
  let i = u32(i32(((n * P.cin + P.c0 + cp) * P.kk + tap)) + P.src_off);
  if (HALF) { return (WS[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu; }
  return WS[i];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let q = flat_workgroup(wid, nwg) * 256u + lid;
  let per = select(1u, 2u, HALF);
  let row_words = P.kk * P.cg_pad / per;
  if (q >= P.rows * row_words) { return; }
  let n = P.n0 + q / row_words;
  let e = (q % row_words) * per;  // element within the row: tap * cg_pad + cp
  let tap = e / P.cg_pad;
  let cp = e % P.cg_pad;
  var word = source(n, tap, cp);
  if (HALF) { word = word | (source(n, tap, cp + 1u) << 16u); }
  WD[P.dst_off + q] = word;
}
