// Elementwise unary op Y = FN(X) over one window of f32 elements, bound as vec4s (the tail of the
// last vec4 lands in the buffer's padding past the tensor's end). Each thread computes PER = 4
// consecutive vec4s (see binary.wgsl for why).
// FN: silu | gelu_tanh (activations, no parameters) | scale_by (x * a) | clamp_to (clamp(x, a, b)).
// a and b are uniforms; the activations ignore them (their callers leave them zero).
//!include index

struct Params { n: u32, a: f32, b: f32 }  // n: elements
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<vec4<f32>>;

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

fn scale_by(x: f32) -> f32 {
  return x * P.a;
}

// min/max rather than the clamp builtin: clamp with lo > hi is undefined in WGSL, torch gives hi.
fn clamp_to(x: f32) -> f32 {
  return min(max(x, P.a), P.b);
}

fn apply4(v: vec4<f32>) -> vec4<f32> {
  return vec4<f32>({{FN}}(v.x), {{FN}}(v.y), {{FN}}(v.z), {{FN}}(v.w));
}

const PER = 4u;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let n4 = (P.n + 3u) / 4u;
  let i0 = (flat_workgroup(wid, nwg) * 64u + lid) * PER;
  for (var i = i0; i < min(i0 + PER, n4); i++) {
    Y[i] = apply4(X[i]);
  }
}
