// Linear layers and batched products against a float64 CPU reference: every kernel variant, every
// weight dtype, odd shapes (M = 1, primes, odd K with packed halves, tails), fused epilogues, f16
// activations, poisoned outputs, a tiny forced binding limit, the autotuner and the op.linear fixtures.
// On lavapipe most of the time of a first run is shader compilation (Mesa caches it on disk), so the
// tests that compile every variant get a long timeout; with a warm cache the file runs in seconds.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Engine, bf16BitsToF32, f32ToBf16Bits, type Tensor } from '../engine/index.ts';
import { linear, linearVariantFor, linearVariants, matmul, tuneLinear, type LinearOptions } from '../engine/ops/matmul.ts';
import { cachedVariant, storeVariant, tuneVariant } from '../engine/tuning.ts';
import { verifyFixture } from '../model/reference/registry.ts';
import '../model/reference/ops_linear.ts';
import { fixturesDir, randn, relL2 } from './helpers.ts';

vi.setConfig({ testTimeout: 600_000 });

type WDtype = 'bf16' | 'f16' | 'f32';

const f16dv = new DataView(new ArrayBuffer(2));
function roundF16(v: number): number {
  setFloat16(f16dv, 0, v, true);
  return getFloat16(f16dv, 0, true);
}

/** The values a tensor of `dtype` actually holds after upload. */
function representable(xs: Float32Array, dtype: WDtype | 'f16'): Float64Array {
  const r = new Float64Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    r[i] = dtype === 'bf16' ? bf16BitsToF32(f32ToBf16Bits(xs[i])) : dtype === 'f16' ? roundF16(xs[i]) : Math.fround(xs[i]);
  }
  return r;
}

const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
const silu = (v: number) => v / (1 + Math.exp(-v));

interface RefOpts {
  bias?: Float64Array;
  act?: 'gelu_tanh' | 'silu';
  res?: Float64Array;
  gate?: Float64Array; // [G, N]
}

/** out = res + act(x·wᵀ + bias) * gate, in float64. */
function refLinear(x: Float64Array, w: Float64Array, M: number, N: number, K: number, o: RefOpts = {}): Float64Array {
  const y = new Float64Array(M * N);
  const G = o.gate ? o.gate.length / N : 1;
  for (let m = 0; m < M; m++) {
    const g = Math.floor(m / (M / G));
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      if (o.bias) s += o.bias[n];
      if (o.act === 'gelu_tanh') s = gelu(s);
      if (o.act === 'silu') s = silu(s);
      if (o.res) s = o.res[m * N + n] + s * (o.gate ? o.gate[g * N + n] : 1);
      y[m * N + n] = s;
    }
  }
  return y;
}

function nanTensor(e: Engine, shape: number[], dtype: 'f32' | 'f16' = 'f32'): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return e.upload(new Float32Array(n).fill(NaN), shape, dtype, 'poisoned out');
}

function expectAllFinite(got: ArrayLike<number>, what: string): void {
  let bad = 0;
  for (let i = 0; i < got.length; i++) if (!Number.isFinite(got[i])) bad++;
  expect(bad, `${what}: ${bad} non-finite outputs (unwritten poisoned elements?)`).toBe(0);
}

let seed = 1000;

