// RoPE and the sinusoidal timestep embedding against float64 CPU references: Wan's 3-axis split at
// several head dims, per-sample grids with padded rows, built / host / device tables, windows that
// span samples under a tiny binding limit; host float64 and GPU f32 embeddings.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, type Tensor } from '../engine/index.ts';
import { ropeApply, ropeFreqs, ropeSplit, ropeTable, type GridSize } from '../engine/ops/rope.ts';
import { sinusoidalEmbedding, sinusoidalEmbeddingGpu, sinusoidalEmbeddingHost } from '../engine/ops/embedding.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { fixturesDir, randn, relL2, rng } from './helpers.ts';

/** rope_apply in float64, straight from the official formulation (per-axis theta^(-2i/dim_axis)). */
function ropeRef(x: ArrayLike<number>, B: number, L: number, N: number, D: number, grids: GridSize[]): Float64Array {
  const c = D / 2;
  const k = Math.floor(c / 3);
  const split = [c - 2 * k, k, k];
  const omega: number[] = [];
  const axis: number[] = [];
  split.forEach((pairs, a) => {
    for (let i = 0; i < pairs; i++) {
      omega.push(Math.pow(10000, -(2 * i) / (2 * pairs)));
      axis.push(a);
    }
  });
  const y = Float64Array.from(x);
  for (let b = 0; b < B; b++) {
    const [F, H, W] = grids[b];
    for (let s = 0; s < F * H * W; s++) {
      const pos = [Math.floor(s / (H * W)), Math.floor(s / W) % H, s % W];
      for (let n = 0; n < N; n++) {
        for (let j = 0; j < c; j++) {
          const i = ((b * L + s) * N + n) * D + 2 * j;
          const a = pos[axis[j]] * omega[j];
          const re = x[i];
          const im = x[i + 1];
          y[i] = re * Math.cos(a) - im * Math.sin(a);
          y[i + 1] = re * Math.sin(a) + im * Math.cos(a);
        }
      }
    }
  }
  return y;
}

function sinusoidRef(pos: ArrayLike<number>, dim: number): Float64Array {
  const half = dim / 2;
  const out = new Float64Array(pos.length * dim);
  for (let i = 0; i < pos.length; i++) {
    for (let j = 0; j < half; j++) {
      const a = pos[i] * 10000 ** (-j / half);
      out[i * dim + j] = Math.cos(a);
      out[i * dim + half + j] = Math.sin(a);
    }
  }
  return out;
}

function maxAbs(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(got[i] - ref[i]));
  return m;
}

/** Uploads as token rows so a tiny buffer limit can segment it, viewed as [B, L, N, D]. */
function upTokens(e: Engine, data: ArrayLike<number>, [B, L, N, D]: number[], label = 'x'): Tensor {
  const t = e.upload(data, [B * L, N, D], 'f32', label);
  const v = t.reshape([B, L, N, D]);
  t.dispose();
  return v;
}

describe('rope tables', () => {
  it('split and freqs match the official table in the fixtures', async () => {
    expect(ropeSplit(48)).toEqual([8, 8, 8]);
    expect(ropeSplit(56)).toEqual([10, 9, 9]);
    expect(ropeSplit(128)).toEqual([22, 21, 21]);
    for (const d of ['op.rope_apply.d48', 'op.rope_apply.d56', 'op.rope_apply.d128']) {
      const fx = await loadFixture(join(fixturesDir, d));
      const ref = fx.input('freqs').f64();
      const D = fx.config.head_dim;
      const mine = ropeFreqs(D, ref.length / D);
      expect(maxAbs(mine, ref)).toBeLessThan(1e-12);
    }
  });
});

const engines: [string, () => Promise<Engine>, boolean][] = [
  ['real limits', () => Engine.create(), false],
  ['tiny limits', () => Engine.create({ maxStorageBindingBytes: 4096, maxBufferBytes: 16384 }), true],
];

