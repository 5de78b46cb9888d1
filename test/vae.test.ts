// The Wan2.1 / Wan2.2 video VAEs: their reference fixtures (through the fixture kinds), the layout
// kernels of engine/ops/vae.ts against float64 CPU references (real and tiny binding limits, poisoned
// outputs, tensors split across buffer segments), the chunk loop against a whole-sequence pass,
// bounded decode memory and input validation.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { command as benchVae, type VaeBenchRow } from '../bench/vae.ts';
import { Engine, type Tensor } from '../engine/index.ts';
import {
  concatFrames,
  copyFrames,
  interleaveFrames,
  sliceFrames,
  tailFrames,
  vaeAvgDown3d,
  vaeChannelsToTokens,
  vaeDupUp3d,
  vaeTokensToChannels,
  vaeUpsampleNearest2x,
  zeroPadBottomRight,
} from '../engine/ops/vae.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { openTensorSource } from '../loaders/open.ts';
import { verifyFixture } from '../model/reference/registry.ts';
import '../model/reference/vae.ts';
import { VAE_LATENT_STATS, WanVAE, patchify, unpatchify, type VaeVersion } from '../model/vae/index.ts';
import { officialVaeArchitecture, vaeDecodePeakBytes } from '../model/vae/memory.ts';
import { SyntheticVaeSource } from '../model/vae/synthetic.ts';
import { axisWeights, defaultVaeTile, tileStarts } from '../model/vae/tiling.ts';
import { fixturesDir, randn } from './helpers.ts';

const TINY = { maxStorageBindingBytes: 4096, maxBufferBytes: 16384 };
const vaeFixtures = readdirSync(fixturesDir).filter((d) => /^vae2_[12]_/.test(d)).sort();
const modelFixtures = vaeFixtures.filter((d) => !d.includes('_op_'));
const weightsOf = (v: VaeVersion, ext = 'pth') => join(fixturesDir, `vae${v.replace('.', '_')}_encode_video`, `Wan${v}_VAE.${ext}`);

/** Fills the pool with NaN buffers of these element counts, so the next tensors of those sizes start poisoned. */
function poison(e: Engine, ...counts: number[]): void {
  const ts = counts.map((n) => e.upload(new Float32Array(n).fill(Number.NaN), [n], 'f32', 'poison'));
  for (const t of ts) t.dispose();
}

function expectClose(got: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what = ''): void {
  expect(got.length, what).toBe(ref.length);
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(got[i])) throw new Error(`${what}: element ${i} is ${got[i]} (not written?)`);
    worst = Math.max(worst, Math.abs(got[i] - ref[i]));
  }
  expect(worst, what).toBeLessThanOrEqual(tol);
}

const read = async (t: Tensor) => (await t.toArray()) as Float32Array;
const idx = (s: readonly number[], c: number, t: number, h: number, w: number) => ((c * s[1] + t) * s[2] + h) * s[3] + w;

// ------------------------------------------------------------------ float64 references

function refAvgDown(x: Float32Array, s: number[], out: number, ft: number, fs: number): { data: Float64Array; shape: number[] } {
  const [C, T, H, W] = s;
  const pad = (ft - (T % ft)) % ft;
  const Tp = T + pad;
  const F = ft * fs * fs;
  const G = (C * F) / out;
  const shape = [out, Tp / ft, H / fs, W / fs];
  const data = new Float64Array(shape.reduce((a, b) => a * b, 1));
  // permuted channel p = ((c * ft + a) * fs + b) * fs + d samples padded x[c, t*ft + a, h*fs + b, w*fs + d]
  for (let o = 0; o < out; o++)
    for (let t = 0; t < shape[1]; t++)
      for (let h = 0; h < shape[2]; h++)
        for (let w = 0; w < shape[3]; w++) {
          let sum = 0;
          for (let g = 0; g < G; g++) {
            const p = o * G + g;
            const c = Math.floor(p / F);
            const a = Math.floor(p / (fs * fs)) % ft;
            const b = Math.floor(p / fs) % fs;
            const d = p % fs;
            const tp = t * ft + a - pad;
            if (tp >= 0) sum += x[idx(s, c, tp, h * fs + b, w * fs + d)];
          }
          data[idx(shape, o, t, h, w)] = sum / G;
        }
  return { data, shape };
}

function refDupUp(x: Float32Array, s: number[], out: number, ft: number, fs: number, first: boolean): { data: Float64Array; shape: number[] } {
  const [C, T, H, W] = s;
  const rep = (out * ft * fs * fs) / C;
  const drop = first ? ft - 1 : 0;
  const shape = [out, T * ft - drop, H * fs, W * fs];
  const data = new Float64Array(shape.reduce((a, b) => a * b, 1));
  // repeat_interleave channel j = c * rep + k; j viewed as (o, a, b, d); output (o, t*ft + a, h*fs + b, w*fs + d)
  for (let j = 0; j < C * rep; j++) {
    const c = Math.floor(j / rep);
    const o = Math.floor(j / (ft * fs * fs));
    const a = Math.floor(j / (fs * fs)) % ft;
    const b = Math.floor(j / fs) % fs;
    const d = j % fs;
    for (let t = 0; t < T; t++) {
      const to = t * ft + a - drop;
      if (to < 0) continue;
      for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) data[idx(shape, o, to, h * fs + b, w * fs + d)] = x[idx(s, c, t, h, w)];
    }
  }
  return { data, shape };
}

