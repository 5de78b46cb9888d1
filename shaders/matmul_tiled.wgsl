// Portable tiled linear kernel: Y[m, n0 + n] = epilogue(sum_k X[m, k] * W[n, k]) over one window.
// Works on any adapter: a BM x BN output tile per workgroup, staged through workgroup memory in
// K-slices of BK, each invocation accumulating an RM x RN register tile (f32).
// Defines:
//   XT    element type of X (f32, or the 16-bit float type when the adapter has it)
//   YT    element type of Y and the residual
//   WFMT  storage dtype of W: bf16 or IEEE half (two per u32 word, element 2i in the low half), or f32
//   BM, BN, BK, RM, RN  tile sizes (BM % RM == 0, BN % RN == 0, (BM/RM)*(BN/RN) invocations)
// Tails in M, N and K are masked; a W row may start in the middle of a word (odd K).
//!include ../matmul_common

@group(0) @binding(1) var<storage, read> X: array<{{XT}}>;
@group(0) @binding(2) var<storage, read> W: array<u32>;

const BM = {{BM}}u;
const BN = {{BN}}u;
const BK = {{BK}}u;
const RM = {{RM}}u;
const RN = {{RN}}u;
const TX = BN / RN;
const TY = BM / RM;
const NT = TX * TY;

var<workgroup> As: array<f32, BK * BM>; // [k][m]
var<workgroup> Ws: array<f32, BK * BN>; // [k][n]

fn w_bf16(e: u32) -> f32 {
  let w = W[e >> 1u];
  return select(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u), (e & 1u) == 1u);
}
fn w_f16(e: u32) -> f32 {
  let v = unpack2x16float(W[e >> 1u]);
  return select(v.x, v.y, (e & 1u) == 1u);
}
fn w_f32(e: u32) -> f32 { return bitcast<f32>(W[e]); }

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let mb = wid.y * BM;
  let nb = wid.x * BN;
  let tx = lid % TX;
  let ty = lid / TX;
  let K = P.K;
  var acc: array<f32, RM * RN>;
  for (var i = 0u; i < RM * RN; i++) { acc[i] = 0.0; }

  for (var k0 = 0u; k0 < K; k0 += BK) {
    for (var i = lid; i < BM * BK; i += NT) {
      let r = i / BK;
      let k = k0 + i % BK;
      let m = mb + r;
      var v = 0.0;
      if (m < P.rows && k < K) { v = f32(X[m * K + k]); }
      As[(i % BK) * BM + r] = v;
    }
    for (var i = lid; i < BN * BK; i += NT) {
      let r = i / BK;
      let k = k0 + i % BK;
      let n = nb + r;
      var v = 0.0;
      if (n < P.cols && k < K) { v = w_{{WFMT}}(n * K + k); }
      Ws[(i % BK) * BN + r] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var a: array<f32, RM>;
      var b: array<f32, RN>;
      for (var i = 0u; i < RM; i++) { a[i] = As[kk * BM + ty + i * TY]; }
      for (var j = 0u; j < RN; j++) { b[j] = Ws[kk * BN + tx + j * TX]; }
      for (var i = 0u; i < RM; i++) {
        for (var j = 0u; j < RN; j++) { acc[i * RN + j] = fma(a[i], b[j], acc[i * RN + j]); }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < RM; i++) {
    let m = mb + ty + i * TY;
    if (m >= P.rows) { continue; }
    for (var j = 0u; j < RN; j++) {
      let n = nb + tx + j * TX;
      if (n < P.cols) { mm_store(m, n, acc[i * RN + j]); }
    }
  }
}
