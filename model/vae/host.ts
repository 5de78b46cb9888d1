// Host-side layout helpers of the VAE wrappers (float32 videos [C, T, H, W] in row-major order).

/** Frames [f0, f1) of a [C, T, H, W] video. */
export function hostFrames(x: Float32Array, shape: readonly number[], f0: number, f1: number): Float32Array {
  const [C, T, H, W] = shape;
  const hw = H * W;
  const out = new Float32Array(C * (f1 - f0) * hw);
  for (let c = 0; c < C; c++) out.set(x.subarray((c * T + f0) * hw, (c * T + f1) * hw), c * (f1 - f0) * hw);
  return out;
}

/** Writes a [C, t, H, W] chunk into frames [f0, f0 + t) of a [C, T, H, W] video (map applied per value). */
export function putFrames(dst: Float32Array, dstShape: readonly number[], f0: number, chunk: Float32Array, t: number, map?: (v: number) => number): void {
  const [C, T, H, W] = dstShape;
  const n = t * H * W;
  for (let c = 0; c < C; c++) {
    const src = chunk.subarray(c * n, (c + 1) * n);
    const at = (c * T + f0) * H * W;
    if (map) for (let i = 0; i < n; i++) dst[at + i] = map(src[i]);
    else dst.set(src, at);
  }
}

/**
 * wan/modules/vae2_2.py patchify: "c f (h q) (w r) -> (c r q) f h w" with patch p: output channel
 * (c * p + r) * p + q holds the pixel at row offset q, column offset r.
 */
export function patchify(x: Float32Array, shape: readonly number[], p: number): { data: Float32Array; shape: number[] } {
  const [C, T, H, W] = shape;
  if (H % p || W % p) throw new Error(`patchify: frame ${H}x${W} is not divisible by the patch ${p}`);
  const h = H / p;
  const w = W / p;
  const out = new Float32Array(x.length);
  for (let c = 0; c < C; c++)
    for (let r = 0; r < p; r++)
      for (let q = 0; q < p; q++) {
        const oc = (c * p + r) * p + q;
        for (let t = 0; t < T; t++)
          for (let i = 0; i < h; i++) {
            const src = ((c * T + t) * H + i * p + q) * W + r;
            const dst = ((oc * T + t) * h + i) * w;
            for (let j = 0; j < w; j++) out[dst + j] = x[src + j * p];
          }
      }
  return { data: out, shape: [C * p * p, T, h, w] };
}

/** The inverse of patchify: "(c r q) f h w -> c f (h q) (w r)". */
export function unpatchify(x: Float32Array, shape: readonly number[], p: number): { data: Float32Array; shape: number[] } {
  const [Cp, T, h, w] = shape;
  if (Cp % (p * p)) throw new Error(`unpatchify: ${Cp} channels are not a multiple of ${p * p}`);
  const C = Cp / (p * p);
  const H = h * p;
  const W = w * p;
  const out = new Float32Array(x.length);
  for (let c = 0; c < C; c++)
    for (let r = 0; r < p; r++)
      for (let q = 0; q < p; q++) {
        const ic = (c * p + r) * p + q;
        for (let t = 0; t < T; t++)
          for (let i = 0; i < h; i++) {
            const src = ((ic * T + t) * h + i) * w;
            const dst = ((c * T + t) * H + i * p + q) * W + r;
            for (let j = 0; j < w; j++) out[dst + j * p] = x[src + j];
          }
      }
  return { data: out, shape: [C, T, H, W] };
}