// ------------------------------------------------------------------ fixtures

describe('VAE fixtures (real limits)', () => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create();
  });
  afterAll(async () => {
    await e.destroy();
  });

  it.each(vaeFixtures.filter((d) => d.startsWith('vae2_1_op_resample') || d.startsWith('vae2_2_op_resample') || !d.includes('_op_')))('%s', async (dir) => {
    const r = await verifyFixture(e, join(fixturesDir, dir));
    expect(r.error).toBeUndefined();
    expect(r.outputs.length).toBeGreaterThan(0);
    for (const o of r.outputs) expect({ name: o.name, pass: o.pass, relL2: o.relL2 }).toEqual({ name: o.name, pass: true, relL2: o.relL2 });
    expect(e.liveTensors).toBe(0);
  });

  it('every model fixture compares all its intermediates', async () => {
    for (const dir of modelFixtures) {
      const fx = await loadFixture(join(fixturesDir, dir));
      expect(['vae2_1', 'vae2_2']).toContain(fx.kind);
      expect(fx.intermediateNames.length).toBeGreaterThan(5);
    }
  });

  it('the latent statistics are the official constants the fixtures used', async () => {
    for (const v of ['2.1', '2.2'] as const) {
      const fx = await loadFixture(join(fixturesDir, `vae${v.replace('.', '_')}_encode_video`));
      expect(VAE_LATENT_STATS[v].mean.map(Math.fround)).toEqual(fx.config.mean.map(Math.fround));
      const src = await openTensorSource(weightsOf(v));
      const vae = await WanVAE.load(e, src, v);
      await src.close();
      expect([...vae.invStd]).toEqual(fx.config.std_reciprocal_used.map(Math.fround));
      vae.dispose();
    }
  });
});

describe('VAE fixtures (32 KiB binding limit: windows and buffer segments)', () => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create({ maxStorageBindingBytes: 32768, maxBufferBytes: 131072 });
  });
  afterAll(async () => {
    await e.destroy();
  });

  it.each(['vae2_1_encode_video', 'vae2_2_decode_video', 'vae2_1_op_resample', 'vae2_2_op_resample'])('%s', async (dir) => {
    const r = await verifyFixture(e, join(fixturesDir, dir));
    expect(r.error).toBeUndefined();
    for (const o of r.outputs) expect({ name: o.name, pass: o.pass }).toEqual({ name: o.name, pass: true });
    expect(e.liveTensors).toBe(0);
  });
});

// ------------------------------------------------------------------ layout kernels

