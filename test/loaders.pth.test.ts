// PyTorch .pth (torch.save zip) reader: the real umT5 fixture against its safetensors twin, and
// hand-built archives/pickles (opcode bytes written here) for every format variant and every way
// a file can be broken or malicious. No Python or torch is needed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsFile, decodeToFloat32 } from '../loaders/safetensors.ts';
import { ZipArchive, crc32, memorySource } from '../loaders/zip.ts';
import {
  PickleError,
  PyDict,
  PyList,
  PyTuple,
  TorchStorage,
  TorchTensor,
  torchPersistentLoad,
  unpickle,
  type PyValue,
} from '../loaders/pickle.ts';
import { PthFile, gatherStrided, isContiguous } from '../loaders/pth.ts';
import { fixturesDir, rng } from './helpers.ts';

const T5_DIR = path.join(fixturesDir, 't5');
const T5_PTH = path.join(T5_DIR, 'models_t5_umt5-xxl-enc-bf16.pth');
const T5_ST = path.join(T5_DIR, 'models_t5_umt5-xxl-enc-bf16.safetensors');

let tmp = '';
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'loaders-pth-'));
});
afterAll(async () => {
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Pickle opcode writer (protocol 2 as torch.save writes it; protocol 4 forms on request)

const te = new TextEncoder();

class Pk {
  readonly out: number[] = [];
  constructor(readonly protocol = 2) {}
  raw(...b: number[]): this {
    this.out.push(...b);
    return this;
  }
  op(ch: string): this {
    return this.raw(ch.charCodeAt(0));
  }
  u32(n: number): this {
    return this.raw(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }
  proto(): this {
    this.raw(0x80, this.protocol);
    // Protocol 4 frames the stream; the length is a hint the reader may ignore (0 here).
    if (this.protocol >= 4) this.raw(0x95, 0, 0, 0, 0, 0, 0, 0, 0);
    return this;
  }
  str(s: string): this {
    const b = te.encode(s);
    if (this.protocol >= 4 && b.length < 256) this.raw(0x8c, b.length);
    else this.op('X').u32(b.length);
    this.raw(...b);
    return this.memo();
  }
  global(module: string, name: string): this {
    if (this.protocol >= 4) return this.str(module).str(name).raw(0x93).memo();
    return this.op('c').raw(...te.encode(`${module}\n${name}\n`)).memo();
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.raw(0x4b, n);
    if (n >= 0 && n < 65536) return this.raw(0x4d, n & 0xff, n >> 8);
    if (n >= -(2 ** 31) && n < 2 ** 31) return this.op('J').u32(n);
    // LONG1: little-endian two's complement
    const bytes: number[] = [];
    let v = BigInt(n);
    for (;;) {
      bytes.push(Number(v & 0xffn));
      v >>= 8n;
      if ((v === 0n && !(bytes[bytes.length - 1]! & 0x80)) || (v === -1n && bytes[bytes.length - 1]! & 0x80)) break;
    }
    return this.raw(0x8a, bytes.length, ...bytes);
  }
  tuple(items: ((p: this) => void)[]): this {
    if (items.length === 0) return this.op(')');
    if (items.length > 3) this.op('(');
    for (const it of items) it(this);
    if (items.length > 3) this.op('t');
    else this.raw(0x84 + items.length);
    return this.memo();
  }
  ints(ns: readonly number[]): this {
    return this.tuple(ns.map((n) => (p: this) => void p.int(n)));
  }
  /** Protocol 4 memoizes with MEMOIZE; protocol 2 output here skips memoizing (valid either way). */
  memo(): this {
    if (this.protocol >= 4) this.raw(0x94);
    return this;
  }
  call(f: (p: this) => void): this {
    f(this);
    return this;
  }
  orderedDict(): this {
    return this.global('collections', 'OrderedDict').op(')').op('R').memo();
  }
  stop(): Uint8Array {
    this.op('.');
    return Uint8Array.from(this.out);
  }
}

type StorageSpec = { typed: string } | { untyped: true };
interface TensorSpec {
  name: string;
  key: string;
  storage: StorageSpec;
  /** numel as declared in the persistent id (elements; bytes when untyped). */
  storageNumel: number;
  offset: number;
  shape: number[];
  stride: number[];
  /** v3 passes the dtype explicitly (untyped storages). */
  rebuild?: 'v2' | 'v3' | 'param';
  dtype?: string;
}

/** A state dict pickle laid out like torch.save's (OrderedDict + SETITEMS of rebuild calls + _metadata BUILD). */
function stateDictPickle(tensors: TensorSpec[], protocol = 2): Uint8Array {
  const p = new Pk(protocol).proto().orderedDict().op('(');
  for (const t of tensors) {
    p.str(t.name);
    if (t.rebuild === 'param') p.global('torch._utils', '_rebuild_parameter').op('(');
    p.global('torch._utils', t.rebuild === 'v3' ? '_rebuild_tensor_v3' : '_rebuild_tensor_v2').op('(');
    p.tuple([
      (q) => q.str('storage'),
      (q) => ('typed' in t.storage ? q.global('torch', t.storage.typed) : q.global('torch.storage', 'UntypedStorage')),
      (q) => q.str(t.key),
      (q) => q.str('cpu'),
      (q) => q.int(t.storageNumel),
    ]);
    p.op('Q').int(t.offset).ints(t.shape).ints(t.stride).raw(0x89).orderedDict();
    if (t.rebuild === 'v3') p.global('torch', t.dtype!);
    p.op('t').op('R').memo();
    if (t.rebuild === 'param') p.raw(0x89).orderedDict().op('t').op('R').memo();
  }
  p.op('u');
  // state = {'_metadata': OrderedDict({'': {'version': 1}})}, applied by BUILD as torch does.
  p.op('}').str('_metadata').orderedDict().str('').op('}').str('version').int(1).op('s').op('s').op('s').op('b');
  return p.stop();
}

// ---------------------------------------------------------------------------------------------
// Zip writer (STORED entries, data aligned like torch's writer, optional zip64 records)

interface ZipFile {
  name: string;
  data: Uint8Array;
  method?: number;
}
interface ZipOpts {
  /** 'all': sizes and offsets saturated + zip64 end records; 'offsets': only local header offsets. */
  zip64?: 'none' | 'all' | 'offsets';
  align?: number;
  comment?: string;
}

class Bytes {
  readonly b: number[] = [];
  get length() {
    return this.b.length;
  }
  u8(...v: number[]) {
    this.b.push(...v);
    return this;
  }
  u16(v: number) {
    return this.u8(v & 0xff, (v >>> 8) & 0xff);
  }
  u32(v: number) {
    return this.u16(v & 0xffff).u16(Math.floor(v / 65536) & 0xffff);
  }
  u64(v: number) {
    return this.u32(v % 2 ** 32).u32(Math.floor(v / 2 ** 32));
  }
  bytes(a: Uint8Array) {
    for (const x of a) this.b.push(x);
    return this;
  }
}

function buildZip(files: ZipFile[], opts: ZipOpts = {}): Uint8Array {
  const zip64 = opts.zip64 ?? 'none';
  const align = opts.align ?? 64;
  const out = new Bytes();
  const central = new Bytes();
  for (const f of files) {
    const name = te.encode(f.name);
    const crc = crc32(f.data);
    const lho = out.length;
    // Pad the local extra field ("FB" block, as torch does) so the data starts aligned.
    let pad = (align - ((lho + 30 + name.length + 4) % align)) % align;
    const extraLen = 4 + pad;
    out.u32(0x04034b50).u16(zip64 !== 'none' ? 45 : 20).u16(0).u16(f.method ?? 0).u16(0).u16(0x21);
    out.u32(crc).u32(f.data.length).u32(f.data.length).u16(name.length).u16(extraLen).bytes(name);
    out.u16(0x4246).u16(pad).bytes(new Uint8Array(pad));
    out.bytes(f.data);
    const z64 = new Bytes();
    if (zip64 === 'all') z64.u64(f.data.length).u64(f.data.length).u64(lho);
    if (zip64 === 'offsets') z64.u64(lho);
    const cExtra = z64.length ? new Bytes().u16(1).u16(z64.length).bytes(Uint8Array.from(z64.b)) : new Bytes();
    central.u32(0x02014b50).u16(45).u16(20).u16(0).u16(f.method ?? 0).u16(0).u16(0x21).u32(crc);
    const size32 = zip64 === 'all' ? 0xffffffff : f.data.length;
    central.u32(size32).u32(size32).u16(name.length).u16(cExtra.length).u16(0).u16(0).u16(0).u32(0);
    central.u32(zip64 !== 'none' ? 0xffffffff : lho).bytes(name).bytes(Uint8Array.from(cExtra.b));
  }
  const cdOffset = out.length;
  out.bytes(Uint8Array.from(central.b));
  const cdSize = central.length;
  const all = zip64 === 'all';
  if (zip64 !== 'none') {
    const z64Pos = out.length;
    out.u32(0x06064b50).u64(44).u16(45).u16(45).u32(0).u32(0).u64(files.length).u64(files.length).u64(cdSize).u64(cdOffset);
    out.u32(0x07064b50).u32(0).u64(z64Pos).u32(1);
  }
  const comment = te.encode(opts.comment ?? '');
  out.u32(0x06054b50).u16(0).u16(0).u16(all ? 0xffff : files.length).u16(all ? 0xffff : files.length);
  out.u32(all ? 0xffffffff : cdSize).u32(all ? 0xffffffff : cdOffset).u16(comment.length).bytes(comment);
  return Uint8Array.from(out.b);
}

// ---------------------------------------------------------------------------------------------
// Checkpoint builder

interface PthTensor {
  name: string;
  /** torch storage class name (typed) or a dtype for UntypedStorage + _rebuild_tensor_v3. */
  storageType?: string;
  untypedDtype?: string;
  itemSize: number;
  key: string;
  offset?: number;
  shape: number[];
  stride?: number[];
  rebuild?: 'v2' | 'v3' | 'param';
}

function contiguousStride(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

interface PthBuild {
  folder?: string;
  byteorder?: string | null;
  /** Storage bytes by key. */
  storages: Record<string, Uint8Array>;
  tensors: PthTensor[];
  protocol?: number;
  zip?: ZipOpts;
  /** Replace data.pkl entirely. */
  pickle?: Uint8Array;
  /** Extra/replacement zip entries (relative to the folder). */
  omitStorages?: string[];
}

function buildPth(b: PthBuild): Uint8Array {
  const folder = b.folder ?? 'archive';
  const specs: TensorSpec[] = b.tensors.map((t) => ({
    name: t.name,
    key: t.key,
    storage: t.untypedDtype ? { untyped: true } : { typed: t.storageType ?? 'FloatStorage' },
    storageNumel: t.untypedDtype ? b.storages[t.key]!.length : b.storages[t.key]!.length / t.itemSize,
    offset: t.offset ?? 0,
    shape: t.shape,
    stride: t.stride ?? contiguousStride(t.shape),
    rebuild: t.untypedDtype ? 'v3' : t.rebuild,
    dtype: t.untypedDtype,
  }));
  const files: ZipFile[] = [{ name: `${folder}/data.pkl`, data: b.pickle ?? stateDictPickle(specs, b.protocol ?? 2) }];
  if (b.byteorder !== null && b.byteorder !== undefined) files.push({ name: `${folder}/byteorder`, data: te.encode(b.byteorder) });
  for (const [key, data] of Object.entries(b.storages)) {
    if (!b.omitStorages?.includes(key)) files.push({ name: `${folder}/data/${key}`, data });
  }
  files.push({ name: `${folder}/version`, data: te.encode('3\n') });
  return buildZip(files, b.zip);
}

function openMem(bytes: Uint8Array, label = 'mem.pth'): Promise<PthFile> {
  return PthFile.fromSource(memorySource(bytes), label);
}

function randomBytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}

function f32Bytes(a: number[] | Float32Array): Uint8Array {
  const f = Float32Array.from(a);
  return new Uint8Array(f.buffer);
}

/** Independent reference: element-by-element strided copy out of the storage bytes. */
function refGather(storage: Uint8Array, itemSize: number, offset: number, shape: number[], stride: number[]): Uint8Array {
  const numel = shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(numel * itemSize);
  const idx = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < numel; i++) {
    let rem = i;
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d] = rem % shape[d]!;
      rem = Math.floor(rem / shape[d]!);
    }
    const src = (offset + idx.reduce((acc, v, d) => acc + v * stride[d]!, 0)) * itemSize;
    out.set(storage.subarray(src, src + itemSize), i * itemSize);
  }
  return out;
}

