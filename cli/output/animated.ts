// Animated WebP (lossless) and GIF output through sharp: the frames are handed over as one tall raw
// image whose pages are the frames (`pageHeight`). Written to a temporary name and renamed, like MP4.
import { rename, rm } from 'node:fs/promises';
import { extname } from 'node:path';
import sharp from 'sharp';
import { checkFrames, type Frames } from './mp4.ts';

export type AnimatedFormat = 'webp' | 'gif';

/** `.webp` / `.gif` (case-insensitive) -> the format, anything else null. */
export function animatedFormatOf(path: string): AnimatedFormat | null {
  const ext = extname(path).toLowerCase();
  return ext === '.webp' ? 'webp' : ext === '.gif' ? 'gif' : null;
}

export async function writeAnimated(path: string, v: Frames, fps: number, format: AnimatedFormat): Promise<void> {
  checkFrames(v);
  if (!(fps > 0)) throw new Error(`fps must be positive, got ${fps}`);
  // Both formats store whole milliseconds per frame (GIF even centiseconds; libvips rounds).
  const delay = Math.max(1, Math.round(1000 / fps));
  const tall = sharp(Buffer.from(v.rgb.buffer, v.rgb.byteOffset, v.rgb.byteLength), {
    raw: { width: v.width, height: v.height * v.frames, channels: 3, pageHeight: v.height },
    limitInputPixels: false,
  });
  const anim = { loop: 0, delay: new Array<number>(v.frames).fill(delay) };
  const out = format === 'webp' ? tall.webp({ ...anim, lossless: true }) : tall.gif({ ...anim });
  const tmp = `${path}.partial-${process.pid}`;
  try {
    await out.toFile(tmp);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
