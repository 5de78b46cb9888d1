// The conditioning image of the two image-to-video paths, as the official generate() prepares it.
import { rgbToNormalizedCHW, type RgbImage } from '../../loaders/image.ts';
import { resizeBicubic } from './bicubic.ts';
import { resizeLanczos } from './lanczos.ts';
import { pyRound } from './pymath.ts';
import { bestOutputSize, i2vLatentSize } from './sizes.ts';

export interface I2vA14bImage {
  latH: number;
  latW: number;
  h: number;
  w: number;
  /** float32 [3, h, w], values may leave [-1, 1] (bicubic overshoot, not clamped). */
  pixels: Float32Array;
}

/** i2v-A14B: normalise, then bicubic-resize to the latent grid's pixel size for `maxArea`. */
export function preprocessI2vA14b(img: RgbImage, maxArea: number, vaeStride = 8, patch = 2): I2vA14bImage {
  const { latH, latW, h, w } = i2vLatentSize(img.width, img.height, maxArea, vaeStride, patch);
  if (latH < patch || latW < patch) throw new Error(`image ${img.width}x${img.height} is too elongated for the area ${maxArea}`);
  const pixels = resizeBicubic(rgbToNormalizedCHW(img), 3, img.height, img.width, h, w);
  return { latH, latW, h, w, pixels };
}

export interface Ti2v5bImage {
  ow: number;
  oh: number;
  resizedW: number;
  resizedH: number;
  cropX: number;
  cropY: number;
  /** float32 [3, 1, oh, ow] in [-1, 1]. */
  pixels: Float32Array;
}

/** ti2v-5B: best_output_size, Pillow LANCZOS resize covering it, centre crop, normalise. */
export function preprocessTi2v5b(img: RgbImage, maxArea: number, dw = 32, dh = 32): Ti2v5bImage {
  const [ow, oh] = bestOutputSize(img.width, img.height, dw, dh, maxArea);
  const scale = Math.max(ow / img.width, oh / img.height);
  const resizedW = pyRound(img.width * scale);
  const resizedH = pyRound(img.height * scale);
  const resized = resizeLanczos(img.rgb, img.width, img.height, resizedW, resizedH);
  const cropX = Math.floor((resizedW - ow) / 2);
  const cropY = Math.floor((resizedH - oh) / 2);
  const crop = new Uint8Array(ow * oh * 3);
  for (let y = 0; y < oh; y++) crop.set(resized.subarray(((y + cropY) * resizedW + cropX) * 3, ((y + cropY) * resizedW + cropX + ow) * 3), y * ow * 3);
  return { ow, oh, resizedW, resizedH, cropX, cropY, pixels: rgbToNormalizedCHW({ width: ow, height: oh, rgb: crop }) };
}

export { bestOutputSize, i2vLatentSize, resizeBicubic, resizeLanczos };
