// Channel RMS norm, pass 2 (F.normalize over channels, as the Wan VAE's RMS_norm):
//   Y[b, c, s] = X[b, c, s] / max(sqrt(SS[b, s]), 1e-12) * sqrt(C) * G[c] (+ BIAS[c])
// x viewed as [B*C, S] rows, one window of rows. Each thread computes PER = 4 consecutive items (an
// item: W consecutive s), with its plane/channel computed once and stepped (see binary.wgsl).
// Defines: T, W: f32, 1 | vec4<f32>, 4 (S % 4 == 0); AFFINE: with_gamma | with_gamma_bias.
//!include index

struct Params {
  n: u32,     // items in this window (rows * S)
  S: u32,     // plane size in T units
  row0: u32,  // global first row of the window
  C: u32,
  scale: f32, // sqrt(C)
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<{{T}}>;
@group(0) @binding(2) var<storage, read> SS: array<{{T}}>;
@group(0) @binding(3) var<storage, read_write> Y: array<{{T}}>;
@group(0) @binding(4) var<storage, read> G: array<f32>;
@group(0) @binding(5) var<storage, read> BIAS: array<f32>;

fn with_gamma(v: {{T}}, c: u32) -> {{T}} { return v * G[c]; }
fn with_gamma_bias(v: {{T}}, c: u32) -> {{T}} { return v * G[c] + BIAS[c]; }

const PER = 4u;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i0 = (flat_workgroup(wid, nwg) * 64u + lid) * PER;
  if (i0 >= P.n) { return; }
  let lr = i0 / P.S;
  var s = i0 - lr * P.S;
  let r = P.row0 + lr;
  var b = r / P.C;
  var c = r - b * P.C;
  for (var i = i0; i < min(i0 + PER, P.n); i++) {
    let norm = max(sqrt(SS[b * P.S + s]), {{T}}(1e-12));
    Y[i] = {{AFFINE}}(X[i] / norm * P.scale, c);
    s++;
    if (s == P.S) {
      s = 0u;
      c++;
      if (c == P.C) {
        c = 0u;
        b++;
      }
    }
  }
}