describe.each(engines)('ropeApply (%s)', (_name, make, tiny) => {
  let e: Engine;
  beforeAll(async () => {
    e = await make();
  });
  afterAll(async () => {
    await e.destroy();
  });

  // [B, L, N, D], grids: padded rows, two samples with different grids, exact fit, wide positions.
  const cases: [number[], GridSize[]][] = tiny
    ? [
        [[2, 21, 2, 64], [[3, 2, 3], [2, 3, 2]]],
        [[1, 40, 1, 128], [[2, 4, 5]]],
        [[3, 25, 4, 16], [[1, 3, 3], [1, 1, 25], [2, 2, 2]]],
      ]
    : [
        [[2, 21, 2, 48], [[3, 2, 3], [2, 3, 2]]],
        [[2, 21, 3, 56], [[3, 2, 3], [2, 3, 2]]],
        [[1, 24, 2, 128], [[2, 3, 4]]],
        [[1, 1040, 1, 128], [[1, 20, 52]]],
        [[2, 7, 5, 12], [[1, 1, 7], [0, 0, 0]]],
      ];
  for (const [shape, grids] of cases) {
    it(`[${shape}] grids ${JSON.stringify(grids)}: built, host and device tables`, async () => {
      const [B, L, N, D] = shape;
      const xd = randn(B * L * N * D, 7 + D + L, 1.5);
      const ref = ropeRef(xd, B, L, N, D, grids);
      const x = upTokens(e, xd, shape);
      if (tiny) expect(x.storage.segments.length).toBeGreaterThan(1);
      const maxPos = Math.max(...grids.flat());
      const device = ropeTable(e, D, Math.max(1, maxPos));
      for (const [label, freqs] of [
        ['built', undefined],
        ['host', ropeFreqs(D, tiny ? Math.max(1, maxPos) : 1024)],
        ['device', device],
      ] as const) {
        const out = upTokens(e, new Float32Array(xd.length).fill(NaN), shape, 'poisoned out');
        const got = await ropeApply(e, x, grids, freqs, { out }).toArray();
        expect(got.every(Number.isFinite), label).toBe(true);
        expect(relL2(got, ref), label).toBeLessThan(1e-6);
        // Padded rows are copied bit for bit.
        for (let b = 0; b < B; b++) {
          const seq = grids[b][0] * grids[b][1] * grids[b][2];
          for (let i = (b * L + seq) * N * D; i < (b + 1) * L * N * D; i++) expect(got[i]).toBe(xd[i]);
        }
        out.dispose();
      }
    });
  }

  it('f16 activations: f16 or f32 in, f16 or f32 out, rotation in f32', async () => {
    if (!e.gpu.hasF16) return;
    const [shape, grids] = cases[0];
    const [B, L, N, D] = shape;
    const xd = randn(B * L * N * D, 91, 1.5);
    const xh = e.upload(xd, shape, 'f16');
    const xhHost = Float32Array.from(await xh.toArray()); // xd rounded to f16
    const xf = upTokens(e, xd, shape);
    for (const [x, xin] of [[xh, xhHost], [xf, xd]] as const) {
      for (const outDtype of ['f16', 'f32'] as const) {
        const label = `${x.dtype} -> ${outDtype}`;
        const y = ropeApply(e, x, grids, undefined, { outDtype });
        expect(y.dtype, label).toBe(outDtype);
        const got = await y.toArray();
        // One f16 rounding: rel L2 about 2.8e-4; f32 throughout: 1e-6.
        expect(relL2(got, ropeRef(xin, B, L, N, D, grids)), label).toBeLessThan(outDtype === 'f16' ? 6e-4 : 1e-6);
        if (x === xh) expect(relL2(got, ropeRef(xd, B, L, N, D, grids)), `${label} reads f16`).toBeGreaterThan(1e-5);
        y.dispose();
      }
    }
    xh.dispose();
    xf.dispose();
  });

  it('rejects grids larger than L and tables too short', () => {
    const x = upTokens(e, new Float32Array(2 * 6 * 16), [2, 6, 1, 16]);
    expect(() => ropeApply(e, x, [[1, 2, 3], [1, 2, 4]])).toThrow(/8 tokens, more than L = 6/);
    expect(() => ropeApply(e, x, [[1, 2, 3]])).toThrow(/1 grid sizes for a batch of 2/);
    expect(() => ropeApply(e, x, [[1, 2, 3], [1, 1, 6]], ropeFreqs(16, 3))).toThrow(/need 6/);
  });
});

describe.each(engines)('sinusoidal embedding (%s)', (_name, make, tiny) => {
  let e: Engine;
  beforeAll(async () => {
    e = await make();
  });
  afterAll(async () => {
    await e.destroy();
  });

  it('host float64 path equals the float64 reference rounded to f32', async () => {
    const pos = [0, 1, 999, 1000, 500.5, 3.25, 937];
    const ref = sinusoidRef(pos, 256);
    expect(maxAbs(sinusoidalEmbeddingHost(pos, 256), ref)).toBe(0);
    const got = await sinusoidalEmbedding(e, pos, 256).toArray();
    for (let i = 0; i < ref.length; i++) expect(got[i]).toBe(Math.fround(ref[i]));
  });

  // Scheduler-like integer timesteps, fractional float32 timesteps, and a ti2v per-token vector
  // (0 on the first frame, t elsewhere), longer than one window under the tiny limit.
  const r = rng(5);
  const positionSets: [string, Float32Array, number][] = [
    ['integers 0..1000', Float32Array.from({ length: tiny ? 300 : 1001 }, (_, i) => (tiny ? Math.floor(r() * 1001) : i)), 256],
    ['float32 fractions', Float32Array.from({ length: 257 }, () => r() * 1000), 256],
    ['per-token ti2v vector', Float32Array.from({ length: tiny ? 1000 : 4096 }, (_, i) => (i < 64 ? 0 : 937)), 256],
    ['small odd half (dim 14)', Float32Array.from([0, 1, 2.5, 999, 77.125]), 14],
  ];
  for (const [label, pos, dim] of positionSets) {
    it(`GPU f32 path: ${label}`, async () => {
      const ref = sinusoidRef(pos, dim);
      const y = sinusoidalEmbeddingGpu(e, e.upload(pos, [pos.length]), dim);
      expect(y.shape).toEqual([pos.length, dim]);
      const got = await y.toArray();
      // The fixture allows 2e-4 for a float32 computation; compensated angles do far better.
      expect(relL2(got, ref)).toBeLessThan(1e-6);
      expect(maxAbs(got, ref)).toBeLessThan(1e-6);
    });
  }

  it('GPU path writes every element of a poisoned output and rejects odd dims', async () => {
    const n = tiny ? 37 : 75;
    const pos = randn(n, 3, 300);
    const out = e.upload(new Float32Array(n * 256).fill(NaN), [n, 256]);
    const got = await sinusoidalEmbeddingGpu(e, e.upload(pos, [n]), 256, { out }).toArray();
    expect(got.every(Number.isFinite)).toBe(true);
    expect(relL2(got, sinusoidRef(pos, 256))).toBeLessThan(1e-6);
    expect(() => sinusoidalEmbeddingGpu(e, e.upload([1], [1]), 255)).toThrow(/even/);
  });
});
