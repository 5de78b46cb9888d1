// Writer for PyTorch state dicts in the torch.save zip format, as torch 1.13 writes them (the
// format of the official Wan .pth files; `torch.load` and loaders/pth.ts read it):
//   <folder>/data.pkl     pickle protocol 2: an OrderedDict of name -> _rebuild_tensor_v2(storage,
//                         0, shape, contiguous strides, False, OrderedDict()), each storage a
//                         persistent id ('storage', torch.<Type>Storage, key, 'cpu', numel)
//   <folder>/data/<key>   one STORED entry per tensor, raw little-endian elements
//   <folder>/version      "3\n"
// <folder> is the file's stem (torch 1.13 does that; newer torch writes "archive"). Storage keys
// are "0", "1", ... in state dict order; their entries follow in string order, as torch's writer
// sorts them. Every entry's data starts on a 64-byte boundary (a padding extra field in the local
// header, as torch does), so readers may map tensors in place. Entries carry their CRC-32 and
// sizes in the local header (no data descriptors) and a fixed 1980-01-01 timestamp, so the same
// tensors always give the same bytes.
//
// Minimal by design: one tensor per storage, contiguous, no torch `_metadata` attribute (the
// loaders and load_state_dict do not need it), no zip64: archives must stay below 4 GiB.
import { promises as fsp } from 'node:fs';
import { basename } from 'node:path';
import { DTYPE_SIZE, shapeNumel, type StDType } from './safetensors.ts';
import { crc32 } from './zip.ts';

export interface PthTensorData {
  dtype: StDType;
  shape: number[];
  /** Row-major contiguous little-endian elements (numel x element size bytes). */
  data: Uint8Array;
}

export interface PthWriteOptions {
  /** Folder inside the archive (default: the file's stem, as torch 1.13; "archive" for serializePth). */
  folder?: string;
}

/** torch 1.13 storage class per dtype (torch has no unsigned storages wider than a byte). */
export const STORAGE_CLASS: Partial<Record<StDType, string>> = {
  F64: 'DoubleStorage',
  F32: 'FloatStorage',
  F16: 'HalfStorage',
  BF16: 'BFloat16Storage',
  I64: 'LongStorage',
  I32: 'IntStorage',
  I16: 'ShortStorage',
  I8: 'CharStorage',
  U8: 'ByteStorage',
  BOOL: 'BoolStorage',
};

// ---------------------------------------------------------------------------------------------
// Pickle emitter (protocol 2, only the opcodes a state dict needs)

class PickleBuilder {
  private parts: number[] = [];

  private byte(...b: number[]): void {
    for (const x of b) this.parts.push(x);
  }

  private bytes(b: Uint8Array): void {
    for (const x of b) this.parts.push(x);
  }

  private u32(v: number): void {
    this.byte(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }

  proto(): void {
    this.byte(0x80, 2); // PROTO 2
  }

  mark(): void {
    this.byte(0x28); // MARK
  }

  global(module: string, name: string): void {
    this.byte(0x63); // GLOBAL: "module\nname\n"
    this.bytes(new TextEncoder().encode(`${module}\n${name}\n`));
  }

  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.byte(0x58); // BINUNICODE
    this.u32(b.byteLength);
    this.bytes(b);
  }

  int(v: number): void {
    if (!Number.isSafeInteger(v)) throw new Error(`pickle: ${v} is not a safe integer`);
    if (v >= 0 && v < 0x100) this.byte(0x4b, v); // BININT1
    else if (v >= 0 && v < 0x10000) this.byte(0x4d, v & 0xff, v >>> 8); // BININT2
    else if (v >= -0x80000000 && v <= 0x7fffffff) {
      this.byte(0x4a); // BININT
      this.u32(v >>> 0);
    } else {
      // LONG1: little-endian two's complement, shortest length that keeps the sign
      const out: number[] = [];
      let x = BigInt(v);
      for (;;) {
        const b = Number(x & 0xffn);
        out.push(b);
        x >>= 8n;
        if ((x === 0n && !(b & 0x80)) || (x === -1n && b & 0x80)) break;
      }
      this.byte(0x8a, out.length, ...out);
    }
  }

  bool(v: boolean): void {
    this.byte(v ? 0x88 : 0x89); // NEWTRUE / NEWFALSE
  }

  /** A tuple of already-emitted items (`count` of them on the stack, after a MARK when count > 3). */
  tuple(count: number): void {
    if (count === 0) this.byte(0x29); // EMPTY_TUPLE
    else if (count === 1) this.byte(0x85); // TUPLE1
    else if (count === 2) this.byte(0x86); // TUPLE2
    else if (count === 3) this.byte(0x87); // TUPLE3
    else this.byte(0x74); // TUPLE (to the MARK)
  }