/** Runs one linear case against the reference; returns relL2. */
async function runCase(
  e: Engine,
  M: number,
  N: number,
  K: number,
  wd: WDtype,
  opts: { variant?: string; lead?: number[]; bias?: boolean; act?: 'gelu_tanh' | 'silu'; residual?: boolean; gateRows?: number; inPlace?: boolean } = {},
): Promise<number> {
  return e.scope(async () => {
    const xs = randn(M * K, seed++, 1);
    const ws = randn(N * K, seed++, 0.2);
    const lead = opts.lead ?? [M];
    const x = e.upload(xs, [...lead, K], 'f32', 'x');
    const w = e.upload(ws, [N, K], wd, 'w');
    const ref: RefOpts = { act: opts.act };
    const lo: LinearOptions = { variant: opts.variant, activation: opts.act };
    if (opts.bias) {
      const b = randn(N, seed++, 0.5);
      ref.bias = representable(b, 'f32');
      lo.bias = e.upload(b, [N], 'f32', 'bias');
    }
    let out: Tensor;
    if (opts.residual) {
      const r = randn(M * N, seed++, 1);
      ref.res = representable(r, 'f32');
      const rt = e.upload(r, [...lead, N], 'f32', 'residual');
      let gt: Tensor | undefined;
      if (opts.gateRows) {
        const g = randn(opts.gateRows * N, seed++, 1);
        ref.gate = representable(g, 'f32');
        gt = e.upload(g, [opts.gateRows, 1, N], 'f32', 'gate');
      }
      lo.residual = { x: rt, gate: gt };
      out = opts.inPlace ? rt : nanTensor(e, [...lead, N]);
    } else {
      out = nanTensor(e, [...lead, N]);
    }
    lo.out = out;
    const y = linear(e, x, w, lo);
    expect(y).toBe(out);
    expect(y.shape).toEqual([...lead, N]);
    const got = await y.toArray();
    expectAllFinite(got, `${M}x${N}x${K} ${wd}`);
    return relL2(got, refLinear(representable(xs, 'f32'), representable(ws, wd), M, N, K, ref));
  });
}

