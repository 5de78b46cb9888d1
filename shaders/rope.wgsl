// Wan's 3-axis RoPE over one window of token rows (x [B, L, N, D] viewed as rows of N*D), restricted
// to the rows of one sample: head dim as c = D/2 complex pairs (x[2j] real, x[2j+1] imaginary); pair j
// is rotated by TAB[pos, j] = (cos, sin), pos = the token's frame f for j < c0, its row h for
// j < c0 + c1, its column w otherwise (token s = (f*H + h)*W + w). Tokens s >= F*H*W are copied.
// One thread per (row, pair j), looping over the N heads (one table lookup per thread).
// XS / YS: the storage scalar of X and Y (f32 or f16); the rotation is computed in f32.
//!include index

struct Params {
  n: u32,     // threads: rows of this sample in the window * c
  off: u32,   // first row of the sample's range, relative to the window
  tok0: u32,  // token index within its sample of that row
  seq: u32,   // F*H*W
  HW: u32,
  W: u32,
  N: u32,
  c: u32,
  c0: u32,
  c01: u32,   // c0 + c1
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<vec2<{{XS}}>>;
@group(0) @binding(2) var<storage, read_write> Y: array<vec2<{{YS}}>>;
@group(0) @binding(3) var<storage, read> TAB: array<vec2<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = flat_workgroup(wid, nwg) * 64u + lid;
  if (t >= P.n) { return; }
  let lr = t / P.c;
  let j = t - lr * P.c;
  let base = (P.off + lr) * P.N * P.c + j;
  let s = P.tok0 + lr;
  if (s >= P.seq) {
    for (var h = 0u; h < P.N; h++) { Y[base + h * P.c] = vec2<{{YS}}>(X[base + h * P.c]); }
    return;
  }
  let f = s / P.HW;
  let hw = s - f * P.HW;
  let row = hw / P.W;
  let col = hw - row * P.W;
  let pos = select(select(col, row, j < P.c01), f, j < P.c0);
  let cs = TAB[pos * P.c + j];
  for (var h = 0u; h < P.N; h++) {
    let v = vec2<f32>(X[base + h * P.c]);
    Y[base + h * P.c] = vec2<{{YS}}>(vec2<f32>(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x));
  }
}
