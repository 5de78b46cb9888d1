// Norm kernels against float64 CPU references: layer norm (plain / affine), RMS norm, layer norm
// fused with the DiT modulation, the VAE's channel RMS norm; both row reductions, odd widths,
// large-mean and near-zero rows, poisoned outputs, and a tiny forced binding limit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, type Tensor } from '../engine/index.ts';
import { channelRmsNorm, layerNorm, layerNormModulate, rmsNorm, type RowReduction } from '../engine/ops/norm.ts';
import { randn, relL2 } from './helpers.ts';

// ---------------------------------------------------------------- float64 references

function layerNormRef(x: ArrayLike<number>, C: number, eps: number, w?: ArrayLike<number>, b?: ArrayLike<number>): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; r++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += x[r * C + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[r * C + c] - m) ** 2;
    const rs = 1 / Math.sqrt(v / C + eps);
    for (let c = 0; c < C; c++) out[r * C + c] = (x[r * C + c] - m) * rs * (w ? w[c] : 1) + (b ? b[c] : 0);
  }
  return out;
}

function rmsNormRef(x: ArrayLike<number>, C: number, eps: number, w?: ArrayLike<number>): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; r++) {
    let q = 0;
    for (let c = 0; c < C; c++) q += x[r * C + c] ** 2;
    const rs = 1 / Math.sqrt(q / C + eps);
    for (let c = 0; c < C; c++) out[r * C + c] = x[r * C + c] * rs * (w ? w[c] : 1);
  }
  return out;
}

/** Modulation vector index for row r: per batch element (rows / vectors tokens each) or per token. */
function modRow(r: number, rows: number, vectors: number): number {
  return Math.floor(r / (rows / vectors));
}

function channelNormRef(x: ArrayLike<number>, B: number, C: number, S: number, g: ArrayLike<number>, bias?: ArrayLike<number>): Float64Array {
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      let q = 0;
      for (let c = 0; c < C; c++) q += x[(b * C + c) * S + s] ** 2;
      const d = Math.max(Math.sqrt(q), 1e-12);
      for (let c = 0; c < C; c++) {
        const i = (b * C + c) * S + s;
        out[i] = (x[i] / d) * Math.sqrt(C) * g[c] + (bias ? bias[c] : 0);
      }
    }
  }
  return out;
}

/** Worst relative L2 error over rows (each row must be right, not just the total). */
function worstRow(got: ArrayLike<number>, ref: ArrayLike<number>, C: number): number {
  let worst = 0;
  for (let r = 0; r < ref.length / C; r++) {
    let d = 0;
    let n = 0;
    for (let c = 0; c < C; c++) {
      d += (got[r * C + c] - ref[r * C + c]) ** 2;
      n += ref[r * C + c] ** 2;
    }
    worst = Math.max(worst, n > 0 ? Math.sqrt(d / n) : Math.sqrt(d));
  }
  return worst;
}

/** Rows of noise, with a large-mean row, a near-zero row and a constant row mixed in. */
function rowsWithTraps(R: number, C: number, seed: number): Float32Array {
  const x = randn(R * C, seed, 1.5);
  for (let c = 0; c < C; c++) {
    if (R > 1) x[1 * C + c] = 1000 + x[1 * C + c] * 0.5; // mean 1000, std ~1
    if (R > 2) x[2 * C + c] *= 1e-4; // variance far below eps
    if (R > 3) x[3 * C + c] = -7.25; // zero variance
  }
  return x;
}

/** Uploads as rows of C (default: the last dim) so a tiny buffer limit can segment it, viewed as `shape`. */
function upRows(e: Engine, data: ArrayLike<number>, shape: number[], label = 'x', C = shape[shape.length - 1]): Tensor {
  const t = e.upload(data, [data.length / C, C], 'f32', label);
  const v = t.reshape(shape);
  t.dispose();
  return v;
}

const poison = (e: Engine, shape: number[]) => upRows(e, new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(NaN), shape, 'poisoned out');

// ---------------------------------------------------------------- tests

const engines: [string, () => Promise<Engine>, boolean][] = [
  ['real limits', () => Engine.create(), false],
  ['tiny limits', () => Engine.create({ maxStorageBindingBytes: 4096, maxBufferBytes: 16384 }), true],
];

