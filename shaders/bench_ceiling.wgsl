// Compute-ceiling probe for the benchmark harness (bench/ceiling.ts): a chain of multiply-adds on
// ACC independent accumulators of type T per invocation, with no memory traffic in the loop.
// The only store is one value per invocation at the end (so the compiler cannot drop the work).
// Variants, chosen by the harness (it times each and keeps the best as "the ceiling"):
//   T     f32 | vec4<f32>            (scalar lanes vs 4-wide values per invocation)
//   WG    workgroup size (8, 64, 256 ...)
//   ACC   independent accumulators (hides FMA latency; generated DECL/STEP/SUM lines)
//   OP    fma(a, m, c) | a * m + c   (lavapipe splits fma; the plain form lets LLVM contract it)
// Each STEP line is one multiply-add per accumulator: flops = 2 * width(T) * ACC * 8 * P.iters per
// invocation (the loop body repeats STEP 8 times).
//!include index

struct Params { iters: u32, seed: f32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> Out: array<f32>;

fn mad(a: {{T}}, m: {{T}}, c: {{T}}) -> {{T}} {
  return {{OP}};
}

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * {{WG}}u + lid;
  // Multiplier just below 1 and a small addend: values stay bounded and never denormal.
  let m = {{T}}(0.999999 - P.seed * f32(lid & 7u) * 1e-7);
  let c = {{T}}(P.seed * 1e-3);
  let x0 = f32(i & 1023u) * 1e-3;
{{DECL}}
  for (var it = 0u; it < P.iters; it++) {
{{STEP}}
{{STEP}}
{{STEP}}
{{STEP}}
{{STEP}}
{{STEP}}
{{STEP}}
{{STEP}}
  }
  var s = {{T}}(0.0);
{{SUM}}
  Out[i] = dot(vec4<f32>(s), vec4<f32>(0.25));
}
