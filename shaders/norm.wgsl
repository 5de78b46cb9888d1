{{ENABLE}}
// Row norms over the last dim: one workgroup per row of C elements (x viewed as [R, C]), one window
// of rows per dispatch. y = ((x - k) - m) * rstd, then an affine/modulation step:
//   layer norm: k = the row's first element (a shift that makes large row means cancel exactly),
//               m = mean(x - k), rstd = 1/sqrt(mean(((x - k) - m)^2) + eps)   (two passes, biased var)
//   rms norm:   k = m = 0, rstd = 1/sqrt(mean(x^2) + eps)
//   l2 (F.normalize * sqrt(C), the VAE's channel-last RMS_norm): k = m = 0, rstd = sqrt(C)/max(||x||, 1e-12)
// Defines:
//   ENABLE       `enable subgroups;` for the subgroup reduction, else empty
//   WG           workgroup size (power of two)
//   SUM          `subgroupAdd(h)` (only when WG <= the adapter's minimum subgroup size: one subgroup
//                per row, no barriers) | `workgroup_sum(h, lid)` (portable: shared-memory tree)
//   STATS        stats_layer | stats_rms | stats_l2
//   T, W, HSUM, FIRST   f32, 1, hsum1, ld(base) | vec4<f32>, 4, hsum4, ld(base).x (vec4 when C % 4 == 0)
//   XS, YS       storage element types of X and Y: T, or its f16 counterpart (math stays f32)
//   AFFINE       affine_none | affine_w (* U) | affine_wb (* U + V) | affine_mod (* (1 + U) + V)
//                U, V are read from the vector row r selects (weights: one vector, div = 2^32-1;
//                modulation: per batch element, per token, or two per batch element split at a row,
//                as in binary_mod.wgsl), computed per row
//!include index

struct Params {
  rows: u32,  // rows in this window
  C: u32,
  row0: u32,  // global first row of the window
  eps: f32,
  u_base: u32, u_div: u32, u_stride: u32, u_off: u32, u_split: u32,
  v_base: u32, v_div: u32, v_stride: u32, v_off: u32, v_split: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<{{XS}}>;
@group(0) @binding(2) var<storage, read_write> Y: array<{{YS}}>;
@group(0) @binding(3) var<storage, read> U: array<{{T}}>;
@group(0) @binding(4) var<storage, read> V: array<{{T}}>;

const WG = {{WG}}u;
var<workgroup> partial: array<f32, WG>;

fn workgroup_sum(v: f32, lid: u32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}

fn ld(i: u32) -> {{T}} { return {{T}}(X[i]); }

fn hsum1(v: f32) -> f32 { return v; }
fn hsum4(v: vec4<f32>) -> f32 { return (v.x + v.y) + (v.z + v.w); }

fn row_sum(v: {{T}}, lid: u32) -> f32 {
  let h = {{HSUM}}(v);
  return {{SUM}};
}

// Returns (k, m, rstd).
fn stats_layer(base: u32, n: u32, lid: u32) -> vec3<f32> {
  let k = {{FIRST}};
  var s = {{T}}(0.0);
  for (var j = lid; j < n; j += WG) { s += ld(base + j) - k; }
  let m = row_sum(s, lid) / f32(P.C);
  var q = {{T}}(0.0);
  for (var j = lid; j < n; j += WG) {
    let d = (ld(base + j) - k) - m;
    q += d * d;
  }
  return vec3<f32>(k, m, inverseSqrt(row_sum(q, lid) / f32(P.C) + P.eps));
}

fn stats_rms(base: u32, n: u32, lid: u32) -> vec3<f32> {
  var q = {{T}}(0.0);
  for (var j = lid; j < n; j += WG) {
    let x = ld(base + j);
    q += x * x;
  }
  return vec3<f32>(0.0, 0.0, inverseSqrt(row_sum(q, lid) / f32(P.C) + P.eps));
}

// F.normalize semantics (the VAE's channel-last RMS_norm): sqrt(C) / max(||x||_2, 1e-12).
fn stats_l2(base: u32, n: u32, lid: u32) -> vec3<f32> {
  var q = {{T}}(0.0);
  for (var j = lid; j < n; j += WG) {
    let x = ld(base + j);
    q += x * x;
  }
  return vec3<f32>(0.0, 0.0, sqrt(f32(P.C)) / max(sqrt(row_sum(q, lid)), 1e-12));
}

// Start (in T units) of the vector row r reads: weights are one vector (div = 2^32-1, stride 0).
fn vector_of(r: u32, div: u32, split: u32) -> u32 {
  let q = r / div;
  if (split == 0u) { return q; }
  return 2u * q + select(1u, 0u, r - q * div < split);
}
fn u_start(r: u32) -> u32 { return (vector_of(r - P.u_base, P.u_div, P.u_split) * P.u_stride + P.u_off) / {{W}}u; }
fn v_start(r: u32) -> u32 { return (vector_of(r - P.v_base, P.v_div, P.v_split) * P.v_stride + P.v_off) / {{W}}u; }

fn affine_none(v: {{T}}, ub: u32, vb: u32) -> {{T}} { return v; }
fn affine_w(v: {{T}}, ub: u32, vb: u32) -> {{T}} { return v * U[ub]; }
fn affine_wb(v: {{T}}, ub: u32, vb: u32) -> {{T}} { return v * U[ub] + V[vb]; }
fn affine_mod(v: {{T}}, ub: u32, vb: u32) -> {{T}} { return v * (1.0 + U[ub]) + V[vb]; }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let r = flat_workgroup(wid, nwg);
  if (r >= P.rows) { return; }
  let n = P.C / {{W}}u;
  let base = r * n;
  let st = {{STATS}}(base, n, lid);
  let ub = u_start(P.row0 + r);
  let vb = v_start(P.row0 + r);
  for (var j = lid; j < n; j += WG) {
    let v = ((ld(base + j) - st.x) - st.y) * st.z;
    Y[base + j] = {{YS}}({{AFFINE}}(v, ub + j, vb + j));
  }
}
