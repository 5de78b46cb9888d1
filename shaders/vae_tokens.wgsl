// Channel-major <-> token-major transposes for the Wan VAE attention block (per-frame attention over
// the h*w tokens with the channels as the head dim). One thread per output element, whole bindings
// (these tensors live at the lowest resolution of the network).
// Defines: DIR  to_tokens  : Y[n, c] = X[c0 + c, n]  (Y [N, C], X [>= c0 + C, N])
//               to_channels: Y[c, n] = X[n, c]       (Y [C, N], X [N, C])
//!include index

struct Params {
  total: u32,  // elements of Y
  C: u32,      // channels taken
  N: u32,      // tokens
  c0: u32,     // first channel of X (to_tokens)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn to_tokens(i: u32) -> f32 {
  return X[(P.c0 + i % P.C) * P.N + i / P.C];
}

fn to_channels(i: u32) -> f32 {
  return X[(i % P.N) * P.C + i / P.N];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * 256u + lid;
  if (i >= P.total) { return; }
  Y[i] = {{DIR}}(i);
}