describe.each([
  ['real limits', {}],
  ['4 KiB binding limit', TINY],
] as const)('VAE layout kernels (%s)', (_name, limits) => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create(limits);
  });
  afterAll(async () => {
    await e.destroy();
  });

  it('frame copies: slice, concat, interleave, tail (the cache rule)', async () => {
    const s = [7, 5, 3, 11]; // odd sizes; 7 channels of 165 values
    const xh = randn(7 * 5 * 33, 1);
    const x = e.upload(xh, s);
    const at = (c: number, t: number, p: number) => xh[(c * 5 + t) * 33 + p];
    const frames = (data: Float32Array, shape: number[], pick: (c: number, t: number, p: number) => number) => {
      const ref = new Float64Array(data.length);
      for (let c = 0; c < shape[0]; c++) for (let t = 0; t < shape[1]; t++) for (let p = 0; p < 33; p++) ref[(c * shape[1] + t) * 33 + p] = pick(c, t, p);
      return ref;
    };
    poison(e, 7 * 2 * 33);
    const sl = sliceFrames(e, x, 2, 4);
    expectClose(await read(sl), frames(await read(sl), [7, 2], (c, t, p) => at(c, t + 2, p)), 0, 'slice');
    const cat = concatFrames(e, [sl, x]);
    expectClose(await read(cat), frames(await read(cat), [7, 7], (c, t, p) => (t < 2 ? at(c, t + 2, p) : at(c, t - 2, p))), 0, 'concat');
    // [2C', T] -> [C', 2T]: x has 7 channels, so use 6 of them through a 6-channel copy.
    const six = e.empty([6, 5, 3, 11], 'f32', 'six');
    copyFrames(e, x, six, { srcChannel0: 1, channels: 6, srcFrame0: 0, dstFrame0: 0, frames: 5 });
    poison(e, 3 * 10 * 33);
    const il = interleaveFrames(e, six);
    expect(il.shape).toEqual([3, 10, 3, 11]);
    expectClose(await read(il), frames(await read(il), [3, 10], (c, t, p) => at(1 + c + (t % 2) * 3, t >> 1, p)), 0, 'interleave');
    // tail: x has >= 2 frames -> its last 2; a 1-frame x after a cache -> [cache's last, x]; no cache -> x.
    const one = sliceFrames(e, x, 4, 5);
    const t1 = tailFrames(e, null, one, 2);
    expect(t1.shape).toEqual([7, 1, 3, 11]);
    const t2 = tailFrames(e, sl, one, 2);
    expectClose(await read(t2), frames(await read(t2), [7, 2], (c, t, p) => (t === 0 ? at(c, 3, p) : at(c, 4, p))), 0, 'tail after cache');
    const t3 = tailFrames(e, one, x, 2);
    expectClose(await read(t3), frames(await read(t3), [7, 2], (c, t, p) => at(c, t + 3, p)), 0, 'tail of x');
    expect(() => copyFrames(e, x, six, { srcFrame0: 4, dstFrame0: 0, frames: 2 })).toThrow(/exceed/);
    for (const t of [x, sl, cat, six, il, one, t1, t2, t3]) t.dispose();
    expect(e.liveTensors).toBe(0);
  });

  it('zero padding (right / bottom) and nearest 2x upsampling', async () => {
    const s = [5, 3, 4, 7];
    const xh = randn(5 * 3 * 28, 2);
    const x = e.upload(xh, s);
    poison(e, 5 * 3 * 5 * 8, 5 * 3 * 8 * 14);
    const p = zeroPadBottomRight(e, x, 1, 1);
    const u = vaeUpsampleNearest2x(e, x);
    const pr = new Float64Array(5 * 3 * 40);
    const ur = new Float64Array(5 * 3 * 112);
    for (let c = 0; c < 5; c++)
      for (let t = 0; t < 3; t++) {
        for (let h = 0; h < 5; h++) for (let w = 0; w < 8; w++) pr[idx([5, 3, 5, 8], c, t, h, w)] = h < 4 && w < 7 ? xh[idx(s, c, t, h, w)] : 0;
        for (let h = 0; h < 8; h++) for (let w = 0; w < 14; w++) ur[idx([5, 3, 8, 14], c, t, h, w)] = xh[idx(s, c, t, Math.floor(h / 2), Math.floor(w / 2))];
      }
    expectClose(await read(p), pr, 0, 'pad');
    expectClose(await read(u), ur, 0, 'upsample');
    for (const t of [x, p, u]) t.dispose();
  });

  it('AvgDown3D / DupUp3D: odd shapes, front padding, first-chunk drop, added in place', async () => {
    const cases: { x: number[]; out: number; ft: number; fs: number }[] = [
      { x: [6, 3, 4, 6], out: 12, ft: 2, fs: 2 }, // 3 frames: one zero frame in front
      { x: [6, 1, 2, 2], out: 6, ft: 2, fs: 2 }, // a first chunk: mean over [0, x0]
      { x: [9, 2, 6, 2], out: 12, ft: 2, fs: 2 }, // groups of 6 straddle the 8 sub-samples of a channel
      { x: [10, 3, 2, 6], out: 8, ft: 1, fs: 2 }, // groups of 5
    ];
    for (const c of cases) {
      const xh = randn(c.x.reduce((a, b) => a * b, 1), 3 + c.out);
      const x = e.upload(xh, c.x);
      const ref = refAvgDown(xh, c.x, c.out, c.ft, c.fs);
      poison(e, ref.data.length);
      const y = vaeAvgDown3d(e, x, { outChannels: c.out, factorT: c.ft, factorS: c.fs });
      expect(y.shape).toEqual(ref.shape);
      expectClose(await read(y), ref.data, 1e-6, `avgDown ${c.x}`);
      // In place onto a base: base + shortcut.
      const baseH = randn(ref.data.length, 9);
      const base = e.upload(baseH, ref.shape);
      vaeAvgDown3d(e, x, { outChannels: c.out, factorT: c.ft, factorS: c.fs, addTo: base });
      expectClose(await read(base), ref.data.map((v, i) => v + baseH[i]), 1e-5, `avgDown addTo ${c.x}`);
      for (const t of [x, y, base]) t.dispose();
    }
    const ups: { x: number[]; out: number; ft: number; fs: number; first: boolean }[] = [
      { x: [8, 3, 2, 3], out: 8, ft: 2, fs: 2, first: false },
      { x: [8, 1, 2, 3], out: 8, ft: 2, fs: 2, first: true },
      { x: [12, 2, 3, 1], out: 6, ft: 1, fs: 2, first: true },
      { x: [6, 2, 1, 3], out: 9, ft: 2, fs: 2, first: false }, // 12 repeats per input channel
    ];
    for (const c of ups) {
      const xh = randn(c.x.reduce((a, b) => a * b, 1), 5 + c.out);
      const x = e.upload(xh, c.x);
      const ref = refDupUp(xh, c.x, c.out, c.ft, c.fs, c.first);
      poison(e, ref.data.length);
      const y = vaeDupUp3d(e, x, { outChannels: c.out, factorT: c.ft, factorS: c.fs, firstChunk: c.first });
      expect(y.shape).toEqual(ref.shape);
      expectClose(await read(y), ref.data, 0, `dupUp ${c.x}`);
      const baseH = randn(ref.data.length, 11);
      const base = e.upload(baseH, ref.shape);
      vaeDupUp3d(e, x, { outChannels: c.out, factorT: c.ft, factorS: c.fs, firstChunk: c.first, addTo: base });
      expectClose(await read(base), ref.data.map((v, i) => v + baseH[i]), 1e-6, `dupUp addTo ${c.x}`);
      for (const t of [x, y, base]) t.dispose();
    }
    expect(() => vaeAvgDown3d(e, e.upload(new Float32Array(24), [2, 3, 2, 2]), { outChannels: 5, factorT: 2, factorS: 2 })).toThrow(/do not group/);
  });

  it('AvgDown3D / DupUp3D on the op fixtures', async () => {
    for (const name of ['vae2_2_op_avgdown3d', 'vae2_2_op_dupup3d']) {
      const fx = await loadFixture(join(fixturesDir, name));
      for (const c of fx.config.cases) {
        const xt = fx.input(c.input);
        const x = e.upload(xt.f32(), xt.shape);
        const o = { outChannels: c.out_channels, factorT: c.factor_t, factorS: c.factor_s, firstChunk: c.first_chunk };
        const y = name.includes('avg') ? vaeAvgDown3d(e, x, o) : vaeDupUp3d(e, x, o);
        expectClose(await read(y), fx.output(c.output).f64(), 1e-6, `${name} ${c.output}`);
        x.dispose();
        y.dispose();
      }
    }
  });

  it('channel <-> token transposes', async () => {
    const s = [13, 2, 3, 5];
    const xh = randn(13 * 30, 4);
    const x = e.upload(xh, s);
    poison(e, 30 * 6);
    const tok = vaeChannelsToTokens(e, x, 4, 6);
    const ref = new Float64Array(30 * 6);
    for (let n = 0; n < 30; n++) for (let c = 0; c < 6; c++) ref[n * 6 + c] = xh[(4 + c) * 30 + n];
    expectClose(await read(tok), ref, 0, 'to tokens');
    poison(e, 30 * 6);
    const back = vaeTokensToChannels(e, tok, [6, 2, 3, 5]);
    expectClose(await read(back), xh.subarray(4 * 30, 10 * 30), 0, 'to channels');
    for (const t of [x, tok, back]) t.dispose();
  });
});

