// Reader for PyTorch checkpoints written by torch.save (the zip format of torch >= 1.6), for the
// official Wan files: models_t5_umt5-xxl-enc-bf16.pth (BF16, > 4 GB: zip64) and the float32 VAE
// state dicts. Files are never read whole: open() reads the zip central directory, data.pkl and
// one local header per storage; tensors are lazy views read by positioned reads on demand.
//
// Archive layout: <folder>/data.pkl (the pickled state dict), <folder>/data/<key> (one STORED entry
// per storage, raw little-endian elements), optionally <folder>/byteorder ("little"/"big") and
// <folder>/version. torch 1.13 names <folder> after the file ("Wan2.1_VAE"); newer torch writes
// "archive". data.pkl goes through the restricted unpickler in pickle.ts.
//
// Only flat state dicts are accepted: a dict/OrderedDict mapping names to tensors. Non-contiguous
// tensors (strided views) are materialised by a strided gather in readRaw.

import { DTYPE_SIZE, decodeToFloat32, shapeNumel, type StDType } from './safetensors.ts';
import { PyDict, TorchTensor, describe, torchPersistentLoad, unpickle } from './pickle.ts';
import { ZipArchive, openFileSource, type ByteSource } from './zip.ts';

export interface PthTensorEntry {
  name: string;
  dtype: StDType;
  /** torch's name of the dtype, e.g. "torch.bfloat16". */
  torchDType: string;
  shape: number[];
  /** In elements, as torch stores it. */
  stride: number[];
  numel: number;
  /** Key of the storage: its data is the zip entry <folder>/data/<key>. */
  storageKey: string;
  /** Offset of element [0, ..., 0] in the storage, in elements. */
  storageOffset: number;
  /** Absolute file offset of element [0, ..., 0]. */
  byteOffset: number;
  /** Bytes of the tensor as a contiguous row-major array (numel x element size). */
  byteLength: number;
  /** Row-major contiguous in the file: [byteOffset, byteOffset + byteLength) is the tensor. */
  contiguous: boolean;
}

/** data.pkl above this is refused: a state dict's pickle is ~200 bytes per tensor. */
export const MAX_PICKLE_BYTES = 512 * 1024 * 1024;

/** Row-major contiguity as torch defines it (dims of size 1 may have any stride). */
export function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === 0) return true;
    if (shape[i] === 1) continue;
    if (stride[i] !== expected) return false;
    expected *= shape[i]!;
  }
  return true;
}

/** Largest element offset a view touches, relative to its first element (0 for empty/scalar views). */
function viewSpan(shape: readonly number[], stride: readonly number[]): number {
  let span = 0;
  for (let i = 0; i < shape.length; i++) span += (shape[i]! - 1) * stride[i]!;
  return span;
}

/** Options of the strided gather (tests force the sparse path with small limits). */
export interface GatherOptions {
  /** Read the whole touched span at once when it is at most byteLength * denseFactor + denseSlack. */
  denseFactor?: number;
  denseSlack?: number;
  /** Otherwise read runs in groups whose file span is at most this many bytes. */
  chunkBytes?: number;
}

/**
 * Materialise a strided view as contiguous row-major bytes. `readAt(pos, len)` reads the file;
 * `byteOffset` is the file offset of element [0, ..., 0]; all strides are non-negative.
 */
