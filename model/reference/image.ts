// Fixture kind `image.preprocess`: both image-conditioning paths on the fixture's PNG files.
import { join } from 'node:path';
import { decodeImage, rgbToNormalizedCHW } from '../../loaders/image.ts';
import type { Fixture } from '../../loaders/fixture.ts';
import { bestOutputSize, i2vLatentSize, preprocessI2vA14b, preprocessTi2v5b } from '../image/preprocess.ts';
import { compareOutput, type OutputCheck } from './compare.ts';
import { registerKind } from './registry.ts';

interface Crop {
  tensor: string;
  row: number;
  col: number;
  size: number;
}
interface Result {
  max_area: number;
  label: string;
  tensor?: string;
  crops?: Record<string, Crop>;
  sum?: number;
  [k: string]: unknown;
}
interface ImageCase {
  image: string;
  width: number;
  height: number;
  results: Result[];
  normalized?: string;
}

function cropOf(pixels: Float32Array, h: number, w: number, c: Crop): Float32Array {
  const out = new Float32Array(3 * c.size * c.size);
  for (let ch = 0; ch < 3; ch++)
    for (let y = 0; y < c.size; y++)
      for (let x = 0; x < c.size; x++) out[(ch * c.size + y) * c.size + x] = pixels[(ch * h + c.row + y) * w + c.col + x];
  return out;
}

function sum64(a: Float32Array): number {
  let s = 0;
  for (const v of a) s += v;
  return s;
}

/** Sizes as one exact check: the listed fields of every result. */
function sizeCheck(name: string, got: number[], ref: number[]): OutputCheck {
  return compareOutput(name, got, ref, 0, 'exact');
}

async function run(fx: Fixture): Promise<OutputCheck[]> {
  const cfg = fx.config as { path: string; images: ImageCase[] };
  const i2v = cfg.path === 'i2v-A14B';
  // i2v: bicubic in float32, max abs 1e-5; ti2v: Pillow's integer arithmetic, exact.
  const tol = i2v ? 1e-5 : 0;
  const checks: OutputCheck[] = [];
  const gotSizes: number[] = [];
  const refSizes: number[] = [];
  for (const ic of cfg.images) {
    const img = await decodeImage(join(fx.dir, ic.image));
    if (img.width !== ic.width || img.height !== ic.height) throw new Error(`${ic.image}: decoded ${img.width}x${img.height}, expected ${ic.width}x${ic.height}`);
    if (ic.normalized) checks.push(compareOutput(ic.normalized, rgbToNormalizedCHW(img), fx.output(ic.normalized).f64(), 0, 'exact'));
    for (const r of ic.results) {
      let pixels: Float32Array;
      let h: number;
      let w: number;
      if (i2v) {
        const p = preprocessI2vA14b(img, r.max_area);
        gotSizes.push(p.latH, p.latW, p.h, p.w);
        refSizes.push(r.lat_h as number, r.lat_w as number, r.h as number, r.w as number);
        ({ pixels, h, w } = p);
      } else {
        const p = preprocessTi2v5b(img, r.max_area);
        gotSizes.push(p.ow, p.oh, p.resizedW, p.resizedH, p.cropX, p.cropY);
        refSizes.push(r.ow as number, r.oh as number, r.resized_w as number, r.resized_h as number, r.crop_x1 as number, r.crop_y1 as number);
        ({ pixels, oh: h, ow: w } = p);
      }
      if (r.tensor) checks.push(compareOutput(r.tensor, pixels, fx.output(r.tensor).f64(), tol, 'exact'));
      for (const c of Object.values(r.crops ?? {})) checks.push(compareOutput(c.tensor, cropOf(pixels, h, w, c), fx.output(c.tensor).f64(), tol, 'exact'));
      if (r.sum !== undefined) checks.push(compareOutput(`${ic.image}.${r.label}.sum`, [sum64(pixels)], [r.sum], 1e-6));
    }
  }
  checks.unshift(sizeCheck('sizes', gotSizes, refSizes));
  // The size tables: many (w, h, area) triples.
  if (fx.has('out', 'size_table')) {
    const t = fx.output('size_table');
    const ref = t.f64();
    const cols = t.shape[1];
    const got: number[] = [];
    for (let r = 0; r < t.shape[0]; r++) {
      const [w, h, area] = [ref[r * cols], ref[r * cols + 1], ref[r * cols + 2]];
      const s = i2vLatentSize(w, h, area);
      got.push(w, h, area, s.latH, s.latW, s.h, s.w);
    }
    checks.push(compareOutput('size_table', got, ref, 0, 'exact'));
  }
  if (fx.has('out', 'best_output_size')) {
    const t = fx.output('best_output_size');
    const ref = t.f64();
    const cols = t.shape[1];
    const got: number[] = [];
    for (let r = 0; r < t.shape[0]; r++) {
      const [w, h, dw, dh, area] = Array.from(ref.subarray(r * cols, r * cols + 5));
      got.push(w, h, dw, dh, area, ...bestOutputSize(w, h, dw, dh, area));
    }
    checks.push(compareOutput('best_output_size', got, ref, 0, 'exact'));
  }
  return checks;
}

registerKind({ kind: 'image.preprocess', description: 'conditioning-image preprocessing (i2v-A14B bicubic, ti2v-5B LANCZOS)', run: (_e, fx) => run(fx) });
