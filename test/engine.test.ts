// The tensor runtime: device, dtypes, pool, batching, memory accounting, scopes, large tensors, errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { Engine, Uniforms, ops, f32ToBf16Bits, bf16BitsToF32, planWindows, wholeBinding } from '../engine/index.ts';
import { randn, relL2 } from './helpers.ts';

let e: Engine;
beforeAll(async () => {
  e = await Engine.create();
});
afterAll(async () => {
  await e.destroy();
});

const siluRef = (x: number) => x / (1 + Math.exp(-x));

/** bf16 rounding computed independently of the engine: exact arithmetic on float64. */
function bf16RefRound(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const f = Math.fround(x);
  const exp = Math.floor(Math.log2(Math.abs(f)));
  const e = Math.max(exp, -126); // subnormals share the smallest exponent
  const ulp = 2 ** (e - 7);
  const q = f / ulp;
  let r = Math.floor(q);
  const frac = q - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 !== 0)) r += 1;
  const y = r * ulp;
  return Math.abs(y) >= 2 ** 128 ? Math.sign(y) * Infinity : y;
}

const specials = [0, -0, 1, -1, 0.1, 1 / 3, 65504, 65520, 1e-8, -1e-8, 6e-5, 3.4e38, -3.4e38, 1.17549435e-38, 1e-40, Infinity, -Infinity];

describe('device', () => {
  it('reports the adapter, limits and features', () => {
    const g = e.gpu;
    expect(g.summary.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(g.maxBindingBytes).toBeLessThanOrEqual(g.summary.limits.maxStorageBufferBindingSize);
    expect(g.maxBindingBytes % 256).toBe(0);
    expect(g.summary.features.length).toBeGreaterThan(0);
    expect(g.hasF16).toBe(g.summary.features.includes('shader-f16'));
  });
});

describe('dtypes', () => {
  it('f32, i32, u32 round trip exactly', async () => {
    const f = randn(1001, 1, 100);
    expect(Array.from(await e.upload(f, [1001], 'f32').toArray())).toEqual(Array.from(f));
    const i = Int32Array.from({ length: 333 }, (_, k) => (k * 2654435761) | 0);
    expect(Array.from(await e.upload(i, [333], 'i32').toArray())).toEqual(Array.from(i));
    const u = Uint32Array.from({ length: 257 }, (_, k) => (k * 2654435761) >>> 0);
    expect(Array.from(await e.upload(u, [257], 'u32').toArray())).toEqual(Array.from(u));
  });

  it('host bf16 rounding is round-to-nearest-even', () => {
    const xs = [...specials.filter(Number.isFinite), ...randn(5000, 2, 10)];
    // Values exactly halfway between two bf16 numbers: ties go to even.
    xs.push(1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8));
    for (const x of xs) expect(bf16BitsToF32(f32ToBf16Bits(x))).toBe(bf16RefRound(x));
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN)))).toBe(true);
  });

  it('f16 and bf16 upload/readback (odd length, packed pairs) match the host conversions', async () => {
    const xs = Float32Array.from([...specials, ...randn(1000, 3, 4)]);
    const n = xs.length; // odd on purpose
    expect(n % 2).toBe(1);
    const h = await e.upload(xs, [n], 'f16').toArray();
    const dv = new DataView(new ArrayBuffer(2));
    for (let i = 0; i < n; i++) {
      setFloat16(dv, 0, xs[i], true);
      expect(h[i]).toBe(getFloat16(dv, 0, true));
    }
    const b = await e.upload(xs, [n], 'bf16').toArray();
    for (let i = 0; i < n; i++) expect(b[i]).toBe(bf16RefRound(xs[i]));
  });

  it('GPU casts f32 -> bf16 / f16 -> f32 agree with the host rounding', async () => {
    const xs = Float32Array.from([...specials, ...randn(4097, 4, 3)]);
    const x = e.upload(xs, [xs.length]);
    const viaBf16 = await ops.cast(e, ops.cast(e, x, 'bf16'), 'f32').toArray();
    for (let i = 0; i < xs.length; i++) expect(viaBf16[i]).toBe(bf16RefRound(xs[i]));
    const viaF16 = await ops.cast(e, ops.cast(e, x, 'f16'), 'f32').toArray();
    const dv = new DataView(new ArrayBuffer(2));
    for (let i = 0; i < xs.length; i++) {
      setFloat16(dv, 0, xs[i], true);
      expect(viaF16[i]).toBe(getFloat16(dv, 0, true));
    }
  });
});