/** A small valid checkpoint used by the corruption tests. */
function smallPth(zip?: ZipOpts): { bytes: Uint8Array; w: Uint8Array; b: Uint8Array } {
  const w = f32Bytes(Array.from({ length: 15 }, (_, i) => i * 0.5 - 3));
  const bb = f32Bytes([1, 2, 3]);
  const bytes = buildPth({
    storages: { '0': w, '1': bb },
    tensors: [
      { name: 'conv.weight', key: '0', itemSize: 4, shape: [3, 5] },
      { name: 'conv.bias', key: '1', itemSize: 4, shape: [3] },
    ],
    byteorder: 'little',
    zip,
  });
  return { bytes, w, b: bb };
}

// ---------------------------------------------------------------------------------------------

describe('real torch.save checkpoint (umT5 fixture, torch 1.13)', () => {
  it('every tensor equals its safetensors twin byte for byte', async () => {
    const pth = await PthFile.open(T5_PTH);
    const st = await SafetensorsFile.open(T5_ST);
    try {
      expect(pth.folder).toBe('models_t5_umt5-xxl-enc-bf16');
      expect([...pth.keys()].sort()).toEqual([...st.entries.keys()].sort());
      expect(pth.keys().length).toBe(22);
      expect(pth.keys()[0]).toBe('token_embedding.weight'); // pickle (state dict) order
      for (const name of st.entries.keys()) {
        const want = st.entry(name);
        const e = pth.entry(name);
        expect({ name, dtype: e.dtype, shape: e.shape }).toEqual({ name, dtype: want.dtype, shape: want.shape });
        expect(e.torchDType).toBe('torch.bfloat16');
        expect(e.contiguous).toBe(true);
        expect(e.byteLength).toBe(want.end - want.begin);
        expect(e.byteOffset % 64).toBe(0); // torch aligns storage data to 64 bytes
        const got = await pth.readRaw(name);
        const ref = await st.readRaw(name);
        expect(got.byteLength).toBe(ref.byteLength);
        expect(Buffer.compare(Buffer.from(got), Buffer.from(ref))).toBe(0);
        // Windows of a contiguous tensor concatenate to the tensor.
        const cut = Math.floor(e.byteLength / 3);
        const parts = [await pth.readRange(name, 0, cut), await pth.readRange(name, cut, e.byteLength)];
        expect(Buffer.compare(Buffer.concat(parts), Buffer.from(ref))).toBe(0);
      }
      expect(await pth.readFloat32('token_embedding.weight')).toEqual(decodeToFloat32('BF16', await st.readRaw('token_embedding.weight')));
      const emb = pth.entry('token_embedding.weight');
      expect(emb.shape).toEqual([1024, 64]);
      expect(emb.stride).toEqual([64, 1]);
      await expect(pth.readRange('token_embedding.weight', 0, emb.byteLength + 1)).rejects.toThrow(/outside its 131072 bytes/);
      await expect(pth.readRaw('nope')).rejects.toThrow(`${T5_PTH}: no tensor "nope"`);
    } finally {
      await pth.close();
      await st.close();
    }
    await expect(pth.readRaw('token_embedding.weight')).rejects.toThrow(/file is closed/);
  });

  it('zip layer: every entry is STORED and its CRC-32 matches the bytes at the computed data offset', async () => {
    const z = await ZipArchive.open(T5_PTH);
    try {
      expect(z.zip64).toBe(true); // torch's writer (miniz) always adds zip64 end records
      expect(z.names()).toContain('models_t5_umt5-xxl-enc-bf16/data.pkl');
      for (const e of z.entries.values()) {
        expect(e.method).toBe(0);
        expect(await z.verifyCrc(e, 1000)).toBe(true); // small chunks: exercises the streaming CRC
      }
    } finally {
      await z.close();
    }
  });
});

