// The Wan2.2 VAE shortcut resamplers (wan/modules/vae2_2.py), f32, one output element per invocation,
// over output channels [o0, o0 + n / (to*ho*wo)) of one window:
// MODE = 0, AvgDown3D: x [C, T, H, W], zero-padded by pad_t frames in FRONT, is space-to-depth'ed into
//   C*F channels (c, t_off, h_off, w_off) with F = ft*fs*fs; output channel o is the mean of the G
//   consecutive ones o*G .. o*G + G - 1 (the zero frames count in the mean).
// MODE = 1, DupUp3D: channel j = o*F + t_off*fs*fs + h_off*fs + w_off of the output's depth-to-space
//   source is input channel j / R (repeat_interleave by R); the first `skip` output frames (ft - 1 on
//   a first chunk) are dropped.
//!include index

struct Params {
  n: u32, o0: u32, to: u32, ho: u32, wo: u32,
  t: i32, h: u32, w: u32,
  ft: u32, fs: u32, f: u32,
  g: u32,       // AvgDown3D: channels averaged; DupUp3D: repeats R
  shift: i32,   // AvgDown3D: front pad frames; DupUp3D: dropped output frames
  x_off: i32,   // minus the global element of the x binding start
  y_off: i32,   // minus the global element of the y binding start
}
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn x_at(c: u32, t: i32, h: u32, w: u32) -> f32 {
  return X[i32((c * u32(P.t) + u32(t)) * P.h * P.w + h * P.w + w) + P.x_off];
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = flat_workgroup(wid, nwg) * 256u + lid;
  if (i >= P.n) { return; }
  let plane = P.ho * P.wo;
  let per_channel = P.to * plane;
  let o = P.o0 + i / per_channel;
  let r = i % per_channel;
  let tt = r / plane;
  let hh = (r % plane) / P.wo;
  let ww = r % P.wo;
  let ss = P.fs * P.fs;
  var v = 0.0;
  if ({{MODE}} == 0) {
    for (var k = 0u; k < P.g; k++) {
      let j = o * P.g + k;
      let c = j / P.f;
      let q = j % P.f;
      let t = i32(tt * P.ft + q / ss) - P.shift;
      if (t >= 0) { v += x_at(c, t, hh * P.fs + (q / P.fs) % P.fs, ww * P.fs + q % P.fs); }
    }
    v = v / f32(P.g);
  } else {
    let tf = tt + u32(P.shift);
    let j = o * P.f + (tf % P.ft) * ss + (hh % P.fs) * P.fs + ww % P.fs;
    v = x_at(j / P.g, i32(tf / P.ft), hh / P.fs, ww / P.fs);
  }
  Y[i32(o * per_channel + r) + P.y_off] = v;
}
