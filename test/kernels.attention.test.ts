// Flash attention against a float64 CPU reference: odd shapes, key masking (exclude and umT5's
// float32-min replacement), scale, relative / full bias, poisoned outputs, and a tiny forced binding
// limit that splits queries and keys into many windows (online-softmax state carried across dispatches).
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, type DType, type Tensor } from '../engine/index.ts';
import { flashAttention, type AttentionOptions, type AttentionVariant } from '../engine/ops/attention.ts';
import { verifyFixture } from '../model/reference/index.ts';
import '../model/reference/ops_attention.ts';
import { fixturesDir, randn, relL2 } from './helpers.ts';

const F32_MIN = -3.4028234663852886e38;

interface Case {
  B: number;
  Lq: number;
  Lk: number;
  N: number;
  D: number;
  kLens?: number[];
  scale?: number;
  maskMode?: 'exclude' | 'float32min';
  /** 'rel': [N, Lq+Lk-1] table; 'full': [N, Lq, Lk]. */
  bias?: 'rel' | 'full';
  seed?: number;
  /** Storage of q, k, v (the reference then uses the rounded values). */
  dtype?: 'f32' | 'f16' | 'bf16';
  tile?: { rows: number; keysPerLane: number };
}

interface Data {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  bias?: Float32Array;
}

function makeData(c: Case): Data {
  const s = c.seed ?? 1;
  const d: Data = {
    q: randn(c.B * c.Lq * c.N * c.D, s),
    k: randn(c.B * c.Lk * c.N * c.D, s + 1),
    v: randn(c.B * c.Lk * c.N * c.D, s + 2),
  };
  if (c.bias === 'rel') d.bias = randn(c.N * (c.Lq + c.Lk - 1), s + 3, 2);
  if (c.bias === 'full') d.bias = randn(c.N * c.Lq * c.Lk, s + 3, 2);
  return d;
}

/**
 * float64 reference. 'exclude': masked keys take no part (no key left: zeros). 'float32min': the
 * logit of a masked key is finfo(float32).min (umT5: q k + min rounds to min in float32), so a fully
 * masked row is a uniform average over all keys.
 */
function reference(c: Case, d: Data): Float64Array {
  const { B, Lq, Lk, N, D } = c;
  const scale = c.scale ?? 1 / Math.sqrt(D);
  const o = new Float64Array(B * Lq * N * D);
  const logit = new Float64Array(Lk);
  for (let b = 0; b < B; b++) {
    const valid = Math.min(Lk, c.kLens?.[b] ?? Lk);
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < Lq; i++) {
        const qo = ((b * Lq + i) * N + n) * D;
        const keys: number[] = [];
        for (let j = 0; j < Lk; j++) {
          const masked = j >= valid;
          if (masked && c.maskMode !== 'float32min') continue;
          keys.push(j);
          if (masked) {
            logit[j] = F32_MIN;
            continue;
          }
          const ko = ((b * Lk + j) * N + n) * D;
          let dot = 0;
          for (let x = 0; x < D; x++) dot += d.q[qo + x] * d.k[ko + x];
          let bias = 0;
          if (c.bias === 'rel') bias = d.bias![n * (Lq + Lk - 1) + j - i + Lq - 1];
          if (c.bias === 'full') bias = d.bias![(n * Lq + i) * Lk + j];
          logit[j] = dot * scale + bias;
        }
        if (keys.length === 0) continue; // zeros
        let m = -Infinity;
        for (const j of keys) m = Math.max(m, logit[j]);
        let sum = 0;
        const p = new Float64Array(Lk);
        for (const j of keys) sum += p[j] = Math.exp(logit[j] - m);
        for (const j of keys) {
          const vo = ((b * Lk + j) * N + n) * D;
          const w = p[j] / sum;
          for (let x = 0; x < D; x++) o[qo + x] += w * d.v[vo + x];
        }
      }
    }
  }
  return o;
}