describe('hand-built checkpoints', () => {
  it('reads float32 tensors, shared storages with offsets, legacy folder naming, and a file on disk', async () => {
    const r = rng(5);
    const big = Float32Array.from({ length: 7 * 11 }, () => r() * 2 - 1);
    const bias = Float32Array.from({ length: 7 }, () => r());
    const bytes = buildPth({
      folder: 'Wan2.1_VAE', // torch 1.13 names the folder after the file, and writes no byteorder record
      storages: { '0': new Uint8Array(big.buffer), '1': new Uint8Array(bias.buffer) },
      tensors: [
        { name: 'w', key: '0', itemSize: 4, shape: [7, 11] },
        { name: 'w.row3', key: '0', itemSize: 4, offset: 33, shape: [11] }, // a view sharing the storage
        { name: 'w.rows', key: '0', itemSize: 4, offset: 22, shape: [2, 11] },
        { name: 'b', key: '1', itemSize: 4, shape: [7], rebuild: 'param' },
      ],
    });
    const file = path.join(tmp, 'Wan2.1_VAE.pth');
    await fsp.writeFile(file, bytes);
    const f = await PthFile.open(file);
    try {
      expect(f.folder).toBe('Wan2.1_VAE');
      expect(f.keys()).toEqual(['w', 'w.row3', 'w.rows', 'b']);
      expect(await f.readFloat32('w')).toEqual(big);
      expect(await f.readFloat32('w.row3')).toEqual(big.subarray(33, 44));
      expect(await f.readFloat32('w.rows')).toEqual(big.subarray(22, 44));
      expect(await f.readFloat32('b')).toEqual(bias);
      const e = f.entry('w.row3');
      expect(e).toMatchObject({ dtype: 'F32', torchDType: 'torch.float32', storageKey: '0', storageOffset: 33, stride: [1], contiguous: true, numel: 11, byteLength: 44 });
      expect(e.byteOffset - f.entry('w').byteOffset).toBe(33 * 4);
    } finally {
      await f.close();
    }
  });

  it('reads every supported dtype (typed storages and torch>=2 UntypedStorage + dtype), protocols 2 and 4', async () => {
    const cases: { storageType?: string; untypedDtype?: string; itemSize: number; dtype: string }[] = [
      { storageType: 'DoubleStorage', itemSize: 8, dtype: 'F64' },
      { storageType: 'FloatStorage', itemSize: 4, dtype: 'F32' },
      { storageType: 'HalfStorage', itemSize: 2, dtype: 'F16' },
      { storageType: 'BFloat16Storage', itemSize: 2, dtype: 'BF16' },
      { storageType: 'LongStorage', itemSize: 8, dtype: 'I64' },
      { storageType: 'IntStorage', itemSize: 4, dtype: 'I32' },
      { storageType: 'ShortStorage', itemSize: 2, dtype: 'I16' },
      { storageType: 'CharStorage', itemSize: 1, dtype: 'I8' },
      { storageType: 'ByteStorage', itemSize: 1, dtype: 'U8' },
      { storageType: 'BoolStorage', itemSize: 1, dtype: 'BOOL' },
      { untypedDtype: 'bfloat16', itemSize: 2, dtype: 'BF16' },
      { untypedDtype: 'float32', itemSize: 4, dtype: 'F32' },
      { untypedDtype: 'uint16', itemSize: 2, dtype: 'U16' },
      { untypedDtype: 'uint64', itemSize: 8, dtype: 'U64' },
    ];
    for (const protocol of [2, 4]) {
      const storages: Record<string, Uint8Array> = {};
      const tensors: PthTensor[] = cases.map((c, i) => {
        const shape = [3, 1 + (i % 4), 5];
        storages[String(i)] = randomBytes(shape.reduce((a, b) => a * b) * c.itemSize, 100 + i);
        return { name: `t${i}.${c.dtype}`, key: String(i), itemSize: c.itemSize, shape, storageType: c.storageType, untypedDtype: c.untypedDtype };
      });
      const f = await openMem(buildPth({ storages, tensors, protocol, byteorder: 'little' }));
      try {
        cases.forEach((c, i) => {
          const e = f.entry(`t${i}.${c.dtype}`);
          expect({ i, dtype: e.dtype, shape: e.shape }).toEqual({ i, dtype: c.dtype, shape: tensors[i]!.shape });
        });
        for (let i = 0; i < cases.length; i++) expect(await f.readRaw(`t${i}.${cases[i]!.dtype}`)).toEqual(storages[String(i)]);
      } finally {
        await f.close();
      }
    }
  });

  it('materialises non-contiguous views by a strided gather (dense and sparse read paths)', async () => {
    const storage = randomBytes(4 * 1000, 3);
    const views: { name: string; offset: number; shape: number[]; stride: number[] }[] = [
      { name: 'transpose', offset: 0, shape: [13, 7], stride: [1, 13] }, // (7x13).t()
      { name: 'slice_cols', offset: 3, shape: [5, 4], stride: [17, 1] }, // x[:, 3:7] of a 5x17
      { name: 'step', offset: 1, shape: [6, 3], stride: [20, 6] }, // x[:, 1::6]
      { name: 'permute3d', offset: 2, shape: [4, 3, 5], stride: [1, 20, 4] },
      { name: 'expand', offset: 7, shape: [9, 5], stride: [0, 1] }, // row broadcast
      { name: 'expand_scalar', offset: 999, shape: [2, 3], stride: [0, 0] },
      { name: 'odd_size1', offset: 4, shape: [1, 11, 1], stride: [999, 1, 5] }, // contiguous despite odd strides
      { name: 'scalar', offset: 500, shape: [], stride: [] },
      { name: 'empty', offset: 0, shape: [0, 5], stride: [1, 0] },
    ];
    const bytes = buildPth({
      storages: { s: storage },
      tensors: views.map((v) => ({ name: v.name, key: 's', itemSize: 4, offset: v.offset, shape: v.shape, stride: v.stride })),
    });
    const f = await openMem(bytes);
    try {
      for (const v of views) {
        const e = f.entry(v.name);
        expect({ name: v.name, contiguous: e.contiguous }).toEqual({ name: v.name, contiguous: isContiguous(v.shape, v.stride) });
        const want = refGather(storage, 4, v.offset, v.shape, v.stride);
        expect({ name: v.name, ok: Buffer.compare(Buffer.from(await f.readRaw(v.name)), Buffer.from(want)) }).toEqual({ name: v.name, ok: 0 });
        // The sparse path (tiny chunks, never "dense") gives the same bytes and stays within the file.
        const sparse = await gatherStrided(
          { shape: v.shape, stride: v.stride, itemSize: 4, byteOffset: e.byteOffset },
          (pos, len) => {
            expect(len).toBeGreaterThan(0);
            return Promise.resolve(bytes.slice(pos, pos + len));
          },
          { denseFactor: 0, denseSlack: 0, chunkBytes: 24 },
        );
        expect({ name: v.name, ok: Buffer.compare(Buffer.from(sparse), Buffer.from(want)) }).toEqual({ name: v.name, ok: 0 });
      }
      expect(f.entry('transpose').contiguous).toBe(false);
      expect(f.entry('odd_size1').contiguous).toBe(true);
      expect(f.entry('empty').byteLength).toBe(0);
      await expect(f.readRange('transpose', 0, 4)).rejects.toThrow(/not contiguous; use readRaw/);
    } finally {
      await f.close();
    }
  });

  it('gathers a larger random permutation exactly (odd sizes, f16 items)', async () => {
    const shape = [7, 1, 13, 5];
    const base = [5, 13, 7]; // storage laid out as [5, 13, 7], viewed as permute(2, -, 1, 0)
    const storage = randomBytes(2 * base.reduce((a, b) => a * b), 11);
    const stride = [1, 77, 7, 91];
    const want = refGather(storage, 2, 0, shape, stride);
    const got = await gatherStrided({ shape, stride, itemSize: 2, byteOffset: 0 }, async (p, l) => storage.slice(p, p + l));
    expect(Buffer.compare(Buffer.from(got), Buffer.from(want))).toBe(0);
    const got2 = await gatherStrided({ shape, stride, itemSize: 2, byteOffset: 0 }, async (p, l) => storage.slice(p, p + l), {
      denseFactor: 0,
      denseSlack: 0,
      chunkBytes: 100,
    });
    expect(Buffer.compare(Buffer.from(got2), Buffer.from(want))).toBe(0);
  });

  it('parses zip64 records (all fields saturated, and offsets only) with data at aligned offsets', async () => {
    for (const zip64 of ['all', 'offsets'] as const) {
      const { bytes, w, b } = smallPth({ zip64 });
      const z = await ZipArchive.fromSource(memorySource(bytes), 'z64.zip');
      expect(z.zip64).toBe(zip64 === 'all' || zip64 === 'offsets');
      for (const e of z.entries.values()) expect(await z.verifyCrc(e)).toBe(true);
      const f = await openMem(bytes);
      expect(await f.readRaw('conv.weight')).toEqual(w);
      expect(await f.readRaw('conv.bias')).toEqual(b);
      expect(f.entry('conv.weight').byteOffset % 64).toBe(0);
      await f.close();
    }
  });

  it('accepts a zip comment and reads the same tensors', async () => {
    const { w } = smallPth();
    const w2 = buildPth({ storages: { '0': w }, tensors: [{ name: 'x', key: '0', itemSize: 4, shape: [15] }], zip: { comment: 'PK\x05\x06 fake eocd in comment' } });
    const f = await openMem(w2);
    expect(await f.readRaw('x')).toEqual(w);
    await f.close();
  });
});