it('gathers across buffer segment boundaries (a window copies the channels it straddles)', async () => {
  // 16 KiB buffers hold 65 channels of 63 values: DupUp output channel 32 reads input channels 64
  // and 65, which lie in different buffers.
  const e = await Engine.create({ maxStorageBindingBytes: 16384, maxBufferBytes: 16384 });
  try {
    const s = [80, 1, 7, 9];
    const xh = randn(80 * 63, 12);
    const x = e.upload(xh, s);
    expect(x.storage.segments.length).toBeGreaterThan(1);
    const y = vaeDupUp3d(e, x, { outChannels: 40, factorT: 1, factorS: 2 });
    expectClose(await read(y), refDupUp(xh, s, 40, 1, 2, false).data, 0, 'dupUp across segments');
    const a = vaeAvgDown3d(e, vaeUpsampleNearest2x(e, x), { outChannels: 80, factorT: 1, factorS: 2 });
    expectClose(await read(a), xh, 1e-6, 'avgDown(upsample(x)) == x across segments');
  } finally {
    await e.destroy();
  }
});

it('host patchify / unpatchify: the official channel order, exactly, and inverse of each other', async () => {
  const fx = await loadFixture(join(fixturesDir, 'vae2_2_op_patchify'));
  const x = fx.input('x');
  const x4 = fx.input('x4d');
  const y = fx.input('y');
  expectClose(patchify(x.f32(), x.shape.slice(1), 2).data, fx.output('patchify').f64(), 0, 'patchify');
  expectClose(patchify(x4.f32(), [x4.shape[1], 1, x4.shape[2], x4.shape[3]], 2).data, fx.output('patchify_4d').f64(), 0, 'patchify 4d');
  expectClose(unpatchify(y.f32(), y.shape.slice(1), 2).data, fx.output('unpatchify').f64(), 0, 'unpatchify');
  const r = randn(3 * 2 * 6 * 10, 8);
  const p = patchify(r, [3, 2, 6, 10], 2);
  expect(p.shape).toEqual([12, 2, 3, 5]);
  expect(unpatchify(p.data, p.shape, 2).data).toEqual(r);
});

// ------------------------------------------------------------------ the model beyond its fixtures