  intTuple(values: readonly number[]): void {
    if (values.length > 3) this.mark();
    for (const v of values) this.int(v);
    this.tuple(values.length);
  }

  reduce(): void {
    this.byte(0x52); // REDUCE
  }

  binpersid(): void {
    this.byte(0x51); // BINPERSID
  }

  setitems(): void {
    this.byte(0x75); // SETITEMS (to the MARK)
  }

  stop(): Uint8Array {
    this.byte(0x2e); // STOP
    return Uint8Array.from(this.parts);
  }
}

/** Row-major strides of a contiguous tensor, in elements (as torch: 1-sized dims too). */
function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= Math.max(shape[i]!, 1);
  }
  return s;
}

/** data.pkl of a state dict whose i-th tensor lives in storage key `${i}` (only dtypes and shapes are read). */
export function statePickle(tensors: readonly [string, Pick<PthTensorData, 'dtype' | 'shape'>][]): Uint8Array {
  const p = new PickleBuilder();
  p.proto();
  p.global('collections', 'OrderedDict');
  p.tuple(0);
  p.reduce();
  // pickle's own batching: SETITEMS of at most 1000 pairs.
  for (let start = 0; start < tensors.length; start += 1000) {
    p.mark();
    for (let i = start; i < Math.min(start + 1000, tensors.length); i++) {
      const [name, t] = tensors[i]!;
      const numel = shapeNumel(t.shape)!;
      p.str(name);
      p.global('torch._utils', '_rebuild_tensor_v2');
      p.mark(); // arguments
      p.mark(); // persistent id
      p.str('storage');
      p.global('torch', STORAGE_CLASS[t.dtype]!);
      p.str(String(i));
      p.str('cpu');
      p.int(numel);
      p.tuple(5);
      p.binpersid();
      p.int(0); // storage offset
      p.intTuple(t.shape);
      p.intTuple(contiguousStrides(t.shape));
      p.bool(false); // requires_grad
      p.global('collections', 'OrderedDict'); // backward hooks
      p.tuple(0);
      p.reduce();
      p.tuple(6);
      p.reduce();
    }
    p.setitems();
  }
  return p.stop();
}

// ---------------------------------------------------------------------------------------------
// Zip (STORED entries, 64-byte aligned data)

const ALIGN = 64;
const LOCAL_HEADER = 30;
const CENTRAL_HEADER = 46;
const EOCD = 22;
/** Extra field id torch uses for its alignment padding ("FB"). */
const PAD_EXTRA_ID = 0x4246;
const DOS_DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1;
const FLAG_UTF8 = 0x0800;

/** Bytes of the padding extra field that puts data ending a local header at `headerEnd` on a 64-byte boundary. */
export function alignmentPad(headerEnd: number): number {
  const pad = (ALIGN - (headerEnd % ALIGN)) % ALIGN;
  return pad > 0 && pad < 4 ? pad + ALIGN : pad; // an extra field needs its 4-byte id + length
}

interface ZipItem {
  name: Uint8Array;
  data: Uint8Array;
  crc: number;
  offset: number;
  /** Bytes of the local header's extra field (alignment padding). */
  pad: number;
}

function checkedTensors(tensors: Record<string, PthTensorData> | readonly [string, PthTensorData][]): [string, PthTensorData][] {
  // Array.isArray does not narrow a readonly tuple array, hence the casts.
  const list: [string, PthTensorData][] = Array.isArray(tensors)
    ? [...(tensors as readonly [string, PthTensorData][])]
    : Object.entries(tensors as Record<string, PthTensorData>);
  const seen = new Set<string>();
  for (const [name, t] of list) {
    if (seen.has(name)) throw new Error(`serializePth: tensor "${name}" appears twice`);
    seen.add(name);
    if (!STORAGE_CLASS[t.dtype]) throw new Error(`serializePth: tensor "${name}": dtype ${t.dtype} has no torch storage type`);
    const numel = t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) ? shapeNumel(t.shape) : null;
    if (numel === null) throw new Error(`serializePth: tensor "${name}" has invalid shape ${JSON.stringify(t.shape)}`);
    const nbytes = numel * DTYPE_SIZE[t.dtype];
    if (t.data.byteLength !== nbytes) {
      throw new Error(`serializePth: tensor "${name}" has ${t.data.byteLength} bytes, shape ${JSON.stringify(t.shape)} x ${t.dtype} needs ${nbytes}`);
    }
  }
  return list;
}