describe.each(engines)('row norms (%s)', (_name, make, tiny) => {
  let e: Engine;
  beforeAll(async () => {
    e = await make();
  });
  afterAll(async () => {
    await e.destroy();
  });

  const reductions: RowReduction[] = ['subgroup', 'workgroup'];
  // Tiny limits need rows whose byte size windows at 256-byte alignment inside 4 KiB.
  const shapes: number[][] = tiny ? [[37, 224], [2, 30, 96], [1, 192]] : [[1, 97], [5, 5119], [2, 3, 5120], [9, 96], [6, 7]];

  for (const reduction of reductions) {
    for (const shape of shapes) {
      it(`layerNorm ${reduction} [${shape}] plain / weight / weight+bias`, async () => {
        if (reduction === 'subgroup' && !e.gpu.hasSubgroups) return;
        const C = shape[shape.length - 1];
        const n = shape.reduce((a, b) => a * b, 1);
        const xs = rowsWithTraps(n / C, C, 11 + C);
        const ws = randn(C, 12, 0.5).map((v) => v + 1);
        const bs = randn(C, 13, 0.3);
        const x = upRows(e, xs, shape);
        const w = e.upload(ws, [C]);
        const b = e.upload(bs, [C]);
        if (tiny && n * 4 > 16384) expect(x.storage.segments.length).toBeGreaterThan(1);
        for (const [label, opts, ref] of [
          ['plain', {}, layerNormRef(xs, C, 1e-6)],
          ['weight', { weight: w }, layerNormRef(xs, C, 1e-6, ws)],
          ['weight+bias', { weight: w, bias: b }, layerNormRef(xs, C, 1e-6, ws, bs)],
        ] as const) {
          const out = poison(e, shape);
          const y = layerNorm(e, x, { ...opts, reduction, out });
          expect(y).toBe(out);
          const got = await y.toArray();
          expect(got.every(Number.isFinite), label).toBe(true);
          expect(relL2(got, ref), label).toBeLessThan(1e-5);
          expect(worstRow(got, ref, C), label).toBeLessThan(1e-5);
          out.dispose();
        }
      });

      it(`rmsNorm ${reduction} [${shape}] with and without weight, eps`, async () => {
        if (reduction === 'subgroup' && !e.gpu.hasSubgroups) return;
        const C = shape[shape.length - 1];
        const n = shape.reduce((a, b) => a * b, 1);
        const xs = rowsWithTraps(n / C, C, 21 + C);
        const ws = randn(C, 22, 0.5).map((v) => v + 1);
        const x = upRows(e, xs, shape);
        const w = e.upload(ws, [C]);
        for (const [wt, eps] of [[w, 1e-6], [null, 1e-5]] as const) {
          const ref = rmsNormRef(xs, C, eps, wt ? ws : undefined);
          const out = poison(e, shape);
          const got = await rmsNorm(e, x, wt, { eps, reduction, out }).toArray();
          expect(got.every(Number.isFinite)).toBe(true);
          expect(relL2(got, ref)).toBeLessThan(1e-5);
          expect(worstRow(got, ref, C)).toBeLessThan(1e-5);
          out.dispose();
        }
      });
    }
  }

  it('eps matters on a near-zero row (a wrong eps is detected)', async () => {
    const C = 96;
    const xs = randn(C, 31, 1e-4);
    const x = e.upload(xs, [1, C]);
    const got = await layerNorm(e, x, { eps: 1e-6 }).toArray();
    expect(relL2(got, layerNormRef(xs, C, 1e-6))).toBeLessThan(1e-5);
    expect(relL2(got, layerNormRef(xs, C, 1e-5))).toBeGreaterThan(1e-2);
  });

  it('layerNormModulate: [B,1,C], [B,L,C] per token, and chunks of e0 [B,1|L,6,C]', async () => {
    const [B, L, C] = tiny ? [2, 41, 64] : [2, 37, 5120];
    const R = B * L;
    const xs = rowsWithTraps(R, C, 41);
    const x = upRows(e, xs, [B, L, C]);
    if (tiny) expect(x.storage.segments.length).toBeGreaterThan(1);
    const norm = layerNormRef(xs, C, 1e-6);
    // vectors: per batch element (B) or per token (R); a 6-chunk tensor holds (shift, scale, ...) at chunks 0, 1.
    for (const vectors of [B, R]) {
      const sh = randn(vectors * C, 42 + vectors, 0.5);
      const sc = randn(vectors * C, 43 + vectors, 0.5);
      const ref = new Float64Array(R * C);
      for (let r = 0; r < R; r++) {
        const v = modRow(r, R, vectors);
        for (let c = 0; c < C; c++) ref[r * C + c] = norm[r * C + c] * (1 + sc[v * C + c]) + sh[v * C + c];
      }
      const T = vectors === B ? 1 : L;
      const shift = upRows(e, sh, [B, T, C], 'shift');
      const scale = upRows(e, sc, [B, T, C], 'scale');
      const out = poison(e, [B, L, C]);
      expect(relL2(await layerNormModulate(e, x, shift, scale, { out }).toArray(), ref)).toBeLessThan(1e-5);
      // Same vectors inside an unchunked e0 [B, T, 6, C]: shift = chunk 3, scale = chunk 4.
      const e0 = randn(vectors * 6 * C, 44, 0.5);
      for (let v = 0; v < vectors; v++) {
        e0.set(sh.subarray(v * C, (v + 1) * C), (v * 6 + 3) * C);
        e0.set(sc.subarray(v * C, (v + 1) * C), (v * 6 + 4) * C);
      }
      const e0t = upRows(e, e0, [B, T, 6, C], 'e0', 6 * C);
      const got = await layerNormModulate(e, x, { tensor: e0t, chunk: 3 }, { tensor: e0t, chunk: 4 }).toArray();
      expect(relL2(got, ref)).toBeLessThan(1e-5);
      // Swapping the chunks must change the result (the chunk index is honoured).
      const swapped = await layerNormModulate(e, x, { tensor: e0t, chunk: 4 }, { tensor: e0t, chunk: 3 }).toArray();
      expect(relL2(swapped, ref)).toBeGreaterThan(1e-2);
      for (const t of [shift, scale, out, e0t]) t.dispose();
    }
  });

  it('layerNormModulate with split modulation: two vectors per batch element, the first for its first `split` tokens', async () => {
    // Split vectors are bound whole like per-batch ones ([2B, 6, C]: 480 KiB at C = 5120): the tiny
    // binding limit takes a narrower C.
    const [B, L, C] = tiny ? [2, 41, 32] : [2, 37, 5120];
    const R = B * L;
    const xs = rowsWithTraps(R, C, 45);
    const x = upRows(e, xs, [B, L, C]);
    const norm = layerNormRef(xs, C, 1e-6);
    for (const split of [1, 7, L - 1]) {
      const e0 = randn(2 * B * 6 * C, 46 + split, 0.5); // [2B, 6, C]
      const ref = new Float64Array(R * C);
      for (let r = 0; r < R; r++) {
        const v = 2 * Math.floor(r / L) + (r % L < split ? 0 : 1);
        for (let c = 0; c < C; c++) ref[r * C + c] = norm[r * C + c] * (1 + e0[(v * 6 + 4) * C + c]) + e0[(v * 6 + 3) * C + c];
      }
      const e0t = upRows(e, e0, [2 * B, 6, C], 'e0', 6 * C);
      const got = await layerNormModulate(e, x, { tensor: e0t, chunk: 3, split }, { tensor: e0t, chunk: 4, split }).toArray();
      expect(relL2(got, ref)).toBeLessThan(1e-5);
      // Ignoring the split (per batch element) must not pass.
      expect(() => layerNormModulate(e, x, { tensor: e0t, chunk: 3 }, { tensor: e0t, chunk: 4 })).toThrow(/has \d+ vectors/);
      e0t.dispose();
    }
    expect(() => layerNormModulate(e, x, { tensor: e.upload(new Float32Array(3 * 6 * C), [3, 6, C]), chunk: 3, split: 2 }, { tensor: e.upload(new Float32Array(3 * 6 * C), [3, 6, C]), chunk: 4, split: 2 })).toThrow(/two vectors per batch element/);
  });

  it('f16 activations: f16 or f32 in, f16 or f32 out, statistics in f32 (layerNorm, rmsNorm, layerNormModulate)', async () => {
    if (!e.gpu.hasF16) return;
    const [B, L, C] = tiny ? [2, 40, 64] : [2, 29, 3072]; // tiny: segment boundaries at whole 256-byte row pairs
    const R = B * L;
    const xs = rowsWithTraps(R, C, 51).map((v, i) => (i < C ? v * 30 : v)); // row 0 beyond f16's 11-bit mantissa
    const xh = Float32Array.from(await e.upload(xs, [R, C], 'f16').toArray()); // xs rounded to f16
    const w = randn(C, 52, 0.5).map((v) => v + 1);
    const sh = randn(B * C, 53, 0.5);
    const sc = randn(B * C, 54, 0.5);
    const shift = upRows(e, sh, [B, 1, C], 'shift');
    const scale = upRows(e, sc, [B, 1, C], 'scale');
    const wt = e.upload(w, [C]);
    const modRef = (x: Float32Array) => {
      const n = layerNormRef(x, C, 1e-6);
      return n.map((v, i) => {
        const b = Math.floor(Math.floor(i / C) / L);
        return v * (1 + sc[b * C + (i % C)]) + sh[b * C + (i % C)];
      });
    };
    // f16 storage rounds to 11 significant bits: rel L2 about 2^-11 / sqrt(3) = 2.8e-4 per rounding.
    for (const xDtype of ['f32', 'f16'] as const) {
      const x = xDtype === 'f16' ? e.upload(xs, [B, L, C], 'f16') : upRows(e, xs, [B, L, C]);
      const xin = xDtype === 'f16' ? xh : xs;
      for (const outDtype of ['f32', 'f16'] as const) {
        const tol = outDtype === 'f16' ? 6e-4 : 1e-5;
        const cases: [string, Tensor, Float64Array][] = [
          ['layerNorm', layerNorm(e, x, { weight: wt, outDtype }), layerNormRef(xin, C, 1e-6, w)],
          ['rmsNorm', rmsNorm(e, x, wt, { outDtype }), rmsNormRef(xin, C, 1e-6, w)],
          ['layerNormModulate', layerNormModulate(e, x, shift, scale, { outDtype }), modRef(xin)],
        ];
        for (const [name, y, ref] of cases) {
          const label = `${name} ${xDtype} -> ${outDtype}`;
          expect(y.dtype, label).toBe(outDtype);
          const got = await y.toArray();
          expect(worstRow(got, ref, C), label).toBeLessThan(tol);
          // An f16 input is read as f16: the reference on the unrounded input differs by far more than f32 error.
          if (xDtype === 'f16' && outDtype === 'f32' && name === 'rmsNorm') expect(worstRow(got, rmsNormRef(xs, C, 1e-6, w), C), label).toBeGreaterThan(1e-5);
          y.dispose();
        }
      }
      x.dispose();
    }
    for (const t of [shift, scale, wt]) t.dispose();
  });

  it('rejects mismatched shapes clearly', () => {
    const x = e.upload(new Float32Array(2 * 96), [2, 96]);
    expect(() => layerNorm(e, x, { weight: e.upload(new Float32Array(95), [95]) })).toThrow(/layerNorm: .* must hold 96 values/);
    expect(() => layerNormModulate(e, x, e.upload(new Float32Array(96 * 3), [3, 1, 96]), e.upload(new Float32Array(96), [96]))).toThrow(/layerNormModulate: modulation/);
    expect(() => rmsNorm(e, x, null, { out: x })).toThrow(/alias/);
  });
});

