// Synthetic full-size checkpoints (bench/make-checkpoint.ts) and the streaming writers under them:
// the writers give serializeSafetensors' / serializePth's bytes while holding two chunks at most;
// zip64 archives read back through our reader and Python's zipfile; the full-size plans have the
// official shard and file sizes; the same code at tiny widths writes folders that locateCheckpoint
// and `wan info` recognise as each task, whose shards, index and .pth files have the official
// names, shapes and dtypes and hold exactly the generator's values; reuse, --force, refusals and
// cleanup after a failed run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, promises as fsp, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkpointInfo } from '../cli/info-checkpoint.ts';
import { locateCheckpoint } from '../loaders/checkpoint.ts';
import { ChunkedFileWriter } from '../loaders/chunked-file.ts';
import { openRawTensorSource } from '../loaders/open.ts';
import { PthFile } from '../loaders/pth.ts';
import { serializePth, type PthTensorData } from '../loaders/pth-writer.ts';
import { pthStreamLayout, writePthStreaming } from '../loaders/pth-stream-writer.ts';
import { SafetensorsFile, serializeSafetensors, DTYPE_SIZE, type StDType } from '../loaders/safetensors.ts';
import { writeSafetensorsStreaming, type StreamTensor } from '../loaders/safetensors-stream-writer.ts';
import { ZipArchive } from '../loaders/zip.ts';
import { ditTensors, t5Tensors, vaeTensors, type TensorSpec } from '../model/demo/architecture.ts';
import { TASKS, T5_FILE, type TaskName } from '../model/pipelines/tasks.ts';
import {
  MANIFEST,
  makeSyntheticCheckpoint,
  planSyntheticCheckpoint,
  splitShards,
  type ArchOverrides,
  type SyntheticCheckpointOptions,
} from '../bench/make-checkpoint.ts';
import { fillSynthetic, syntheticValueAt, tensorSeed, valueTable } from '../bench/synthetic-fill.ts';
import { rng } from './helpers.ts';

