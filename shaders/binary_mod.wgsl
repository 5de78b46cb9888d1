// Fused DiT elementwise ops on rows of C elements (x viewed as [R, C]), one window of rows:
//   FN = fn_modulate:  Y = X * (1 + U) + V      U = scale, V = shift   (modulate)
//   FN = fn_gated:     Y = X + U * V            U = branch output y, V = gate   (gated residual)
// Defines:
//   T, W         f32 / 1, or vec4<f32> / 4 when C is a multiple of 4 (an item: W consecutive elements)
//   IU, IV       `i` for an operand shaped like X (windowed with it), or `ub + c` / `vb + c` for a
//                modulation vector: row r of X reads the vector starting at ((r - base) / div) * stride
//                + off (per-token vectors are windowed with X: base = the window's first row, div 1;
//                per-batch vectors are bound whole: base 0, div = tokens per batch element). With
//                split > 0 a batch element has two vectors: 2q for its first `split` rows, 2q + 1 for
//                the rest (ti2v's per-token timesteps: the first latent frame at t = 0, the rest at t)
//   IUk, IVk     the same for the thread's items k = 0..3 in the unrolled body (`i0 + k` / `ub + c + k`)
//   X_ACCESS     read, or read_write with OUT = X for the in-place variant (then Y is not bound)
// Each thread computes PER = 4 consecutive items (see binary.wgsl for why); the row and the vector
// starts are computed once per thread (integer division is slow on CPU adapters) and carried along.
//!include index

struct Params {
  n: u32,     // items in this window (rows * C / W)
  row0: u32,  // global first row of the window
  C: u32,
  u_base: u32, u_div: u32, u_stride: u32, u_off: u32, u_split: u32,
  v_base: u32, v_div: u32, v_stride: u32, v_off: u32, v_split: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, {{X_ACCESS}}> X: array<{{T}}>;
@group(0) @binding(2) var<storage, read> U: array<{{T}}>;
@group(0) @binding(3) var<storage, read> V: array<{{T}}>;
@group(0) @binding(4) var<storage, read_write> Y: array<{{T}}>;

fn fn_modulate(x: {{T}}, scale: {{T}}, shift: {{T}}) -> {{T}} { return x * (1.0 + scale) + shift; }
fn fn_gated(x: {{T}}, y: {{T}}, gate: {{T}}) -> {{T}} { return x + y * gate; }

// The vector row r reads (see split above).
fn vector_of(r: u32, div: u32, split: u32) -> u32 {
  let q = r / div;
  if (split == 0u) { return q; }
  return 2u * q + select(1u, 0u, r - q * div < split);
}
fn u_start(lr: u32) -> u32 { return (vector_of(P.row0 + lr - P.u_base, P.u_div, P.u_split) * P.u_stride + P.u_off) / {{W}}u; }
fn v_start(lr: u32) -> u32 { return (vector_of(P.row0 + lr - P.v_base, P.v_div, P.v_split) * P.v_stride + P.v_off) / {{W}}u; }

const PER = 4u;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i0 = (flat_workgroup(wid, nwg) * 64u + lid) * PER;
  if (i0 >= P.n) { return; }
  let cw = P.C / {{W}}u;  // items per row
  var lr = i0 / cw;       // row within the window
  var c = i0 - lr * cw;   // item within the row
  var ub = u_start(lr);
  var vb = v_start(lr);
  // Windows start at row boundaries, so when a row holds a multiple of PER items the thread's items
  // lie in one row: a straight unrolled body.
  if (cw % PER == 0u && i0 + PER <= P.n) {
    {{OUT}}[i0] = {{FN}}(X[i0], U[{{IU0}}], V[{{IV0}}]);
    {{OUT}}[i0 + 1u] = {{FN}}(X[i0 + 1u], U[{{IU1}}], V[{{IV1}}]);
    {{OUT}}[i0 + 2u] = {{FN}}(X[i0 + 2u], U[{{IU2}}], V[{{IV2}}]);
    {{OUT}}[i0 + 3u] = {{FN}}(X[i0 + 3u], U[{{IU3}}], V[{{IV3}}]);
    return;
  }
  for (var i = i0; i < min(i0 + PER, P.n); i++) {
    {{OUT}}[i] = {{FN}}(X[i], U[{{IU}}], V[{{IV}}]);
    c++;
    if (c == cw) {
      c = 0u;
      lr++;
      ub = u_start(lr);
      vb = v_start(lr);
    }
  }
}
