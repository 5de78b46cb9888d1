// PNG frame folders (lossless; what the reference comparisons use). Written into a temporary folder
// that is renamed at the end, like the MP4 path.
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { checkFrames, type Frames } from './mp4.ts';

export async function writePngFrames(dir: string, v: Frames): Promise<void> {
  checkFrames(v);
  const tmp = `${dir}.partial-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    const n = v.width * v.height * 3;
    const digits = Math.max(4, String(v.frames - 1).length);
    for (let t = 0; t < v.frames; t++) {
      const px = Buffer.from(v.rgb.buffer, v.rgb.byteOffset + t * n, n);
      await sharp(px, { raw: { width: v.width, height: v.height, channels: 3 } })
        .png()
        .toFile(join(tmp, `frame_${String(t).padStart(digits, '0')}.png`));
    }
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

export async function readPngFrames(dir: string): Promise<Frames> {
  const names = (await readdir(dir)).filter((f) => f.endsWith('.png')).sort();
  if (names.length === 0) throw new Error(`${dir}: no PNG frames`);
  const frames: Buffer[] = [];
  let width = 0;
  let height = 0;
  for (const name of names) {
    const { data, info } = await sharp(join(dir, name)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (frames.length && (info.width !== width || info.height !== height)) throw new Error(`${dir}/${name}: size differs from the first frame`);
    width = info.width;
    height = info.height;
    frames.push(data);
  }
  return { rgb: new Uint8Array(Buffer.concat(frames)), frames: frames.length, width, height };
}
