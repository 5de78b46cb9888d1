// Wan VAE layout gathers over channel-major video tensors [C, T, H, W] (f32): one thread per written
// element. The work is a "domain" of rows (channel c, frame f) of H_d x W_d elements each; a dispatch
// covers domain rows [row0, row0 + n / plane). X and Y are bound as element ranges of the tensors
// (global element x_base / y_base at index 0), so any tensor size works.
// Defines:
//   MODE  1 frames : Y[c, df0 + f*step] = X[c + sc0, sf0 + f]          (slice, concat, interleave)
//         2 pad    : Y[c, f, h, w] = X[c, f, h, w] inside X, else 0       (ZeroPad2d right / bottom)
//         3 up2    : Y[c, f, h, w] = X[c, f, h/2, w/2]                    (nearest 2x, 'nearest-exact')
//         4 avgdown: AvgDown3D of vae2_2.py (front zero frames pad_t; mean over the channel group)
//         5 dupup  : DupUp3D of vae2_2.py (the first `drop` output frames skipped)
//   ACCUM 0 writes Y, 1 adds onto Y (a shortcut added to the main path in place).
//!include index

struct Params {
  n: u32,       // elements of this dispatch
  plane: u32,   // elements per domain row (H_d * W_d)
  row0: u32,    // first domain row
  dom_f: u32,   // domain frames per channel
  y_base: u32,  // tensor element of Y[0]
  x_base: u32,  // tensor element of X[0]
  td: u32,      // frames of Y
  wd: u32,      // width of Y
  ts: u32,      // frames of X
  hs: u32,      // height of X
  ws: u32,      // width of X
  a: u32,       // frames: sc0 | avgdown, dupup: factor_t
  b: u32,       // frames: sf0 | avgdown, dupup: factor_s
  c: u32,       // frames: df0 | avgdown: group size | dupup: repeats
  d: u32,       // frames: step | avgdown: front zero frames | dupup: dropped frames
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

const MODE: u32 = {{MODE}}u;
const ACCUM: bool = {{ACCUM}};

fn load(c: u32, t: u32, h: u32, w: u32) -> f32 {
  return X[((c * P.ts + t) * P.hs + h) * P.ws + w - P.x_base];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * 256u + lid;
  if (i >= P.n) { return; }
  let row = P.row0 + i / P.plane;
  let pix = i % P.plane;
  let c = row / P.dom_f;
  let f = row % P.dom_f;
  let h = pix / P.wd;
  let w = pix % P.wd;
  var v = 0.0;
  var dst = (c * P.td + f) * P.plane + pix;
  if (MODE == 1u) {
    dst = (c * P.td + P.c + f * P.d) * P.plane + pix;
    v = X[((c + P.a) * P.ts + P.b + f) * P.plane + pix - P.x_base];
  } else if (MODE == 2u) {
    if (h < P.hs && w < P.ws) { v = load(c, f, h, w); }
  } else if (MODE == 3u) {
    v = load(c, f, h / 2u, w / 2u);
  } else if (MODE == 4u) {
    let ft = P.a;
    let fs = P.b;
    let fss = fs * fs;
    let factor = ft * fss;
    var sum = 0.0;
    for (var g = 0u; g < P.c; g++) {
      let p = c * P.c + g;
      let k = p % factor;
      let tp = f * ft + k / fss;  // frame in the front-padded sequence
      if (tp >= P.d) { sum += load(p / factor, tp - P.d, h * fs + (k / fs) % fs, w * fs + k % fs); }
    }
    v = sum / f32(P.c);
  } else if (MODE == 5u) {
    let ft = P.a;
    let fs = P.b;
    let fo = f + P.d;
    let j = ((c * ft + fo % ft) * fs + h % fs) * fs + w % fs;
    v = load(j / P.c, fo / ft, h / fs, w / fs);
  }
  if (ACCUM) {
    Y[dst - P.y_base] += v;
  } else {
    Y[dst - P.y_base] = v;
  }
}
