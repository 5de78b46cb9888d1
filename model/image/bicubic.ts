// torch.nn.functional.interpolate(mode='bicubic', align_corners=False) on a float32 [C, H, W] image,
// as torch 1.13's CPU kernel computes it: scale = float32(in/out), source = scale*(dst+0.5)-0.5 (not
// clamped), Keys cubic with A = -0.75, taps clamped to the border, no antialiasing, no clamping.
// Measured against torch itself (one-hot inputs give its weights): the source index carries more than
// float32 precision, and the float32 polynomials and sums are contracted into fused multiply-adds
// (ATen's CPU kernels are built with FMA). Emulating exactly that reaches 1 ulp of its weights.
const f = Math.fround;
const A = -0.75;

/** float32 fused multiply-add: a*b is exact in float64 for float32 inputs, one rounding at the end. */
const fma = (a: number, b: number, c: number) => f(a * b + c);

function cubicWeights(t64: number): [number, number, number, number] {
  const c1 = (x: number) => fma(f(fma(A + 2, x, -(A + 3)) * x), x, 1);
  const c2 = (x: number) => fma(fma(fma(A, x, -5 * A), x, 8 * A), x, -4 * A);
  const t = f(t64);
  const x2 = f(1 - t);
  return [c2(f(t + 1)), c1(t), c1(x2), c2(f(x2 + 1))];
}

interface Taps {
  index: Int32Array; // 4 per output position
  weight: Float32Array;
}

function taps(inSize: number, outSize: number): Taps {
  const scale = f(inSize / outSize);
  const index = new Int32Array(outSize * 4);
  const weight = new Float32Array(outSize * 4);
  for (let o = 0; o < outSize; o++) {
    const real = scale * (o + 0.5) - 0.5;
    const i0 = Math.min(Math.floor(real), inSize - 1);
    const t = Math.min(Math.max(real - i0, 0), 1);
    const w = cubicWeights(t);
    for (let j = 0; j < 4; j++) {
      index[o * 4 + j] = Math.max(Math.min(i0 - 1 + j, inSize - 1), 0);
      weight[o * 4 + j] = w[j];
    }
  }
  return { index, weight };
}

export function resizeBicubic(src: Float32Array, channels: number, inH: number, inW: number, outH: number, outW: number): Float32Array {
  if (src.length !== channels * inH * inW) throw new Error(`resizeBicubic: ${src.length} values for ${channels}x${inH}x${inW}`);
  const ty = taps(inH, outH);
  const tx = taps(inW, outW);
  const out = new Float32Array(channels * outH * outW);
  for (let c = 0; c < channels; c++) {
    const plane = c * inH * inW;
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++) {
        let acc = 0;
        for (let j = 0; j < 4; j++) {
          const row = plane + ty.index[oy * 4 + j] * inW;
          let r = 0;
          for (let i = 0; i < 4; i++) r = fma(src[row + tx.index[ox * 4 + i]], tx.weight[ox * 4 + i], r);
          acc = fma(r, ty.weight[oy * 4 + j], acc);
        }
        out[(c * outH + oy) * outW + ox] = acc;
      }
    }
  }
  return out;
}
