// Batched f32 product over one window of batch elements: C[z] = A[z] · B[z] (or A[z] · B[z]ᵀ).
// A [M, K], B [K, N] (TRANS_B = 0) or [N, K] (TRANS_B = 1), C [M, N], row-major, z = workgroup_id.z.
// Simple and portable: 8x8 invocations, each computing a 4x4 block of a 32x32 tile straight from
// storage (no workgroup memory); tails in M and N are masked.
// Defines: TRANS_B (0 or 1).

struct Params { M: u32, N: u32, K: u32 }
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;

fn b_at(z: u32, k: u32, n: u32) -> f32 {
  if ({{TRANS_B}} == 1) { return B[z * P.N * P.K + n * P.K + k]; }
  return B[z * P.K * P.N + k * P.N + n];
}

@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let z = wid.z;
  var acc: array<f32, 16>;
  var rows: array<u32, 4>;
  var cols: array<u32, 4>;
  for (var i = 0u; i < 4u; i++) {
    rows[i] = min(wid.y * 32u + lid.y + 8u * i, P.M - 1u);
    cols[i] = min(wid.x * 32u + lid.x + 8u * i, P.N - 1u);
  }
  for (var k = 0u; k < P.K; k++) {
    var a: array<f32, 4>;
    var b: array<f32, 4>;
    for (var i = 0u; i < 4u; i++) {
      a[i] = A[z * P.M * P.K + rows[i] * P.K + k];
      b[i] = b_at(z, k, cols[i]);
    }
    for (var i = 0u; i < 4u; i++) {
      for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]); }
    }
  }
  for (var i = 0u; i < 4u; i++) {
    let m = wid.y * 32u + lid.y + 8u * i;
    for (var j = 0u; j < 4u; j++) {
      let n = wid.x * 32u + lid.x + 8u * j;
      if (m < P.M && n < P.N) { C[z * P.M * P.N + m * P.N + n] = acc[i * 4u + j]; }
    }
  }
}
