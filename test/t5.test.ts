// The umT5 encoder beyond its fixture: the bucket function, the row-wise embedding gather, a float64
// CPU reference on a random model of odd sizes (dim != dim_attn, masked and fully masked prompts),
// batch independence and checkpoint errors.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bf16BitsToF32, Engine, f32ToBf16Bits } from '../engine/index.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { openTensorSource } from '../loaders/open.ts';
import type { StDType } from '../loaders/safetensors.ts';
import type { TensorInfo, TensorSource } from '../loaders/source.ts';
import '../model/reference/t5.ts';
import { verifyFixture } from '../model/reference/registry.ts';
import { relativeBiasTable, relativeBucketTable, relativePositionBucket, UmT5Encoder } from '../model/t5.ts';
import { fixturesDir, randn, relL2, rng } from './helpers.ts';

const fixtureDir = join(fixturesDir, 't5');
const F32_MIN = -3.4028234663852886e38;

// ------------------------------------------------------------------ test sources

interface MemTensor {
  dtype: StDType;
  shape: number[];
  bytes: Uint8Array;
}

/** A TensorSource held in memory (F32), counting the bytes read per tensor. */
class MemorySource implements TensorSource {
  readonly bytesRead = new Map<string, number>();
  constructor(
    readonly path: string,
    private tensors: Map<string, MemTensor>,
  ) {}
  names() {
    return [...this.tensors.keys()];
  }
  has(name: string) {
    return this.tensors.has(name);
  }
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`no ${name}`);
    return { name, dtype: t.dtype, shape: t.shape };
  }
  async readRange(name: string, offset: number, length: number) {
    const t = this.tensors.get(name)!;
    if (offset < 0 || offset + length > t.bytes.byteLength) throw new Error(`read past ${name}`);
    this.bytesRead.set(name, (this.bytesRead.get(name) ?? 0) + length);
    return t.bytes.slice(offset, offset + length);
  }
  async close() {}
}

/**
 * Wraps a checkpoint: hides one tensor, counts bytes read, and may replace the token embedding by a
 * virtual [vocab, dim] BF16 table whose values are a formula of (row, col) (never materialised).
 */
class WrappedSource implements TensorSource {
  readonly bytesRead = new Map<string, number>();
  constructor(
    private inner: TensorSource,
    private opts: { hide?: string; virtualVocab?: number } = {},
  ) {}
  get path() {
    return this.inner.path;
  }
  names() {
    return this.inner.names().filter((n) => n !== this.opts.hide);
  }
  has(name: string) {
    return name !== this.opts.hide && this.inner.has(name);
  }
  info(name: string): TensorInfo {
    const i = this.inner.info(name);
    if (name === 'token_embedding.weight' && this.opts.virtualVocab) return { name, dtype: 'BF16', shape: [this.opts.virtualVocab, i.shape[1]] };
    return i;
  }
  async readRange(name: string, offset: number, length: number) {
    this.bytesRead.set(name, (this.bytesRead.get(name) ?? 0) + length);
    if (name === 'token_embedding.weight' && this.opts.virtualVocab) {
      const dim = this.inner.info(name).shape[1];
      const out = new Uint8Array(length);
      const view = new DataView(out.buffer);
      for (let b = 0; b < length; b += 2) {
        const el = (offset + b) / 2;
        view.setUint16(b, f32ToBf16Bits(virtualValue(Math.floor(el / dim), el % dim)), true);
      }
      return out;
    }
    return this.inner.readRange(name, offset, length);
  }
  close() {
    return this.inner.close();
  }
}

/** Exactly representable in bf16 (k/64, |k| <= 48). */
const virtualValue = (row: number, col: number) => (((row * 31 + col * 7) % 97) - 48) / 64;

// ------------------------------------------------------------------ float64 reference

function bucket64(rel: number, numBuckets: number, maxDist: number): number {
  const half = Math.floor(numBuckets / 2);
  const maxExact = Math.floor(half / 2);
  const dist = Math.abs(rel);
  const base = rel > 0 ? half : 0;
  if (dist < maxExact) return base + dist;
  const large = maxExact + Math.trunc((Math.log(dist / maxExact) / Math.log(maxDist / maxExact)) * (half - maxExact));
  return base + Math.min(large, half - 1);
}

interface TinyConfig {
  vocab: number;
  dim: number;
  dimAttn: number;
  dimFfn: number;
  heads: number;
  layers: number;
  buckets: number;
}

