// Streaming checkpoint tensors to the device: chunked reads, dtype conversion, sharded indexes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, bf16BitsToF32, f32ToBf16Bits } from '../engine/index.ts';
import { SafetensorsFile, writeSafetensors } from '../loaders/safetensors.ts';
import { ShardedSafetensors } from '../loaders/sharded.ts';
import { uploadTensor } from '../loaders/upload.ts';
import { openTensorSource } from '../loaders/open.ts';
import { randn } from './helpers.ts';

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