describe('pool and memory accounting', () => {
  it('reuses buffers across iterations of the same work', async () => {
    const x = e.upload(randn(3000, 5), [3000]);
    const step = () => e.scope(() => ops.silu(e, ops.silu(e, x)).dispose());
    step();
    await e.sync();
    const created = e.memory().buffersCreated;
    for (let i = 0; i < 10; i++) step();
    await e.sync();
    expect(e.memory().buffersCreated).toBe(created);
    x.dispose();
  });

  it('counts live and peak bytes', async () => {
    const before = e.memory();
    const a = e.empty([1000, 1000], 'f32');
    const mid = e.memory();
    expect(mid.liveBytes - before.liveBytes).toBeGreaterThanOrEqual(4_000_000);
    expect(mid.liveBytes - before.liveBytes).toBeLessThanOrEqual(4_000_000 * 1.34);
    expect(mid.peakLiveBytes).toBeGreaterThanOrEqual(mid.liveBytes);
    a.dispose();
    const after = e.memory();
    expect(after.liveBytes).toBe(before.liveBytes);
    expect(after.peakLiveBytes).toBe(mid.peakLiveBytes);
    expect(after.allocatedBytes).toBeGreaterThanOrEqual(mid.liveBytes - before.liveBytes); // cached for reuse
  });

  it('views share storage and free it with the last handle', () => {
    const before = e.memory().liveBytes;
    const a = e.empty([6, 10]);
    const v = a.reshape([3, -1]);
    expect(v.shape).toEqual([3, 20]);
    expect(() => a.reshape([7, 9])).toThrow(/cannot reshape/);
    a.dispose();
    expect(e.memory().liveBytes).toBeGreaterThan(before);
    v.dispose();
    expect(e.memory().liveBytes).toBe(before);
    expect(() => v.reshape([60])).toThrow(/already disposed/);
  });

  it('scope frees what the block created except what it returns', async () => {
    const live = e.liveTensors;
    const kept = e.scope(() => {
      const a = e.upload([1, 2, 3], [3]);
      const b = ops.silu(e, a);
      const c = ops.silu(e, b);
      return { c, list: [b] };
    });
    expect(e.liveTensors).toBe(live + 2);
    expect(Array.from(await kept.c.toArray())).toEqual([1, 2, 3].map((v) => Math.fround(siluRef(Math.fround(siluRef(v))))).map((v) => expect.closeTo(v, 6)));
    kept.c.dispose();
    kept.list[0].dispose();
    expect(e.liveTensors).toBe(live);
  });
});

describe('batching', () => {
  it('records many dispatches into one submit and computes them in order', async () => {
    const xs = randn(513, 6, 3);
    let x = e.upload(xs, [513]);
    await e.sync();
    const submits = e.stats.submits;
    const dispatches = e.stats.dispatches;
    for (let i = 0; i < 300; i++) {
      const y = ops.geluTanh(e, x);
      x.dispose();
      x = y;
    }
    const got = await x.toArray();
    expect(e.stats.dispatches - dispatches).toBe(300);
    expect(e.stats.submits - submits).toBe(1); // the readback's submit carries all 300 dispatches
    const ref = Array.from(xs, (v) => {
      for (let i = 0; i < 300; i++) v = 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
      return v;
    });
    expect(relL2(got, ref)).toBeLessThan(1e-5);
    x.dispose();
  });
});

describe('large tensors under a small forced binding limit', () => {
  let small: Engine;
  beforeAll(async () => {
    small = await Engine.create({ maxStorageBindingBytes: 1024, maxBufferBytes: 4096 });
  });
  afterAll(async () => {
    await small.destroy();
  });

  it('splits storage into segments and kernels into windows', async () => {
    const n = 10_007; // 40 KB of f32: 10 buffers, 40 windows
    const xs = randn(n, 7, 5);
    const x = small.upload(xs, [n]);
    expect(x.storage.segments.length).toBe(Math.ceil((n * 4) / 4096));
    const y = ops.silu(small, x);
    const w = planWindows(small.gpu, 't', n, [{ tensor: x, rowElems: 1 }, { tensor: y, rowElems: 1 }]);
    expect(w.length).toBeGreaterThanOrEqual(40);
    for (const win of w) for (const b of win.bindings) expect(b.size).toBeLessThanOrEqual(1024);
    const got = await y.toArray();
    expect(relL2(got, Array.from(xs, siluRef))).toBeLessThan(1e-6);
    // every element written: the reference has no zeros where the output could be stale
    const bf = await ops.cast(small, ops.cast(small, x, 'bf16'), 'f32').toArray();
    for (let i = 0; i < n; i++) expect(bf[i]).toBe(bf16RefRound(xs[i]));
  });

  it('multi-dimensional tensors are segmented on whole rows', () => {
    const t = small.empty([37, 3, 5], 'bf16'); // 30 bytes per row
    for (const s of t.storage.segments) expect(s.elems % 15).toBe(0);
    expect(t.storage.segments.reduce((a, s) => a + s.elems, 0)).toBe(37 * 15);
    expect(() => wholeBinding(small.gpu, t, 'someop')).toThrow(/someop: .*exceeds one storage binding/);
    t.dispose();
  });
});

describe('errors', () => {
  it('a validation error names the op at the next sync', async () => {
    const x = e.upload([1, 2, 3, 4], [4]);
    const pipeline = e.pipeline('unary', { FN: 'silu' });
    // Only one of the two storage bindings the kernel declares: invalid bind group.
    e.dispatch({ op: 'deliberately-broken-op', pipeline, params: new Uniforms().u32(4), buffers: [wholeBinding(e.gpu, x, 't')], workgroups: 1 });
    await expect(e.sync()).rejects.toThrow(/deliberately-broken-op/);
    // The engine stays usable afterwards.
    expect(Array.from(await ops.silu(e, x).toArray())[1]).toBeCloseTo(siluRef(2), 6);
  });

  it('rejects bad shapes and mismatched uploads clearly', () => {
    expect(() => e.empty([2, -1])).toThrow(/invalid shape/);
    expect(() => e.upload([1, 2, 3], [2, 2])).toThrow(/3 values for shape \[2,2\]/);
    expect(() => ops.silu(e, e.upload([1, 2], [2], 'i32'))).toThrow(/silu: .* is i32/);
  });

  it('device loss becomes a clear error', async () => {
    const lost = await Engine.create();
    lost.gpu.device.destroy();
    await lost.gpu.device.lost;
    expect(() => lost.empty([4])).toThrow(/device lost/);
  });
});
