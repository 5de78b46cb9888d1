// Flash attention (online softmax), portable variant: no subgroups, any head dim.
// A workgroup owns 64 query rows of one head, one row per invocation (q and the output accumulator
// in registers). Keys go in blocks of BK: the block's K and V rows are staged in workgroup memory,
// each invocation computes its BK logits, rescales its state once per block and accumulates p V.
// State (running max, running sum, unnormalised output) can continue from / stop at a key window
// boundary: flags bit 0 = first key window (start fresh), bit 1 = last (normalise and finish).
// Defines: D (head dim), BK (keys per block; BK * D * 8 bytes of workgroup memory), BIAS (0 none,
// 1 relative table [N, lq+lk-1] indexed by key - query + lq - 1, 2 full [N, lq, lk]); WORD (q/k/v
// storage word: f32, or u32 holding two packed f16 / bf16), LOAD_Q / LOAD_K / LOAD_V (element i of
// that array as f32).
//!include index
//!include half
//!include ../attention_common

@group(0) @binding(1) var<storage, read> Q: array<{{WORD}}>;
@group(0) @binding(2) var<storage, read> K: array<{{WORD}}>;
@group(0) @binding(3) var<storage, read> V: array<{{WORD}}>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;

const D: u32 = {{D}}u;
const BK: u32 = {{BK}}u;
const WG: u32 = 64u;

fn ld_q(i: u32) -> f32 { return {{LOAD_Q}}; }
fn ld_k(i: u32) -> f32 { return {{LOAD_K}}; }
fn ld_v(i: u32) -> f32 { return {{LOAD_V}}; }

var<workgroup> Kt: array<f32, BK * D>;
var<workgroup> Vt: array<f32, BK * D>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let flat = flat_workgroup(wid, nwg);
  // Head-major order: consecutive workgroups share a head, so its keys and values stay in cache
  // (row-major order streamed every head's K/V between two visits: ~25% slower at 4096 keys).
  let blocks = (P.q_rows + WG - 1u) / WG;
  if (blocks == 0u || flat >= blocks * P.grid_heads) { return; }
  let n = P.head0 + flat / blocks;
  let row0 = (flat % blocks) * WG;
  let stride = P.heads * D;
  let head = n * D;
  let row = row0 + lid;
  let rowc = min(row, P.q_rows - 1u);  // rows past the end repeat the last row (not stored)
  let qo = (P.q_off + rowc) * stride + head;
  let qpos = P.q_pos + rowc;

  var q: array<f32, D>;
  for (var d = 0u; d < D; d++) { q[d] = ld_q(qo + d) * P.scale_log2; }
  var acc: array<f32, D>;
  var m = F32_MIN;
  var l = 0.0;
  let si = (P.q_off + rowc) * P.st_stride + 2u * n;
  if ((P.flags & 1u) == 0u) {
    m = ST[si];
    l = ST[si + 1u];
    for (var d = 0u; d < D; d++) { acc[d] = O[qo + d]; }
  }

  for (var kb = 0u; kb < P.k_rows; kb += BK) {
    let nk = min(BK, P.k_rows - kb);
    workgroupBarrier();
    for (var i = lid; i < nk * D; i += WG) {
      let j = i / D;
      let src = (P.k_off + kb + j) * stride + head + i % D;
      Kt[i] = ld_k(src);
      Vt[i] = ld_v(src);
    }
    workgroupBarrier();
    var s: array<f32, BK>;
    var bm = F32_MIN;
    for (var j = 0u; j < nk; j++) {
      var dot = 0.0;
      for (var d = 0u; d < D; d++) { dot += q[d] * Kt[j * D + d]; }
      let key = kb + j;
      let kpos = P.k_pos + key;
      if (BIAS_MODE == 1u) {
        dot += LOG2E * BIAS[(n - P.head0) * P.bias_stride + kpos + P.bias_lq - 1u - qpos];
      } else if (BIAS_MODE == 2u) {
        dot += LOG2E * BIAS[(n - P.head0) * P.bias_stride + qpos * P.bias_lk + kpos];
      }
      s[j] = select(dot, F32_MIN, key >= P.k_valid);
      bm = max(bm, s[j]);
    }
    let mn = max(m, bm);
    let a = exp2(m - mn);
    m = mn;
    l *= a;
    for (var d = 0u; d < D; d++) { acc[d] *= a; }
    for (var j = 0u; j < nk; j++) {
      let p = exp2(s[j] - mn);
      l += p;
      for (var d = 0u; d < D; d++) { acc[d] += p * Vt[j * D + d]; }
    }
  }

  if (row >= P.q_rows) { return; }
  if ((P.flags & 2u) != 0u) {
    // An empty key set (every key excluded) gives zeros.
    let inv = select(1.0 / l, 0.0, l == 0.0);
    for (var d = 0u; d < D; d++) { O[qo + d] = acc[d] * inv; }
  } else {
    for (var d = 0u; d < D; d++) { O[qo + d] = acc[d]; }
    ST[si] = m;
    ST[si + 1u] = l;
  }
}