it('tile starts and blend weights: the ramps of every pixel sum to 1, one tile covers everything', () => {
  for (const t of [{ tile: 3, stride: 2 }, { tile: 32, stride: 24 }, { tile: 16, stride: 12 }, { tile: 5, stride: 5 }, { tile: 7, stride: 4 }]) {
    for (const size of [1, 2, 3, 5, 7, 12, 13, 16, 17, 31, 45, 90]) {
      const starts = tileStarts(size, t);
      expect(starts[0]).toBe(0);
      expect(starts[starts.length - 1] + t.tile >= size).toBe(true);
      if (starts.length > 1) expect(starts[starts.length - 2] + t.tile < size).toBe(true);
      for (const scale of [1, 8]) {
        const sum = new Float64Array(size * scale);
        starts.forEach((s0, k) => {
          const len = (Math.min(s0 + t.tile, size) - s0) * scale;
          axisWeights(starts, k, len, t, scale).forEach((wt, p) => (sum[s0 * scale + p] += wt));
        });
        for (let p = 0; p < sum.length; p++) expect(Math.abs(sum[p] - 1), `${JSON.stringify(t)} size ${size} scale ${scale} pixel ${p}`).toBeLessThan(1e-12);
      }
    }
  }
  expect(tileStarts(32, defaultVaeTile('2.1'))).toEqual([0]);
  expect(tileStarts(90, defaultVaeTile('2.1'))).toEqual([0, 24, 48, 72]); // 720 px: 4 tiles of 256 px
  expect(tileStarts(80, defaultVaeTile('2.2'))).toEqual([0, 12, 24, 36, 48, 60, 72]);
});

/**
 * Reference of a tiled decode: every tile decoded untiled (unclamped output from the trace), summed
 * in float64 with weight ramp_y * ramp_x from absolute pixel coordinates (a tile fades in over the
 * E = (tile - stride) * s pixels from its start, as diffusers' blend b[y] * (y / E), and out over the
 * E pixels from the next tile's start), then clamped.
 */
async function diffusersBlend(vae: WanVAE, latent: Float32Array, shape: number[], t: { tile: number; stride: number }): Promise<Float64Array> {
  const [z, Tl, h, w] = shape;
  const s = vae.config.stride[1];
  const E = (t.tile - t.stride) * s;
  const ys = tileStarts(h, t);
  const xs = tileStarts(w, t);
  const rows: { data: Float64Array; H: number; W: number }[][] = [];
  let C = 0;
  let F = 0;
  for (const i0 of ys) {
    const row: { data: Float64Array; H: number; W: number }[] = [];
    for (const j0 of xs) {
      const [i1, j1] = [Math.min(i0 + t.tile, h), Math.min(j0 + t.tile, w)];
      const crop = new Float32Array(z * Tl * (i1 - i0) * (j1 - j0));
      let k = 0;
      for (let c = 0; c < z * Tl; c++) for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) crop[k++] = latent[(c * h + i) * w + j];
      let out: { data: Float32Array; shape: number[] } | null = null;
      await vae.decode(crop, [z, Tl, i1 - i0, j1 - j0], { trace: (n, val) => void (n === 'dec_out_unclamped' && (out = val as { data: Float32Array; shape: number[] })) });
      const o = out!;
      [, C, F] = o.shape;
      row.push({ data: Float64Array.from(o.data), H: o.shape[3], W: o.shape[4] });
    }
    rows.push(row);
  }
  const H = h * s;
  const W = w * s;
  const acc = new Float64Array(C * F * H * W);
  const ramp = (p: number, starts: number[], k: number) => {
    const up = k > 0 ? Math.min(1, (p - starts[k] * s) / E) : 1;
    const down = k + 1 < starts.length ? Math.min(1, Math.max(0, 1 - (p - starts[k + 1] * s) / E)) : 1;
    return up * down;
  };
  for (let a = 0; a < ys.length; a++)
    for (let b = 0; b < xs.length; b++) {
      const tb = rows[a][b];
      for (let cf = 0; cf < C * F; cf++)
        for (let y = 0; y < tb.H; y++)
          for (let x = 0; x < tb.W; x++) {
            const Y = ys[a] * s + y;
            const X = xs[b] * s + x;
            acc[(cf * H + Y) * W + X] += ramp(Y, ys, a) * ramp(X, xs, b) * tb.data[(cf * tb.H + y) * tb.W + x];
          }
    }
  return acc.map((v) => Math.min(1, Math.max(-1, v)));
}