describe.each(engines)('channel RMS norm (%s)', (_name, make, tiny) => {
  let e: Engine;
  beforeAll(async () => {
    e = await make();
  });
  afterAll(async () => {
    await e.destroy();
  });

  // [shape, channelDim]; tiny shapes: planes of 64 / 448 floats (256-byte multiples), several segments.
  const cases: [number[], number][] = tiny
    ? [[[13, 2, 7, 32], 0], [[2, 40, 4, 4, 4], 1], [[3, 30, 64], 2]]
    : [[[5, 3, 7, 11], 0], [[2, 7, 2, 6, 8], 1], [[4, 1, 1, 1], 0], [[96, 1, 9, 13], 0], [[5, 97], 1]];
  for (const [shape, cd] of cases) {
    for (const withBias of [false, true]) {
      it(`[${shape}] channel dim ${cd}${withBias ? ' + bias' : ''}`, async () => {
        const C = shape[cd];
        const B = shape.slice(0, cd).reduce((a, b) => a * b, 1);
        const S = shape.slice(cd + 1).reduce((a, b) => a * b, 1);
        const xs = randn(B * C * S, 51 + C, 2);
        for (let c = 0; c < C; c++) xs[c * S] = 0; // one all-zero position: norm clamps at 1e-12, output = bias
        const gs = randn(C, 52, 0.5).map((v) => v + 1);
        const bs = randn(C, 53, 0.5);
        const x = e.upload(xs, shape);
        if (tiny) expect(x.storage.segments.length).toBeGreaterThan(1);
        const out = e.upload(new Float32Array(xs.length).fill(NaN), shape);
        const y = channelRmsNorm(e, x, e.upload(gs, [C, 1, 1, 1]), { channelDim: cd, bias: withBias ? e.upload(bs, [C]) : undefined, out });
        const got = await y.toArray();
        const ref = channelNormRef(xs, B, C, S, gs, withBias ? bs : undefined);
        expect(got.every(Number.isFinite)).toBe(true);
        expect(relL2(got, ref)).toBeLessThan(1e-5);
      });
    }
  }
});