/** Uploads as token rows [B*L, N, D] (what a tiny buffer limit can segment), viewed as [B, L, N, D]. */
function upload(e: Engine, data: Float32Array, B: number, L: number, N: number, D: number, label: string, dtype: DType = 'f32'): Tensor {
  return e.upload(data, [B * L, N, D], dtype, label).reshape([B, L, N, D]);
}

/** The values a tensor of this dtype holds (host rounding, read back from the device). */
async function rounded(e: Engine, data: Float32Array, dtype: DType): Promise<Float32Array> {
  if (dtype === 'f32') return data;
  return e.scope(async () => (await e.upload(data, [data.length], dtype).toArray()) as Float32Array);
}

async function runCase(e: Engine, c: Case, variant: AttentionVariant, poison = true): Promise<{ err: number; got: Float32Array; ref: Float64Array }> {
  const d = makeData(c);
  return e.scope(async () => {
    const dt = c.dtype ?? 'f32';
    const q = upload(e, d.q, c.B, c.Lq, c.N, c.D, 'q', dt);
    const k = upload(e, d.k, c.B, c.Lk, c.N, c.D, 'k', dt);
    const v = upload(e, d.v, c.B, c.Lk, c.N, c.D, 'v', dt);
    const opts: AttentionOptions = { kLens: c.kLens, scale: c.scale, maskMode: c.maskMode, variant, tile: c.tile };
    if (d.bias) opts.bias = e.upload(d.bias, c.bias === 'rel' ? [c.N, c.Lq + c.Lk - 1] : [c.N, c.Lq, c.Lk], 'f32', 'bias');
    if (poison) opts.out = e.upload(new Float32Array(d.q.length).fill(NaN), [c.B * c.Lq, c.N, c.D], 'f32', 'poisoned out');
    const o = flashAttention(e, q, k, v, opts);
    if (poison) expect(o).toBe(opts.out);
    const got = (await o.toArray()) as Float32Array;
    const ref = reference(c, { ...d, q: await rounded(e, d.q, dt), k: await rounded(e, d.k, dt), v: await rounded(e, d.v, dt) });
    return { err: relL2(got, ref), got, ref };
  });
}

function subgroupAvailable(e: Engine): boolean {
  const info = e.gpu.adapter.info as GPUAdapterInfo & { subgroupMinSize?: number };
  return e.gpu.hasSubgroups && (info.subgroupMinSize ?? 0) >= 8;
}

const shapes: Case[] = [
  { B: 1, Lq: 1, Lk: 1, N: 1, D: 64 },
  { B: 1, Lq: 1, Lk: 37, N: 3, D: 128 },
  { B: 2, Lq: 13, Lk: 1, N: 2, D: 40 },
  { B: 1, Lq: 17, Lk: 71, N: 2, D: 48 },
  { B: 2, Lq: 31, Lk: 23, N: 1, D: 56 },
  { B: 1, Lq: 7, Lk: 131, N: 2, D: 128, seed: 7 },
  { B: 2, Lq: 19, Lk: 29, N: 3, D: 64, kLens: [29, 11] },
  { B: 3, Lq: 5, Lk: 17, N: 2, D: 48, kLens: [0, 1, 16] },
  { B: 1, Lq: 11, Lk: 13, N: 2, D: 64, scale: 1 },
];

const umt5: Case[] = [
  // umT5 self-attention: scale 1, relative bias, masked keys replaced by float32 min; kLens 0 is a fully masked row.
  { B: 3, Lq: 23, Lk: 23, N: 2, D: 64, scale: 1, bias: 'rel', maskMode: 'float32min', kLens: [23, 9, 0], seed: 11 },
  { B: 1, Lq: 9, Lk: 41, N: 3, D: 40, scale: 1, bias: 'rel', maskMode: 'float32min', kLens: [40], seed: 12 },
  { B: 2, Lq: 6, Lk: 11, N: 2, D: 48, bias: 'full', maskMode: 'float32min', kLens: [5, 11], seed: 13 },
  { B: 2, Lq: 10, Lk: 7, N: 1, D: 56, bias: 'rel', kLens: [7, 3], seed: 14 },
];

