// Elementwise Y = OP(A, B) with numpy broadcasting, over one window of output elements.
// Items are T: f32, or vec4<f32> (4 consecutive elements) when the innermost collapsed dim is a
// multiple of 4 or every operand has the output's shape (the tail of the last vec4 then lands in the
// buffer's padding past the tensor's end). Each thread computes PER = 4 consecutive items: on lavapipe
// per-workgroup and per-invocation overheads dominate memory-bound kernels, and 16 floats per thread
// ran ~3x faster than one vec4 per thread; on GPUs 64 contiguous bytes per thread are still cheap.
// Defines:
//   T            f32 | vec4<f32>;   W: 1 | 4 (elements per item)
//   OP           op_add | op_sub | op_mul
//   TA, TB       element type each operand is bound as (T, or f32 for an operand splatted into vec4)
//   LA, LB       the load of each operand: `A[i]` when it has the output's shape (windowed with the
//                output); `A[ia / W]` for a broadcast operand (bound whole; element index ia through
//                the collapsed strides); `T(A[ia])` when a vec4 item reads one broadcast scalar
//   IA0, IB0     `bcast_a(g)` / `bcast_b(g)` for a broadcast operand's index, `0u` otherwise
//   BODY         items_same (no operand broadcast) | items_bcast
//   A_ACCESS     read, or read_write for the in-place variant
//   OUT          Y, or A in the in-place variant (then Y is not bound)
// Broadcast shapes are collapsed on the host to at most 4 dims (d0 implicit, d3 fastest). Broadcast
// indices are computed once per thread and stepped along the innermost dim (integer division is
// slow on CPU adapters), recomputed only when an item crosses into the next innermost run.
//!include index

struct Params {
  n: u32,   // items (T values) in this window
  g0: u32,  // global index of the window's first output element
  d1: u32, d2: u32, d3: u32,
  sa0: u32, sa1: u32, sa2: u32, sa3: u32,
  sb0: u32, sb1: u32, sb2: u32, sb3: u32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, {{A_ACCESS}}> A: array<{{TA}}>;
@group(0) @binding(2) var<storage, read> B: array<{{TB}}>;
@group(0) @binding(3) var<storage, read_write> Y: array<{{T}}>;

fn op_add(a: {{T}}, b: {{T}}) -> {{T}} { return a + b; }
fn op_sub(a: {{T}}, b: {{T}}) -> {{T}} { return a - b; }
fn op_mul(a: {{T}}, b: {{T}}) -> {{T}} { return a * b; }

fn strided(g: u32, s0: u32, s1: u32, s2: u32, s3: u32) -> u32 {
  let q3 = g / P.d3;
  let q2 = q3 / P.d2;
  let q1 = q2 / P.d1;
  return q1 * s0 + (q2 - q1 * P.d1) * s1 + (q3 - q2 * P.d2) * s2 + (g - q3 * P.d3) * s3;
}
fn bcast_a(g: u32) -> u32 { return strided(g, P.sa0, P.sa1, P.sa2, P.sa3); }
fn bcast_b(g: u32) -> u32 { return strided(g, P.sb0, P.sb1, P.sb2, P.sb3); }

// Item i of each operand (ia / ib: the element index of a broadcast operand).
fn load_a(i: u32, ia: u32) -> {{T}} { return {{LA}}; }
fn load_b(i: u32, ib: u32) -> {{T}} { return {{LB}}; }

const PER = 4u;

// Every operand has the output's shape: no index bookkeeping, a straight unrolled body.
fn items_same(i0: u32) {
  if (i0 + PER <= P.n) {
    {{OUT}}[i0] = {{OP}}(load_a(i0, 0u), load_b(i0, 0u));
    {{OUT}}[i0 + 1u] = {{OP}}(load_a(i0 + 1u, 0u), load_b(i0 + 1u, 0u));
    {{OUT}}[i0 + 2u] = {{OP}}(load_a(i0 + 2u, 0u), load_b(i0 + 2u, 0u));
    {{OUT}}[i0 + 3u] = {{OP}}(load_a(i0 + 3u, 0u), load_b(i0 + 3u, 0u));
  } else {
    for (var i = i0; i < P.n; i++) { {{OUT}}[i] = {{OP}}(load_a(i, 0u), load_b(i, 0u)); }
  }
}

fn items_bcast(i0: u32) {
  var g = P.g0 + i0 * {{W}}u;
  var ia = {{IA0}};
  var ib = {{IB0}};
  // Windows start at multiples of 64 elements, so when the innermost run is a multiple of a thread's
  // PER * W elements, the thread's items lie in one run: a straight unrolled body.
  if (P.d3 % (PER * {{W}}u) == 0u && i0 + PER <= P.n) {
    let da = P.sa3 * {{W}}u;
    let db = P.sb3 * {{W}}u;
    {{OUT}}[i0] = {{OP}}(load_a(i0, ia), load_b(i0, ib));
    {{OUT}}[i0 + 1u] = {{OP}}(load_a(i0 + 1u, ia + da), load_b(i0 + 1u, ib + db));
    {{OUT}}[i0 + 2u] = {{OP}}(load_a(i0 + 2u, ia + 2u * da), load_b(i0 + 2u, ib + 2u * db));
    {{OUT}}[i0 + 3u] = {{OP}}(load_a(i0 + 3u, ia + 3u * da), load_b(i0 + 3u, ib + 3u * db));
    return;
  }
  var inner = g % P.d3;
  for (var i = i0; i < min(i0 + PER, P.n); i++) {
    {{OUT}}[i] = {{OP}}(load_a(i, ia), load_b(i, ib));
    g += {{W}}u;
    inner += {{W}}u;
    if (inner >= P.d3) {
      inner = g % P.d3;
      ia = {{IA0}};
      ib = {{IB0}};
    } else {
      ia += P.sa3 * {{W}}u;
      ib += P.sb3 * {{W}}u;
    }
  }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i0 = (flat_workgroup(wid, nwg) * 64u + lid) * PER;
  if (i0 >= P.n) { return; }
  {{BODY}}(i0);
}
