// Flash attention (online softmax), one 8-lane subgroup per workgroup: the CPU (lavapipe) variant.
// No workgroup memory, no barriers; lanes exchange values with subgroupBroadcast only.
// Chosen only when the adapter's subgroups have at least 8 lanes (a workgroup of 8 is then one subgroup).
//
// A workgroup owns 8 query rows of one head. Keys go in blocks of 64: lane l owns keys 8c + l of the
// block (c = 0..7), computes their logits for the 8 rows (the rows' q values are the same for every
// lane), then the probabilities are broadcast lane by lane while each lane accumulates its own
// output columns (vec4 columns lane + 8t of the head).
// State (running max, running sum, unnormalised output) can continue from / stop at a key window
// boundary: flags bit 0 = first key window (start fresh), bit 1 = last (normalise and finish).
// Defines: D (head dim, a multiple of 4), BIAS (0 none, 1 relative table [N, lq+lk-1] indexed by
// key - query + lq - 1, 2 full [N, lq, lk]).
enable subgroups;
//!include index

struct Params {
  q_rows: u32,     // query rows (tokens) of this dispatch
  q_off: u32,      // their first token row inside the Q, O and state bindings
  q_pos: u32,      // position of the first one in its sequence (bias index)
  k_rows: u32,     // keys of this dispatch
  k_off: u32,      // their first token row inside the K and V bindings
  k_pos: u32,      // position of the first one in its sequence (bias index)
  k_valid: u32,    // keys k >= k_valid (of this dispatch) get the logit F32_MIN (umT5 masking)
  heads: u32,
  flags: u32,
  bias_lq: u32,    // sequence lengths the bias is laid out for
  bias_lk: u32,
  scale_log2: f32, // softmax scale * log2(e): logits are kept in base 2
  st_stride: u32,  // floats per token row of the state (running max and sum of each head, padded)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> K: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> V: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> O: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> ST: array<f32>;
@group(0) @binding(6) var<storage, read> BIAS: array<f32>;

const D4: u32 = {{D}}u / 4u;
const T: u32 = (D4 + 7u) / 8u;
const BIAS_MODE: u32 = {{BIAS}}u;
const F32_MIN: f32 = -3.40282346638528859812e+38f;
const LOG2E: f32 = 1.44269504088896340736f;

// Natural-log bias of (4 rows, key), scaled to base 2. Rows and key are positions in their sequences.
fn bias4(n: u32, rows: vec4<u32>, key: u32) -> vec4<f32> {
  var b = vec4<f32>(0.0);
  if (BIAS_MODE == 1u) {
    let base = n * (P.bias_lq + P.bias_lk - 1u) + key + P.bias_lq - 1u;
    b = vec4<f32>(BIAS[base - rows.x], BIAS[base - rows.y], BIAS[base - rows.z], BIAS[base - rows.w]);
  } else if (BIAS_MODE == 2u) {
    let base = n * P.bias_lq * P.bias_lk + key;
    let off = rows * P.bias_lk;
    b = vec4<f32>(BIAS[base + off.x], BIAS[base + off.y], BIAS[base + off.z], BIAS[base + off.w]);
  }
  return b * LOG2E;
}

// acc[r*T + t] += p[r] * V[vrow, lane + 8t] for the 8 rows (p0: rows 0-3, p1: rows 4-7).
fn accumulate(acc: ptr<function, array<vec4<f32>, 8u * T>>, p0: vec4<f32>, p1: vec4<f32>, vrow: u32, lane: u32) {
  for (var t = 0u; t < T; t++) {
    let v = V[vrow + min(lane + 8u * t, D4 - 1u)];
    (*acc)[t] += p0.x * v;
    (*acc)[T + t] += p0.y * v;
    (*acc)[2u * T + t] += p0.z * v;
    (*acc)[3u * T + t] += p0.w * v;
    (*acc)[4u * T + t] += p1.x * v;
    (*acc)[5u * T + t] += p1.y * v;
    (*acc)[6u * T + t] += p1.z * v;
    (*acc)[7u * T + t] += p1.w * v;
  }
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
  let flat = flat_workgroup(wid, nwg);
  let n = flat % P.heads;
  let row0 = (flat / P.heads) * 8u;
  if (row0 >= P.q_rows) { return; }
  let stride = P.heads * D4;
  let head = n * D4;

  // Q / O offsets of the 8 rows; rows past the end repeat the last row (not stored).
  var qb: array<u32, 8>;
  for (var r = 0u; r < 8u; r++) { qb[r] = (P.q_off + min(row0 + r, P.q_rows - 1u)) * stride + head; }
  // Sequence positions of the rows (bias index), clamped the same way.
  let qlast = P.q_pos + P.q_rows - 1u;
  let brow0 = min(vec4<u32>(P.q_pos + row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(qlast));
  let brow1 = min(vec4<u32>(P.q_pos + row0) + vec4<u32>(4u, 5u, 6u, 7u), vec4<u32>(qlast));

  var m0 = vec4<f32>(F32_MIN);  // running max (base 2) of rows 0-3 / 4-7: the same in every lane
  var m1 = vec4<f32>(F32_MIN);
  var l0 = vec4<f32>(0.0);      // this lane's share of the running sum
  var l1 = vec4<f32>(0.0);
  var acc: array<vec4<f32>, 8u * T>;
  if ((P.flags & 1u) == 0u) {
    // Continue from the previous key window: state in ST, unnormalised output in O.
    var mm: array<f32, 8>;
    var ll: array<f32, 8>;
    for (var r = 0u; r < 8u; r++) {
      let si = (P.q_off + min(row0 + r, P.q_rows - 1u)) * P.st_stride + 2u * n;
      mm[r] = ST[si];
      ll[r] = ST[si + 1u];
      for (var t = 0u; t < T; t++) { acc[r * T + t] = O[qb[r] + min(lane + 8u * t, D4 - 1u)]; }
    }
    m0 = vec4<f32>(mm[0], mm[1], mm[2], mm[3]);
    m1 = vec4<f32>(mm[4], mm[5], mm[6], mm[7]);
    if (lane == 0u) {
      l0 = vec4<f32>(ll[0], ll[1], ll[2], ll[3]);
      l1 = vec4<f32>(ll[4], ll[5], ll[6], ll[7]);
    }
  }

  for (var kb = 0u; kb < P.k_rows; kb += 64u) {
    // 1. Logits of this lane's 8 keys: s[2c] rows 0-3, s[2c+1] rows 4-7 of key kb + 8c + lane.
    var kr: array<u32, 8>;
    for (var c = 0u; c < 8u; c++) { kr[c] = (P.k_off + min(kb + 8u * c + lane, P.k_rows - 1u)) * stride + head; }
    var s: array<vec4<f32>, 16>;
    for (var c = 0u; c < 16u; c++) { s[c] = vec4<f32>(0.0); }
    for (var g = 0u; g < D4; g++) {
      let qa = mat4x4<f32>(Q[qb[0] + g], Q[qb[1] + g], Q[qb[2] + g], Q[qb[3] + g]);
      let qc = mat4x4<f32>(Q[qb[4] + g], Q[qb[5] + g], Q[qb[6] + g], Q[qb[7] + g]);
      for (var c = 0u; c < 8u; c++) {
        let kv = K[kr[c] + g];
        s[2u * c] += kv * qa;
        s[2u * c + 1u] += kv * qc;
      }
    }
    // 2. Online softmax: scale, bias, mask; block max over all lanes; rescale the running state.
    var bm0 = vec4<f32>(F32_MIN);
    var bm1 = vec4<f32>(F32_MIN);
    for (var c = 0u; c < 8u; c++) {
      let key = kb + 8u * c + lane;
      var t0 = s[2u * c] * P.scale_log2;
      var t1 = s[2u * c + 1u] * P.scale_log2;
      if (BIAS_MODE != 0u) {
        let kk = P.k_pos + min(key, P.k_rows - 1u);
        t0 += bias4(n, brow0, kk);
        t1 += bias4(n, brow1, kk);
      }
      let masked = key >= P.k_valid || key >= P.k_rows;
      t0 = select(t0, vec4<f32>(F32_MIN), masked);
      t1 = select(t1, vec4<f32>(F32_MIN), masked);
      s[2u * c] = t0;
      s[2u * c + 1u] = t1;
      bm0 = max(bm0, t0);
      bm1 = max(bm1, t1);
    }
    let mn0 = max(m0, subgroupMax(bm0));
    let mn1 = max(m1, subgroupMax(bm1));
    let a0 = exp2(m0 - mn0);
    let a1 = exp2(m1 - mn1);
    m0 = mn0;
    m1 = mn1;
    l0 *= a0;
    l1 *= a1;
    for (var c = 0u; c < 8u; c++) {
      let outside = kb + 8u * c + lane >= P.k_rows;
      let p0 = select(exp2(s[2u * c] - mn0), vec4<f32>(0.0), outside);
      let p1 = select(exp2(s[2u * c + 1u] - mn1), vec4<f32>(0.0), outside);
      s[2u * c] = p0;
      s[2u * c + 1u] = p1;
      l0 += p0;
      l1 += p1;
    }
    for (var t = 0u; t < T; t++) {
      acc[t] *= a0.x;
      acc[T + t] *= a0.y;
      acc[2u * T + t] *= a0.z;
      acc[3u * T + t] *= a0.w;
      acc[4u * T + t] *= a1.x;
      acc[5u * T + t] *= a1.y;
      acc[6u * T + t] *= a1.z;
      acc[7u * T + t] *= a1.w;
    }
    // 3. acc += p V: key kb + 8c + x lives in lane x.
    for (var c = 0u; c < 8u; c++) {
      let k0 = kb + 8u * c;
      if (k0 >= P.k_rows) { break; }
      let vr = (P.k_off + k0) * stride + head;
      accumulate(&acc, subgroupBroadcast(s[2u * c], 0u), subgroupBroadcast(s[2u * c + 1u], 0u), vr, lane);
      if (k0 + 1u < P.k_rows) { accumulate(&acc, subgroupBroadcast(s[2u * c], 1u), subgroupBroadcast(s[2u * c + 1u], 1u), vr + stride, lane); }
      if (k0 + 2u < P.k_rows) { accumulate(&acc, subgroupBroadcast(s[2u * c], 2u), subgroupBroadcast(s[2u * c + 1u], 2u), vr + 2u * stride, lane); }
      if (k0 + 3u < P.k_rows) { accumulate(&acc, subgroupBroadcast(s[2u * c], 3u), subgroupBroadcast(s[2u * c + 1u], 3u), vr + 3u * stride, lane); }
      if (k0 + 4u < P.k_rows) { accumulate(&acc, subgroupBroadcast(s[2u * c], 4u), subgroupBroadcast(s[2u * c + 1u], 4u), vr + 4u * stride, lane); }
      if (k0 + 5u < P.k_rows) { accumulate(&acc, subgroupBroadcast(s[2u * c], 5u), subgroupBroadcast(s[2u * c + 1u], 5u), vr + 5u * stride, lane); }
      if (k0 + 6u < P.k_rows) { accumulate(&acc, subgroupBroadcast(s[2u * c], 6u), subgroupBroadcast(s[2u * c + 1u], 6u), vr + 6u * stride, lane); }
      if (k0 + 7u < P.k_rows) { accumulate(&acc, subgroupBroadcast(s[2u * c], 7u), subgroupBroadcast(s[2u * c + 1u], 7u), vr + 7u * stride, lane); }
    }
  }

  // Finish: normalise (last key window) or save the state for the next one.
  let lt0 = subgroupAdd(l0);
  let lt1 = subgroupAdd(l1);
  let last = (P.flags & 2u) != 0u;
  var scale = array<f32, 8>(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0);
  if (last) {
    // An empty key set (every key excluded) gives zeros.
    let i0 = select(1.0 / lt0, vec4<f32>(0.0), lt0 == vec4<f32>(0.0));
    let i1 = select(1.0 / lt1, vec4<f32>(0.0), lt1 == vec4<f32>(0.0));
    scale = array<f32, 8>(i0.x, i0.y, i0.z, i0.w, i1.x, i1.y, i1.z, i1.w);
  }
  let mm = array<f32, 8>(m0.x, m0.y, m0.z, m0.w, m1.x, m1.y, m1.z, m1.w);
  let ll = array<f32, 8>(lt0.x, lt0.y, lt0.z, lt0.w, lt1.x, lt1.y, lt1.z, lt1.w);
  for (var r = 0u; r < 8u; r++) {
    if (row0 + r >= P.q_rows) { break; }
    for (var t = 0u; t < T; t++) {
      let g = lane + 8u * t;
      if (g < D4) { O[qb[r] + g] = acc[r * T + t] * scale[r]; }
    }
    if (!last && lane == 0u) {
      let si = (P.q_off + row0 + r) * P.st_stride + 2u * n;
      ST[si] = mm[r];
      ST[si + 1u] = ll[r];
    }
  }
}