describe('linear on the adapter limits', () => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create();
  });
  afterAll(async () => {
    await e.destroy();
  });

  it('has a portable variant and, with fixed-size subgroups, the subgroup variants', () => {
    const names = linearVariants(e);
    expect(names.some((n) => n.startsWith('tiled'))).toBe(true);
    const info = (e.gpu.adapter as any).info ?? {};
    const fixedLanes = info.subgroupMinSize === info.subgroupMaxSize ? info.subgroupMinSize : 0;
    // Subgroup variants: exactly when the adapter runs fixed 8- or 16-lane subgroups (lavapipe: 8).
    expect(names.some((n) => n.startsWith('sg'))).toBe(e.gpu.hasSubgroups && (fixedLanes === 8 || fixedLanes === 16));
  });

  // Every variant, every weight dtype, odd shapes: M = 1, primes with odd K (rows of a packed
  // weight start mid-word), N not a multiple of any tile, aligned K with tails in M and N, and
  // K = 104 = 3*32 + 8 (the rotated-X variants load X 32 k at a time: a partial last group).
  const shapes: [number, number, number][] = [
    [1, 70, 64],
    [37, 29, 53],
    [67, 131, 96],
    [45, 197, 104],
  ];
  it.each(['bf16', 'f16', 'f32'] as WDtype[])('every variant with %s weights at odd shapes', async (wd) => {
    for (const variant of linearVariants(e)) {
      for (const [M, N, K] of shapes) {
        const err = await runCase(e, M, N, K, wd, { variant });
        expect(err, `${variant} ${M}x${N}x${K} ${wd}`).toBeLessThan(1e-5);
      }
    }
  });

  it('fused epilogues: bias, activations, residual with per-column and per-row-group gates, in place', async () => {
    for (const variant of linearVariants(e)) {
      const cases: [string, Parameters<typeof runCase>[5]][] = [
        ['bias', { bias: true }],
        ['bias+gelu', { bias: true, act: 'gelu_tanh' }],
        ['silu', { act: 'silu' }],
        ['residual', { residual: true }],
        ['residual+gate[N]', { bias: true, residual: true, gateRows: 1 }],
        ['residual+gate[B,1,N] in place', { residual: true, gateRows: 2, inPlace: true, lead: [2, 9] }],
      ];
      for (const [what, o] of cases) {
        const err = await runCase(e, 18, 45, 40, 'bf16', { variant, ...o });
        expect(err, `${variant} ${what}`).toBeLessThan(1e-5);
      }
    }
  });

  it('gelu + residual + gate [3, 1, N] over [3, 7, K] batches with odd K', async () => {
    const err = await runCase(e, 21, 33, 35, 'bf16', { lead: [3, 7], bias: true, act: 'gelu_tanh', residual: true, gateRows: 3 });
    expect(err).toBeLessThan(1e-5);
  });

  it('f16 activations (f16 in, f16 out; f16 in, f32 out) when the adapter has shader-f16', async () => {
    if (!e.gpu.hasF16) return;
    for (const variant of linearVariants(e)) {
      for (const [M, N, K] of [
        [1, 40, 32],
        [23, 37, 61],
        [40, 72, 64],
      ]) {
        await e.scope(async () => {
          const xs = randn(M * K, seed++, 1);
          const ws = randn(N * K, seed++, 0.2);
          const b = randn(N, seed++, 0.5);
          const x = e.upload(xs, [M, K], 'f16');
          const w = e.upload(ws, [N, K], 'bf16');
          const bias = e.upload(b, [N]);
          const ref = refLinear(representable(xs, 'f16'), representable(ws, 'bf16'), M, N, K, { bias: representable(b, 'f32'), act: 'silu' });
          const y16 = linear(e, x, w, { bias, activation: 'silu', variant, out: nanTensor(e, [M, N], 'f16') });
          expect(y16.dtype).toBe('f16');
          const got16 = await y16.toArray();
          expectAllFinite(got16, 'f16 out');
          expect(relL2(got16, ref), `${variant} f16 out ${M}x${N}x${K}`).toBeLessThan(3e-3);
          const y32 = linear(e, x, w, { bias, activation: 'silu', variant, outDtype: 'f32' });
          expect(y32.dtype).toBe('f32');
          // f16 inputs, f32 accumulation and output: only the input rounding remains.
          expect(relL2(await y32.toArray(), ref), `${variant} f32 out ${M}x${N}x${K}`).toBeLessThan(1e-5);
        });
      }
    }
  });

  it('rejects bad operands with clear messages', () => {
    e.scope(() => {
      const x = e.upload(randn(12, 1), [3, 4]);
      const w = e.upload(randn(20, 2), [5, 4], 'bf16');
      expect(() => linear(e, x, e.upload(randn(15, 3), [5, 3], 'bf16'))).toThrow(/does not end in K = 3/);
      expect(() => linear(e, x, w, { bias: e.upload(randn(4, 4), [4]) })).toThrow(/bias .* must be f32 with 5 elements/);
      expect(() => linear(e, x, w, { out: e.empty([3, 4]) })).toThrow(/out .* must be f32 \[3,5\]/);
      expect(() => linear(e, x, w, { residual: { x: e.empty([3, 5]), gate: e.empty([2, 5]) } })).toThrow(/2 rows, which do not divide the 3 output rows/);
      expect(() => linear(e, x, w, { variant: 'nope' })).toThrow(/unknown kernel variant "nope"/);
    });
  });

  it('batched matmul, plain and with transposed b, poisoned output', async () => {
    for (const transB of [false, true]) {
      await e.scope(async () => {
        const [B, M, K, N] = [3, 13, 37, 19];
        const as = randn(B * M * K, seed++);
        const bs = randn(B * K * N, seed++);
        const a = e.upload(as, [B, M, K]);
        const b = e.upload(bs, transB ? [B, N, K] : [B, K, N]);
        const c = matmul(e, a, b, { transB, out: nanTensor(e, [B, M, N]) });
        const got = await c.toArray();
        expectAllFinite(got, 'matmul');
        const ref = new Float64Array(B * M * N);
        for (let z = 0; z < B; z++)
          for (let m = 0; m < M; m++)
            for (let n = 0; n < N; n++) {
              let s = 0;
              for (let k = 0; k < K; k++) s += as[z * M * K + m * K + k] * (transB ? bs[z * N * K + n * K + k] : bs[z * K * N + k * N + n]);
              ref[z * M * N + m * N + n] = s;
            }
        expect(relL2(got, ref)).toBeLessThan(1e-5);
        // 2-D operands are one batch.
        const c2 = await matmul(e, e.upload(as.subarray(0, M * K), [M, K]), e.upload(bs.subarray(0, K * N), transB ? [N, K] : [K, N]), { transB }).toArray();
        expect(relL2(c2, ref.subarray(0, M * N))).toBeLessThan(1e-5);
      });
    }
  });

  it('op.linear fixtures (bf16 weight on the device)', async () => {
    for (const name of ['op.linear.bias', 'op.linear.nobias']) {
      const r = await verifyFixture(e, join(fixturesDir, name));
      expect(r.error).toBeUndefined();
      for (const o of r.outputs) expect(o.relL2, `${name} ${o.name}`).toBeLessThan(1e-5);
      expect(r.pass).toBe(true);
    }
  });
});

