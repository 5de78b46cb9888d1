// Elementwise activation y = FN(x) over one window of f32 elements.
//!include index

struct Params { n: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn silu(x: f32) -> f32 {
  return x / (1.0 + exp(-x));
}

// tanh via exp(-2|a|): no inf/inf for large arguments, unlike the textbook quotient.
fn tanh_stable(a: f32) -> f32 {
  let t = exp(-2.0 * abs(a));
  return sign(a) * (1.0 - t) / (1.0 + t);
}

fn gelu_tanh(x: f32) -> f32 {
  return 0.5 * x * (1.0 + tanh_stable(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * 256u + lid;
  if (i >= P.n) { return; }
  Y[i] = {{FN}}(X[i]);
}
