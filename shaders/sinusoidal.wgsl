// Sinusoidal embedding in f32 with float64-like angles: Y[r, j] = cos(p_r * w_j), Y[r, half + j] =
// sin(p_r * w_j), w_j = 10000^(-j/half) given on the host as FREQ[j] = (hi, lo), hi holding 12
// significant bits. One thread per (row, j) over one window of embedding rows.
// Accuracy without f64 or fma: p = p_hi + p_lo with p_hi holding 12 bits, so p_hi * w_hi is exact;
// that main part is reduced mod 2*pi with a 3-part Cody-Waite constant (k * c1, k * c2 exact); the
// small terms are added after the reduction; cos/sin come from quadrant reduction and Taylor
// polynomials on [-pi/4, pi/4] (the builtins only promise 2^-11 absolute error on [-pi, pi]).
//!include index

struct Params {
  n: u32,      // threads: rows * half
  half: u32,
  row0: u32,   // global first row of the window (POS is bound whole)
  inv2pi: f32,
  c1: f32, c2: f32, c3: f32,      // 2*pi = c1 + c2 + c3
  pio2_1: f32, pio2_2: f32,       // pi/2 = pio2_1 + pio2_2
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> POS: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<storage, read> FREQ: array<vec2<f32>>;

fn sin_poly(x: f32) -> f32 {
  let x2 = x * x;
  return x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362880.0)))));
}

fn cos_poly(x: f32) -> f32 {
  let x2 = x * x;
  return 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0 + x2 * (-1.0 / 3628800.0)))));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = flat_workgroup(wid, nwg) * 64u + lid;
  if (t >= P.n) { return; }
  let r = t / P.half;
  let j = t - r * P.half;
  let p = POS[P.row0 + r];
  let w = FREQ[j];
  let p_hi = bitcast<f32>(bitcast<u32>(p) & 0xfffff000u);
  let p_lo = p - p_hi;
  let main_part = p_hi * w.x;
  let k = round(main_part * P.inv2pi);
  let a = (((main_part - k * P.c1) - k * P.c2) - k * P.c3) + (p_hi * w.y + p_lo * (w.x + w.y));
  // a in about [-pi, pi]: quadrant q and remainder in [-pi/4, pi/4].
  let q = round(a * (2.0 * P.inv2pi * 2.0));
  let x = (a - q * P.pio2_1) - q * P.pio2_2;
  let s = sin_poly(x);
  let c = cos_poly(x);
  let quadrant = ((i32(q) % 4) + 4) % 4;
  var cosv = c;
  var sinv = s;
  if (quadrant == 1) { cosv = -s; sinv = c; }
  else if (quadrant == 2) { cosv = -c; sinv = -s; }
  else if (quadrant == 3) { cosv = s; sinv = -c; }
  let base = r * 2u * P.half;
  Y[base + j] = cosv;
  Y[base + P.half + j] = sinv;
}
