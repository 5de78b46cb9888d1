// f32 -> packed {{FMT}} (f16 or bf16) over one window; one output word (two elements) per thread.
//!include index
//!include half

struct Params { n: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * 256u + lid;
  if (i >= (P.n + 1u) / 2u) { return; }
  let a = X[2u * i];
  // An odd tail leaves the high half zero.
  let b = select(0.0, X[min(2u * i + 1u, P.n - 1u)], 2u * i + 1u < P.n);
  Y[i] = pack_{{FMT}}(a, b);
}
