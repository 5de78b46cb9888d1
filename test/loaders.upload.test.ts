// Streaming checkpoint tensors to the device: chunked reads, dtype conversion, sharded indexes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { command as benchLoad } from '../bench/load.ts';
import { Engine, bf16BitsToF32, f32ToBf16Bits } from '../engine/index.ts';
import { SafetensorsFile, writeSafetensors } from '../loaders/safetensors.ts';
import { ShardedSafetensors } from '../loaders/sharded.ts';
import { uploadTensor } from '../loaders/upload.ts';
import { openTensorSource } from '../loaders/open.ts';
import { Bf16Converter, f32BitsToBf16Scalar } from '../loaders/bf16-simd.ts';
import type { TensorSource } from '../loaders/source.ts';
import { randn, rng } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'wan-upload-'));
let e: Engine;
beforeAll(async () => {
  // Tiny limits: the uploaded tensors span several device buffers.
  e = await Engine.create({ maxStorageBindingBytes: 4096, maxBufferBytes: 16384 });
});
afterAll(async () => {
  await e.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

const f32Bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe('uploadTensor', () => {
  it('streams float32 to bf16 (round to nearest even) in small chunks across segments', async () => {
    const w = randn(37 * 301, 11, 3); // odd row length: rows start mid-word in bf16
    const p = join(tmp, 'w.safetensors');
    await writeSafetensors(p, { w: { dtype: 'F32', shape: [37, 301], data: f32Bytes(w) } });
    const f = await SafetensorsFile.open(p);
    const t = await uploadTensor(e, f, 'w', { chunkBytes: 1000, shape: [37, 301] });
    expect(t.dtype).toBe('bf16');
    expect(t.storage.segments.length).toBeGreaterThan(1);
    const got = await t.toArray();
    for (let i = 0; i < w.length; i++) expect(got[i]).toBe(bf16BitsToF32(f32ToBf16Bits(w[i])));
    // f32 storage keeps the values exactly
    const t32 = await uploadTensor(e, f, 'w', { dtype: 'f32', chunkBytes: 4004 });
    expect(Array.from(await t32.toArray())).toEqual(Array.from(w));
    await expect(uploadTensor(e, f, 'w', { shape: [301, 37] })).rejects.toThrow(/"w" has shape \[37,301\], expected \[301,37\]/);
    await expect(uploadTensor(e, f, 'nope')).rejects.toThrow(/missing tensor "nope"/);
    t.dispose();
    t32.dispose();
    await f.close();
  });

  it('counts float16 overflows', async () => {
    const v = Float32Array.from([1, 70000, -1e6, 65504, 3]);
    const p = join(tmp, 'big.safetensors');
    await writeSafetensors(p, { v: { dtype: 'F32', shape: [5], data: f32Bytes(v) } });
    const f = await SafetensorsFile.open(p);
    const stats = { overflows: 0 };
    const t = await uploadTensor(e, f, 'v', { dtype: 'f16' }, stats);
    expect(stats.overflows).toBe(2);
    expect(Array.from(await t.toArray())).toEqual([1, Infinity, -Infinity, 65504, 3]);
    t.dispose();
    await f.close();
  });
});

describe('float32 -> bf16 conversion (WebAssembly SIMD)', () => {
  // Every class of input: zeros, subnormals, ties (odd and even), values that round up into the
  // exponent and to infinity, infinities, quiet and signalling NaNs of both signs, random bits.
  const special = [
    0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0x3f7fffff,
    0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001,
    0x7fffffff, 0xffffffff, 0x7fbfffff,
  ];
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const reference = (bits: number) => {
    u32[0] = bits;
    return f32ToBf16Bits(f32[0]);
  };

  it('matches the engine rounding bit for bit, SIMD body and scalar tail, at odd lengths', () => {
    const c = new Bf16Converter(4096, 2);
    expect(c.simd).toBe(true); // Node 20 has WebAssembly SIMD; the scalar path is the fallback
    const r = rng(7);
    for (const n of [1, 7, 8, 9, 21, 1000, 4093, 4096]) {
      for (const slot of [0, 1]) {
        const input = new Uint32Array(n);
        for (let i = 0; i < n; i++) input[i] = i < special.length ? special[(i + n) % special.length] : Math.floor(r() * 2 ** 32);
        const inView = c.input(slot, n);
        inView.set(new Uint8Array(input.buffer));
        // poison the output slot: every half must be written
        const out = c.convert(slot, 0);
        new Uint16Array(out.buffer, out.byteOffset, 4096).fill(0xdead);
        const got = c.convert(slot, n);
        expect(got.byteLength).toBe(2 * n);
        const halves = new Uint16Array(got.buffer, got.byteOffset, n);
        for (let i = 0; i < n; i++) if (halves[i] !== reference(input[i])) expect([n, i, input[i].toString(16), halves[i].toString(16)]).toEqual([n, i, input[i].toString(16), reference(input[i]).toString(16)]);
      }
    }
    // The scalar twin alone agrees too.
    const all = Uint32Array.from(special);
    const out = new Uint16Array(all.length);
    f32BitsToBf16Scalar(all, out, all.length);
    expect(Array.from(out)).toEqual(special.map(reference));
    expect(() => new Bf16Converter(12, 1)).toThrow(/not a multiple of 8/);
  });

  it('streams through sources without readInto (fallback read) and with tensors smaller than one SIMD group', async () => {
    const w = randn(3 * 1021, 5, 4);
    const p = join(tmp, 'fallback.safetensors');
    await writeSafetensors(p, {
      w: { dtype: 'F32', shape: [3, 1021], data: f32Bytes(w) },
      tiny: { dtype: 'F32', shape: [3], data: f32Bytes(w.subarray(0, 3)) },
    });
    const f = await SafetensorsFile.open(p);
    // A source that only has readRange (like a .pth of a non-contiguous tensor).
    const plain: TensorSource = { path: f.path, names: () => f.names(), has: (n) => f.has(n), info: (n) => f.info(n), readRange: (n, o, l) => f.readRange(n, o, l), close: () => f.close() };
    for (const src of [plain, f]) {
      const t = await uploadTensor(e, src, 'w', { chunkBytes: 4 * 104 }); // 104 values a chunk: 13 SIMD groups, tail chunk of 85
      const got = await t.toArray();
      for (let i = 0; i < w.length; i++) if (got[i] !== bf16BitsToF32(f32ToBf16Bits(w[i]))) expect([i, got[i]]).toEqual([i, bf16BitsToF32(f32ToBf16Bits(w[i]))]);
      const tiny = await uploadTensor(e, src, 'tiny');
      expect(Array.from(await tiny.toArray())).toEqual(Array.from(w.subarray(0, 3), (v) => bf16BitsToF32(f32ToBf16Bits(v))));
      t.dispose();
      tiny.dispose();
    }
    // A read that fails mid-tensor: the error names the file, nothing is left allocated.
    const live = e.liveTensors;
    const failing: TensorSource = { ...plain, readRange: async (n, o, l) => (o > 0 ? Promise.reject(new Error('disk on fire')) : f.readRange(n, o, l)) };
    await expect(uploadTensor(e, failing, 'w', { chunkBytes: 4 * 104 })).rejects.toThrow(/disk on fire/);
    expect(e.liveTensors).toBe(live);
    await f.close();
  });
});

describe('sharded safetensors', () => {
  it('reads tensors through the index and names a missing shard', async () => {
    const a = randn(10, 1);
    const b = randn(6, 2);
    await writeSafetensors(join(tmp, 'm-1.safetensors'), { a: { dtype: 'F32', shape: [10], data: f32Bytes(a) } });
    await writeSafetensors(join(tmp, 'm-2.safetensors'), { b: { dtype: 'F32', shape: [2, 3], data: f32Bytes(b) } });
    const idx = join(tmp, 'm.safetensors.index.json');
    writeFileSync(idx, JSON.stringify({ metadata: {}, weight_map: { a: 'm-1.safetensors', b: 'm-2.safetensors' } }));
    const s = await ShardedSafetensors.open(idx);
    expect(s.names().sort()).toEqual(['a', 'b']);
    expect(s.info('b').shape).toEqual([2, 3]);
    const t = await uploadTensor(e, s, 'b', { dtype: 'f32' });
    expect(Array.from(await t.toArray())).toEqual(Array.from(b));
    t.dispose();
    await s.close();
    writeFileSync(idx, JSON.stringify({ weight_map: { a: 'm-1.safetensors', c: 'm-3.safetensors' } }));
    await expect(ShardedSafetensors.open(idx)).rejects.toThrow(/shard m-3\.safetensors \(listed for "c"\)/);
    writeFileSync(idx, '{not json');
    await expect(ShardedSafetensors.open(idx)).rejects.toThrow(/cannot read the shard index/);
  });
});

describe('openTensorSource', () => {
  it('streams the same umT5 weights from .pth and .safetensors', async () => {
    const dir = new URL('./fixtures/t5/', import.meta.url).pathname;
    const pth = await openTensorSource(join(dir, 'models_t5_umt5-xxl-enc-bf16.pth'));
    const st = await openTensorSource(join(dir, 'models_t5_umt5-xxl-enc-bf16.safetensors'));
    expect(pth.names().sort()).toEqual(st.names().sort());
    for (const name of ['token_embedding.weight', 'blocks.0.attn.q.weight', 'norm.weight']) {
      const a = await uploadTensor(e, pth, name, { chunkBytes: 2048 });
      const b = await uploadTensor(e, st, name);
      expect(Array.from(await a.toArray())).toEqual(Array.from(await b.toArray()));
      a.dispose();
      b.dispose();
    }
    await pth.close();
    await st.close();
    await expect(openTensorSource(join(dir, 'nope.pth'))).rejects.toThrow(/checkpoint file not found/);
    await expect(openTensorSource(join(dir, 'case.json'))).rejects.toThrow(/unknown checkpoint format/);
  });
});

describe('npm run bench -- load', () => {
  it('--json on a small file: raw and loader rates, warm and cold (or why cold was skipped)', async () => {
    const out: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((m: string) => void out.push(m));
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    let code: number;
    try {
      code = await benchLoad(['--gb', '0.03', '--repeat', '1', '--json', '--dir', tmp]);
    } finally {
      log.mockRestore();
      err.mockRestore();
    }
    expect(code).toBe(0);
    const r = JSON.parse(out.join('\n'));
    expect(r.bytes).toBeGreaterThan(0.029e9);
    expect(r.bytes).toBeLessThan(0.031e9);
    for (const m of [r.warm.raw, r.warm.loader, r.warmReusedDeviceMemory]) expect(m.gbps).toBeGreaterThan(0);
    expect(r.warm.ratio).toBeCloseTo(r.warm.loader.gbps / r.warm.raw.gbps, 6);
    expect(r.cold.skipped ?? r.cold.note).toMatch(/nocache/);
    expect(await benchLoad(['--gb', '-1'])).toBe(2);
  }, 60_000);
});