describe('restricted unpickler', () => {
  it('builds the values a pickle describes (lists, dicts, ints of every width, floats, memo, POP/DUP)', () => {
    const p = new Pk(2).proto();
    p.op('}').str('list').op(']').int(1).op('a').op('(').int(-1).int(300).int(70000).int(-70000).int(2 ** 40).int(-(2 ** 40)).op('e').op('s');
    p.str('float').op('G').raw(0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18).op('s'); // pi, big-endian
    p.str('consts').op('(').op('N').raw(0x88).raw(0x89).op('t').op('s');
    p.str('memo').op(']').op('q').raw(7).op('h').raw(7).op('a').op('s'); // a list containing itself
    p.str('bytes').op('C').raw(3, 1, 2, 3).op('s');
    p.str('huge').raw(0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1).op('s'); // 2^64 stays a bigint
    p.str('dup').int(5).op('2').op('0').op('s');
    p.str('popmark').int(9).op('(').int(1).int(2).op('1').op('s');
    const v = unpickle(p.stop());
    expect(v).toBeInstanceOf(PyDict);
    const d = (v as PyDict).map;
    expect((d.get('list') as PyList).items).toEqual([1, -1, 300, 70000, -70000, 2 ** 40, -(2 ** 40)]);
    expect(d.get('float')).toBe(Math.PI);
    expect((d.get('consts') as PyTuple).items).toEqual([null, true, false]);
    const m = d.get('memo') as PyList;
    expect(m.items[0]).toBe(m);
    expect(d.get('huge')).toBe(2n ** 64n);
    expect(d.get('dup')).toBe(5);
    expect(d.get('popmark')).toBe(9);
  });

  it('refuses a disallowed global by name before executing anything (GLOBAL and STACK_GLOBAL)', () => {
    let calls = 0;
    const spy = (pid: PyValue, fail: (m: string) => never) => {
      calls++;
      return torchPersistentLoad()(pid, fail);
    };
    // Earlier opcodes would fail if executed (POP on an empty stack, a bad persistent id).
    const p = new Pk(2).proto().op('0').str('x').op('Q');
    p.global('posix', 'system').str('echo pwned').raw(0x85).op('R').stop();
    expect(() => unpickle(Uint8Array.from(p.out), { label: 'evil.pkl', persistentLoad: spy })).toThrow(
      'evil.pkl: refusing pickle global "posix.system" at offset 10 (not needed by a state dict)',
    );
    expect(calls).toBe(0);
    const q = new Pk(4).proto().global('builtins', 'eval').str('1+1').raw(0x85).op('R').stop();
    expect(() => unpickle(q)).toThrow(/refusing pickle global "builtins\.eval"/);
    for (const [m, n] of [['os', 'system'], ['subprocess', 'Popen'], ['torch', 'load'], ['collections', 'defaultdict'], ['torch._utils', '_rebuild_qtensor']]) {
      const r = new Pk(2).proto().global(m!, n!).stop();
      expect(() => unpickle(r)).toThrow(`refusing pickle global "${m}.${n}"`);
    }
    // In a checkpoint, before any storage is looked at (none exist here).
    const pth = buildPth({ storages: {}, tensors: [], pickle: new Pk(2).proto().global('posix', 'system').str('id').raw(0x85).op('R').stop() });
    return expect(openMem(pth)).rejects.toThrow(/refusing pickle global "posix\.system"/);
  });

  it('refuses unknown and unsupported opcodes by name', () => {
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0xff, 0x2e]), { label: 'x' })).toThrow('x: unknown pickle opcode 0xff at offset 2');
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x69, 0x2e]))).toThrow(/unsupported pickle opcode 0x69 'i' \(INST\) at offset 2/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x81, 0x2e]))).toThrow(/unsupported pickle opcode 0x81 \(NEWOBJ\)/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x92, 0x2e]))).toThrow(/NEWOBJ_EX/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x8f, 0x2e]))).toThrow(/EMPTY_SET/);
    expect(() => unpickle(te.encode('S"hi"\n.'))).toThrow(/STRING/);
    // An unknown opcode after the STOP is never reached (trailing bytes are ignored, as pickle does).
    expect(unpickle(Uint8Array.from([0x80, 2, 0x4e, 0x2e, 0xff]))).toBe(null);
  });

  it('refuses calling what is not a rebuild function, bad arguments, and corrupt streams', () => {
    const call = (build: (p: Pk) => void) => {
      const p = new Pk(2).proto();
      build(p);
      return () => unpickle(p.stop(), { persistentLoad: torchPersistentLoad() });
    };
    expect(call((p) => p.global('torch', 'bfloat16').op(')').op('R'))).toThrow(/torch\.bfloat16 cannot be called/);
    expect(call((p) => p.global('torch', 'FloatStorage').op(')').op('R'))).toThrow(/torch\.FloatStorage cannot be called/);
    expect(call((p) => p.int(3).op(')').op('R'))).toThrow(/REDUCE at offset \d+: cannot call a number 3/);
    expect(call((p) => p.global('collections', 'OrderedDict').int(1).raw(0x85).op('R'))).toThrow(/collections\.OrderedDict takes 0 arguments, got 1/);
    expect(call((p) => p.global('torch._utils', '_rebuild_tensor_v2').int(1).raw(0x85).op('R'))).toThrow(/takes 6 to 7 arguments/);
    expect(call((p) => p.str('storage').op('Q'))).toThrow(/persistent id str "storage" is not a \('storage', type, key, location, numel\) tuple/);
    expect(call((p) => p.tuple([(q) => q.str('storage'), (q) => q.global('torch', 'float32'), (q) => q.str('0'), (q) => q.str('cpu'), (q) => q.int(1)]).op('Q'))).toThrow(
      /not a torch storage class/,
    );
    expect(call((p) => p.tuple([(q) => q.str('storage'), (q) => q.global('torch', 'FloatStorage'), (q) => q.str('../data.pkl'), (q) => q.str('cpu'), (q) => q.int(1)]).op('Q'))).toThrow(
      /storage key str "\.\.\/data\.pkl" is not a plain name/,
    );
    expect(call((p) => p.op('h').raw(9))).toThrow(/memo index 9 was never stored/);
    expect(call((p) => p.op('t'))).toThrow(/no MARK to pop to/);
    expect(call((p) => p.op('s'))).toThrow(/stack underflow/);
    expect(call((p) => p.int(1).op('s'))).toThrow(/SETITEM at offset 4: stack underflow/);
    expect(call((p) => p.op(']').str('k').int(1).op('s'))).toThrow(/target is a list of 0, not a dict/);
    expect(call((p) => p.op('}').int(1).op('a'))).toThrow(/APPEND at offset \d+: target is a dict of 0, not a list/);
    expect(call((p) => p.op('}').op(')').int(1).op('s'))).toThrow(/dict key of type tuple of 0 is not supported/);
    expect(call((p) => p.op(']').op('}').op('b'))).toThrow(/BUILD of a list of 0 with a dict of 0 is not supported/);
    expect(() => unpickle(Uint8Array.from([0x80, 9, 0x4e, 0x2e]))).toThrow(/pickle protocol 9 is not supported/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x4e]))).toThrow(/without a STOP opcode \(truncated\)/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f, 0x61]))).toThrow(/pickle truncated: BINUNICODE at offset 2 needs 2147483647 bytes/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, 0x58, 2, 0, 0, 0, 0xc3, 0x28, 0x2e]))).toThrow(/not valid UTF-8/);
    expect(() => unpickle(Uint8Array.from([]))).toThrow(/without a STOP/);
    expect(() => unpickle(Uint8Array.from([0x80, 2, ...te.encode('cos\n')]))).toThrow(/GLOBAL at offset 2: missing or overlong name line/);
  });

  it('describes tensors as inert views (v2, v3 + dtype, parameter) with the storage they name', () => {
    const specs: TensorSpec[] = [
      { name: 'a', key: '0', storage: { typed: 'HalfStorage' }, storageNumel: 12, offset: 2, shape: [2, 5], stride: [5, 1] },
      { name: 'b', key: '1', storage: { untyped: true }, storageNumel: 24, offset: 0, shape: [3, 4], stride: [1, 3], rebuild: 'v3', dtype: 'bfloat16' },
      { name: 'c', key: '0', storage: { typed: 'HalfStorage' }, storageNumel: 12, offset: 0, shape: [12], stride: [1], rebuild: 'param' },
    ];
    const v = unpickle(stateDictPickle(specs), { persistentLoad: torchPersistentLoad() }) as PyDict;
    expect(v.ordered).toBe(true);
    expect(v.state).toBeInstanceOf(PyDict);
    const a = v.map.get('a') as TorchTensor;
    const b = v.map.get('b') as TorchTensor;
    const c = v.map.get('c') as TorchTensor;
    expect(a).toBeInstanceOf(TorchTensor);
    expect({ dtype: a.dtype, offset: a.storageOffset, shape: a.shape, stride: a.stride }).toEqual({ dtype: 'F16', offset: 2, shape: [2, 5], stride: [5, 1] });
    expect({ dtype: b.dtype, torch: b.torchDType, sdtype: b.storage.dtype }).toEqual({ dtype: 'BF16', torch: 'torch.bfloat16', sdtype: 'untyped' });
    expect(c.storage).toBe(a.storage); // one storage object per key
    expect(a.storage).toBeInstanceOf(TorchStorage);
    // The same key named with another type is refused.
    const clash: TensorSpec[] = [specs[0]!, { ...specs[0]!, name: 'z', storage: { typed: 'FloatStorage' }, storageNumel: 6 }];
    expect(() => unpickle(stateDictPickle(clash), { persistentLoad: torchPersistentLoad() })).toThrow(/storage "0" is named twice with different types/);
  });

  it('stays linear on hostile sizes: 300k-item APPENDS, a huge LONG4', () => {
    const p = new Pk(2).proto().op(']').op('(');
    for (let i = 0; i < 300_000; i++) p.raw(0x4b, i & 0xff);
    const list = unpickle(p.op('e').stop()) as PyList;
    expect(list.items.length).toBe(300_000);
    expect(list.items[299_999]).toBe(299_999 & 0xff);
    const long4 = new Uint8Array(2 + 5 + 10_000_000 + 1);
    long4.set([0x80, 2, 0x8b, 0x80, 0x96, 0x98, 0x00]); // LONG4 of 10^7 bytes
    long4[long4.length - 1] = 0x2e;
    expect(() => unpickle(long4)).toThrow(/LONG4 at offset 2: a 10000000-byte integer is larger than the 256 bytes allowed/);
  });

  it('never crashes or hangs on random or mutated pickles', () => {
    const good = stateDictPickle([
      { name: 'a', key: '0', storage: { typed: 'FloatStorage' }, storageNumel: 12, offset: 0, shape: [3, 4], stride: [4, 1] },
      { name: 'b', key: '1', storage: { untyped: true }, storageNumel: 8, offset: 0, shape: [4], stride: [1], rebuild: 'v3', dtype: 'float16' },
    ]);
    const r = rng(2024);
    let refused = 0;
    for (let iter = 0; iter < 3000; iter++) {
      const m = iter < 200 ? randomBytes(1 + Math.floor(r() * 64), iter) : good.slice();
      if (iter >= 200) for (let k = 0; k < 1 + (iter % 4); k++) m[Math.floor(r() * m.length)] = Math.floor(r() * 256);
      try {
        unpickle(m, { persistentLoad: torchPersistentLoad() });
      } catch (e) {
        if (!(e instanceof PickleError)) throw new Error(`iteration ${iter}: non-PickleError ${String(e)}`);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(1000);
  });
});

