// Channel RMS norm, pass 1: SS[b, s] = sum over c of X[b, c, s]^2 for x viewed as [B*C, S] rows
// (one row per (b, c) plane). One thread per s (W consecutive s), looping over the window's rows; a
// window may hold the tail of one batch element and the head of the next. The first window that
// touches batch element b (its row b*C) writes SS[b, ·]; later windows accumulate.
// Defines: T, W: f32, 1 | vec4<f32>, 4 (S % 4 == 0).
//!include index

struct Params {
  rows: u32,  // rows (planes) in this window
  S: u32,     // plane size in T units
  row0: u32,  // global first row of the window
  C: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<{{T}}>;
@group(0) @binding(2) var<storage, read_write> SS: array<{{T}}>;

fn flush(b: u32, s: u32, acc: {{T}}, fresh: bool) {
  let at = b * P.S + s;
  if (fresh) { SS[at] = acc; } else { SS[at] = SS[at] + acc; }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let s = flat_workgroup(wid, nwg) * 64u + lid;
  if (s >= P.S) { return; }
  var b = P.row0 / P.C;
  var c = P.row0 - b * P.C;
  var fresh = c == 0u;
  var acc = {{T}}(0.0);
  for (var lr = 0u; lr < P.rows; lr++) {
    let x = X[lr * P.S + s];
    acc += x * x;
    c++;
    if (c == P.C) {
      flush(b, s, acc, fresh);
      b++;
      c = 0u;
      fresh = true;
      acc = {{T}}(0.0);
    }
  }
  if (c != 0u) { flush(b, s, acc, fresh); }
}
