// Conv3d as an implicit GEMM, portable variant (no subgroup operations, no workgroup memory).
// out[n, m] = bias[n] + sum_{ci, tap} WT[ci, tap, n] * x(ci, input position of output m shifted by tap),
// m = flat output position (to, ho, wo). Each invocation holds TP output positions (strided by WG
// across the workgroup) x TN output channels (the same for every invocation, so weight loads are
// uniform). Input frames come from the cache C (virtual frames [0, t_c)) and then X (frames
// [t_c, t_c + t_x)); frames outside are zero padding. One dispatch = one window: positions
// [m_start, m_start + m_count) of output channels [0, n_count) over input channels [0, c_count);
// `accumulate` adds the window's partial sum to Y instead of the bias (later input-channel groups).
// Defines: TP, TN, WG (tile), HAS_CACHE (true: read C for virtual frames < t_c).
//!include index

struct Params {
  m_start: u32, m_count: u32, n_count: u32, c_count: u32, n_tiles: u32,
  y_off: i32, x_off: i32, c_off: i32, w_off: i32, b_off: i32,
  accumulate: u32, has_bias: u32,
  y_chan: u32, x_chan: i32, c_chan: i32,
  howo: u32, wo: u32, h: i32, w: i32, t_x: i32, t_c: i32,
  st: i32, sh: i32, sw: i32, pf: i32, ph: i32, pw: i32,
  kt: i32, kh: i32, kw: i32, npad: i32,
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> C: array<f32>;
@group(0) @binding(3) var<storage, read> WT: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> B: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;

const TP = {{TP}}u;
const TN = {{TN}}u;
const WG = {{WG}}u;
const HAS_CACHE = {{HAS_CACHE}};


@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let tile = flat_workgroup(wid, nwg);
  let nt = tile % P.n_tiles;
  let mt = tile / P.n_tiles;
  if (mt * WG * 4u >= P.m_count) { return; }
  let n_first = nt * 16u;
  let hw = P.h * P.w;
  _ = C[0]; _ = X[0];
  var ot: vec4<i32>; var oh: vec4<i32>; var ow: vec4<i32>; var mpos: vec4<u32>; var live: vec4<bool>;
  for (var j = 0u; j < 4u; j++) {
    let ml = mt * WG * 4u + j * WG + lid;
    live[j] = ml < P.m_count;
    let m = P.m_start + min(ml, P.m_count - 1u);
    mpos[j] = m;
    let r = m % P.howo;
    ot[j] = i32(m / P.howo) * P.st - P.pf;
    oh[j] = i32(r / P.wo) * P.sh - P.ph;
    ow[j] = i32(r % P.wo) * P.sw - P.pw;
  }
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  var a4 = vec4<f32>(0.0);
  var a5 = vec4<f32>(0.0);
  var a6 = vec4<f32>(0.0);
  var a7 = vec4<f32>(0.0);
  var a8 = vec4<f32>(0.0);
  var a9 = vec4<f32>(0.0);
  var a10 = vec4<f32>(0.0);
  var a11 = vec4<f32>(0.0);
  var a12 = vec4<f32>(0.0);
  var a13 = vec4<f32>(0.0);
  var a14 = vec4<f32>(0.0);
  var a15 = vec4<f32>(0.0);

