// Image files -> 8-bit RGB, the way the official code's `Image.open(path).convert("RGB")` sees them.
// sharp only decodes; all resampling is ours (model/image/) so that it matches the reference.
// - Alpha is dropped, not composited (PIL's RGBA -> RGB conversion does the same).
// - Grey images are expanded to three equal channels; 16-bit images are reduced to 8 bits.
// - EXIF orientation is NOT applied, exactly like the official code (PIL does not rotate on open);
//   `orientation` reports it so the CLI can warn about a sideways photo.
import sharp from 'sharp';

export interface RgbImage {
  width: number;
  height: number;
  /** Interleaved RGB, row-major, width*height*3 bytes. */
  rgb: Uint8Array;
  /** EXIF orientation tag (1 = upright) when present. */
  orientation?: number;
}

export async function decodeImage(path: string): Promise<RgbImage> {
  try {
    const img = sharp(path, { failOn: 'error' });
    const meta = await img.metadata();
    const { data, info } = await img.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { width: info.width, height: info.height, rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), orientation: meta.orientation };
  } catch (e) {
    throw new Error(`cannot read image ${path}: ${(e as Error).message}`);
  }
}

/** to_tensor(img).sub_(0.5).div_(0.5): float32 [3, H, W] in [-1, 1]. */
export function rgbToNormalizedCHW(img: RgbImage): Float32Array {
  const { width: w, height: h, rgb } = img;
  const out = new Float32Array(3 * w * h);
  const f = Math.fround;
  for (let p = 0; p < w * h; p++) {
    for (let c = 0; c < 3; c++) out[c * w * h + p] = f(f(f(rgb[p * 3 + c] / 255) - 0.5) / 0.5);
  }
  return out;
}
