// Stream-bandwidth probe for the benchmark harness (bench/ceiling.ts): copies P.n vec4<u32> words
// from Src to Dst. GB/s = bytes read + bytes written over the time. The best variant is the
// "stream bandwidth" that memory-bound kernels (layer norm) are compared with.
// Variants:
//   WG    workgroup size
//   PER   words copied per invocation (strided by WG, so neighbouring lanes touch neighbouring words)
//!include index

struct Params { n: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> Src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> Dst: array<vec4<u32>>;

@compute @workgroup_size({{WG}})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let base = flat_workgroup(wid, nwg) * ({{WG}}u * {{PER}}u) + lid;
  for (var k = 0u; k < {{PER}}u; k++) {
    let i = base + k * {{WG}}u;
    if (i < P.n) { Dst[i] = Src[i]; }
  }
}