export async function gatherStrided(
  layout: { shape: readonly number[]; stride: readonly number[]; itemSize: number; byteOffset: number },
  readAt: (position: number, length: number) => Promise<Uint8Array>,
  opts: GatherOptions = {},
): Promise<Uint8Array> {
  const { itemSize, byteOffset } = layout;
  const numel = shapeNumel(layout.shape);
  if (numel === null) throw new Error(`gatherStrided: shape [${layout.shape.join(', ')}] has too many elements`);
  const out = new Uint8Array(numel * itemSize);
  if (numel === 0) return out;

  // Drop size-1 dims and merge dims that step through memory as one; the innermost stride-1 dim
  // becomes the "run" copied in one piece.
  const dims: { size: number; stride: number }[] = [];
  for (let i = 0; i < layout.shape.length; i++) {
    const size = layout.shape[i]!;
    if (size === 1) continue;
    const stride = layout.stride[i]!;
    const last = dims[dims.length - 1];
    if (last && last.stride === size * stride) {
      last.size *= size;
      last.stride = stride;
    } else {
      dims.push({ size, stride });
    }
  }
  let runElems = 1;
  if (dims.length > 0 && dims[dims.length - 1]!.stride === 1) runElems = dims.pop()!.size;
  const runBytes = runElems * itemSize;
  const runCount = numel / runElems;

  const spanBytes = (viewSpan(layout.shape, layout.stride) + 1) * itemSize;
  const dense = spanBytes <= out.byteLength * (opts.denseFactor ?? 2) + (opts.denseSlack ?? 64 * 1024 * 1024);
  const chunk = Math.max(opts.chunkBytes ?? 16 * 1024 * 1024, 1);

  // Odometer over the outer dims, yielding each run's source byte offset (relative to element 0).
  const idx = new Array<number>(dims.length).fill(0);
  let src = 0;
  const advance = () => {
    for (let d = dims.length - 1; d >= 0; d--) {
      const dim = dims[d]!;
      if (++idx[d]! < dim.size) {
        src += dim.stride * itemSize;
        return;
      }
      idx[d] = 0;
      src -= (dim.size - 1) * dim.stride * itemSize;
    }
  };
  const copy = (buf: Uint8Array, from: number, to: number) => {
    if (runBytes <= 16) for (let b = 0; b < runBytes; b++) out[to + b] = buf[from + b]!;
    else out.set(buf.subarray(from, from + runBytes), to);
  };

  if (dense) {
    const buf = await readAt(byteOffset, spanBytes);
    for (let r = 0; r < runCount; r++, advance()) copy(buf, src, r * runBytes);
    return out;
  }

  // Sparse view: group consecutive runs whose combined file span stays within `chunk`.
  const groupSrc: number[] = [];
  const groupDst: number[] = [];
  let lo = 0;
  let hi = 0;
  const flush = async () => {
    if (groupSrc.length === 0) return;
    const buf = await readAt(byteOffset + lo, hi - lo);
    for (let i = 0; i < groupSrc.length; i++) copy(buf, groupSrc[i]! - lo, groupDst[i]!);
    groupSrc.length = 0;
    groupDst.length = 0;
  };
  for (let r = 0; r < runCount; r++, advance()) {
    const dst = r * runBytes;
    if (runBytes >= chunk) {
      out.set(await readAt(byteOffset + src, runBytes), dst);
      continue;
    }
    const nlo = groupSrc.length ? Math.min(lo, src) : src;
    const nhi = groupSrc.length ? Math.max(hi, src + runBytes) : src + runBytes;
    if (groupSrc.length && (nhi - nlo > chunk || groupSrc.length >= 65536)) {
      await flush();
      lo = src;
      hi = src + runBytes;
    } else {
      lo = nlo;
      hi = nhi;
    }
    groupSrc.push(src);
    groupDst.push(dst);
  }
  await flush();
  return out;
}