let tmp = '';
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'make-ckpt-'));
});
afterAll(async () => {
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

/** Random bytes of a tensor, and a fill function serving them. */
function randomTensors(specs: [string, StDType, number[]][], seed: number): { list: StreamTensor[]; data: Map<string, Uint8Array> } {
  const r = rng(seed);
  const data = new Map<string, Uint8Array>();
  const list = specs.map(([name, dtype, shape]) => {
    const b = new Uint8Array(shape.reduce((a, x) => a * x, 1) * DTYPE_SIZE[dtype]);
    for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
    data.set(name, b);
    return { name, dtype, shape };
  });
  return { list, data };
}

const SMALL: [string, StDType, number[]][] = [
  ['encoder.conv1.weight', 'F32', [5, 3, 3, 3, 3]],
  ['blocks.0.attn.q.weight', 'BF16', [7, 13]],
  ['odd', 'F16', [1, 6, 11]],
  ['scalar', 'F64', []],
  ['empty', 'F32', [0, 4]],
  ['big', 'F32', [3, 1000]], // spans many chunks
];

function python(): string | null {
  for (const p of ['/usr/bin/python3', 'python3']) {
    try {
      execFileSync(p, ['-c', 'import zipfile'], { stdio: 'ignore' });
      return p;
    } catch {
      // try the next one
    }
  }
  return null;
}

describe('streaming writers', () => {
  it('write the same bytes as the in-memory writers, handing out at most one chunk at a time', async () => {
    const { list, data } = randomTensors(SMALL, 1);
    let largest = 0;
    const fill = (t: StreamTensor, dst: Uint8Array, off: number) => {
      largest = Math.max(largest, dst.byteLength);
      dst.set(data.get(t.name)!.subarray(off, off + dst.byteLength));
    };
    const st = path.join(tmp, 'a.safetensors');
    const stBytes = await writeSafetensorsStreaming(st, list, fill, { metadata: { format: 'pt' }, chunkBytes: 64 });
    const ref = serializeSafetensors(Object.fromEntries(list.map((t) => [t.name, { ...t, data: data.get(t.name)! }])), { format: 'pt' });
    expect(stBytes).toBe(ref.byteLength);
    expect(Buffer.compare(readFileSync(st), Buffer.from(ref))).toBe(0);
    expect(largest).toBe(64);

    largest = 0;
    const pth = path.join(tmp, 'a.pth');
    const pthBytes = await writePthStreaming(pth, list, fill, { folder: 'archive', chunkBytes: 24 });
    const pthRef = serializePth(list.map((t): [string, PthTensorData] => [t.name, { ...t, data: data.get(t.name)! }]), { folder: 'archive' });
    expect(pthBytes).toBe(pthRef.byteLength);
    expect(Buffer.compare(readFileSync(pth), Buffer.from(pthRef))).toBe(0);
    expect(largest).toBe(24);
  });

  it('keeps two chunk buffers whatever the file size (array-buffer memory does not grow with it)', async () => {
    const chunk = 1 << 20;
    const w = await ChunkedFileWriter.create(path.join(tmp, 'big.bin'), { chunkBytes: chunk });
    const base = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const total = 96 * chunk + 40;
    let sum = 0;
    await w.stream(total, (dst, off) => {
      dst.fill((off / chunk) & 0xff);
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
    });
    await w.close();
    expect(w.largestFill).toBe(chunk);
    expect(w.bufferBytes).toBe(2 * chunk);
    expect(peak).toBeLessThan(8 * chunk); // the file is 96 chunks
    const back = readFileSync(path.join(tmp, 'big.bin'));
    expect(back.byteLength).toBe(total);
    for (const at of [0, chunk - 1, chunk, 50 * chunk + 7, total - 1]) sum += back[at]! === (Math.floor(at / chunk) & 0xff) ? 1 : 0;
    expect(sum).toBe(5);
  });

  // torch's own reader (miniz) is not asked here: it checks the 32-bit header offset + size against
  // the archive size, which a forced-zip64 archive under 4 GiB fails by construction (the saturated
  // offset); real archives past 4 GiB pass it, and the full-size umT5 file was opened with torch.
  it('writes zip64 records that our reader and Python zipfile accept (offsets, CRCs, data)', async () => {
    const { list, data } = randomTensors(SMALL, 2);
    const file = path.join(tmp, 'z64.pth');
    await writePthStreaming(file, list, (t, dst, off) => dst.set(data.get(t.name)!.subarray(off, off + dst.byteLength)), { folder: 'z64', forceZip64: true, chunkBytes: 16 });
    const layout = pthStreamLayout(list, { folder: 'z64', forceZip64: true });
    expect(layout.zip64).toBe(true);
    const zip = await ZipArchive.open(file);
    try {
      expect(zip.zip64).toBe(true);
      for (const n of zip.names()) expect(await zip.verifyCrc(zip.entry(n)), n).toBe(true);
      expect(zip.names().map((n) => zip.entry(n).localHeaderOffset)).toEqual(layout.records.map((r) => r.offset));
    } finally {
      await zip.close();
    }
    const pth = await PthFile.open(file);
    try {
      expect(pth.keys()).toEqual(list.map((t) => t.name));
      for (const t of list) expect(Buffer.compare(Buffer.from(await pth.readRaw(t.name)), Buffer.from(data.get(t.name)!)), t.name).toBe(0);
    } finally {
      await pth.close();
    }
    const py = python();
    if (!py) {
      console.log('skipped the Python zipfile check: no python3');
      return;
    }
    const out = execFileSync(py, ['-c', 'import sys, zipfile, json; z = zipfile.ZipFile(sys.argv[1]); print(json.dumps([z.testzip(), [[i.filename, i.header_offset, i.file_size] for i in z.infolist()]]))', file], { encoding: 'utf8' });
    const [bad, infos] = JSON.parse(out) as [string | null, [string, number, number][]];
    expect(bad).toBeNull(); // every CRC matches
    expect(infos.map((i) => i[1])).toEqual(layout.records.map((r) => r.offset));
    expect(infos.map((i) => i[2])).toEqual(layout.records.map((r) => r.size));
  });

  it('refuses what the formats cannot hold', async () => {
    const f = () => {};
    await expect(writePthStreaming(path.join(tmp, 'x.pth'), [{ name: 'u', dtype: 'U32', shape: [2] }], f, { folder: 'x' })).rejects.toThrow(/U32 has no torch storage/);
    expect(() => pthStreamLayout([{ name: 'huge', dtype: 'F32', shape: [2 ** 30] }], { folder: 'x' })).toThrow(/4 GiB/);
    expect(() => pthStreamLayout([{ name: 'a', dtype: 'F32', shape: [1] }, { name: 'a', dtype: 'F32', shape: [1] }], { folder: 'x' })).toThrow(/twice/);
    await expect(ChunkedFileWriter.create(path.join(tmp, 'y'), { chunkBytes: 12 })).rejects.toThrow(/multiple of 8/);
  });
});

describe('synthetic values', () => {
  it('are deterministic, chunk-independent, bf16-exact in f32 files, and at the init scale', () => {
    const init = { mean: 0, std: 0.02 };
    const seed = tensorSeed('m', 'w');
    const n = 10001;
    const whole = new Uint8Array(n * 4);
    fillSynthetic(whole, 0, 'F32', valueTable(init), seed);
    // Uneven pieces: odd element starts and lengths.
    const pieces = new Uint8Array(n * 4);
    for (let off = 0; off < n * 4; ) {
      const len = Math.min(4 * (1 + ((off / 4) % 37)), n * 4 - off);
      fillSynthetic(pieces.subarray(off, off + len), off, 'F32', valueTable(init), seed);
      off += len;
    }
    expect(Buffer.compare(Buffer.from(whole), Buffer.from(pieces))).toBe(0);
    const f = new Float32Array(whole.buffer);
    const bf = new Uint8Array(n * 2);
    fillSynthetic(bf, 0, 'BF16', valueTable(init), seed);
    const bits = new Uint16Array(bf.buffer);
    const f32Bits = new Uint32Array(whole.buffer);
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      expect(f32Bits[i]).toBe((bits[i]! << 16) >>> 0); // the same values in both dtypes (>>> 0: << is a signed 32-bit shift)
      if (i % 997 === 0) expect(f[i]).toBe(syntheticValueAt(i, init, seed));
      s += f[i]!;
      s2 += f[i]! ** 2;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.001);
    expect(Math.sqrt(s2 / n)).toBeGreaterThan(0.019);
    expect(Math.sqrt(s2 / n)).toBeLessThan(0.021);
    // Another tensor's seed gives other values.
    const other = new Uint8Array(64);
    fillSynthetic(other, 0, 'F32', valueTable(init), tensorSeed('m', 'w2'));
    expect(Buffer.compare(Buffer.from(other), Buffer.from(whole.subarray(0, 64)))).not.toBe(0);
  });
});

describe('full-size plans', () => {
  const gb = (n: number) => Number((n / 1e9).toFixed(2));

  it('an A14B expert: the official six shards (9.99, 9.94, 9.94, 9.84, 9.84, 7.6 GB), umT5 11.4 GB, Wan2.1 VAE 508 MB', () => {
    for (const task of ['t2v-A14B', 'i2v-A14B'] as TaskName[]) {
      const plan = planSyntheticCheckpoint({ task });
      const shards = plan.files.filter((f) => /high_noise_model\/diffusion_pytorch_model-\d{5}-of-00006\.safetensors$/.test(f.path));
      expect(shards.map((f) => gb(f.bytes))).toEqual([9.99, 9.94, 9.94, 9.84, 9.84, 7.6]);
      expect(plan.aliases).toEqual({ low_noise_model: 'high_noise_model' });
      expect(gb(plan.files.find((f) => f.path === T5_FILE)!.bytes)).toBe(11.36);
      expect(Math.round(plan.files.find((f) => f.path === 'Wan2.1_VAE.pth')!.bytes / 1e6)).toBe(508);
      expect(plan.arch.dit.inDim).toBe(task === 'i2v-A14B' ? 36 : 16);
    }
    const bf16 = planSyntheticCheckpoint({ task: 't2v-A14B', ditDtype: 'BF16', expert: 'both' });
    expect(bf16.folderName).toBe('t2v-A14B-both-bf16');
    expect(bf16.files.filter((f) => f.path.endsWith('.safetensors')).length).toBe(6); // 28.6 GB per expert: 3 shards each
  });

  it('ti2v-5B: 5.0 B parameters in three float32 shards, the Wan2.2 VAE 2.82 GB', () => {
    const plan = planSyntheticCheckpoint({ task: 'ti2v-5B' });
    const params = ditTensors(plan.arch.dit).reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    expect(params / 1e9).toBeCloseTo(5.0, 1);
    expect(plan.files.filter((f) => /^diffusion_pytorch_model-\d{5}-of-00003\.safetensors$/.test(f.path)).length).toBe(3);
    expect(gb(plan.files.find((f) => f.path === 'Wan2.2_VAE.pth')!.bytes)).toBe(2.82);
    for (const expert of ['high', 'low', 'both'] as const) expect(() => planSyntheticCheckpoint({ task: 'ti2v-5B', expert })).toThrow(/no experts/);
  });

  it('splits shards as huggingface_hub: in order, a new shard before overflowing, an oversized tensor alone', () => {
    const t = (name: string, n: number): StreamTensor => ({ name, dtype: 'U8', shape: [n] });
    const shards = splitShards([t('a', 4), t('b', 5), t('c', 2), t('d', 12), t('e', 3)], 10);
    // d (12 > 10) is appended as its own shard at once, before the shard c starts.
    expect(shards.map((s) => s.map((x) => x.name))).toEqual([['a', 'b'], ['d'], ['c', 'e']]);
  });
});

// ---------------------------------------------------------------------------------------------
// Tiny widths, the real code path

function tinyArch(task: TaskName): ArchOverrides {
  return {
    dit: { dim: 32, ffnDim: 48, numHeads: 2, numLayers: 2, textLen: 16 },
    t5: { vocab: 1024, dim: 16, dimAttn: 16, dimFfn: 24, numHeads: 2, numLayers: 2 },
    vae: TASKS[task].vae === '2.2' ? { dim: 4, decDim: 6 } : { dim: 4 },
  };
}

const SHARD = 16384;

function tinyOptions(task: TaskName, out: string, extra: Partial<SyntheticCheckpointOptions> = {}): SyntheticCheckpointOptions {
  return { task, out, arch: tinyArch(task), maxShardBytes: SHARD, chunkBytes: 4096, log: () => {}, ...extra };
}

/** Every element of a few tensors (and a few of the rest) equals the generator's. */
async function expectSyntheticValues(file: string, specs: TensorSpec[], model: string, full: string[]): Promise<void> {
  const src = await openRawTensorSource(file);
  try {
    for (const s of specs) {
      const info = src.info(s.name);
      const n = s.shape.reduce((a, b) => a * b, 1);
      const size = DTYPE_SIZE[info.dtype];
      const bytes = await src.readRange(s.name, 0, n * size);
      const seed = tensorSeed(model, s.name);
      const values = info.dtype === 'F32' ? new Float32Array(bytes.buffer, bytes.byteOffset, n) : Float32Array.from(new Uint16Array(bytes.buffer, bytes.byteOffset, n), (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!);
      const check = full.includes(s.name) ? [...Array(n).keys()] : [0, 1, Math.floor(n / 2), n - 1].filter((i) => i >= 0 && i < n);
      for (const i of check) if (values[i] !== syntheticValueAt(i, s.init, seed)) throw new Error(`${file}: ${s.name}[${i}] = ${values[i]}, the generator says ${syntheticValueAt(i, s.init, seed)}`);
    }
  } finally {
    await src.close();
  }
}

describe('tiny synthetic checkpoints', () => {
  it('ti2v-5B: recognised by locateCheckpoint and wan info; shards, index, .pth files and values as planned', async () => {
    const out = path.join(tmp, 'ti2v');
    const r = await makeSyntheticCheckpoint(tinyOptions('ti2v-5B', out));
    expect(r.reused).toBe(false);
    const plan = planSyntheticCheckpoint(tinyOptions('ti2v-5B', out));
    const files = locateCheckpoint(out, TASKS['ti2v-5B']);
    expect(files.dit!.weights).toBe(path.join(out, 'diffusion_pytorch_model.safetensors.index.json'));

    const info = await checkpointInfo(out);
    expect(info.task).toBe('ti2v-5B');
    const dit = info.components.find((c) => c.name === 'diffusion model')!;
    expect(dit.architecture).toBe('WanModel ti2v: dim 32, 2 layers, 2 heads, ffn 48, in 48, out 48, text 16 x 16');
    expect(dit.dtypes).toEqual({ F32: dit.params });
    expect(info.components.find((c) => c.name === 'text encoder')!.dtypes).toHaveProperty('BF16');
    expect(Object.keys(info.components.find((c) => c.name === 'VAE')!.dtypes)).toEqual(['F32']);

    // Shards and index: every official name once, in the shard the index says, sorted inside it.
    const specs = ditTensors(plan.arch.dit);
    const index = JSON.parse(readFileSync(files.dit!.weights, 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    expect(Object.keys(index)).toEqual(['metadata', 'weight_map']);
    expect(Object.keys(index.weight_map)).toEqual(specs.map((s) => s.name).sort());
    const expected = splitShards(specs.map((s) => ({ name: s.name, dtype: 'F32' as StDType, shape: s.shape })), SHARD);
    expect(expected.length).toBeGreaterThan(2);
    const shardNames = [...new Set(Object.values(index.weight_map))].sort();
    expect(shardNames).toEqual(expected.map((_, i) => `diffusion_pytorch_model-${String(i + 1).padStart(5, '0')}-of-${String(expected.length).padStart(5, '0')}.safetensors`));
    let total = 0;
    for (const [i, name] of shardNames.entries()) {
      const f = await SafetensorsFile.open(path.join(out, name));
      try {
        const names = f.names();
        expect(names).toEqual(expected[i]!.map((t) => t.name).sort());
        for (const n of names) {
          expect(index.weight_map[n]).toBe(name);
          const spec = specs.find((s) => s.name === n)!;
          expect(f.info(n).shape).toEqual(spec.shape);
          expect(f.info(n).dtype).toBe('F32');
          total += spec.shape.reduce((a, b) => a * b, 1) * 4;
        }
        expect(f.metadata).toEqual({ format: 'pt' });
      } finally {
        await f.close();
      }
    }
    expect(index.metadata.total_size).toBe(total);
    expect(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'))).toMatchObject({ _class_name: 'WanModel', model_type: 'ti2v', dim: 32, in_dim: 48, num_heads: 2 });

    // .pth files: official names in state dict order, shapes, dtypes; values everywhere checked.
    const t5Specs = t5Tensors(plan.arch.t5);
    const vaeSpecs = vaeTensors(plan.arch.vae);
    for (const [file, list, dtype] of [[files.t5, t5Specs, 'BF16'], [files.vae, vaeSpecs, 'F32']] as const) {
      const pth = await PthFile.open(file);
      try {
        expect(pth.folder).toBe(path.basename(file, '.pth'));
        expect(pth.keys()).toEqual(list.map((s) => s.name));
        for (const s of list) {
          expect(pth.entry(s.name).shape, s.name).toEqual(s.shape);
          expect(pth.entry(s.name).dtype, s.name).toBe(dtype);
          expect(pth.entry(s.name).byteOffset % 64).toBe(0);
        }
      } finally {
        await pth.close();
      }
      const zip = await ZipArchive.open(file);
      try {
        for (const n of zip.names()) expect(await zip.verifyCrc(zip.entry(n)), n).toBe(true);
      } finally {
        await zip.close();
      }
    }
    // token_embedding (32 KB bf16) spans 8 chunks of 4 KiB: every value is the generator's.
    await expectSyntheticValues(files.t5, t5Specs, 'umt5', ['token_embedding.weight']);
    await expectSyntheticValues(files.vae, vaeSpecs, 'vae2.2', ['decoder.head.2.weight']);
    await expectSyntheticValues(files.dit!.weights, specs, 'ti2v-5B/model', ['blocks.1.ffn.0.weight', 'patch_embedding.weight']);

    // The manifest lists every file at its size; nothing temporary is left beside the folder.
    const m = JSON.parse(readFileSync(path.join(out, MANIFEST), 'utf8'));
    expect(m).toMatchObject({ task: 'ti2v-5B', ditDtype: 'F32', experts: null });
    for (const f of plan.files) expect(m.files[f.path]).toBe(f.bytes);
    expect(readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('t2v-A14B with one expert: the other folder links to it; i2v-A14B with both in bf16 is told apart by in_dim', async () => {
    const a = path.join(tmp, 't2v');
    await makeSyntheticCheckpoint(tinyOptions('t2v-A14B', a));
    expect(lstatSync(path.join(a, 'low_noise_model')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(path.join(a, 'low_noise_model'))).toBe('high_noise_model');
    const info = await checkpointInfo(a);
    expect(info.task).toBe('t2v-A14B');
    expect(info.components.map((c) => c.name)).toEqual(['high-noise expert', 'low-noise expert', 'text encoder', 'VAE']);
    const plan = planSyntheticCheckpoint(tinyOptions('t2v-A14B', a));
    await expectSyntheticValues(path.join(a, 'low_noise_model', 'diffusion_pytorch_model.safetensors.index.json'), ditTensors(plan.arch.dit), 't2v-A14B/high_noise_model', ['head.head.weight']);
    await expectSyntheticValues(path.join(a, 'Wan2.1_VAE.pth'), vaeTensors(plan.arch.vae), 'vae2.1', []);

    const b = path.join(tmp, 'i2v');
    await makeSyntheticCheckpoint(tinyOptions('i2v-A14B', b, { expert: 'both', ditDtype: 'BF16' }));
    const ib = await checkpointInfo(b);
    expect(ib.task).toBe('i2v-A14B');
    expect(ib.components[0]!.architecture).toContain('WanModel i2v: dim 32');
    expect(ib.components[0]!.dtypes).toEqual({ BF16: ib.components[0]!.params });
    expect(lstatSync(path.join(b, 'low_noise_model')).isDirectory()).toBe(true);
    const planB = planSyntheticCheckpoint(tinyOptions('i2v-A14B', b, { expert: 'both', ditDtype: 'BF16' }));
    // The two experts have their own seeds.
    const w = 'blocks.0.self_attn.q.weight';
    const spec = ditTensors(planB.arch.dit).filter((s) => s.name === w);
    await expectSyntheticValues(path.join(b, 'high_noise_model', 'diffusion_pytorch_model.safetensors.index.json'), spec, 'i2v-A14B/high_noise_model', [w]);
    await expectSyntheticValues(path.join(b, 'low_noise_model', 'diffusion_pytorch_model.safetensors.index.json'), spec, 'i2v-A14B/low_noise_model', [w]);
  });

  it('reuses a complete folder, rewrites with force, refuses other options, foreign folders and a full disk, and cleans up after a failure', async () => {
    const out = path.join(tmp, 'reuse');
    const first = await makeSyntheticCheckpoint(tinyOptions('ti2v-5B', out));
    const again = await makeSyntheticCheckpoint(tinyOptions('ti2v-5B', out));
    expect(again).toMatchObject({ dir: out, reused: true, bytes: first.bytes });
    const forced = await makeSyntheticCheckpoint(tinyOptions('ti2v-5B', out, { force: true }));
    expect(forced.reused).toBe(false);
    await expect(makeSyntheticCheckpoint(tinyOptions('ti2v-5B', out, { ditDtype: 'BF16' }))).rejects.toThrow(/other options .*--force/);

    // A removed file makes it incomplete: rewritten without --force.
    await fsp.rm(path.join(out, 'Wan2.2_VAE.pth'));
    expect((await makeSyntheticCheckpoint(tinyOptions('ti2v-5B', out))).reused).toBe(false);
    expect(existsSync(path.join(out, 'Wan2.2_VAE.pth'))).toBe(true);

    const foreign = path.join(tmp, 'foreign');
    await fsp.mkdir(foreign);
    await fsp.writeFile(path.join(foreign, 'keep.txt'), 'not ours');
    await expect(makeSyntheticCheckpoint(tinyOptions('ti2v-5B', foreign, { force: true }))).rejects.toThrow(/not a synthetic checkpoint/);
    expect(readFileSync(path.join(foreign, 'keep.txt'), 'utf8')).toBe('not ours');

    // A DiT of terabytes: refused before writing anything, naming the bytes needed and free.
    const huge = path.join(tmp, 'huge');
    await expect(makeSyntheticCheckpoint({ ...tinyOptions('ti2v-5B', huge), arch: { ...tinyArch('ti2v-5B'), dit: { ...tinyArch('ti2v-5B').dit, dim: 1 << 20, ffnDim: 1 << 20, numLayers: 1 } } })).rejects.toThrow(
      /needs \d+\.\d+ GB .* but only \d+\.\d+ GB is free/,
    );
    expect(existsSync(huge)).toBe(false);

    // A failure mid-way (here: the writer refuses the chunk size) leaves neither the folder nor a temporary one.
    const failed = path.join(tmp, 'failed');
    await expect(makeSyntheticCheckpoint(tinyOptions('ti2v-5B', failed, { chunkBytes: 12 }))).rejects.toThrow(/multiple of 8/);
    expect(existsSync(failed)).toBe(false);
    expect(readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
    await expect(makeSyntheticCheckpoint({ task: 'ti2v-5B', arch: tinyArch('ti2v-5B'), log: () => {} })).rejects.toThrow(/explicit output folder/);
  });
});
