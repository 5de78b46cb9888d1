// conv3d: implicit-GEMM kernels against a float64 reference, Wan CausalConv3d padding and frame cache,
// every weight dtype, both kernel variants, poisoned outputs, and windows under a tiny binding limit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, type DType } from '../engine/index.ts';
import { conv3d, conv3dVariants, type Conv3dVariant } from '../engine/ops/conv3d.ts';
import { randn, relL2 } from './helpers.ts';

type T3 = [number, number, number];

interface Case {
  name: string;
  x: [number, number, number, number];
  w: [number, number, number, number, number];
  stride?: T3;
  padding?: T3;
  causal?: boolean;
  cacheFrames?: number;
  bias?: boolean;
}

/**
 * Float64 reference written from wan/modules/vae2_1.py CausalConv3d + nn.Conv3d: the input is
 * cat(cache, x) along T, padded with (2*pt - c) zero frames in front and none behind (causal; pt = 0
 * ignores the cache), or pt frames on both sides (plain); pw / ph zeros on both sides.
 */
function convRef(x: ArrayLike<number>, c: Case, w: ArrayLike<number>, bias: ArrayLike<number> | null, cache: ArrayLike<number> | null): { y: Float64Array; shape: number[] } {
  const [C, T, H, W] = c.x;
  const [Co, , kt, kh, kw] = c.w;
  const [st, sh, sw] = c.stride ?? [1, 1, 1];
  const [pt, ph, pw] = c.padding ?? [0, 0, 0];
  const tc = c.causal && pt > 0 ? (c.cacheFrames ?? 0) : 0;
  const front = c.causal ? 2 * pt - tc : pt;
  const back = c.causal ? 0 : pt;
  const frames = front + tc + T + back;
  // The padded input, materialised.
  const Hp = H + 2 * ph;
  const Wp = W + 2 * pw;
  const xp = new Float64Array(C * frames * Hp * Wp);
  for (let ci = 0; ci < C; ci++)
    for (let f = 0; f < tc + T; f++)
      for (let h = 0; h < H; h++)
        for (let ww = 0; ww < W; ww++) {
          const v = f < tc ? cache![((ci * tc + f) * H + h) * W + ww] : x[((ci * T + f - tc) * H + h) * W + ww];
          xp[((ci * frames + front + f) * Hp + h + ph) * Wp + ww + pw] = v;
        }
  const To = Math.floor((frames - kt) / st) + 1;
  const Ho = Math.floor((Hp - kh) / sh) + 1;
  const Wo = Math.floor((Wp - kw) / sw) + 1;
  const y = new Float64Array(Co * To * Ho * Wo);
  for (let n = 0; n < Co; n++)
    for (let a = 0; a < To; a++)
      for (let b = 0; b < Ho; b++)
        for (let q = 0; q < Wo; q++) {
          let s = bias ? bias[n] : 0;
          for (let ci = 0; ci < C; ci++)
            for (let dt = 0; dt < kt; dt++)
              for (let dh = 0; dh < kh; dh++)
                for (let dw = 0; dw < kw; dw++) {
                  s += w[(((n * C + ci) * kt + dt) * kh + dh) * kw + dw] * xp[((ci * frames + a * st + dt) * Hp + b * sh + dh) * Wp + q * sw + dw];
                }
          y[((n * To + a) * Ho + b) * Wo + q] = s;
        }
  return { y, shape: [Co, To, Ho, Wo] };
}

