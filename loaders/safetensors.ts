// Safetensors reader/writer for small files (test fixtures, tiny checkpoints).
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON header, then the data section.
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the
// data section) plus an optional "__metadata__" string map. Nothing in the header is trusted until
// parseSafetensorsHeader has checked it against the file size.

import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { getFloat16 } from '@petamoriken/float16';

export type StDType =
  | 'F64' | 'F32' | 'F16' | 'BF16'
  | 'I64' | 'I32' | 'I16' | 'I8'
  | 'U64' | 'U32' | 'U16' | 'U8'
  | 'BOOL';

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Readonly<Record<StDType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1,
};

export function isStDType(s: unknown): s is StDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

export interface StEntry {
  name: string;
  dtype: StDType;
  shape: number[];
  /** Absolute byte offsets in the file (data section start already added). */
  begin: number;
  end: number;
}

export interface StHeader {
  entries: Map<string, StEntry>;
  metadata: Record<string, string>;
  /** Absolute offset of the data section (8 + header length). */
  dataStart: number;
}

/** Refuse headers above this size: real checkpoints stay far below it, a corrupt length won't. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Number of elements of a shape; null if it is not a safe integer. */
export function shapeNumel(shape: readonly number[]): number | null {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return null;
  }
  return n;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Parse and validate a safetensors header. `readAt(offset, length)` must return exactly `length`
 * bytes from the file; it is only called for ranges already checked to lie inside the file.
 * Every error message starts with `label` (typically the file path).
 */
export function parseSafetensorsHeader(
  fileSize: number,
  readAt: (offset: number, length: number) => Uint8Array,
  label: string,
): StHeader {
  const fail = (msg: string): never => {
    throw new Error(`${label}: ${msg}`);
  };
  const read = (offset: number, length: number): Uint8Array => {
    const b = readAt(offset, length);
    if (b.byteLength !== length) fail(`short read: wanted ${length} bytes at offset ${offset}, got ${b.byteLength}`);
    return b;
  };

  if (!isNonNegInt(fileSize)) fail(`invalid file size ${fileSize}`);
  if (fileSize < 8) fail(`file size ${fileSize} is smaller than the 8-byte header length prefix`);

  const prefix = read(0, 8);
  const headerLen64 = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  // Compare as BigInt: the stored value can exceed 2^53.
  if (headerLen64 > BigInt(fileSize - 8)) {
    fail(`header length ${headerLen64} exceeds file size ${fileSize} (8-byte prefix + header = ${headerLen64 + 8n} bytes)`);
  }
  const headerLen = Number(headerLen64);
  if (headerLen > MAX_HEADER_BYTES) fail(`header length ${headerLen} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(read(8, headerLen));
  } catch (e) {
    return fail(`header is not valid UTF-8 (${errorMessage(e)})`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    return fail(`header is not valid JSON (${errorMessage(e)})`);
  }
  if (!isPlainObject(header)) return fail(`header is not a JSON object`);

  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const entries = new Map<string, StEntry>();
  let metadata: Record<string, string> = {};

  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isPlainObject(v)) fail(`__metadata__ is not a JSON object`);
      for (const [k, mv] of Object.entries(v as Record<string, unknown>)) {
        if (typeof mv !== 'string') fail(`__metadata__ value for "${k}" is not a string (${JSON.stringify(mv)})`);
      }
      // fromEntries defines own properties, so a "__proto__" key cannot touch the prototype.
      metadata = Object.fromEntries(Object.entries(v as Record<string, string>));
      continue;
    }
    const t = `tensor "${name}"`;
    if (!isPlainObject(v)) return fail(`${t} header entry is not a JSON object`);
    const { dtype, shape, data_offsets: offs } = v;
    if (!isStDType(dtype)) return fail(`${t} has unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      return fail(`${t} has invalid shape ${JSON.stringify(shape)} (expected an array of non-negative integers)`);
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isNonNegInt)) {
      return fail(`${t} has invalid data_offsets ${JSON.stringify(offs)} (expected [begin, end], non-negative integers)`);
    }
    const [b, e] = offs as [number, number];
    const where = `data_offsets [${b}, ${e}]`;
    if (b > e) fail(`${t} ${where} have begin > end`);
    if (e > dataSize) fail(`${t} ${where} lie outside the data section (${dataSize} bytes)`);
    const numel = shapeNumel(shape);
    if (numel === null) return fail(`${t} shape ${JSON.stringify(shape)} has too many elements`);
    const nbytes = numel * DTYPE_SIZE[dtype];
    if (e - b !== nbytes) {
      fail(`${t} ${where} do not match shape ${JSON.stringify(shape)} x ${dtype} (${nbytes} bytes)`);
    }
    entries.set(name, { name, dtype, shape: [...shape], begin: dataStart + b, end: dataStart + e });
  }

  // Overlap check on non-empty ranges, sorted by start.
  const ranges = [...entries.values()].filter((x) => x.end > x.begin).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < ranges.length; i++) {
    const p = ranges[i - 1]!;
    const c = ranges[i]!;
    if (c.begin < p.end) {
      const rel = (x: StEntry) => `[${x.begin - dataStart}, ${x.end - dataStart}]`;
      fail(`tensors "${p.name}" ${rel(p)} and "${c.name}" ${rel(c)} overlap`);
    }
  }
  return { entries, metadata, dataStart };
}

