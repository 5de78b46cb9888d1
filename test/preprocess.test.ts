// Image decoding and the preprocessing helpers beyond the image.preprocess fixtures.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeImage, rgbToNormalizedCHW } from '../loaders/image.ts';
import { bestOutputSize, i2vLatentSize, resizeBicubic, resizeLanczos } from '../model/image/preprocess.ts';
import { pyFloorDiv, pyRound } from '../model/image/pymath.ts';

const tmp = mkdtempSync(join(tmpdir(), 'wan-img-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('python number semantics', () => {
  it('round half to even', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001].map(pyRound)).toEqual([0, 2, 2, 0, -2, 2, 3]);
  });
  it('float floor division like Python', () => {
    expect(pyFloorDiv(7, 2)).toBe(3);
    expect(pyFloorDiv(-7, 2)).toBe(-4);
    expect(pyFloorDiv(7.5, -2)).toBe(-4);
    // Python: 1 // 0.1 == 9.0 (fmod-based), although 1 / 0.1 == 10.0
    expect(pyFloorDiv(1, 0.1)).toBe(9);
  });
});

describe('sizes', () => {
  it('i2v latent grid keeps the aspect ratio in multiples of the patch', () => {
    expect(i2vLatentSize(1280, 720, 1280 * 720)).toEqual({ latH: 90, latW: 160, h: 720, w: 1280 });
    const s = i2vLatentSize(517, 389, 480 * 832);
    expect(s.latH % 2).toBe(0);
    expect(s.latW % 2).toBe(0);
  });
  it('best_output_size returns multiples of 32 within the area, or a clear error', () => {
    const [w, h] = bestOutputSize(1920, 1080, 32, 32, 704 * 1280);
    expect(w % 32).toBe(0);
    expect(h % 32).toBe(0);
    expect(w * h).toBeLessThanOrEqual(704 * 1280);
    expect(() => bestOutputSize(10000, 10, 32, 32, 32 * 32)).toThrow(/no output size/);
  });
});

describe('resampling', () => {
  it('bicubic of a constant image is that constant; identity size is a copy', () => {
    const c = new Float32Array(3 * 7 * 11).fill(0.25);
    for (const v of resizeBicubic(c, 3, 7, 11, 20, 5)) expect(v).toBeCloseTo(0.25, 6);
    const r = Float32Array.from({ length: 3 * 4 * 5 }, (_, i) => Math.sin(i));
    expect(Array.from(resizeBicubic(r, 3, 4, 5, 4, 5)).map((v) => Math.fround(v))).toEqual(Array.from(r));
  });
  it('lanczos keeps constants, skips unchanged axes, and downsamples a ramp monotonically', () => {
    const c = new Uint8Array(9 * 6 * 3).fill(200);
    expect(Array.from(resizeLanczos(c, 9, 6, 4, 13)).every((v) => v === 200)).toBe(true);
    const ramp = Uint8Array.from({ length: 64 * 3 }, (_, i) => Math.floor(i / 3) * 4);
    const down = resizeLanczos(ramp, 64, 1, 16, 1);
    for (let x = 1; x < 15; x++) expect(down[x * 3]).toBeGreaterThan(down[(x - 1) * 3]);
    expect(() => resizeLanczos(c, 9, 6, 0, 4)).toThrow(/invalid output size/);
  });
});

describe('decodeImage', () => {
  it('drops alpha without compositing and expands grey to RGB', async () => {
    const rgba = Buffer.from([10, 20, 30, 0, 40, 50, 60, 255]);
    const p = join(tmp, 'rgba.png');
    await sharp(rgba, { raw: { width: 2, height: 1, channels: 4 } }).png().toFile(p);
    const img = await decodeImage(p);
    expect([img.width, img.height]).toEqual([2, 1]);
    expect(Array.from(img.rgb)).toEqual([10, 20, 30, 40, 50, 60]);
    const g = join(tmp, 'grey.png');
    await sharp(Buffer.from([7, 200]), { raw: { width: 1, height: 2, channels: 1 } }).png().toFile(g);
    expect(Array.from((await decodeImage(g)).rgb)).toEqual([7, 7, 7, 200, 200, 200]);
    const n = rgbToNormalizedCHW({ width: 1, height: 1, rgb: new Uint8Array([0, 255, 128]) });
    expect(Array.from(n)).toEqual([-1, 1, Math.fround(Math.fround(Math.fround(128 / 255) - 0.5) / 0.5)]);
  });
  it('reports unreadable files clearly', async () => {
    const bad = join(tmp, 'bad.png');
    writeFileSync(bad, 'not an image');
    await expect(decodeImage(bad)).rejects.toThrow(/cannot read image .*bad\.png/);
    await expect(decodeImage(join(tmp, 'missing.jpg'))).rejects.toThrow(/cannot read image .*missing\.jpg/);
  });
});
