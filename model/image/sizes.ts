// Output sizes of the two image-conditioned paths, as the official code computes them.
import { pyFloorDiv, pyRound } from './pymath.ts';

/**
 * i2v-A14B (wan/image2video.py): the latent grid for a target area, keeping the aspect ratio:
 * lat_h = round(sqrt(max_area * h/w) // stride // patch * patch), likewise lat_w.
 */
export function i2vLatentSize(width: number, height: number, maxArea: number, vaeStride = 8, patch = 2) {
  const aspect = height / width;
  const latH = pyRound(pyFloorDiv(pyFloorDiv(Math.sqrt(maxArea * aspect), vaeStride), patch) * patch);
  const latW = pyRound(pyFloorDiv(pyFloorDiv(Math.sqrt(maxArea / aspect), vaeStride), patch) * patch);
  return { latH, latW, h: latH * vaeStride, w: latW * vaeStride };
}

/** ti2v-5B (wan/utils/utils.py best_output_size): the multiple-of-(dw, dh) size closest in aspect ratio. */
export function bestOutputSize(w: number, h: number, dw: number, dh: number, expectedArea: number): [number, number] {
  const ratio = w / h;
  const ow = Math.sqrt(expectedArea * ratio);
  const oh = expectedArea / ow;
  // width first
  const ow1 = Math.trunc(pyFloorDiv(ow, dw) * dw);
  const oh1 = Math.trunc(pyFloorDiv(expectedArea / ow1, dh) * dh);
  // height first
  const oh2 = Math.trunc(pyFloorDiv(oh, dh) * dh);
  const ow2 = Math.trunc(pyFloorDiv(expectedArea / oh2, dw) * dw);
  if (!(ow1 > 0 && oh1 > 0 && ow2 > 0 && oh2 > 0)) {
    throw new Error(`image ${w}x${h}: no output size that is a multiple of ${dw}x${dh} fits the area ${expectedArea}`);
  }
  const ratio1 = ow1 / oh1;
  const ratio2 = ow2 / oh2;
  return Math.max(ratio / ratio1, ratio1 / ratio) < Math.max(ratio / ratio2, ratio2 / ratio) ? [ow1, oh1] : [ow2, oh2];
}