  let kk = P.kt * P.kh * P.kw;
  var tap = 0;
  for (var dt = 0; dt < P.kt; dt++) {
    for (var dh = 0; dh < P.kh; dh++) {
      for (var dw = 0; dw < P.kw; dw++) {
        let tv = ot + vec4<i32>(dt);
        let hi = oh + vec4<i32>(dh);
        let wi = ow + vec4<i32>(dw);
        let inside = (tv >= vec4<i32>(0)) & (tv < vec4<i32>(P.t_c + P.t_x)) & (hi >= vec4<i32>(0)) & (hi < vec4<i32>(P.h)) & (wi >= vec4<i32>(0)) & (wi < vec4<i32>(P.w));
        var addr = (tv - vec4<i32>(P.t_c)) * hw + hi * P.w + wi + vec4<i32>(P.x_off);
        addr = select(vec4<i32>(0), addr, inside);
        var wrow = (tap * P.npad + P.w_off + i32(n_first)) / 4;
        for (var ci = 0u; ci < P.c_count; ci++) {
          let xv = select(vec4<f32>(0.0), vec4<f32>(X[addr.x], X[addr.y], X[addr.z], X[addr.w]), inside);
          addr += vec4<i32>(P.x_chan);
          let w0 = WT[wrow]; let w1 = WT[wrow + 1]; let w2 = WT[wrow + 2]; let w3 = WT[wrow + 3];
          a0 = fma(xv, vec4<f32>(w0.x), a0);
          a1 = fma(xv, vec4<f32>(w0.y), a1);
          a2 = fma(xv, vec4<f32>(w0.z), a2);
          a3 = fma(xv, vec4<f32>(w0.w), a3);
          a4 = fma(xv, vec4<f32>(w1.x), a4);
          a5 = fma(xv, vec4<f32>(w1.y), a5);
          a6 = fma(xv, vec4<f32>(w1.z), a6);
          a7 = fma(xv, vec4<f32>(w1.w), a7);
          a8 = fma(xv, vec4<f32>(w2.x), a8);
          a9 = fma(xv, vec4<f32>(w2.y), a9);
          a10 = fma(xv, vec4<f32>(w2.z), a10);
          a11 = fma(xv, vec4<f32>(w2.w), a11);
          a12 = fma(xv, vec4<f32>(w3.x), a12);
          a13 = fma(xv, vec4<f32>(w3.y), a13);
          a14 = fma(xv, vec4<f32>(w3.z), a14);
          a15 = fma(xv, vec4<f32>(w3.w), a15);
          wrow += kk * P.npad / 4;
        }
        tap++;
      }
    }
  }
  if (n_first + 0u < P.n_count) {
    let nl = n_first + 0u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a0[j];
      }
    }
  }
  if (n_first + 1u < P.n_count) {
    let nl = n_first + 1u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a1[j];
      }
    }
  }
  if (n_first + 2u < P.n_count) {
    let nl = n_first + 2u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a2[j];
      }
    }
  }
  if (n_first + 3u < P.n_count) {
    let nl = n_first + 3u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a3[j];
      }
    }
  }
  if (n_first + 4u < P.n_count) {
    let nl = n_first + 4u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a4[j];
      }
    }
  }
  if (n_first + 5u < P.n_count) {
    let nl = n_first + 5u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a5[j];
      }
    }
  }
  if (n_first + 6u < P.n_count) {
    let nl = n_first + 6u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a6[j];
      }
    }
  }
  if (n_first + 7u < P.n_count) {
    let nl = n_first + 7u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a7[j];
      }
    }
  }
  if (n_first + 8u < P.n_count) {
    let nl = n_first + 8u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a8[j];
      }
    }
  }
  if (n_first + 9u < P.n_count) {
    let nl = n_first + 9u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a9[j];
      }
    }
  }
  if (n_first + 10u < P.n_count) {
    let nl = n_first + 10u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a10[j];
      }
    }
  }
  if (n_first + 11u < P.n_count) {
    let nl = n_first + 11u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a11[j];
      }
    }
  }
  if (n_first + 12u < P.n_count) {
    let nl = n_first + 12u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a12[j];
      }
    }
  }
  if (n_first + 13u < P.n_count) {
    let nl = n_first + 13u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a13[j];
      }
    }
  }
  if (n_first + 14u < P.n_count) {
    let nl = n_first + 14u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a14[j];
      }
    }
  }
  if (n_first + 15u < P.n_count) {
    let nl = n_first + 15u;
    let bias = select(0.0, B[i32(nl) + P.b_off], P.has_bias != 0u);
    for (var j = 0u; j < 4u; j++) {
      if (live[j]) {
        let yi = i32(nl * P.y_chan + mpos[j]) + P.y_off;
        var base = bias;
        if (P.accumulate != 0u) { base = Y[yi]; }
        Y[yi] = base + a15[j];
      }
    }
  }
}