describe('broken and hostile checkpoints', () => {
  const eocdAt = (bytes: Uint8Array) => bytes.length - 22;
  const u32At = (bytes: Uint8Array, at: number) => new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true);
  const setU32 = (bytes: Uint8Array, at: number, v: number) => new DataView(bytes.buffer, bytes.byteOffset).setUint32(at, v, true);
  const setU16 = (bytes: Uint8Array, at: number, v: number) => new DataView(bytes.buffer, bytes.byteOffset).setUint16(at, v, true);

  it('bad EOCD signature, not a zip, legacy torch pickle, empty file', async () => {
    const { bytes } = smallPth();
    const bad = bytes.slice();
    bad[eocdAt(bad)] = 0x51;
    await expect(openMem(bad)).rejects.toThrow('mem.pth: no end-of-central-directory record found: the zip archive is truncated or its end is corrupt');
    await expect(openMem(randomBytes(5000, 1))).rejects.toThrow(/not a zip archive \(bad or missing EOCD signature\)/);
    await expect(openMem(Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, ...new Array(40).fill(0)]))).rejects.toThrow(/legacy \(pre-1\.6\) torch\.save pickle/);
    await expect(openMem(new Uint8Array(0))).rejects.toThrow(/too small to be a zip archive/);
    const file = path.join(tmp, 'empty.pth');
    await fsp.writeFile(file, new Uint8Array(0));
    await expect(PthFile.open(file)).rejects.toThrow(`${file}: file of 0 bytes is too small to be a zip archive`);
  });

  it('central directory offset past the end, or overlapping the end records', async () => {
    const { bytes } = smallPth();
    const e = eocdAt(bytes);
    const past = bytes.slice();
    setU32(past, e + 16, bytes.length + 100);
    await expect(openMem(past)).rejects.toThrow(`central directory offset ${bytes.length + 100} is past the end of the file (${bytes.length} bytes)`);
    const overlap = bytes.slice();
    setU32(overlap, e + 16, u32At(bytes, e + 16) + 8);
    await expect(openMem(overlap)).rejects.toThrow(/central directory \[\d+, \d+\) lies past the end records/);
    const shifted = bytes.slice();
    setU32(shifted, e + 16, u32At(bytes, e + 16) - 4);
    await expect(openMem(shifted)).rejects.toThrow(/central directory entry 0 \(offset \d+\): bad signature/);
    const many = bytes.slice();
    setU16(many, e + 8, 60000);
    setU16(many, e + 10, 60000);
    await expect(openMem(many)).rejects.toThrow(/declares 60000 entries, more than/);
  });

  it('truncated files: every prefix is refused cleanly, and so is a file with a hole cut out', async () => {
    const { bytes } = smallPth();
    for (let n = 0; n < bytes.length; n += n < 64 ? 1 : 7) {
      await expect(openMem(bytes.subarray(0, n)), `prefix ${n}`).rejects.toThrow(/^mem\.pth: /);
    }
    const cut = new Uint8Array(bytes.length - 100);
    cut.set(bytes.subarray(0, 200));
    cut.set(bytes.subarray(300), 200);
    await expect(openMem(cut)).rejects.toThrow(/^mem\.pth: /);
    // On disk, a file that shrank after open is reported as truncated, not read as zeros.
    const file = path.join(tmp, 'shrinks.pth');
    await fsp.writeFile(file, bytes);
    const f = await PthFile.open(file);
    await fsp.truncate(file, f.entry('conv.weight').byteOffset + 8);
    await expect(f.readRaw('conv.weight')).rejects.toThrow(/unexpected end of file reading 60 bytes/);
    await f.close();
  });

  it('refuses DEFLATED entries and local headers that disagree with the central directory', async () => {
    const { w } = smallPth();
    const deflated = buildZip([
      { name: 'archive/data.pkl', data: stateDictPickle([{ name: 'x', key: '0', storage: { typed: 'FloatStorage' }, storageNumel: 15, offset: 0, shape: [15], stride: [1] }]) },
      { name: 'archive/data/0', data: w, method: 8 },
    ]);
    await expect(openMem(deflated)).rejects.toThrow(
      'mem.pth: zip entry "archive/data/0": is compressed (method 8, deflate); only STORED (uncompressed) entries can be read in place (torch.save never compresses)',
    );
    const pklDeflated = buildZip([{ name: 'archive/data.pkl', data: new Pk().proto().op('}').stop(), method: 8 }]);
    await expect(openMem(pklDeflated)).rejects.toThrow(/"archive\/data\.pkl": is compressed \(method 8, deflate\)/);

    const { bytes } = smallPth();
    const z = await ZipArchive.fromSource(memorySource(bytes), 'z');
    const lho = z.entry('archive/data/0').localHeaderOffset;
    const badSig = bytes.slice();
    badSig[lho] = 0;
    await expect(openMem(badSig)).rejects.toThrow(/zip entry "archive\/data\/0": bad local header signature/);
    const badMethod = bytes.slice();
    setU16(badMethod, lho + 8, 8);
    await expect(openMem(badMethod)).rejects.toThrow(/local header says method 8, central directory says 0/);
    const badName = bytes.slice();
    badName[lho + 30 + 'archive/data/'.length] = 0x37; // "archive/data/0" -> "archive/data/7"
    await expect(openMem(badName)).rejects.toThrow(/local header names it "archive\/data\/7"/);
    const longExtra = bytes.slice();
    setU16(longExtra, lho + 28, 60000);
    await expect(openMem(longExtra)).rejects.toThrow(/runs past the start of the central directory/);
  });

  it('refuses a corrupt data.pkl (CRC), a missing storage, a storage of the wrong size, a view past its storage', async () => {
    const { bytes } = smallPth();
    const z = await ZipArchive.fromSource(memorySource(bytes), 'z');
    const pklAt = await z.dataOffset(z.entry('archive/data.pkl'));
    const flipped = bytes.slice();
    flipped[pklAt + 40] ^= 1;
    await expect(openMem(flipped)).rejects.toThrow(/zip entry "archive\/data\.pkl" is corrupt: CRC-32 0x[0-9a-f]{8}, central directory says 0x[0-9a-f]{8}/);

    const w = f32Bytes(new Array(15).fill(1));
    const t = (over: Partial<PthTensor> = {}): PthTensor => ({ name: 'w', key: '0', itemSize: 4, shape: [3, 5], ...over });
    const missing = buildPth({ storages: { '0': w, '3': w }, tensors: [t(), t({ name: 'v', key: '3' })], omitStorages: ['3'] });
    await expect(openMem(missing)).rejects.toThrow('mem.pth: tensor "v": its storage "3" (zip entry "archive/data/3") is missing from the archive');

    const wrongSize = buildPth({
      storages: { '0': w },
      tensors: [t()],
      pickle: stateDictPickle([{ name: 'w', key: '0', storage: { typed: 'FloatStorage' }, storageNumel: 16, offset: 0, shape: [3, 5], stride: [5, 1] }]),
    });
    await expect(openMem(wrongSize)).rejects.toThrow('tensor "w": storage "0" declares 16 x torch.float32 but its zip entry holds 60 bytes');

    const pastEnd = buildPth({ storages: { '0': w }, tensors: [t({ offset: 1 })] });
    await expect(openMem(pastEnd)).rejects.toThrow('tensor "w" (offset 1, size [3, 5], stride [5, 1]) reaches past the end of its 60-byte storage "0"');
    const badStride = buildPth({ storages: { '0': w }, tensors: [t({ stride: [6, 1] })] });
    await expect(openMem(badStride)).rejects.toThrow(/reaches past the end of its 60-byte storage/);
  });

  it('refuses big-endian checkpoints and unknown byteorder records', async () => {
    const w = f32Bytes([1, 2]);
    const tensors = [{ name: 'w', key: '0', itemSize: 4, shape: [2] }];
    await expect(openMem(buildPth({ storages: { '0': w }, tensors, byteorder: 'big' }))).rejects.toThrow(
      'mem.pth: checkpoint was saved on a big-endian machine (archive/byteorder says "big"); only little-endian checkpoints are supported',
    );
    await expect(openMem(buildPth({ storages: { '0': w }, tensors, byteorder: 'middle' }))).rejects.toThrow(/archive\/byteorder says "middle", expected "little"/);
    const ok = await openMem(buildPth({ storages: { '0': w }, tensors, byteorder: 'little' }));
    expect(await ok.readFloat32('w')).toEqual(Float32Array.from([1, 2]));
    await ok.close();
  });

  it('refuses what is not a flat state dict, unsupported dtypes, and archives without a single data.pkl', async () => {
    const w = f32Bytes([1, 2]);
    const tensor = (p: Pk) => {
      p.global('torch._utils', '_rebuild_tensor_v2').op('(');
      p.tuple([(q) => q.str('storage'), (q) => q.global('torch', 'FloatStorage'), (q) => q.str('0'), (q) => q.str('cpu'), (q) => q.int(2)]);
      p.op('Q').int(0).ints([2]).ints([1]).raw(0x89).orderedDict().op('t').op('R');
    };
    const withPickle = (pickle: Uint8Array) => openMem(buildPth({ storages: { '0': w }, tensors: [], pickle }));
    const nested = new Pk().proto().op('}').str('state_dict').orderedDict().str('w').call(tensor).op('s').op('s').str('epoch').int(3).op('s').stop();
    await expect(withPickle(nested)).rejects.toThrow(
      'mem.pth: key "state_dict" holds a nested OrderedDict of 1: only flat state dicts (name -> tensor) are supported; save the inner state dict itself (e.g. torch.save(ckpt["state_dict"], path))',
    );
    const notTensor = new Pk().proto().op('}').str('w').call(tensor).op('s').str('epoch').int(3).op('s').stop();
    await expect(withPickle(notTensor)).rejects.toThrow('mem.pth: key "epoch" holds a number 3, not a tensor');
    const list = new Pk().proto().op(']').call(tensor).op('a').stop();
    await expect(withPickle(list)).rejects.toThrow('mem.pth: data.pkl holds a list of 1, not a state dict (a dict of tensors)');
    const intKey = new Pk().proto().op('}').int(0).call(tensor).op('s').stop();
    await expect(withPickle(intKey)).rejects.toThrow('mem.pth: state dict key number 0 is not a string');
    const plainDict = await withPickle(new Pk().proto().op('}').str('w').call(tensor).op('s').stop());
    expect(await plainDict.readFloat32('w')).toEqual(Float32Array.from([1, 2]));
    await plainDict.close();

    const complex = buildPth({ storages: { '0': new Uint8Array(16) }, tensors: [{ name: 'c', key: '0', itemSize: 8, shape: [2], storageType: 'ComplexFloatStorage' }] });
    await expect(openMem(complex)).rejects.toThrow('mem.pth: tensor "c" has dtype torch.complex64, which this loader does not support');
    const f8 = buildPth({ storages: { '0': new Uint8Array(4) }, tensors: [{ name: 'q', key: '0', itemSize: 1, shape: [4], untypedDtype: 'float8_e4m3fn' }] });
    await expect(openMem(f8)).rejects.toThrow('mem.pth: tensor "q" has dtype torch.float8_e4m3fn, which this loader does not support');

    await expect(openMem(buildZip([{ name: 'foo/bar.txt', data: w }]))).rejects.toThrow(
      'mem.pth: no <folder>/data.pkl entry: not a torch.save checkpoint (entries: "foo/bar.txt")',
    );
    const two = buildZip([{ name: 'a/data.pkl', data: new Pk().proto().op('}').stop() }, { name: 'b/data.pkl', data: new Pk().proto().op('}').stop() }]);
    await expect(openMem(two)).rejects.toThrow(/several data\.pkl entries \(a\/data\.pkl, b\/data\.pkl\): ambiguous/);
    const empty = await openMem(buildZip([{ name: 'archive/data.pkl', data: new Pk().proto().orderedDict().stop() }]));
    expect(empty.keys()).toEqual([]);
    await empty.close();
  });

  it('zip64 corruption: saturated fields without zip64 data, bad zip64 records', async () => {
    const { bytes } = smallPth({ zip64: 'all' });
    const e = eocdAt(bytes);
    const locator = e - 20;
    expect(u32At(bytes, locator)).toBe(0x07064b50);
    const noLocator = bytes.slice();
    noLocator[locator] = 0;
    await expect(openMem(noLocator)).rejects.toThrow(/saturated \(zip64 archive\) but no zip64 locator precedes it/);
    const badRecord = bytes.slice();
    const z64Pos = Number(new DataView(bytes.buffer).getBigUint64(locator + 8, true));
    badRecord[z64Pos] = 0;
    await expect(openMem(badRecord)).rejects.toThrow(/bad zip64 end record signature/);
    const farRecord = bytes.slice();
    new DataView(farRecord.buffer).setBigUint64(locator + 8, 2n ** 60n, true);
    await expect(openMem(farRecord)).rejects.toThrow(/zip64 end record offset 1152921504606846976 does not lie before its locator/);
    const hugeCd = bytes.slice();
    new DataView(hugeCd.buffer).setBigUint64(z64Pos + 48, 2n ** 55n, true);
    await expect(openMem(hugeCd)).rejects.toThrow(/zip64 end record holds values beyond 2\^53/);
    // Central entry with 0xFFFFFFFF sizes but its zip64 extra field removed (id changed).
    const z = await ZipArchive.fromSource(memorySource(bytes), 'z');
    const cdOffset = z.centralDirectoryOffset;
    const noExtra = bytes.slice();
    setU16(noExtra, cdOffset + 46 + 'archive/data.pkl'.length, 0x9999);
    await expect(openMem(noExtra)).rejects.toThrow(/central directory entry 0 \(offset \d+\) "archive\/data\.pkl": sizes\/offset are 0xFFFFFFFF but there is no zip64 extra field/);
    const shortExtra = bytes.slice();
    setU16(shortExtra, cdOffset + 46 + 'archive/data.pkl'.length + 2, 8);
    await expect(openMem(shortExtra)).rejects.toThrow(/zip64 extra field too short for the compressed size/);
  });

  it('never crashes or hangs on randomly mutated archives (errors are always the labelled, clear kind)', async () => {
    const { bytes } = smallPth();
    const bytes64 = smallPth({ zip64: 'all' }).bytes;
    const r = rng(77);
    let opened = 0;
    let refused = 0;
    for (let iter = 0; iter < 600; iter++) {
      const src = iter % 2 ? bytes64 : bytes;
      const m = src.slice();
      // Mutate the structural tail (central directory and end records) more often than data.
      for (let k = 0; k < 1 + (iter % 3); k++) {
        const at = r() < 0.7 ? m.length - 1 - Math.floor(r() * Math.min(m.length, 400)) : Math.floor(r() * m.length);
        m[at] = Math.floor(r() * 256);
      }
      try {
        const f = await openMem(m);
        for (const k of f.keys()) await f.readRaw(k);
        await f.close();
        opened++;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        if (!msg.startsWith('mem.pth: ') || !(e instanceof Error) || e instanceof TypeError || e instanceof RangeError) {
          throw new Error(`iteration ${iter}: unclear error ${String(e)}`);
        }
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(100);
    expect(opened).toBeGreaterThan(0);
  });
});