function randomModel(c: TinyConfig, seed: number): Map<string, { shape: number[]; data: Float32Array }> {
  const m = new Map<string, { shape: number[]; data: Float32Array }>();
  let s = seed;
  const put = (name: string, shape: number[], scale: number, offset = 0) => {
    // Values exactly representable in bf16: the device stores the weights in bf16 without rounding.
    const data = randn(shape.reduce((a, b) => a * b, 1), s++, scale).map((v) => bf16BitsToF32(f32ToBf16Bits(v + offset)));
    m.set(name, { shape, data });
  };
  put('token_embedding.weight', [c.vocab, c.dim], 1);
  for (let i = 0; i < c.layers; i++) {
    const p = `blocks.${i}`;
    put(`${p}.norm1.weight`, [c.dim], 0.2, 1);
    put(`${p}.attn.q.weight`, [c.dimAttn, c.dim], 0.5 / Math.sqrt(c.dim));
    put(`${p}.attn.k.weight`, [c.dimAttn, c.dim], 0.5 / Math.sqrt(c.dim));
    put(`${p}.attn.v.weight`, [c.dimAttn, c.dim], 1 / Math.sqrt(c.dim));
    put(`${p}.attn.o.weight`, [c.dim, c.dimAttn], 1 / Math.sqrt(c.dimAttn));
    put(`${p}.norm2.weight`, [c.dim], 0.2, 1);
    put(`${p}.ffn.gate.0.weight`, [c.dimFfn, c.dim], 1 / Math.sqrt(c.dim));
    put(`${p}.ffn.fc1.weight`, [c.dimFfn, c.dim], 1 / Math.sqrt(c.dim));
    put(`${p}.ffn.fc2.weight`, [c.dim, c.dimFfn], 1 / Math.sqrt(c.dimFfn));
    put(`${p}.pos_embedding.embedding.weight`, [c.buckets, c.heads], 1);
  }
  put('norm.weight', [c.dim], 0.2, 1);
  return m;
}

function memorySource(model: Map<string, { shape: number[]; data: Float32Array }>): MemorySource {
  const t = new Map<string, MemTensor>();
  for (const [name, { shape, data }] of model) t.set(name, { dtype: 'F32', shape, bytes: new Uint8Array(data.buffer.slice(0)) });
  return new MemorySource('memory://tiny-umt5', t);
}

/** T5Encoder.forward in float64: [B, L, dim] including padded rows. */
function referenceEncoder(model: Map<string, { shape: number[]; data: Float32Array }>, c: TinyConfig, ids: Int32Array, lens: number[], L: number): Float64Array {
  const W = (name: string) => model.get(name)!.data;
  const B = lens.length;
  const rows = B * L;
  const D = c.dimAttn / c.heads;
  const rms = (x: Float64Array, w: Float32Array, C: number) => {
    const y = new Float64Array(x.length);
    for (let r = 0; r < x.length / C; r++) {
      let ss = 0;
      for (let i = 0; i < C; i++) ss += x[r * C + i] ** 2;
      const inv = 1 / Math.sqrt(ss / C + 1e-6);
      for (let i = 0; i < C; i++) y[r * C + i] = x[r * C + i] * inv * w[i];
    }
    return y;
  };
  const lin = (x: Float64Array, w: Float32Array, N: number, K: number) => {
    const y = new Float64Array((x.length / K) * N);
    for (let r = 0; r < x.length / K; r++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[r * K + k] * w[n * K + k];
        y[r * N + n] = s;
      }
    return y;
  };
  const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  const emb = W('token_embedding.weight');
  let x = new Float64Array(rows * c.dim);
  for (let t = 0; t < rows; t++) for (let i = 0; i < c.dim; i++) x[t * c.dim + i] = emb[ids[t] * c.dim + i];
  for (let l = 0; l < c.layers; l++) {
    const p = `blocks.${l}`;
    const h = rms(x, W(`${p}.norm1.weight`), c.dim);
    const q = lin(h, W(`${p}.attn.q.weight`), c.dimAttn, c.dim);
    const k = lin(h, W(`${p}.attn.k.weight`), c.dimAttn, c.dim);
    const v = lin(h, W(`${p}.attn.v.weight`), c.dimAttn, c.dim);
    const pos = W(`${p}.pos_embedding.embedding.weight`);
    const a = new Float64Array(rows * c.dimAttn);
    for (let b = 0; b < B; b++)
      for (let n = 0; n < c.heads; n++)
        for (let i = 0; i < L; i++) {
          const logits = new Float64Array(L);
          for (let j = 0; j < L; j++) {
            let s = 0;
            for (let d = 0; d < D; d++) s += q[(b * L + i) * c.dimAttn + n * D + d] * k[(b * L + j) * c.dimAttn + n * D + d];
            // T5: no scaling; a masked key's bias is float32 min (masked_fill), then added to q.k.
            logits[j] = s + (j < lens[b] ? pos[bucket64(j - i, c.buckets, 128) * c.heads + n] : F32_MIN);
          }
          const mx = Math.max(...logits);
          const e = logits.map((z) => Math.exp(z - mx));
          const sum = e.reduce((s, z) => s + z, 0);
          for (let d = 0; d < D; d++) {
            let o = 0;
            for (let j = 0; j < L; j++) o += (e[j] / sum) * v[(b * L + j) * c.dimAttn + n * D + d];
            a[(b * L + i) * c.dimAttn + n * D + d] = o;
          }
        }
    const o = lin(a, W(`${p}.attn.o.weight`), c.dim, c.dimAttn);
    x = x.map((z, i) => z + o[i]);
    const h2 = rms(x, W(`${p}.norm2.weight`), c.dim);
    const g = lin(h2, W(`${p}.ffn.gate.0.weight`), c.dimFfn, c.dim);
    const f = lin(h2, W(`${p}.ffn.fc1.weight`), c.dimFfn, c.dim);
    const ff = lin(
      f.map((z, i) => z * gelu(g[i])),
      W(`${p}.ffn.fc2.weight`),
      c.dim,
      c.dimFfn,
    );
    x = x.map((z, i) => z + ff[i]);
  }
  return rms(x, W('norm.weight'), c.dim);
}