/** Read exactly `length` bytes at `position` (loops over short reads). */
async function readExact(fh: FileHandle, position: number, length: number, label: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await readExactInto(fh, position, out, label);
  return out;
}

/** Fill `out` from `position` (loops over short reads). */
async function readExactInto(fh: FileHandle, position: number, out: Uint8Array, label: string): Promise<void> {
  const length = out.byteLength;
  let done = 0;
  while (done < length) {
    // Node aborts (not throws) on single reads of 2 GiB or more: read at most 1 GiB at a time.
    const { bytesRead } = await fh.read(out, done, Math.min(length - done, 1 << 30), position + done);
    if (bytesRead === 0) {
      throw new Error(`${label}: unexpected end of file reading ${length} bytes at offset ${position} (file changed?)`);
    }
    done += bytesRead;
  }
}

/** A safetensors file opened for positioned reads of single tensors. */
export class SafetensorsFile {
  private fh: FileHandle | null;

  private constructor(
    readonly path: string,
    fh: FileHandle,
    readonly size: number,
    readonly entries: Map<string, StEntry>,
    readonly metadata: Record<string, string>,
    readonly dataStart: number,
  ) {
    this.fh = fh;
  }

  static async open(path: string): Promise<SafetensorsFile> {
    const fh = await fsp.open(path, 'r');
    try {
      const { size } = await fh.stat();
      // Prefetch the prefix and (when its length is plausible) the header; the parser re-checks
      // everything and only asks for ranges it has validated.
      const prefix = await readExact(fh, 0, Math.min(size, 8), path);
      let head = prefix;
      if (size >= 8) {
        const n = new DataView(prefix.buffer).getBigUint64(0, true);
        if (n <= BigInt(Math.min(size - 8, MAX_HEADER_BYTES))) {
          head = new Uint8Array(8 + Number(n));
          head.set(prefix, 0);
          head.set(await readExact(fh, 8, Number(n), path), 8);
        }
      }
      const readAt = (offset: number, length: number): Uint8Array => {
        if (offset + length > head.byteLength) {
          throw new Error(`${path}: internal error: header read [${offset}, ${offset + length}) beyond prefetched bytes`);
        }
        return head.subarray(offset, offset + length);
      };
      const h = parseSafetensorsHeader(size, readAt, path);
      return new SafetensorsFile(path, fh, size, h.entries, h.metadata, h.dataStart);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  info(name: string): { name: string; dtype: StDType; shape: number[] } {
    const e = this.entry(name);
    return { name, dtype: e.dtype, shape: e.shape };
  }

  entry(name: string): StEntry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.path}: no tensor "${name}"`);
    return e;
  }

  /** The bytes of one tensor, in a fresh (aligned) buffer. */
  async readRaw(name: string): Promise<Uint8Array> {
    const e = this.entry(name);
    if (!this.fh) throw new Error(`${this.path}: file is closed`);
    return readExact(this.fh, e.begin, e.end - e.begin, this.path);
  }

  /** `length` bytes of one tensor starting `offset` bytes into it (for streaming large tensors). */
  async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    const e = this.entry(name);
    if (!this.fh) throw new Error(`${this.path}: file is closed`);
    if (offset < 0 || length < 0 || offset + length > e.end - e.begin) {
      throw new Error(`${this.path}: range [${offset}, ${offset + length}) outside tensor "${name}" (${e.end - e.begin} bytes)`);
    }
    return readExact(this.fh, e.begin + offset, length, this.path);
  }

  /** Like readRange, into the caller's buffer (`dst.byteLength` bytes): no allocation per chunk. */
  async readInto(name: string, offset: number, dst: Uint8Array): Promise<void> {
    const e = this.entry(name);
    if (!this.fh) throw new Error(`${this.path}: file is closed`);
    if (offset < 0 || offset + dst.byteLength > e.end - e.begin) {
      throw new Error(`${this.path}: range [${offset}, ${offset + dst.byteLength}) outside tensor "${name}" (${e.end - e.begin} bytes)`);
    }
    await readExactInto(this.fh, e.begin + offset, dst, this.path);
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    if (fh) await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding. Input bytes may sit at any byteOffset (e.g. a subarray of a whole file), so typed
// array views are only created over an aligned copy. Safetensors data is little-endian; typed
// arrays use host order, so big-endian hosts are refused.

const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Copy into a fresh ArrayBuffer (offset 0, so any element size is aligned). */
function alignedCopy(bytes: Uint8Array): ArrayBuffer {
  if (!HOST_LE) throw new Error('safetensors: big-endian hosts are not supported');
  const buf = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(buf).set(bytes);
  return buf;
}

function countElements(fn: string, dtype: StDType, bytes: Uint8Array): number {
  if (!isStDType(dtype)) throw new Error(`${fn}: unknown dtype ${JSON.stringify(dtype)}`);
  const size = DTYPE_SIZE[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new Error(`${fn}: ${bytes.byteLength} bytes is not a multiple of the ${dtype} element size (${size})`);
  }
  return bytes.byteLength / size;
}

function decodeF16(bytes: Uint8Array, n: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = getFloat16(view, 2 * i, true);
  return out;
}

function decodeBF16(bytes: Uint8Array, n: number): Float32Array {
  // bfloat16 is the upper half of a float32: shift the bits up and reinterpret.
  const src = new Uint16Array(alignedCopy(bytes));
  const bits = new Uint32Array(n);
  for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
  return new Float32Array(bits.buffer);
}

/** 64-bit integers as numbers, each checked to lie in [lo, hi]. */
function decodeInt64(fn: string, dtype: 'I64' | 'U64', bytes: Uint8Array, lo: number, hi: number, what: string): number[] {
  const buf = alignedCopy(bytes);
  const src = dtype === 'I64' ? new BigInt64Array(buf) : new BigUint64Array(buf);
  const out = new Array<number>(src.length);
  const blo = BigInt(lo);
  const bhi = BigInt(hi);
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (v < blo || v > bhi) throw new Error(`${fn}: ${dtype} value ${v} at index ${i} does not fit in ${what}`);
    out[i] = Number(v);
  }
  return out;
}

/** Float dtypes (F32, F16, BF16, F64) to float32. F64 is rounded to nearest float32. */
export function decodeToFloat32(dtype: StDType, bytes: Uint8Array): Float32Array {
  const fn = 'decodeToFloat32';
  const n = countElements(fn, dtype, bytes);
  switch (dtype) {
    case 'F32': return new Float32Array(alignedCopy(bytes));
    case 'F64': return new Float32Array(new Float64Array(alignedCopy(bytes)));
    case 'F16': return decodeF16(bytes, n);
    case 'BF16': return decodeBF16(bytes, n);
    default:
      throw new Error(`${fn}: dtype ${dtype} is not a float dtype (use decodeToFloat64 or decodeToInt)`);
  }
}

/** Any dtype to float64. 64-bit integers must be exactly representable (|v| <= 2^53 - 1). */
export function decodeToFloat64(dtype: StDType, bytes: Uint8Array): Float64Array {
  const fn = 'decodeToFloat64';
  const n = countElements(fn, dtype, bytes);
  switch (dtype) {
    case 'F64': return new Float64Array(alignedCopy(bytes));
    case 'F32': return new Float64Array(new Float32Array(alignedCopy(bytes)));
    case 'F16': return new Float64Array(decodeF16(bytes, n));
    case 'BF16': return new Float64Array(decodeBF16(bytes, n));
    case 'I64':
    case 'U64':
      return Float64Array.from(
        decodeInt64(fn, dtype, bytes, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, 'a float64 exactly'),
      );
    case 'I32': return new Float64Array(new Int32Array(alignedCopy(bytes)));
    case 'I16': return new Float64Array(new Int16Array(alignedCopy(bytes)));
    case 'I8': return new Float64Array(new Int8Array(alignedCopy(bytes)));
    case 'U32': return new Float64Array(new Uint32Array(alignedCopy(bytes)));
    case 'U16': return new Float64Array(new Uint16Array(alignedCopy(bytes)));
    case 'U8': return new Float64Array(bytes);
    case 'BOOL': return Float64Array.from(bytes, (v) => (v !== 0 ? 1 : 0));
  }
}

/** Integer (and BOOL) dtypes to int32; values outside the int32 range throw. */
export function decodeToInt(dtype: StDType, bytes: Uint8Array): Int32Array {
  const fn = 'decodeToInt';
  countElements(fn, dtype, bytes);
  switch (dtype) {
    case 'I32': return new Int32Array(alignedCopy(bytes));
    case 'I16': return new Int32Array(new Int16Array(alignedCopy(bytes)));
    case 'I8': return new Int32Array(new Int8Array(alignedCopy(bytes)));
    case 'U16': return new Int32Array(new Uint16Array(alignedCopy(bytes)));
    case 'U8': return new Int32Array(bytes);
    case 'BOOL': return Int32Array.from(bytes, (v) => (v !== 0 ? 1 : 0));
    case 'U32': {
      const src = new Uint32Array(alignedCopy(bytes));
      const i = src.findIndex((v) => v > 0x7fffffff);
      if (i >= 0) throw new Error(`${fn}: U32 value ${src[i]} at index ${i} does not fit in int32`);
      return new Int32Array(src);
    }
    case 'I64':
    case 'U64':
      return Int32Array.from(decodeInt64(fn, dtype, bytes, -0x80000000, 0x7fffffff, 'int32'));
    default:
      throw new Error(`${fn}: dtype ${dtype} is not an integer dtype`);
  }
}

// ---------------------------------------------------------------------------------------------
// Writing (tests, small tools).

export interface StTensorData {
  dtype: StDType;
  shape: number[];
  data: Uint8Array;
}

/** Serialize tensors (in the given order) to safetensors bytes; the header is space-padded to 8 bytes. */
export function serializeSafetensors(
  tensors: Record<string, StTensorData>,
  metadata?: Record<string, string>,
): Uint8Array {
  const headerEntries: [string, unknown][] = [];
  if (metadata) headerEntries.push(['__metadata__', metadata]);
  let offset = 0;
  const datas: Uint8Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__') throw new Error(`serializeSafetensors: "__metadata__" is not a valid tensor name`);
    if (!isStDType(t.dtype)) throw new Error(`serializeSafetensors: tensor "${name}" has unknown dtype ${JSON.stringify(t.dtype)}`);
    const numel = t.shape.every(isNonNegInt) ? shapeNumel(t.shape) : null;
    if (numel === null) throw new Error(`serializeSafetensors: tensor "${name}" has invalid shape ${JSON.stringify(t.shape)}`);
    const nbytes = numel * DTYPE_SIZE[t.dtype];
    if (t.data.byteLength !== nbytes) {
      throw new Error(
        `serializeSafetensors: tensor "${name}" has ${t.data.byteLength} bytes, shape ${JSON.stringify(t.shape)} x ${t.dtype} needs ${nbytes}`,
      );
    }
    headerEntries.push([name, { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + nbytes] }]);
    datas.push(t.data);
    offset += nbytes;
  }
  // fromEntries: a tensor named "__proto__" becomes a plain own key.
  const json = new TextEncoder().encode(JSON.stringify(Object.fromEntries(headerEntries)));
  const headerLen = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + headerLen + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + headerLen);
  let pos = 8 + headerLen;
  for (const d of datas) {
    out.set(d, pos);
    pos += d.byteLength;
  }
  return out;
}

export async function writeSafetensors(
  path: string,
  tensors: Record<string, StTensorData>,
  metadata?: Record<string, string>,
): Promise<void> {
  await fsp.writeFile(path, serializeSafetensors(tensors, metadata));
}
