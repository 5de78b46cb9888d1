// Binary/elementwise kernels against float64 CPU references: add/sub/mul with numpy broadcasting
// (scalar and vec4 paths), in place, the fused DiT ops (modulate, gated residual) with per-batch,
// per-token and chunked modulation vectors, scale and clamp; poisoned outputs and a tiny forced
// binding limit with multi-segment tensors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, type Tensor } from '../engine/index.ts';
import { add, binary, broadcastShapes, collapseBroadcast, gatedResidual, modulate, mul, sub, type BinaryOp } from '../engine/ops/binary.ts';
import { clamp, scale } from '../engine/ops/elementwise.ts';
import { randn, relL2 } from './helpers.ts';

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** numpy broadcasting reference, written independently of the kernel's collapsed strides. */
function broadcastRef(op: BinaryOp, a: ArrayLike<number>, as: number[], b: ArrayLike<number>, bs: number[]): { shape: number[]; y: Float64Array } {
  const r = Math.max(as.length, bs.length);
  const pa = [...Array(r - as.length).fill(1), ...as];
  const pb = [...Array(r - bs.length).fill(1), ...bs];
  const shape = pa.map((d, k) => Math.max(d, pb[k]));
  const y = new Float64Array(numel(shape));
  const idx = new Array(r).fill(0);
  const flat = (p: number[]) => idx.reduce((acc, v, k) => acc * p[k] + (p[k] === 1 ? 0 : v), 0);
  for (let i = 0; i < y.length; i++) {
    let rem = i;
    for (let k = r - 1; k >= 0; k--) {
      idx[k] = rem % shape[k];
      rem = Math.floor(rem / shape[k]);
    }
    const va = a[flat(pa)];
    const vb = b[flat(pb)];
    y[i] = op === 'add' ? va + vb : op === 'sub' ? va - vb : va * vb;
  }
  return { shape, y };
}

/** Uploads as rows of C (default the last dim) so a tiny buffer limit can segment it, viewed as `shape`. */
function upRows(e: Engine, data: ArrayLike<number>, shape: number[], label = 'x', C = shape.length > 1 ? shape[shape.length - 1] : 1): Tensor {
  const t = e.upload(data, [data.length / C, C], 'f32', label);
  const v = t.reshape(shape);
  t.dispose();
  return v;
}
const poison = (e: Engine, shape: number[], C?: number) => upRows(e, new Float32Array(numel(shape)).fill(NaN), shape, 'poisoned out', C);

describe('broadcast shapes', () => {
  it('follows numpy and collapses to at most 4 dims', () => {
    expect(broadcastShapes([2, 1, 5], [3, 1])).toEqual([2, 3, 5]);
    expect(() => broadcastShapes([2, 3], [4, 3])).toThrow(/do not broadcast/);
    const c = collapseBroadcast([2, 9, 12], [[2, 9, 12], [2, 1, 12]]);
    expect(c.dims).toEqual([1, 2, 9, 12]);
    expect(c.strides).toEqual([[0, 108, 12, 1], [0, 12, 0, 1]]);
    expect(collapseBroadcast([6, 7, 8], [[6, 7, 8], [6, 7, 8]]).dims).toEqual([1, 1, 1, 336]);
    expect(() => collapseBroadcast([2, 3, 4, 5, 6], [[2, 1, 4, 1, 6], [1, 3, 1, 5, 1]])).toThrow(/needs 5 > 4 dims/);
  });
});

const engines: [string, () => Promise<Engine>, boolean][] = [
  ['real limits', () => Engine.create(), false],
  ['tiny limits', () => Engine.create({ maxStorageBindingBytes: 4096, maxBufferBytes: 16384 }), true],
];

