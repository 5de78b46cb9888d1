// packed {{FMT}} (f16 or bf16) -> f32 over one window; one output element per thread.
//!include index
//!include half

struct Params { n: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<u32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * 256u + lid;
  if (i >= P.n) { return; }
  Y[i] = unpack_{{FMT}}(X[i / 2u], (i & 1u) == 1u);
}