/** The torch.save archive bytes of a state dict (tensors in the given order). */
export function serializePth(tensors: Record<string, PthTensorData> | readonly [string, PthTensorData][], opts: PthWriteOptions = {}): Uint8Array {
  const folder = opts.folder ?? 'archive';
  if (!/^[A-Za-z0-9_.+-]+$/.test(folder) || folder === '.' || folder === '..') throw new Error(`serializePth: archive folder "${folder}" must be a plain name`);
  const list = checkedTensors(tensors);
  const enc = new TextEncoder();
  const storageOrder = list.map((_, i) => String(i)).sort(); // torch writes storages in key (string) order
  const records: [string, Uint8Array][] = [
    ['data.pkl', statePickle(list)],
    ...storageOrder.map((k): [string, Uint8Array] => [`data/${k}`, list[Number(k)]![1].data]),
    ['version', enc.encode('3\n')],
  ];

  // Lay out the local headers and data.
  const items: ZipItem[] = [];
  let pos = 0;
  for (const [rel, data] of records) {
    const name = enc.encode(`${folder}/${rel}`);
    const headerEnd = pos + LOCAL_HEADER + name.byteLength;
    const pad = alignmentPad(headerEnd);
    items.push({ name, data, crc: crc32(data), offset: pos, pad });
    pos = headerEnd + pad + data.byteLength;
  }
  const cdOffset = pos;
  const cdSize = items.reduce((a, it) => a + CENTRAL_HEADER + it.name.byteLength, 0);
  const total = cdOffset + cdSize + EOCD;
  if (total > 0xffffffff || items.length > 0xffff) throw new Error(`serializePth: archive of ${total} bytes / ${items.length} entries needs zip64, which this writer does not implement`);

  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  for (const it of items) {
    let p = it.offset;
    dv.setUint32(p, 0x04034b50, true);
    dv.setUint16(p + 4, 20, true); // version needed: 2.0
    dv.setUint16(p + 6, FLAG_UTF8, true);
    dv.setUint16(p + 8, 0, true); // STORED
    dv.setUint16(p + 10, 0, true); // time
    dv.setUint16(p + 12, DOS_DATE_1980_01_01, true);
    dv.setUint32(p + 14, it.crc, true);
    dv.setUint32(p + 18, it.data.byteLength, true);
    dv.setUint32(p + 22, it.data.byteLength, true);
    dv.setUint16(p + 26, it.name.byteLength, true);
    dv.setUint16(p + 28, it.pad, true);
    out.set(it.name, p + LOCAL_HEADER);
    p += LOCAL_HEADER + it.name.byteLength;
    if (it.pad > 0) {
      dv.setUint16(p, PAD_EXTRA_ID, true);
      dv.setUint16(p + 2, it.pad - 4, true);
      out.fill(0x5a, p + 4, p + it.pad); // torch pads with 'Z'
    }
    out.set(it.data, p + it.pad);
  }
  let p = cdOffset;
  for (const it of items) {
    dv.setUint32(p, 0x02014b50, true);
    dv.setUint16(p + 4, 20, true); // made by
    dv.setUint16(p + 6, 20, true); // version needed
    dv.setUint16(p + 8, FLAG_UTF8, true);
    dv.setUint16(p + 10, 0, true);
    dv.setUint16(p + 12, 0, true);
    dv.setUint16(p + 14, DOS_DATE_1980_01_01, true);
    dv.setUint32(p + 16, it.crc, true);
    dv.setUint32(p + 20, it.data.byteLength, true);
    dv.setUint32(p + 24, it.data.byteLength, true);
    dv.setUint16(p + 28, it.name.byteLength, true);
    // extra, comment, disk, internal / external attributes: 0
    dv.setUint32(p + 42, it.offset, true);
    out.set(it.name, p + CENTRAL_HEADER);
    p += CENTRAL_HEADER + it.name.byteLength;
  }
  dv.setUint32(p, 0x06054b50, true);
  dv.setUint16(p + 8, items.length, true);
  dv.setUint16(p + 10, items.length, true);
  dv.setUint32(p + 12, cdSize, true);
  dv.setUint32(p + 16, cdOffset, true);
  return out;
}

/** The archive folder torch 1.13 uses for a file: its name without the extension. */
export function pthFolderFor(path: string): string {
  const b = basename(path);
  const dot = b.lastIndexOf('.');
  return dot > 0 ? b.slice(0, dot) : b;
}

/** torch.save(state_dict, path) as torch 1.13 writes it (folder = the file's stem). */
export async function writePth(path: string, tensors: Record<string, PthTensorData> | readonly [string, PthTensorData][], opts: PthWriteOptions = {}): Promise<void> {
  await fsp.writeFile(path, serializePth(tensors, { folder: opts.folder ?? pthFolderFor(path) }));
}