describe('linear under a tiny forced binding limit (multi-segment, windowed operands)', () => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create({ maxStorageBindingBytes: 4096, maxBufferBytes: 16384 });
  });
  afterAll(async () => {
    await e.destroy();
  });

  it('windows X/Y over rows and W over output columns, for every variant and weight dtype', async () => {
    for (const variant of linearVariants(e)) {
      for (const wd of ['bf16', 'f32'] as WDtype[]) {
        // W [192, 64]: 24 KB in bf16 (2 segments), X [70, 64] f32 17.5 KB (2 segments), Y 52 KB.
        const err = await runCase(e, 70, 192, 64, wd, { variant, bias: true, residual: true, gateRows: 2, act: 'gelu_tanh' });
        expect(err, `${variant} ${wd}`).toBeLessThan(1e-5);
      }
    }
    // The operands really were split.
    e.scope(() => {
      const w = e.empty([192, 64], 'bf16');
      const x = e.empty([70, 64], 'f32');
      expect(w.storage.segments.length).toBeGreaterThan(1);
      expect(x.storage.segments.length).toBeGreaterThan(1);
    });
  });

  it('windowed f16 activations and in-place residual', async () => {
    if (!e.gpu.hasF16) return;
    const err = await runCase(e, 50, 128, 64, 'bf16', { residual: true, gateRows: 5, inPlace: true, lead: [5, 10] });
    expect(err).toBeLessThan(1e-5);
    await e.scope(async () => {
      const [M, N, K] = [40, 96, 128];
      const xs = randn(M * K, seed++);
      const ws = randn(N * K, seed++, 0.1);
      const y = linear(e, e.upload(xs, [M, K], 'f16'), e.upload(ws, [N, K], 'f16'), { out: nanTensor(e, [M, N], 'f16') });
      const got = await y.toArray();
      expectAllFinite(got, 'f16 windowed');
      expect(relL2(got, refLinear(representable(xs, 'f16'), representable(ws, 'f16'), M, N, K))).toBeLessThan(3e-3);
    });
  });

  it('batched matmul windowed over the batch', async () => {
    await e.scope(async () => {
      const [B, M, K, N] = [9, 4, 16, 16];
      const as = randn(B * M * K, seed++);
      const bs = randn(B * K * N, seed++);
      const c = await matmul(e, e.upload(as, [B, M, K]), e.upload(bs, [B, N, K]), { transB: true, out: nanTensor(e, [B, M, N]) }).toArray();
      const ref = new Float64Array(B * M * N);
      for (let z = 0; z < B; z++)
        for (let m = 0; m < M; m++)
          for (let n = 0; n < N; n++) {
            let s = 0;
            for (let k = 0; k < K; k++) s += as[z * M * K + m * K + k] * bs[z * N * K + n * K + k];
            ref[z * M * N + m * N + n] = s;
          }
      expect(relL2(c, ref)).toBeLessThan(1e-5);
    });
  });

  it('op.linear fixtures', async () => {
    for (const name of ['op.linear.bias', 'op.linear.nobias']) {
      const r = await verifyFixture(e, join(fixturesDir, name));
      expect(r.error).toBeUndefined();
      expect(r.pass).toBe(true);
    }
  });
});