describe.each(engines)('elementwise (%s)', (_name, make, tiny) => {
  let e: Engine;
  beforeAll(async () => {
    e = await make();
  });
  afterAll(async () => {
    await e.destroy();
  });

  // [a shape, b shape]: same shape (odd count: vec4 tail), trailing vector (scalar / vec4 paths),
  // [B,1,C] over [B,L,C], column and outer broadcasts, a scalar tensor, rank mismatch.
  const cases: [number[], number[]][] = tiny
    ? [[[10007], [10007]], [[37, 224], [224]], [[2, 30, 96], [2, 1, 96]], [[1, 96], [2, 41, 96]], [[41, 1], [41, 64]]]
    : [
        [[7, 13], [7, 13]],
        [[5, 97], [97]],
        [[3, 4, 64], [64]],
        [[2, 9, 12], [2, 1, 12]],
        [[6, 1], [6, 33]],
        [[6, 1], [6, 32]],
        [[4, 1], [1, 5]],
        [[4, 1], [1, 8]],
        [[1], [3, 5]],
        [[2, 3, 4, 5], [3, 1, 5]],
        [[1, 1, 1], [1, 1, 1]],
      ];
  for (const op of ['add', 'sub', 'mul'] as const) {
    for (const [as, bs] of cases) {
      it(`${op} [${as}] with [${bs}]`, async () => {
        const ad = randn(numel(as), 1 + as.length, 2);
        const bd = randn(numel(bs), 2 + bs.length, 2);
        const { shape, y: ref } = broadcastRef(op, ad, as, bd, bs);
        const a = upRows(e, ad, as, 'a');
        const b = upRows(e, bd, bs, 'b');
        const out = poison(e, shape);
        if (tiny && numel(shape) * 4 > 16384) expect(out.storage.segments.length).toBeGreaterThan(1);
        const y = binary(e, op, a, b, { out });
        expect(y).toBe(out);
        const got = await y.toArray();
        expect(got.every(Number.isFinite)).toBe(true);
        expect(relL2(got, ref)).toBeLessThan(1e-6);
        // Without `out`: a fresh tensor of the broadcast shape.
        const fresh = binary(e, op, a, b);
        expect(fresh.shape).toEqual(shape);
        expect(relL2(await fresh.toArray(), ref)).toBeLessThan(1e-6);
        for (const t of [a, b, out, fresh]) t.dispose();
      });
    }
  }

  it('in place: out = a (and out = b for commutative ops)', async () => {
    const shape = tiny ? [37, 224] : [5, 1031];
    const ad = randn(numel(shape), 61, 1);
    const bd = randn(numel(shape), 62, 1);
    const vd = randn(shape[1], 63, 1);
    const a = upRows(e, ad, shape, 'a');
    const b = upRows(e, bd, shape, 'b');
    const v = e.upload(vd, [shape[1]]);
    expect(add(e, a, v, { out: a })).toBe(a);
    expect(relL2(await a.toArray(), broadcastRef('add', ad, shape, vd, [shape[1]]).y)).toBeLessThan(1e-7);
    const a2 = Float32Array.from(await a.toArray());
    expect(mul(e, a, b, { out: b })).toBe(b);
    expect(relL2(await b.toArray(), broadcastRef('mul', a2, shape, bd, shape).y)).toBeLessThan(1e-7);
    expect(() => sub(e, a, b, { out: b })).toThrow(/alias/);
    expect(() => add(e, a, a, { out: a })).toThrow(/same tensor/);
    expect(() => add(e, v, a, { out: v })).toThrow(/in place needs/);
  });

  it('scale and clamp (lo > hi gives hi, like torch)', async () => {
    const n = tiny ? 9001 : 4099;
    const xd = randn(n, 71, 3);
    const x = e.upload(xd, [n]);
    const out = e.upload(new Float32Array(n).fill(NaN), [n]);
    expect(relL2(await scale(e, x, -0.37, { out }).toArray(), Array.from(xd, (v) => v * Math.fround(-0.37)))).toBeLessThan(1e-7);
    const got = await clamp(e, x, -1, 0.5, { out }).toArray();
    for (let i = 0; i < n; i++) expect(got[i]).toBe(Math.min(Math.max(xd[i], -1), 0.5));
    const inverted = await clamp(e, x, 1, -1).toArray();
    expect(inverted.every((v) => v === -1)).toBe(true);
    const unbounded = await clamp(e, x, -Infinity, Infinity).toArray();
    expect(Array.from(unbounded)).toEqual(Array.from(xd));
  });

  // [B, L, C]: C % 4 == 0 takes the vec4 kernel, odd C the scalar one.
  const modShapes: number[][] = tiny ? [[2, 41, 64], [1, 80, 64]] : [[2, 37, 5120], [2, 9, 97], [1, 1, 12]];
  for (const [B, L, C] of modShapes) {
    const R = B * L;
    /** (vectors, T): one vector per batch element, or one per token. */
    const layouts: [number, number][] = [[B, 1], [R, L]];
    const refMod = (vectors: number, f: (r: number, c: number, v: number) => number) => {
      const out = new Float64Array(R * C);
      for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[r * C + c] = f(r, c, Math.floor(r / (R / vectors)));
      return out;
    };

    it(`modulate [${B}, ${L}, ${C}] per batch / per token / e0 chunks`, async () => {
      const xd = randn(R * C, 81, 2);
      const x = upRows(e, xd, [B, L, C]);
      if (tiny) expect(x.storage.segments.length).toBeGreaterThan(1);
      for (const [vectors, T] of layouts) {
        const sh = randn(vectors * C, 82, 0.5);
        const sc = randn(vectors * C, 83, 0.5);
        const ref = refMod(vectors, (r, c, v) => xd[r * C + c] * (1 + sc[v * C + c]) + sh[v * C + c]);
        const out = poison(e, [B, L, C]);
        const got = await modulate(e, x, upRows(e, sh, [B, T, C]), upRows(e, sc, [B, T, C]), { out }).toArray();
        expect(got.every(Number.isFinite)).toBe(true);
        expect(relL2(got, ref)).toBeLessThan(1e-6);
        // The same vectors as chunks 0 (shift) and 1 (scale) of a [B, T, 6, C] tensor.
        const e0 = randn(vectors * 6 * C, 84, 1);
        for (let v = 0; v < vectors; v++) {
          e0.set(sh.subarray(v * C, (v + 1) * C), v * 6 * C);
          e0.set(sc.subarray(v * C, (v + 1) * C), (v * 6 + 1) * C);
        }
        const e0t = upRows(e, e0, [B, T, 6, C], 'e0', 6 * C);
        expect(relL2(await modulate(e, x, { tensor: e0t, chunk: 0 }, { tensor: e0t, chunk: 1 }).toArray(), ref)).toBeLessThan(1e-6);
      }
    });

    it(`gatedResidual [${B}, ${L}, ${C}] per batch / per token, out-of-place and in place`, async () => {
      const xd = randn(R * C, 91, 2);
      const yd = randn(R * C, 92, 2);
      const y = upRows(e, yd, [B, L, C], 'y');
      for (const [vectors, T] of layouts) {
        const gd = randn(vectors * C, 93 + vectors, 1);
        const ref = refMod(vectors, (r, c, v) => xd[r * C + c] + yd[r * C + c] * gd[v * C + c]);
        const x = upRows(e, xd, [B, L, C]);
        const gate = upRows(e, gd, [B, T, C], 'gate');
        const out = poison(e, [B, L, C]);
        expect(relL2(await gatedResidual(e, x, y, gate, { out }).toArray(), ref)).toBeLessThan(1e-6);
        // In place: x becomes the result.
        expect(gatedResidual(e, x, y, { tensor: gate.reshape([B, T, 1, C]), chunk: 0 }, { out: x })).toBe(x);
        expect(relL2(await x.toArray(), ref)).toBeLessThan(1e-6);
        x.dispose();
      }
      expect(() => gatedResidual(e, y, y, upRows(e, randn(C, 1), [1, 1, C]), { out: y })).toThrow(/in place with y = x/);
    });

    it(`modulate and gatedResidual [${B}, ${L}, ${C}] with split modulation (two vectors per batch element)`, async () => {
      const xd = randn(R * C, 95, 2);
      const yd = randn(R * C, 96, 2);
      const x = upRows(e, xd, [B, L, C]);
      const y = upRows(e, yd, [B, L, C], 'y');
      // Split vectors are bound whole like per-batch ones ([2B, 6, C]: 480 KiB at C = 5120).
      if (2 * B * 6 * C * 4 > e.gpu.maxBindingBytes) return;
      for (const split of [1, Math.max(1, L - 1)]) {
        if (split >= L) continue;
        const e0 = randn(2 * B * 6 * C, 97 + split, 0.5);
        const e0t = upRows(e, e0, [2 * B, 6, C], 'e0', 6 * C);
        const vec = (r: number) => 2 * Math.floor(r / L) + (r % L < split ? 0 : 1);
        const mod = new Float64Array(R * C);
        const gated = new Float64Array(R * C);
        for (let r = 0; r < R; r++)
          for (let c = 0; c < C; c++) {
            const v = vec(r);
            mod[r * C + c] = xd[r * C + c] * (1 + e0[(v * 6 + 1) * C + c]) + e0[v * 6 * C + c];
            gated[r * C + c] = xd[r * C + c] + yd[r * C + c] * e0[(v * 6 + 2) * C + c];
          }
        expect(relL2(await modulate(e, x, { tensor: e0t, chunk: 0, split }, { tensor: e0t, chunk: 1, split }).toArray(), mod)).toBeLessThan(1e-6);
        expect(relL2(await gatedResidual(e, x, y, { tensor: e0t, chunk: 2, split }).toArray(), gated)).toBeLessThan(1e-6);
        e0t.dispose();
      }
    });
  }

  it('rejects modulation vectors that match neither batch nor tokens', () => {
    const x = e.upload(new Float32Array(6 * 64), [6, 64]);
    expect(() => modulate(e, x, e.upload(new Float32Array(4 * 64), [4, 1, 64]), e.upload(new Float32Array(64), [64]))).toThrow(/modulation .* has 4 vectors/);
    expect(() => modulate(e, x, e.upload(new Float32Array(63), [63]), e.upload(new Float32Array(64), [64]))).toThrow(/does not fit rows of 64/);
    const e0 = e.upload(new Float32Array(6 * 64), [1, 1, 6, 64]);
    expect(() => gatedResidual(e, x, x, { tensor: e0, chunk: 6 })).toThrow(/chunk 6/);
  });
});