function prefixMask(lens: number[], L: number): Int32Array {
  const m = new Int32Array(lens.length * L);
  lens.forEach((n, b) => m.fill(1, b * L, b * L + n));
  return m;
}

/**
 * Loads an encoder, runs `body`, then frees the weights and closes the source even when an assertion
 * fails (so one failing test does not leak into the next one's tensor count), and checks that
 * encoding left no tensor behind.
 */
async function withEncoder(eng: Engine, src: TensorSource, body: (enc: UmT5Encoder) => Promise<void>): Promise<void> {
  const before = eng.liveTensors;
  try {
    const enc = await UmT5Encoder.load(eng, src);
    try {
      await body(enc);
    } finally {
      enc.dispose();
    }
  } finally {
    await src.close();
  }
  expect(eng.liveTensors).toBe(before);
}

// ------------------------------------------------------------------ tests

describe('relative position buckets', () => {
  it('match a float64 re-implementation for distances far beyond max_dist', () => {
    let checked = 0;
    for (const [nb, md] of [
      [32, 128],
      [8, 128],
      [64, 128],
      [320, 128],
      [32, 20],
      [32, 1000],
    ]) {
      for (let rel = -3000; rel <= 3000; rel++) {
        expect.soft(relativePositionBucket(rel, nb, md), `rel ${rel}, ${nb} buckets, max_dist ${md}`).toBe(bucket64(rel, nb, md));
        checked++;
      }
    }
    expect(checked).toBe(6 * 6001);
  });

  it('have the umT5 shape: exact near 0, log-spaced, capped, upper half for keys after the query', () => {
    const b = (r: number) => relativePositionBucket(r, 32, 128);
    expect([0, 1, 7, -1, -7].map(b)).toEqual([0, 17, 23, 1, 7]);
    expect([8, 16, 32, 64, 90, 91, 128, 5000].map(b)).toEqual([24, 26, 28, 30, 30, 31, 31, 31]);
    expect([-8, -16, -32, -64, -90, -91, -128, -5000].map(b)).toEqual([8, 10, 12, 14, 14, 15, 15, 15]);
    for (let r = 1; r < 2000; r++) {
      if (r > 1) expect(b(r)).toBeGreaterThanOrEqual(b(r - 1));
      expect(b(-r)).toBeGreaterThanOrEqual(b(-(r - 1)));
      expect(b(r) - b(-r)).toBe(16);
    }
  });

  it('tables are indexed by key - query + L - 1 and gather [buckets, heads] per head', () => {
    const L = 11;
    const t = relativeBucketTable(L, 16, 128);
    expect(t.length).toBe(2 * L - 1);
    for (let j = 0; j < t.length; j++) expect(t[j]).toBe(bucket64(j - (L - 1), 16, 128));
    const heads = 3;
    const emb = randn(16 * heads, 3);
    const bias = relativeBiasTable(emb, heads, t);
    for (let n = 0; n < heads; n++) for (let j = 0; j < t.length; j++) expect(bias[n * t.length + j]).toBe(emb[t[j] * heads + n]);
  });
});