describe('autotuner', () => {
  const saved = { cache: process.env.WAN_TUNING_CACHE, tune: process.env.WAN_TUNE };
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'wan-tune-'));
    process.env.WAN_TUNING_CACHE = join(dir, 'sub', 'tuning.json');
    delete process.env.WAN_TUNE;
  });
  afterAll(() => {
    for (const [k, v] of [['WAN_TUNING_CACHE', saved.cache], ['WAN_TUNE', saved.tune]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('times once, keeps the fastest on disk, and honours WAN_TUNE=off|<variant>', async () => {
    let measured = 0;
    const measure = async () => {
      measured++;
      return { a: 0.3, b: 0.1, c: Infinity };
    };
    expect(await tuneVariant('test adapter', 'fam', 'cls', ['a', 'b', 'c'], measure)).toBe('b');
    expect(await tuneVariant('test adapter', 'fam', 'cls', ['a', 'b', 'c'], measure)).toBe('b');
    expect(measured).toBe(1);
    const file = JSON.parse(readFileSync(process.env.WAN_TUNING_CACHE!, 'utf8'));
    expect(file.entries['test adapter|fam|cls'].variant).toBe('b');
    expect(file.entries['test adapter|fam|cls'].seconds.c).toBeNull();
    expect(cachedVariant('test adapter', 'fam', 'cls')).toBe('b');
    process.env.WAN_TUNE = 'off';
    expect(cachedVariant('test adapter', 'fam', 'cls')).toBeUndefined();
    expect(await tuneVariant('test adapter', 'fam', 'other', ['a', 'b'], measure)).toBe('a');
    process.env.WAN_TUNE = 'c';
    expect(await tuneVariant('test adapter', 'fam', 'other', ['a', 'b', 'c'], measure)).toBe('c');
    expect(measured).toBe(1);
    delete process.env.WAN_TUNE;
    // A candidate added since the class was timed: timed again, and the newcomer can win.
    const withD = async () => {
      measured++;
      return { a: 0.3, b: 0.1, c: Infinity, d: 0.05 };
    };
    expect(await tuneVariant('test adapter', 'fam', 'cls', ['a', 'b', 'c', 'd'], withD)).toBe('d');
    expect(await tuneVariant('test adapter', 'fam', 'cls', ['a', 'b', 'c', 'd'], withD)).toBe('d');
    expect(measured).toBe(2);
  });

  it('linear follows WAN_TUNE and the cached choice', async () => {
    const e = await Engine.create();
    try {
      const names = linearVariants(e);
      const last = names[names.length - 1];
      process.env.WAN_TUNE = last;
      expect(linearVariantFor(e, 500, 'f32', 'bf16')).toBe(last);
      process.env.WAN_TUNE = 'some-other-family-variant';
      expect(names).toContain(linearVariantFor(e, 500, 'f32', 'bf16'));
      process.env.WAN_TUNE = 'off';
      const fallback = linearVariantFor(e, 500, 'f32', 'bf16');
      expect(names).toContain(fallback);
      delete process.env.WAN_TUNE;
      // A remembered winner is used for its class only; an unknown remembered name falls back.
      const adapter = e.gpu.summary.description;
      // (timed against every variant this adapter has, so tuneLinear keeps it)
      const timedAll = Object.fromEntries(names.map((n) => [n, 1]));
      storeVariant(adapter, 'linear', 'large.xf32.wbf16', { variant: 'tiled64x64', seconds: timedAll, measuredAt: 'test' });
      storeVariant(adapter, 'linear', 'small.xf32.wbf16', { variant: 'removed-variant', seconds: {}, measuredAt: 'test' });
      expect(linearVariantFor(e, 500, 'f32', 'bf16')).toBe('tiled64x64');
      expect(linearVariantFor(e, 500, 'f32', 'f16')).toBe(fallback);
      expect(names).toContain(linearVariantFor(e, 50, 'f32', 'bf16'));
      expect(await tuneLinear(e, [{ M: 300 }])).toEqual({ 'large.xf32.wbf16': 'tiled64x64' }); // cached: no timing
      const err = await runCase(e, 9, 10, 16, 'bf16', {}); // untuned: default choice, still correct
      expect(err).toBeLessThan(1e-5);
    } finally {
      delete process.env.WAN_TUNE;
      await e.destroy();
    }
  });
});