const CASES: Case[] = [
  { name: 'causal 3x3x3, no cache, prime sizes', x: [3, 5, 7, 11], w: [5, 3, 3, 3, 3], padding: [1, 1, 1], causal: true, bias: true },
  { name: 'causal 3x3x3, cache of 2 frames', x: [13, 3, 5, 7], w: [11, 13, 3, 3, 3], padding: [1, 1, 1], causal: true, cacheFrames: 2, bias: true },
  { name: 'causal 3x3x3, 1 frame, cache of 1 frame', x: [9, 1, 6, 5], w: [7, 9, 3, 3, 3], padding: [1, 1, 1], causal: true, cacheFrames: 1, bias: true },
  { name: 'causal 3x3x3, 1 frame, no cache', x: [4, 1, 5, 6], w: [3, 4, 3, 3, 3], padding: [1, 1, 1], causal: true },
  { name: 'causal 1x1x1 ignores the cache', x: [17, 2, 5, 3], w: [70, 17, 1, 1, 1], causal: true, cacheFrames: 2, bias: true },
  { name: 'time conv 3x1x1, causal, cache 2', x: [6, 2, 4, 5], w: [12, 6, 3, 1, 1], padding: [1, 0, 0], causal: true, cacheFrames: 2, bias: true },
  { name: 'time conv 3x1x1 stride 2, no padding', x: [5, 5, 3, 4], w: [5, 5, 3, 1, 1], stride: [2, 1, 1], bias: true },
  { name: '2-D 1x3x3 stride 2 (downsample)', x: [8, 3, 9, 12], w: [8, 8, 1, 3, 3], stride: [1, 2, 2], bias: true },
  { name: 'patch embedding 1x2x2 stride 1x2x2', x: [36, 3, 6, 8], w: [67, 36, 1, 2, 2], stride: [1, 2, 2], bias: true },
  { name: 'plain symmetric padding, stride 2 in time', x: [6, 4, 9, 9], w: [7, 6, 3, 3, 3], stride: [2, 1, 1], padding: [1, 1, 1], bias: true },
  { name: 'many output channels (several tiles)', x: [10, 2, 3, 5], w: [131, 10, 3, 3, 3], padding: [1, 1, 1], causal: true, bias: true },
  // >= 128 output positions: the subgroup kernel's tall tiles (32 positions, 12 or 10 channels per
  // lane) with a position tail and one padded channel.
  { name: 'tall tiles, 12 channels per lane', x: [5, 3, 9, 7], w: [95, 5, 3, 3, 3], padding: [1, 1, 1], causal: true, cacheFrames: 2, bias: true },
  { name: 'tall tiles, 10 channels per lane', x: [3, 2, 8, 9], w: [158, 3, 1, 3, 3], padding: [0, 1, 1], bias: true },
];

interface Prepared {
  x: Float32Array;
  w: Float32Array;
  bias: Float32Array | null;
  cache: Float32Array | null;
  cacheShape: number[];
}

function prepare(c: Case, seed: number): Prepared {
  const n = c.x.reduce((a, b) => a * b, 1);
  const nw = c.w.reduce((a, b) => a * b, 1);
  const tc = c.cacheFrames ?? 0;
  const cacheShape = [c.x[0], tc, c.x[2], c.x[3]];
  return {
    x: randn(n, seed),
    w: randn(nw, seed + 1, 1 / Math.sqrt(c.w[1] * c.w[2] * c.w[3] * c.w[4])),
    bias: c.bias ? randn(c.w[0], seed + 2) : null,
    cache: tc ? randn(cacheShape.reduce((a, b) => a * b, 1), seed + 3) : null,
    cacheShape,
  };
}

async function runCase(e: Engine, c: Case, dtype: DType, variant: Conv3dVariant, seed: number): Promise<{ err: number; dispatches: number }> {
  const p = prepare(c, seed);
  return e.scope(async () => {
    const w = e.upload(p.w, c.w, dtype, 'w');
    const wq = await w.toArray(); // the weight values the device holds (rounded for halves)
    const ref = convRef(p.x, c, wq, p.bias, p.cache);
    const out = e.upload(new Float32Array(ref.y.length).fill(NaN), ref.shape, 'f32', 'poisoned out');
    const before = e.stats.dispatches;
    const y = conv3d(e, e.upload(p.x, c.x, 'f32', 'x'), w, {
      bias: p.bias ? e.upload(p.bias, [c.w[0]], 'f32', 'bias') : undefined,
      stride: c.stride,
      padding: c.padding,
      causal: c.causal,
      cache: p.cache ? e.upload(p.cache, p.cacheShape, 'f32', 'cache') : undefined,
      out,
      variant,
    });
    const dispatches = e.stats.dispatches - before;
    expect(y).toBe(out);
    expect(y.shape).toEqual(ref.shape);
    const got = await y.toArray();
    expect(got.every(Number.isFinite)).toBe(true);
    return { err: relL2(got, ref.y), dispatches };
  });
}

