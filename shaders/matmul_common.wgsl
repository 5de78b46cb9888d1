// Shared part of the linear kernels (matmul_tiled, matmul_sg): the uniform block, the output-side
// bindings and the fused epilogue  Y = R + act(acc + bias) * gate.
// Included as `//!include ../matmul_common`; not a kernel by itself.
// Defines: YT = element type of Y and R (f32, or the 16-bit float type when the adapter has it).
// Binding 1 (X) and 2 (W) are declared by the kernel; 3..6 here. Absent optional operands are bound
// to any read-only buffer (the flags below keep them unread).

struct Params {
  rows: u32,          // rows of X / Y in this window
  cols: u32,          // rows of W (= output columns) in this window
  K: u32,
  ldy: u32,           // N: row stride of Y, R and gate
  n0: u32,            // first output column of this W window (index into Y, bias, gate)
  m0: u32,            // global index of this window's first row (selects the gate row)
  rows_per_gate: u32, // output rows sharing one gate row
  has_bias: u32,
  act: u32,           // 0 none, 1 gelu (tanh approximation), 2 silu
  res_mode: u32,      // 0 none, 1 residual from R, 2 residual is Y itself (in place)
  has_gate: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(3) var<storage, read_write> Y: array<{{YT}}>;
@group(0) @binding(4) var<storage, read> BIAS: array<f32>;
@group(0) @binding(5) var<storage, read> RES: array<{{YT}}>;
@group(0) @binding(6) var<storage, read> GATE: array<f32>;

// tanh via exp(-2|a|): finite for any argument.
fn mm_tanh(a: f32) -> f32 {
  let t = exp(-2.0 * abs(a));
  return sign(a) * (1.0 - t) / (1.0 + t);
}

fn mm_act(x: f32) -> f32 {
  if (P.act == 1u) { return 0.5 * x * (1.0 + mm_tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
  if (P.act == 2u) { return x / (1.0 + exp(-x)); }
  return x;
}

// Writes output element (m, n) of this window (both in range) from its f32 accumulator.
fn mm_store(m: u32, n: u32, acc: f32) {
  let col = P.n0 + n;
  var v = acc;
  if (P.has_bias != 0u) { v = v + BIAS[col]; }
  v = mm_act(v);
  let at = m * P.ldy + col;
  if (P.res_mode != 0u) {
    var g = 1.0;
    if (P.has_gate != 0u) { g = GATE[((P.m0 + m) / P.rows_per_gate) * P.ldy + col]; }
    var r: f32;
    if (P.res_mode == 1u) { r = f32(RES[at]); } else { r = f32(Y[at]); }
    v = r + v * g;
  }
  Y[at] = {{YT}}(v);
}