describe('vaeDecodePeakBytes', () => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create();
  });
  afterAll(async () => {
    await e.destroy();
  });

  // Reduced widths (synthetic weights), 3 latent frames (a steady chunk): the estimate replays the
  // decoder's allocations with the pool's size classes; measured equal at every size tried here.
  it.each([
    { v: '2.1' as const, enc: 16, dec: 16, px: [72, 40], dtype: 'f32' as const, tile: undefined },
    { v: '2.2' as const, enc: 16, dec: 32, px: [64, 32], dtype: 'bf16' as const, tile: undefined },
    { v: '2.1' as const, enc: 16, dec: 16, px: [96, 56], dtype: 'f32' as const, tile: { tile: 5, stride: 3 } },
  ])('$v at width $enc/$dec, $dtype, tile $tile: the estimate is the measured peak', async ({ v, enc, dec, px, dtype, tile }) => {
    const architecture = { ...officialVaeArchitecture(v), encoderDim: enc, decoderDim: dec };
    const vae = await WanVAE.load(e, new SyntheticVaeSource(v, architecture), v, { dtype });
    try {
      const s = vae.config.stride[1];
      const shape = [vae.config.zDim, 3, px[1] / s, px[0] / s];
      e.pool.resetPeaks();
      const base = e.memory().liveBytes;
      await vae.decode(randn(shape.reduce((a, b) => a * b, 1), 60), shape, { tile });
      const measured = e.memory().peakLiveBytes;
      const est = vaeDecodePeakBytes(v, px[0], px[1], { architecture, dtype, tile, maxBufferBytes: e.gpu.maxBufferBytes });
      expect(est.weightBytes).toBe(base); // only the weights are live between calls
      console.log(`Wan${v} ${enc}/${dec} ${px.join('x')} ${dtype}${tile ? ' tiled' : ''}: estimate ${est.peakBytes} B (at ${est.at}), measured ${measured} B`);
      expect(Math.abs(est.peakBytes / measured - 1)).toBeLessThan(0.02);
    } finally {
      vae.dispose();
      e.pool.trim();
    }
  });

  it('720p: tiling bounds the activations, the weights stay', () => {
    const a = vaeDecodePeakBytes('2.1', 1280, 720);
    const b = vaeDecodePeakBytes('2.1', 1280, 720, { tile: true });
    expect(b.tiles).toBe(28);
    expect(b.tile).toEqual([32, 32]);
    expect(b.weightBytes).toBe(a.weightBytes);
    expect(b.peakBytes).toBeLessThan(a.peakBytes / 5);
    expect(vaeDecodePeakBytes('2.2', 1280, 704, { dtype: 'bf16' }).weightBytes).toBeLessThan(vaeDecodePeakBytes('2.2', 1280, 704).weightBytes);
    expect(() => vaeDecodePeakBytes('2.2', 1280, 712)).toThrow(/not divisible by the Wan2.2 VAE stride 16/);
  });
});