describe.each([
  ['real limits', {}],
  ['4 KiB binding limit', { maxStorageBindingBytes: 4096, maxBufferBytes: 16384 }],
])('conv3d (%s)', (limitName, opts) => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create(opts);
  });
  afterAll(async () => {
    await e.destroy();
  });

  it('matches the float64 reference for every case, weight dtype and kernel variant', { timeout: 600_000 }, async () => {
    let worst = 0;
    let seed = 100;
    const dtypes: DType[] = ['f32', 'bf16', 'f16'];
    for (const variant of conv3dVariants(e)) {
      for (const [ci, c] of CASES.entries()) {
        for (const dtype of dtypes) {
          // The portable kernel (the fallback without subgroups) gets one dtype per case: it compiles
          // its own pipelines, and LLVM on lavapipe is slow to compile them.
          if (variant === 'portable' && conv3dVariants(e).length > 1 && dtype !== dtypes[ci % 3]) continue;
          const { err, dispatches } = await runCase(e, c, dtype, variant, seed++);
          worst = Math.max(worst, err);
          expect({ case: c.name, dtype, variant, err: err < 1e-5 }).toEqual({ case: c.name, dtype, variant, err: true });
          expect(dispatches).toBeGreaterThanOrEqual(2); // weight preparation + at least one conv window
        }
      }
    }
    console.log(`conv3d ${limitName}: worst rel L2 ${worst.toExponential(2)}`);
    expect(e.liveTensors).toBe(0);
  });

  it('accepts [1, C, T, H, W] and writes every element without bias', async () => {
    const c: Case = { name: 'batch 1', x: [4, 2, 5, 7], w: [6, 4, 3, 3, 3], padding: [1, 1, 1], causal: true };
    const p = prepare(c, 7);
    const ref = convRef(p.x, c, p.w, null, null);
    const y = conv3d(e, e.upload(p.x, [1, ...c.x]), e.upload(p.w, c.w), { padding: 1, causal: true });
    expect(y.shape).toEqual(ref.shape);
    expect(relL2(await y.toArray(), ref.y)).toBeLessThan(1e-5);
    y.dispose();
  });

  it('rejects a cache without causal mode and a cache longer than the causal padding', () => {
    const x = e.upload(new Float32Array(2 * 2 * 3 * 3), [2, 2, 3, 3]);
    const w = e.upload(new Float32Array(2 * 2 * 27), [2, 2, 3, 3, 3]);
    const cache3 = e.upload(new Float32Array(2 * 3 * 3 * 3), [2, 3, 3, 3]);
    expect(() => conv3d(e, x, w, { padding: 1, cache: cache3 })).toThrow(/causal/);
    expect(() => conv3d(e, x, w, { padding: 1, causal: true, cache: cache3 })).toThrow(/exceeds the causal padding/);
    for (const t of [x, w, cache3]) t.dispose();
  });
});

describe('conv3d windows under a 4 KiB binding limit', () => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create({ maxStorageBindingBytes: 4096, maxBufferBytes: 16384 });
  });
  afterAll(async () => {
    await e.destroy();
  });

  it('splits input channels (accumulating), output channels and output frames into windows', async () => {
    const cases: [Case, number][] = [
      // 16 input channels of 5x7x2 floats exceed a binding: two or more accumulated input groups.
      [{ name: 'input channel groups', x: [16, 2, 5, 7], w: [9, 16, 3, 3, 3], padding: [1, 1, 1], causal: true, cacheFrames: 2, bias: true }, 4],
      // One channel of 8 frames of 11x13 exceeds a binding: output frame groups with their input frames.
      [{ name: 'frame groups', x: [2, 8, 11, 13], w: [3, 2, 3, 3, 3], padding: [1, 1, 1], causal: true, cacheFrames: 1, bias: true }, 4],
      [{ name: 'frame groups, stride 2', x: [2, 9, 11, 12], w: [2, 2, 3, 3, 3], stride: [2, 2, 1], padding: [1, 1, 1], bias: true }, 3],
    ];
    let seed = 500;
    for (const [c, minDispatches] of cases) {
      for (const variant of conv3dVariants(e)) {
        const { err, dispatches } = await runCase(e, c, 'bf16', variant, seed++);
        expect({ case: c.name, variant, ok: err < 1e-5 }).toEqual({ case: c.name, variant, ok: true });
        expect(dispatches).toBeGreaterThanOrEqual(minDispatches);
      }
    }
  });

  it('says clearly when one output frame of one channel cannot fit', () => {
    const x = e.upload(new Float32Array(1 * 1 * 40 * 40), [1, 1, 40, 40]);
    const w = e.upload(new Float32Array(9), [1, 1, 1, 3, 3]);
    expect(() => conv3d(e, x, w, { padding: [0, 1, 1] })).toThrow(/does not fit a storage binding/);
    x.dispose();
    w.dispose();
  });
});