describe.each([
  ['real limits', {}],
  ['4 KiB binding limit', { maxStorageBindingBytes: 4096, maxBufferBytes: 16384 }],
])('flashAttention (%s)', (limitName, limits) => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create(limits);
  });
  afterAll(async () => {
    await e.destroy();
  });

  const variants: AttentionVariant[] = ['subgroup', 'portable'];
  for (const variant of variants) {
    it(`${variant}: odd shapes, head dims 40..128, kLens, scale`, async (ctx) => {
      if (variant === 'subgroup' && !subgroupAvailable(e)) ctx.skip();
      for (const c of shapes) {
        const { err } = await runCase(e, c, variant);
        expect(err, JSON.stringify(c)).toBeLessThan(1e-5);
      }
      expect(e.liveTensors).toBe(0);
    });

    it(`${variant}: umT5 semantics (relative / full bias, float32-min masking, fully masked rows)`, async (ctx) => {
      if (variant === 'subgroup' && !subgroupAvailable(e)) ctx.skip();
      for (const c of umt5) {
        const { err } = await runCase(e, c, variant);
        expect(err, JSON.stringify(c)).toBeLessThan(1e-5);
      }
    });
  }

  it('f16 and bf16 q/k/v (f32 arithmetic and output)', async () => {
    const c: Case = { B: 2, Lq: 13, Lk: 37, N: 2, D: 48, kLens: [37, 20], seed: 41 };
    for (const variant of ['subgroup', 'portable'] as const) {
      if (variant === 'subgroup' && !subgroupAvailable(e)) continue;
      for (const dtype of ['f16', 'bf16'] as const) {
        // Exact math on the stored (rounded) values...
        const r = await runCase(e, { ...c, dtype }, variant);
        expect(r.err, `${variant} ${dtype}`).toBeLessThan(1e-5);
        // ...and the activation tolerance against the unrounded f32 inputs.
        if (dtype === 'f16') expect(relL2(r.got, reference(c, makeData(c)))).toBeLessThan(3e-3);
      }
    }
    expect(e.liveTensors).toBe(0);
  });

  it('the big subgroup tile (16 rows x 8 keys per lane, used for large problems)', async (ctx) => {
    if (!subgroupAvailable(e)) ctx.skip();
    const tile = { rows: 16, keysPerLane: 8 };
    for (const c of [
      { B: 2, Lq: 37, Lk: 131, N: 2, D: 64, kLens: [131, 70], seed: 51 },
      { B: 1, Lq: 1, Lk: 3, N: 2, D: 48, seed: 52 },
      { B: 2, Lq: 17, Lk: 67, N: 2, D: 56, seed: 53, kLens: [66, 1] },
    ] as Case[]) {
      const { err } = await runCase(e, { ...c, tile }, 'subgroup');
      expect(err, JSON.stringify(c)).toBeLessThan(1e-5);
    }
  });

  it('a fully masked row: zeros when excluded, the mean of V under float32-min masking', async () => {
    const base: Case = { B: 2, Lq: 3, Lk: 5, N: 1, D: 48, kLens: [0, 5] };
    const ex = await runCase(e, base, 'auto');
    expect(Array.from(ex.got.slice(0, 3 * 48))).toEqual(Array(3 * 48).fill(0));
    const fm = await runCase(e, { ...base, maskMode: 'float32min' }, 'auto');
    const d = makeData(base);
    for (let x = 0; x < 48; x++) {
      let mean = 0;
      for (let j = 0; j < 5; j++) mean += d.v[j * 48 + x] / 5;
      expect(fm.got[x]).toBeCloseTo(mean, 5);
    }
    expect(fm.err).toBeLessThan(1e-5);
  });

  it('3-D inputs [L, N, D] and a fresh output tensor', async () => {
    const c: Case = { B: 1, Lq: 29, Lk: 19, N: 2, D: 40, seed: 21 };
    const d = makeData(c);
    await e.scope(async () => {
      const o = flashAttention(e, e.upload(d.q, [29, 2, 40]), e.upload(d.k, [19, 2, 40]), e.upload(d.v, [19, 2, 40]));
      expect(o.shape).toEqual([29, 2, 40]);
      expect(relL2(await o.toArray(), reference(c, d))).toBeLessThan(1e-5);
      const o4 = flashAttention(e, upload(e, d.q, 1, 29, 2, 40, 'q'), upload(e, d.k, 1, 19, 2, 40, 'k'), upload(e, d.v, 1, 19, 2, 40, 'v'));
      expect(o4.shape).toEqual([1, 29, 2, 40]);
      expect(relL2(await o4.toArray(), reference(c, d))).toBeLessThan(1e-5);
    });
    expect(e.liveTensors).toBe(0);
  });

  it('rejects mismatched shapes, dtypes and bias layouts', () => {
    e.scope(() => {
      const q = e.empty([4, 2, 8]);
      const k = e.empty([5, 2, 8]);
      expect(() => flashAttention(e, q, k, e.empty([6, 2, 8]))).toThrow(/do not agree/);
      expect(() => flashAttention(e, q, k, e.empty([5, 2, 8], 'i32'))).toThrow(/expected f32/);
      expect(() => flashAttention(e, q, k, e.empty([5, 2, 8], 'f16'))).toThrow(/share one dtype/);
      expect(() => flashAttention(e, q, k, k, { bias: e.empty([2, 9]) })).toThrow(/bias/);
      expect(() => flashAttention(e, q, k, k, { kLens: [1, 2] })).toThrow(/kLens/);
    });
  });

  it('bundled op.attention fixtures', async () => {
    for (const name of ['op.attention.cross_nomask', 'op.attention.lq_ne_lk', 'op.attention.self_padded']) {
      const r = await verifyFixture(e, join(fixturesDir, name));
      expect(r.error, name).toBeUndefined();
      for (const o of r.outputs) expect(o.relL2, `${name} ${o.name}`).toBeLessThan(1e-5);
      expect(r.pass).toBe(true);
    }
    expect(e.liveTensors).toBe(0);
  });

  if (limitName !== 'real limits') {
    it('splits queries and keys into many windows (state carried across key windows)', async () => {
      // 2 heads x 64 dims = 512 bytes per token: 8 tokens per binding, so 37 keys take 5 key windows.
      const c: Case = { B: 2, Lq: 21, Lk: 37, N: 2, D: 64, kLens: [37, 30], seed: 31 };
      for (const variant of ['subgroup', 'portable'] as const) {
        if (variant === 'subgroup' && !subgroupAvailable(e)) continue;
        const before = e.stats.dispatches;
        const { err } = await runCase(e, c, variant);
        // At least 3 query windows x 4 key windows per batch element.
        expect(e.stats.dispatches - before).toBeGreaterThanOrEqual(2 * 3 * 4);
        expect(err).toBeLessThan(1e-5);
        const um = await runCase(e, { ...c, scale: 1, bias: 'rel', maskMode: 'float32min', kLens: [37, 0] }, variant);
        expect(um.err).toBeLessThan(1e-5);
        // A bias table larger than one binding (3 heads x 399 floats): dispatched head range by head range.
        const wide = await runCase(e, { B: 1, Lq: 100, Lk: 300, N: 3, D: 64, scale: 1, bias: 'rel', maskMode: 'float32min', kLens: [250], seed: 32 }, variant);
        expect(wide.err, variant).toBeLessThan(1e-5);
      }
    });
  }
});