describe('umT5 encoder', () => {
  let e: Engine;
  let tiny: Engine;
  beforeAll(async () => {
    e = await Engine.create();
    // The smallest limit the encoder's operands allow (linear tiles of 8 aligned rows, the attention
    // bias [heads, 2L-1] in one binding); activations, keys and values still span several windows.
    tiny = await Engine.create({ maxStorageBindingBytes: 16384, maxBufferBytes: 65536 });
  });
  afterAll(async () => {
    await e.destroy();
    await tiny.destroy();
  });

  // The attention bias [heads, 2L-1] is one whole binding (4 heads x 271 f32 = 4336 bytes): the
  // fixture's smallest possible forced limit is above 4 KiB.
  it.each([
    ['real limits', () => e],
    ['16 KiB binding limit', () => tiny],
  ] as const)('the t5 fixture passes from .pth and .safetensors (%s)', async (_name, engine) => {
    const eng = engine();
    const before = eng.liveTensors;
    const r = await verifyFixture(eng, fixtureDir);
    expect(r.error).toBeUndefined();
    const names = r.outputs.map((o) => o.name);
    for (const fmt of ['pth', 'safetensors']) for (const n of ['last_hidden', 'context.2', 'rel_bucket', 'block.1']) expect(names).toContain(`${n} (${fmt})`);
    for (const o of r.outputs) expect({ name: o.name, pass: o.pass, relL2: o.relL2 }).toEqual({ name: o.name, pass: true, relL2: o.relL2 });
    expect(eng.liveTensors).toBe(before);
  });

  // dim != dim_attn; sizes multiples of 8 and head dim 16 like the fixture, so that no kernel variant
  // beyond the fixture's is compiled (pipeline compiles dominate the runtime on lavapipe).
  const cfg: TinyConfig = { vocab: 53, dim: 40, dimAttn: 48, dimFfn: 88, heads: 3, layers: 2, buckets: 8 };
  it.each([
    ['real limits', () => e],
    ['16 KiB binding limit', () => tiny],
  ] as const)('matches a float64 reference on a random model, padded and fully masked prompts included (%s)', async (_name, engine) => {
    const eng = engine();
    const model = randomModel(cfg, 100);
    await withEncoder(eng, memorySource(model), async (enc) => {
      expect(enc.config).toMatchObject({ vocab: 53, dim: 40, dimAttn: 48, dimFfn: 88, numHeads: 3, headDim: 16, numLayers: 2, numBuckets: 8 });
      const L = 37;
      const lens = [29, 11, 1, 0];
      const r = rng(7);
      const ids = Int32Array.from({ length: lens.length * L }, () => Math.floor(r() * cfg.vocab));
      const traced: { last?: Float32Array } = {};
      const out = await enc.encode(ids, prefixMask(lens, L), lens.length, L, async (name, v) => {
        if (name === 'last_hidden' && !(v instanceof Float32Array) && !(v instanceof Int32Array)) traced.last = (await v.toArray()) as Float32Array;
      });
      const last = traced.last;
      const ref = referenceEncoder(model, cfg, ids, lens, L);
      expect(last).toBeDefined();
      expect(relL2(last!, ref)).toBeLessThan(1e-5); // every row, padded queries included
      expect(out.map((o) => o.length)).toEqual(lens.map((n) => n * cfg.dim));
      lens.forEach((n, b) => {
        if (n) expect(relL2(out[b], ref.subarray(b * L * cfg.dim, (b * L + n) * cfg.dim))).toBeLessThan(1e-5);
      });
      // The fully masked prompt's padded rows: uniform attention over all keys, as torch.
      expect(relL2(last!.subarray(3 * L * cfg.dim), ref.subarray(3 * L * cfg.dim))).toBeLessThan(1e-5);
      // Untraced: only the first max(len) = 29 positions run; the trimmed outputs are the same.
      const trimmed = await enc.encode(ids, prefixMask(lens, L), lens.length, L);
      expect(trimmed.map((o) => o.length)).toEqual(lens.map((n) => n * cfg.dim));
      lens.forEach((n, b) => {
        if (n) expect(relL2(trimmed[b], ref.subarray(b * L * cfg.dim, (b * L + n) * cfg.dim))).toBeLessThan(1e-5);
      });
    });
  });

  it('gathers only the embedding rows of the prompt ids from a 256384-row table', async () => {
    const src = new WrappedSource(await openTensorSource(join(fixtureDir, 'models_t5_umt5-xxl-enc-bf16.safetensors')), { virtualVocab: 256384 });
    await withEncoder(e, src, async (enc) => {
      expect(enc.config.vocab).toBe(256384);
      expect(src.bytesRead.get('token_embedding.weight') ?? 0).toBe(0); // nothing read at load
      const dim = enc.config.dim;
      const L = 90;
      const lens = [70, 4]; // 2 x 70 computed positions > 128 rows: the linear kernel class of the batch test
      const ids = new Int32Array(2 * L);
      for (let j = 0; j < lens[0]; j++) ids[j] = (j * 40009 + 256383) % 256384;
      for (let j = lens[0]; j < L; j++) ids[j] = 77777 + j; // masked positions with ids of their own
      ids.set([5, 200000, 123457, 1], L);
      const distinctOf = (a: Int32Array) => new Set(a).size;
      const embedded = await enc.embed(ids);
      ids.forEach((id, t) => {
        for (let c = 0; c < dim; c += 13) expect(embedded[t * dim + c]).toBe(virtualValue(id, c));
      });
      expect(src.bytesRead.get('token_embedding.weight')).toBe(distinctOf(ids) * dim * 2);
      // Traced: every position runs, so every id is gathered (padding id 0 included).
      src.bytesRead.clear();
      const traced: { embed?: Float32Array } = {};
      const full = await enc.encode(ids, prefixMask(lens, L), 2, L, async (name, v) => {
        if (name === 'embed' && !(v instanceof Float32Array) && !(v instanceof Int32Array)) traced.embed = (await v.toArray()) as Float32Array;
      });
      expect(src.bytesRead.get('token_embedding.weight')).toBe(distinctOf(ids) * dim * 2);
      expect(Array.from(traced.embed!)).toEqual(Array.from(embedded));
      // Untraced: only the first max(len) = 70 positions of each prompt.
      src.bytesRead.clear();
      const out = await enc.encode(ids, prefixMask(lens, L), 2, L);
      const used = new Int32Array([...ids.subarray(0, 70), ...ids.subarray(L, L + 70)]);
      expect(distinctOf(used)).toBeLessThan(distinctOf(ids));
      expect(src.bytesRead.get('token_embedding.weight')).toBe(distinctOf(used) * dim * 2);
      expect(out.map((o) => o.length)).toEqual([70 * dim, 4 * dim]);
      for (let b = 0; b < 2; b++) {
        expect(out[b].every(Number.isFinite)).toBe(true);
        expect(relL2(out[b], full[b])).toBeLessThan(1e-6);
      }
      await expect(enc.encode(Int32Array.of(256384), Int32Array.of(1), 1, 1)).rejects.toThrow(/token id 256384 outside the vocabulary of 256384/);
    });
  });

  it('encodes each prompt of a batch as it encodes it alone, padded or not', async () => {
    const fx = await loadFixture(fixtureDir);
    await withEncoder(e, await openTensorSource(join(fixtureDir, 'models_t5_umt5-xxl-enc-bf16.safetensors')), async (enc) => {
      const [B, L] = fx.input('ids').shape;
      const ids = fx.input('ids').int();
      const mask = fx.input('mask').int();
      const lens = fx.config.seq_lens as number[];
      // Untraced, only max(len) positions run; traced, the padded ones too (as the official model).
      const batched = await enc.encode(ids, mask, B, L);
      const padded = await enc.encode(ids, mask, B, L, () => {});
      expect(batched.map((o) => o.length / enc.config.dim)).toEqual(lens);
      for (let b = 0; b < B; b++) {
        expect(relL2(batched[b], fx.output(`context.${b}`).f64())).toBeLessThan(1e-4);
        expect(relL2(padded[b], batched[b])).toBeLessThan(1e-6);
        const row = (a: Int32Array) => a.slice(b * L, (b + 1) * L);
        const [alone] = await enc.encode(row(ids), row(mask), 1, L);
        expect(relL2(alone, batched[b])).toBeLessThan(1e-6);
        // Masked keys contribute exactly nothing: the amount of padding is irrelevant.
        const [alonePadded] = await enc.encode(row(ids), row(mask), 1, L, () => {});
        expect(relL2(alonePadded, batched[b])).toBeLessThan(1e-6);
      }
      expect(relL2(batched[0].subarray(0, 64), batched[1].subarray(0, 64))).toBeGreaterThan(1e-2); // prompts differ
    });
  });

  it('rejects a checkpoint missing a block tensor, naming the file and the key, and frees what it uploaded', async () => {
    for (const file of ['models_t5_umt5-xxl-enc-bf16.pth', 'models_t5_umt5-xxl-enc-bf16.safetensors']) {
      for (const hide of ['blocks.1.ffn.fc2.weight', 'blocks.1.pos_embedding.embedding.weight', 'norm.weight']) {
        const src = new WrappedSource(await openTensorSource(join(fixtureDir, file)), { hide });
        const before = e.liveTensors;
        const err = await UmT5Encoder.load(e, src).then(
          (enc) => (enc.dispose(), null),
          (x: Error) => x.message,
        );
        await src.close();
        expect(err).toContain(file);
        expect(err).toContain(`missing tensor "${hide}"`);
        expect(e.liveTensors).toBe(before); // the tensors uploaded before the missing one are freed
      }
    }
    const src = new WrappedSource(await openTensorSource(join(fixtureDir, 'models_t5_umt5-xxl-enc-bf16.safetensors')), { hide: 'token_embedding.weight' });
    await expect(UmT5Encoder.load(e, src)).rejects.toThrow(/models_t5_umt5-xxl-enc-bf16\.safetensors: missing tensor "token_embedding.weight"/);
    await src.close();
  });

  it('streams its blocks (stream: true): the same contexts bit for bit, nothing left on the device, missing tensors found at load', async () => {
    const fx = await loadFixture(fixtureDir);
    const [B, L] = fx.input('ids').shape;
    const ids = fx.input('ids').int();
    const mask = fx.input('mask').int();
    const file = join(fixtureDir, 'models_t5_umt5-xxl-enc-bf16.safetensors');
    let want: Float32Array[] = [];
    await withEncoder(e, await openTensorSource(file), async (enc) => {
      want = await enc.encode(ids, mask, B, L);
    });
    const src = await openTensorSource(file);
    const before = e.liveTensors;
    const enc = await UmT5Encoder.load(e, src, { stream: true });
    expect(enc.streamed).toBe(true);
    expect(e.liveTensors - before).toBe(1); // the final norm only
    for (let pass = 0; pass < 2; pass++) {
      const got = await enc.encode(ids, mask, B, L);
      for (let b = 0; b < B; b++) expect(Buffer.from(got[b].buffer).equals(Buffer.from(want[b].buffer))).toBe(true);
      expect(e.liveTensors - before).toBe(1);
    }
    enc.dispose();
    await src.close();
    const hidden = new WrappedSource(await openTensorSource(file), { hide: 'blocks.1.ffn.fc2.weight' });
    await expect(UmT5Encoder.load(e, hidden, { stream: true })).rejects.toThrow(/missing tensor "blocks\.1\.ffn\.fc2\.weight"/);
    await hidden.close();
    expect(e.liveTensors).toBe(before);
  });

  it('rejects inputs it cannot encode', async () => {
    await withEncoder(e, await openTensorSource(join(fixtureDir, 'models_t5_umt5-xxl-enc-bf16.safetensors')), async (enc) => {
      await expect(enc.encode(new Int32Array(8), Int32Array.of(1, 0, 1, 0), 1, 4)).rejects.toThrow(/batch x textLen = 1x4/);
      await expect(enc.encode(new Int32Array(4), Int32Array.of(1, 0, 1, 0), 1, 4)).rejects.toThrow(/mask of prompt 0 is not a prefix/);
      await expect(enc.encode(Int32Array.of(1, -2), Int32Array.of(1, 1), 1, 2)).rejects.toThrow(/token id -2 outside/);
    });
  });
});