/** A torch.save checkpoint opened for lazy, positioned reads of single tensors. */
export class PthFile {
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly zip: ZipArchive,
    /** The archive folder holding data.pkl ("archive", or the file's stem for torch 1.13). */
    readonly folder: string,
    /** Tensors by state dict key, in pickle order. */
    readonly entries: ReadonlyMap<string, PthTensorEntry>,
  ) {}

  static async open(path: string): Promise<PthFile> {
    const src = await openFileSource(path);
    try {
      return await PthFile.fromSource(src, path);
    } catch (e) {
      await src.close();
      throw e;
    }
  }

  /** Open from any byte source; errors start with `label`. On success close() closes the source; on failure the caller does. */
  static async fromSource(src: ByteSource, label: string): Promise<PthFile> {
    const fail = (msg: string): never => {
      throw new Error(`${label}: ${msg}`);
    };
    const zip = await ZipArchive.fromSource(src, label);

    const pkls = zip.names().filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length === 0) {
      const some = zip.names().slice(0, 5).map((n) => `"${n}"`).join(', ');
      fail(`no <folder>/data.pkl entry: not a torch.save checkpoint (entries: ${some || 'none'})`);
    }
    if (pkls.length > 1) fail(`several data.pkl entries (${pkls.join(', ')}): ambiguous checkpoint`);
    const folder = pkls[0]!.slice(0, -'/data.pkl'.length);

    const byteorderName = `${folder}/byteorder`;
    if (zip.has(byteorderName)) {
      const text = new TextDecoder().decode(await zip.readAll(zip.entry(byteorderName), 64)).trim();
      if (text === 'big') {
        fail(`checkpoint was saved on a big-endian machine (${byteorderName} says "big"); only little-endian checkpoints are supported`);
      }
      if (text !== 'little') fail(`${byteorderName} says ${JSON.stringify(text)}, expected "little"`);
    }

    const pkl = await zip.readAll(zip.entry(pkls[0]!), MAX_PICKLE_BYTES);
    const root = unpickle(pkl, { label: `${label}: ${pkls[0]}`, persistentLoad: torchPersistentLoad() });

    if (!(root instanceof PyDict)) {
      return fail(`data.pkl holds a ${describe(root)}, not a state dict (a dict of tensors)`);
    }
    const entries = new Map<string, PthTensorEntry>();
    for (const [key, value] of root.map) {
      if (typeof key !== 'string') fail(`state dict key ${describe(key)} is not a string`);
      const name = key as string;
      if (value instanceof PyDict) {
        fail(
          `key "${name}" holds a nested ${describe(value)}: only flat state dicts (name -> tensor) are supported; ` +
            `save the inner state dict itself (e.g. torch.save(ckpt["${name}"], path))`,
        );
      }
      if (!(value instanceof TorchTensor)) {
        fail(`key "${name}" holds a ${describe(value)}, not a tensor: only flat state dicts (name -> tensor) are supported`);
      }
      entries.set(name, await resolveTensor(zip, folder, name, value as TorchTensor, fail));
    }
    return new PthFile(label, zip, folder, entries);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): PthTensorEntry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.path}: no tensor "${name}"`);
    return e;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`${this.path}: file is closed`);
  }

  /** The tensor as contiguous row-major little-endian bytes, in a fresh buffer (strided views are gathered). */
  async readRaw(name: string): Promise<Uint8Array> {
    const e = this.entry(name);
    this.checkOpen();
    if (e.contiguous) return this.zip.readAt(e.byteOffset, e.byteLength);
    return gatherStrided(
      { shape: e.shape, stride: e.stride, itemSize: DTYPE_SIZE[e.dtype], byteOffset: e.byteOffset },
      (pos, len) => this.zip.readAt(pos, len),
    );
  }

  /** Bytes [begin, end) of a contiguous tensor's data (for streaming large tensors in windows). */
  async readRange(name: string, begin: number, end: number): Promise<Uint8Array> {
    const e = this.entry(name);
    this.checkOpen();
    if (!e.contiguous) throw new Error(`${this.path}: tensor "${name}" is not contiguous; use readRaw (strided gather)`);
    if (!Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || begin < 0 || begin > end || end > e.byteLength) {
      throw new Error(`${this.path}: tensor "${name}": byte range [${begin}, ${end}) outside its ${e.byteLength} bytes`);
    }
    return this.zip.readAt(e.byteOffset + begin, end - begin);
  }

  /** A float tensor (F32/F16/BF16/F64) decoded to float32. */
  async readFloat32(name: string): Promise<Float32Array> {
    return decodeToFloat32(this.entry(name).dtype, await this.readRaw(name));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.zip.close();
  }
}

async function resolveTensor(
  zip: ZipArchive,
  folder: string,
  name: string,
  t: TorchTensor,
  fail: (msg: string) => never,
): Promise<PthTensorEntry> {
  const who = `tensor "${name}"`;
  if (t.dtype === null) return fail(`${who} has dtype ${t.torchDType}, which this loader does not support`);
  const dtype = t.dtype;
  const itemSize = DTYPE_SIZE[dtype];
  const s = t.storage;
  const entryName = `${folder}/data/${s.key}`;
  const ze = zip.entries.get(entryName);
  if (!ze) fail(`${who}: its storage "${s.key}" (zip entry "${entryName}") is missing from the archive`);
  const storageBytes = ze!.uncompressedSize;
  const declared = s.dtype === 'untyped' ? s.numel : s.dtype === null ? null : s.numel * DTYPE_SIZE[s.dtype];
  if (declared !== storageBytes) {
    fail(`${who}: storage "${s.key}" declares ${s.numel} x ${s.torchDType} but its zip entry holds ${storageBytes} bytes`);
  }
  const dataOffset = await zip.dataOffset(ze!);
  const numel = shapeNumel(t.shape);
  if (numel === null) return fail(`${who} shape [${t.shape.join(', ')}] has too many elements`);
  const where = `offset ${t.storageOffset}, size [${t.shape.join(', ')}], stride [${t.stride.join(', ')}]`;
  if (numel > 0) {
    const lastElem = t.storageOffset + viewSpan(t.shape, t.stride);
    const endByte = (lastElem + 1) * itemSize;
    if (!Number.isSafeInteger(endByte) || endByte > storageBytes) {
      fail(`${who} (${where}) reaches past the end of its ${storageBytes}-byte storage "${s.key}"`);
    }
  }
  return {
    name,
    dtype,
    torchDType: t.torchDType,
    shape: [...t.shape],
    stride: [...t.stride],
    numel,
    storageKey: s.key,
    storageOffset: t.storageOffset,
    byteOffset: dataOffset + t.storageOffset * itemSize,
    byteLength: numel * itemSize,
    contiguous: isContiguous(t.shape, t.stride),
  };
}