describe('WanVAE', () => {
  let e: Engine;
  const vaes = new Map<VaeVersion, WanVAE>();
  /** Tensors the loaded models hold (their weights): what must be live between calls. */
  let weightTensors = 0;
  beforeAll(async () => {
    e = await Engine.create();
    for (const v of ['2.1', '2.2'] as const) {
      const src = await openTensorSource(weightsOf(v));
      vaes.set(v, await WanVAE.load(e, src, v));
      await src.close();
    }
    weightTensors = e.liveTensors;
  });
  afterAll(async () => {
    for (const v of vaes.values()) v.dispose();
    await e.destroy();
  });

  it('infers the architecture from the weights', () => {
    expect(vaes.get('2.1')!.config).toEqual({ version: '2.1', zDim: 16, encoderDim: 8, decoderDim: 8, patch: 1, stride: [4, 8, 8] });
    expect(vaes.get('2.2')!.config).toEqual({ version: '2.2', zDim: 48, encoderDim: 4, decoderDim: 6, patch: 2, stride: [4, 16, 16] });
  });

  it.each(['2.1', '2.2'] as const)('%s: the chunk loop equals one whole-sequence pass (encode and decode)', async (v) => {
    const vae = vaes.get(v)!;
    const s = vae.config.stride[1];
    const video = randn(3 * 9 * 2 * s * 3 * s, 21).map((t) => Math.tanh(t));
    const shape = [3, 9, 2 * s, 3 * s];
    const progress: number[][] = [];
    const a = await vae.encode(video, shape, { onProgress: (d, n) => progress.push([d, n]) });
    expect(progress).toEqual([[1, 3], [2, 3], [3, 3]]);
    const b = await vae.encode(video, shape, { wholeSequence: true });
    expect(a.shape).toEqual([vae.config.zDim, 3, 2, 3]);
    expectClose(a.latent, b.latent, 1e-5 * Math.max(...b.latent.map(Math.abs)), 'encode');
    const latent = randn(vae.config.zDim * 4 * 2 * 3, 22);
    const c = await vae.decode(latent, [vae.config.zDim, 4, 2, 3]);
    const d = await vae.decode(latent, [vae.config.zDim, 4, 2, 3], { wholeSequence: true });
    expect(c.shape).toEqual([3, 13, 2 * s, 3 * s]);
    expectClose(c.video, d.video, 1e-5, 'decode');
    expect(c.video.every((x) => x >= -1 && x <= 1)).toBe(true);
    expect(e.liveTensors).toBe(weightTensors);
  });

  it.each(['2.1', '2.2'] as const)('%s: decode memory does not grow with the number of frames', async (v) => {
    const vae = vaes.get(v)!;
    const z = vae.config.zDim;
    const peak = async (frames: number, wholeSequence = false) => {
      const base = e.memory().liveBytes;
      e.pool.resetPeaks();
      await vae.decode(randn(z * frames * 2 * 3, 30 + frames), [z, frames, 2, 3], { wholeSequence });
      return e.memory().peakLiveBytes - base;
    };
    const two = await peak(2);
    const six = await peak(6);
    const wholeSix = await peak(6, true);
    // One latent frame's activations plus the 2-frame caches either way; the whole pass holds them all.
    expect(six / two).toBeLessThan(1.25);
    expect(wholeSix / six).toBeGreaterThan(1.5);
    console.log(`Wan${v} tiny decode peak above weights: 2 frames ${two} B, 6 frames ${six} B, 6 frames whole-sequence ${wholeSix} B`);
  });

  it.each(['2.1', '2.2'] as const)('%s: tiled decode: exactly the untiled one under one tile, else the blend of the tiles decoded one by one', async (v) => {
    const vae = vaes.get(v)!;
    const s = vae.config.stride[1];
    const fx = await loadFixture(join(fixturesDir, `vae${v.replace('.', '_')}_decode_video`));
    const cases = [
      { what: 'fixture latent', latent: fx.input('latent').f32(), shape: fx.input('latent').shape },
      { what: 'random latent', latent: randn(vae.config.zDim * 2 * 5 * 7, 40), shape: [vae.config.zDim, 2, 5, 7] },
    ];
    for (const { what, latent, shape } of cases) {
      const plain = await vae.decode(latent, shape);
      // One tile covering the latent: the untiled decode bit for bit.
      const one = await vae.decode(latent, shape, { tile: { tile: Math.max(shape[2], shape[3]), stride: Math.max(shape[2], shape[3]) } });
      expect(one.shape).toEqual(plain.shape);
      expect(Buffer.from(one.video.buffer).equals(Buffer.from(plain.video.buffer)), `${v} ${what}: one tile`).toBe(true);
      // Overlapping tiles: the blend (float64, in diffusers' order) of the tiles decoded one by one.
      const t = { tile: 3, stride: 2 };
      const progress: number[][] = [];
      const tiled = await vae.decode(latent, shape, { tile: t, onProgress: (d, n) => progress.push([d, n]) });
      const ref = await diffusersBlend(vae, latent, shape, t);
      const ys = tileStarts(shape[2], t);
      const xs = tileStarts(shape[3], t);
      expect(progress.length).toBe(ys.length * xs.length * shape[1]);
      expect(progress[progress.length - 1]).toEqual([progress.length, progress.length]);
      expectClose(tiled.video, ref, 2e-6, `${v} ${what}: tiled vs blended tiles`);
      let d2 = 0;
      let r2 = 0;
      for (let i = 0; i < plain.video.length; i++) {
        d2 += (tiled.video[i] - plain.video[i]) ** 2;
        r2 += plain.video[i] ** 2;
      }
      // Not bounded here: the middle attention block is global per frame, so with the random tiny
      // weights every pixel changes (README: numbers); the blend itself is checked above.
      console.log(`Wan${v} ${what} [${shape}] tile 3 stride 2 (${ys.length * xs.length} tiles, ${s} px blended): rel L2 to untiled ${Math.sqrt(d2 / r2).toExponential(2)}`);
      expect(d2).toBeGreaterThan(0);
    }
    expect(e.liveTensors).toBe(weightTensors);
  });

  it.each(['2.1', '2.2'] as const)('%s: tiled encode: exactly the untiled one under one tile, else the latent blend of the tiles encoded one by one', async (v) => {
    const vae = vaes.get(v)!;
    const s = vae.config.stride[1];
    const shape = [3, 5, 5 * s, 7 * s];
    const video = randn(shape.reduce((a, b) => a * b, 1), 50).map((x) => Math.tanh(x));
    const plain = await vae.encode(video, shape);
    const one = await vae.encode(video, shape, { tile: { tile: 7, stride: 7 } });
    expect(Buffer.from(one.latent.buffer).equals(Buffer.from(plain.latent.buffer)), `${v}: one tile`).toBe(true);
    const t = { tile: 3, stride: 2 };
    const progress: number[][] = [];
    const tiled = await vae.encode(video, shape, { tile: t, onProgress: (d, n) => progress.push([d, n]) });
    expect(tiled.shape).toEqual(plain.shape);
    const [z, Tl, h, w] = plain.shape;
    const ys = tileStarts(h, t);
    const xs = tileStarts(w, t);
    expect(progress.length).toBe(ys.length * xs.length * Tl);
    expect(progress[progress.length - 1]).toEqual([progress.length, progress.length]);
    // float64 reference: each pixel crop encoded untiled, summed with ramp weights (overlap 1 latent pixel).
    const E = t.tile - t.stride;
    const ramp = (p: number, starts: number[], k: number) => (k > 0 ? Math.min(1, (p - starts[k]) / E) : 1) * (k + 1 < starts.length ? Math.min(1, Math.max(0, 1 - (p - starts[k + 1]) / E)) : 1);
    const ref = new Float64Array(plain.latent.length);
    for (let a = 0; a < ys.length; a++)
      for (let b = 0; b < xs.length; b++) {
        const [i0, i1, j0, j1] = [ys[a], Math.min(ys[a] + t.tile, h), xs[b], Math.min(xs[b] + t.tile, w)];
        const [th, tw] = [(i1 - i0) * s, (j1 - j0) * s];
        const crop = new Float32Array(3 * shape[1] * th * tw);
        let k = 0;
        for (let cf = 0; cf < 3 * shape[1]; cf++) for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) crop[k++] = video[(cf * shape[2] + i0 * s + y) * shape[3] + j0 * s + x];
        const part = await vae.encode(crop, [3, shape[1], th, tw]);
        for (let cf = 0; cf < z * Tl; cf++)
          for (let y = i0; y < i1; y++) for (let x = j0; x < j1; x++) ref[(cf * h + y) * w + x] += ramp(y, ys, a) * ramp(x, xs, b) * part.latent[(cf * (i1 - i0) + y - i0) * (j1 - j0) + x - j0];
      }
    expectClose(tiled.latent, ref, 1e-5 * Math.max(...ref.map(Math.abs)), `${v}: tiled encode vs blended tiles`);
    let d2 = 0;
    let r2 = 0;
    for (let i = 0; i < ref.length; i++) {
      d2 += (tiled.latent[i] - plain.latent[i]) ** 2;
      r2 += plain.latent[i] ** 2;
    }
    console.log(`Wan${v} encode [${shape}] tile 3 stride 2 (${ys.length * xs.length} tiles): rel L2 to untiled ${Math.sqrt(d2 / r2).toExponential(2)}`);
    expect(d2).toBeGreaterThan(0);
    expect(e.liveTensors).toBe(weightTensors);
  });

  it('bf16 safetensors weights decode like the float32 .pth (the values are bf16-exact)', async () => {
    const fx = await loadFixture(join(fixturesDir, 'vae2_2_decode_video'));
    const z = fx.input('latent');
    const src = await openTensorSource(weightsOf('2.2', 'safetensors'));
    const st = await WanVAE.load(e, src, '2.2', { dtype: 'bf16' });
    await src.close();
    try {
      const a = await st.decode(z.f32(), z.shape);
      const b = await vaes.get('2.2')!.decode(z.f32(), z.shape);
      expectClose(a.video, b.video, 1e-5, 'bf16 vs f32 weights');
    } finally {
      st.dispose();
    }
  });

  it('rejects bad shapes and mismatched checkpoints with clear messages', async () => {
    const v21 = vaes.get('2.1')!;
    const v22 = vaes.get('2.2')!;
    const vid = (s: number[]) => new Float32Array(s.reduce((a, b) => a * b, 1));
    await expect(v21.encode(vid([4, 1, 8, 8]), [4, 1, 8, 8])).rejects.toThrow(/not \[3, T, H, W\]/);
    await expect(v21.encode(vid([3, 6, 8, 8]), [3, 6, 8, 8])).rejects.toThrow(/1 \+ 4n frames/);
    await expect(v21.encode(vid([3, 1, 12, 8]), [3, 1, 12, 8])).rejects.toThrow(/not divisible by the Wan2.1 VAE stride 8/);
    await expect(v22.encode(vid([3, 1, 8, 16]), [3, 1, 8, 16])).rejects.toThrow(/stride 16/);
    await expect(v21.encode(vid([3, 1, 8, 8]), [3, 1, 8, 9])).rejects.toThrow(/192 values for shape \[3,1,8,9\]/);
    await expect(v21.encode(vid([3, 1, 8, 8]), [3, 1, 8])).rejects.toThrow(/not \[C, T, H, W\]/);
    await expect(v22.decode(vid([16, 1, 2, 2]), [16, 1, 2, 2])).rejects.toThrow(/not \[48, T, h, w\]/);
    await expect(v21.decode(vid([16, 0, 2, 2]), [16, 0, 2, 2])).rejects.toThrow(/positive integer sizes/);
    const src = await openTensorSource(weightsOf('2.1'));
    try {
      await expect(WanVAE.load(e, src, '2.2')).rejects.toThrow(/not a Wan2.2 VAE .*looks like a Wan2.1 VAE/);
      await expect(WanVAE.load(e, src, '2.3' as VaeVersion)).rejects.toThrow(/version must be/);
    } finally {
      await src.close();
    }
    expect(e.liveTensors).toBe(weightTensors);
  });
});

