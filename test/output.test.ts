// Video files: MP4 (H.264) round trip, PNG frame folders, no partial files on failure.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { animatedFormatOf, writeAnimated } from '../cli/output/animated.ts';
import { writeMp4 } from '../cli/output/mp4.ts';
import { readMp4 } from '../cli/output/mp4-read.ts';
import { readPngFrames, writePngFrames } from '../cli/output/png.ts';

const tmp = mkdtempSync(join(tmpdir(), 'wan-out-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A smooth moving gradient (compresses well, so the lossy round trip stays close). */
function gradient(frames: number, height: number, width: number): Uint8Array {
  const rgb = new Uint8Array(frames * height * width * 3);
  for (let t = 0; t < frames; t++)
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        const o = ((t * height + y) * width + x) * 3;
        rgb[o] = (x * 4 + t * 8) & 255;
        rgb[o + 1] = (y * 4) & 255;
        rgb[o + 2] = 128;
      }
  return rgb;
}

describe('mp4', () => {
  it('writes H.264 that decodes back to the same count, size, fps and close pixels', async () => {
    const v = { rgb: gradient(9, 32, 48), frames: 9, height: 32, width: 48 };
    const p = join(tmp, 'a.mp4');
    await writeMp4(p, v, 16);
    const back = await readMp4(p);
    expect([back.frames, back.width, back.height]).toEqual([9, 48, 32]);
    expect(back.fps).toBeCloseTo(16, 1);
    let err = 0;
    for (let i = 0; i < v.rgb.length; i++) err += Math.abs(back.rgb[i] - v.rgb[i]);
    expect(err / v.rgb.length).toBeLessThan(6); // lossy, but the picture is there
    expect(readdirSync(tmp).some((f) => f.includes('.partial'))).toBe(false);
  });

  it('is reproducible: the same frames give the same bytes (fixed quantizer; noise-like frames, the hard case)', async () => {
    // 256x256: the old bitrate mode gave different bytes on most runs here (at 128x128 on some).
    const T = 5, H = 256, W = 256;
    const rgb = new Uint8Array(T * H * W * 3);
    let s = 7;
    for (let i = 0; i < rgb.length; i++) rgb[i] = (s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 24;
    const a = join(tmp, 'rep-a.mp4');
    const b = join(tmp, 'rep-b.mp4');
    await writeMp4(a, { rgb, frames: T, height: H, width: W }, 24);
    await writeMp4(b, { rgb, frames: T, height: H, width: W }, 24);
    expect(Buffer.compare(readFileSync(a), readFileSync(b))).toBe(0);
  });

  it('refuses odd sizes and wrong buffers before writing anything', async () => {
    const p = join(tmp, 'odd.mp4');
    await expect(writeMp4(p, { rgb: new Uint8Array(3 * 5 * 7 * 3), frames: 3, height: 5, width: 7 }, 16)).rejects.toThrow(/even frame sizes/);
    await expect(writeMp4(p, { rgb: new Uint8Array(10), frames: 3, height: 4, width: 4 }, 16)).rejects.toThrow(/not 3 frames of 4x4 RGB/);
    expect(existsSync(p)).toBe(false);
  });

  it('leaves no partial file when the target folder is missing', async () => {
    const p = join(tmp, 'missing-dir', 'b.mp4');
    await expect(writeMp4(p, { rgb: gradient(2, 16, 16), frames: 2, height: 16, width: 16 }, 8)).rejects.toThrow();
    expect(existsSync(join(tmp, 'missing-dir'))).toBe(false);
  });
});

describe('png frames', () => {
  it('round trips exactly', async () => {
    const v = { rgb: gradient(3, 7, 5), frames: 3, height: 7, width: 5 };
    const d = join(tmp, 'frames');
    await writePngFrames(d, v);
    const back = await readPngFrames(d);
    expect([back.frames, back.width, back.height]).toEqual([3, 5, 7]);
    expect(Buffer.from(back.rgb).equals(Buffer.from(v.rgb))).toBe(true);
    expect(readdirSync(d)).toEqual(['frame_0000.png', 'frame_0001.png', 'frame_0002.png']);
  });
});

describe('animated webp / gif', () => {
  it('webp: lossless, every frame back exactly, with the fps as per-frame delay', async () => {
    const rgb = new Uint8Array(5 * 18 * 34 * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37 + 11) % 251; // no structure: any wrong frame shows
    const p = join(tmp, 'a.webp');
    await writeAnimated(p, { rgb, frames: 5, height: 18, width: 34 }, 16, 'webp');
    const meta = await sharp(p, { pages: -1 }).metadata();
    expect([meta.pages, meta.pageHeight, meta.width, meta.loop]).toEqual([5, 18, 34, 0]);
    expect(meta.delay).toEqual([63, 63, 63, 63, 63]); // 1000 / 16 rounded
    const back = await sharp(p, { pages: -1 }).removeAlpha().raw().toBuffer();
    expect(back.length).toBe(rgb.length);
    let diff = 0;
    for (let i = 0; i < rgb.length; i++) diff = Math.max(diff, Math.abs(back[i] - rgb[i]));
    expect(diff).toBe(0);
    expect(readdirSync(tmp).some((f) => f.includes('.partial'))).toBe(false);
  });

  it('gif: frame count, size and delay (GIF stores centiseconds)', async () => {
    const v = { rgb: gradient(4, 16, 24), frames: 4, height: 16, width: 24 };
    const p = join(tmp, 'a.gif');
    await writeAnimated(p, v, 24, 'gif');
    const meta = await sharp(p, { pages: -1 }).metadata();
    expect([meta.format, meta.pages, meta.pageHeight, meta.width]).toEqual(['gif', 4, 16, 24]);
    expect(meta.delay).toEqual([40, 40, 40, 40]); // 41.7 ms -> 4 cs
  });

  it('picks the format from the extension and leaves no partial file on failure', async () => {
    expect([animatedFormatOf('x.WEBP'), animatedFormatOf('y.gif'), animatedFormatOf('z.mp4')]).toEqual(['webp', 'gif', null]);
    const p = join(tmp, 'missing-dir', 'c.webp');
    await expect(writeAnimated(p, { rgb: gradient(2, 8, 8), frames: 2, height: 8, width: 8 }, 8, 'webp')).rejects.toThrow();
    await expect(writeAnimated(join(tmp, 'd.gif'), { rgb: new Uint8Array(5), frames: 2, height: 8, width: 8 }, 8, 'gif')).rejects.toThrow(/not 2 frames/);
    expect(existsSync(join(tmp, 'd.gif'))).toBe(false);
  });
});
