// Pillow's Image.resize(size, Image.LANCZOS) on 8-bit RGB, bit-exact: separable passes (horizontal
// first, then vertical; a pass is skipped when that size is unchanged) with the coefficients turned
// into 22-bit fixed point and a uint8 intermediate image, as Pillow's Resample.c does.
const PRECISION_BITS = 22;

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

function lanczos3(x: number): number {
  return -3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

interface Coefficients {
  start: Int32Array;
  count: Int32Array;
  ksize: number;
  k: Int32Array; // ksize per output position, fixed point
}

function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 3 * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const k = new Int32Array(outSize * ksize);
  const ss = 1 / filterScale;
  const w = new Float64Array(ksize);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = lanczos3((x + xmin - center + 0.5) * ss);
      total += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const v = total !== 0 ? w[x] / total : w[x];
      // Round half away from zero, then truncate toward zero (C's int cast).
      k[o * ksize + x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    start[o] = xmin;
    count[o] = xmax;
  }
  return { start, count, ksize, k };
}

function clip8(v: number): number {
  if (v >= (1 << PRECISION_BITS) * 256) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / (1 << PRECISION_BITS));
}

/** One pass along x (horizontal) or y (vertical) over interleaved 8-bit pixels with `ch` channels. */
function pass(src: Uint8Array, w: number, h: number, ch: number, outSize: number, horizontal: boolean): Uint8Array {
  const inSize = horizontal ? w : h;
  const c = coefficients(inSize, outSize);
  const ow = horizontal ? outSize : w;
  const oh = horizontal ? h : outSize;
  const out = new Uint8Array(ow * oh * ch);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const o = horizontal ? x : y;
      const base = o * c.ksize;
      const first = c.start[o];
      for (let k = 0; k < ch; k++) {
        let acc = half;
        for (let t = 0; t < c.count[o]; t++) {
          const sx = horizontal ? first + t : x;
          const sy = horizontal ? y : first + t;
          acc += src[(sy * w + sx) * ch + k] * c.k[base + t];
        }
        out[(y * ow + x) * ch + k] = clip8(acc);
      }
    }
  }
  return out;
}

export function resizeLanczos(rgb: Uint8Array, w: number, h: number, outW: number, outH: number, ch = 3): Uint8Array {
  if (rgb.length !== w * h * ch) throw new Error(`resizeLanczos: ${rgb.length} bytes for ${w}x${h}x${ch}`);
  if (outW < 1 || outH < 1) throw new Error(`resizeLanczos: invalid output size ${outW}x${outH}`);
  let img = rgb;
  let cw = w;
  if (outW !== w) {
    img = pass(img, w, h, ch, outW, true);
    cw = outW;
  }
  if (outH !== h) img = pass(img, cw, h, ch, outH, false);
  return img === rgb ? rgb.slice() : img;
}