it('npm run bench -- vae: --json rows (real Wan2.1 width, one small size; PyTorch skipped without a checkout)', { timeout: 120_000 }, async () => {
  const lines: string[] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((s: unknown) => void lines.push(String(s)));
  try {
    expect(await benchVae(['--sizes', '2.1:16x8', '--frames', '2', '--wan-repo', '/nonexistent', '--json'])).toBe(0);
  } finally {
    spy.mockRestore();
  }
  expect(lines.length).toBe(1);
  const out = JSON.parse(lines[0]) as { rows: VaeBenchRow[]; note?: string };
  expect(out.note).toMatch(/not an official Wan2.2 checkout/);
  expect(out.rows.length).toBe(1);
  const r = out.rows[0];
  expect(r).toMatchObject({ version: '2.1', width: 16, height: 8, latent: [16, 2, 1, 2], frames: 5 });
  expect(r.seconds).toBeGreaterThan(0);
  expect(r.secondsPerFrame).toBeCloseTo(r.seconds / 5, 10);
  expect(r.peakBytes).toBeGreaterThan(r.estimatedPeakBytes * 0.9); // 2 latent frames: a little under the steady estimate
  expect(r.peakBytes).toBeLessThanOrEqual(r.estimatedPeakBytes);
  expect(r.ratio).toBeUndefined();
  expect(await benchVae(['--sizes', '2.3:16x16'])).toBe(2);
});
