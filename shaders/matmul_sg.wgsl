// Subgroup register-tile linear kernel: Y[m, n0 + n] = epilogue(sum_k X[m, k] * W[n, k]) over one window.
// One workgroup is exactly one subgroup of S lanes (only chosen when the adapter's subgroup size is
// fixed at S). A workgroup owns TM output rows x S*TN columns; lane l owns columns nb + j*S + l
// (j < TN) of all TM rows, TM*TN f32 accumulators in registers. Per block of S k values each lane
// loads one value of each of the TM rows of X, shared with subgroupBroadcast; W is read straight from
// storage (packed halves unpacked in registers). No workgroup memory, no barriers: on CPU
// implementations (lavapipe) a subgroup is one SIMD vector, so this is a vectorised register kernel.
// If the subgroup turns out not to be S lanes the accumulators start as NaN (loud, never silently wrong).
// Rows of W are read as vec4<u32> (8 packed halves or 4 f32 per load), so K must be a multiple of 8
// (engine/ops/matmul.ts runs other K on the tiled kernel).
// Variants 'sg<TM>x<TN>r' (8 lanes, f32 X) read X as vec4 once per 32 k and pass it between lanes
// with subgroupShuffleDown (fewer of lavapipe's per-lane load loops; see sgKernelDefines).
// Defines (the unrolled code comes from engine/ops/matmul.ts, sgKernelDefines):
//   XT      element type of X: f32, or the 16-bit float type
//   XARR    element type of the X binding: XT, or vec4<XT> for rotated X
//   YT      element type of Y and the residual
//   S, TM, NTILE (= S*TN)
//   SETUP   row offsets and accumulators; BODY  one K-block; STORE  the epilogue calls
enable subgroups;
//!include ../matmul_common

@group(0) @binding(1) var<storage, read> X: array<{{XARR}}>;
@group(0) @binding(2) var<storage, read> W: array<vec4<u32>>;

@compute @workgroup_size({{S}})
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sgs: u32) {
  let mb = wid.y * {{TM}}u;
  let nb = wid.x * {{NTILE}}u;
  let K = P.K;
  let init = bitcast<f32>(select(0u, 0x7fc00000u, sgs != {{S}}u));
{{SETUP}}
  for (var k0 = 0u; k0 < K; k0 += {{S}}u) {
{{BODY}}
  }
{{STORE}}
}
