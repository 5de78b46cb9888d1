// Read-only access to uncompressed (STORED) zip archives by positioned reads, for torch.save
// checkpoints that are many GB: only the end records, the central directory and the local header
// of each entry actually used are read; entry data is read in ranges on demand.
//
// Layout (APPNOTE.TXT): [local header + data]* [central directory] [zip64 end record + zip64
// locator]? [end-of-central-directory record + comment]. Files over 4 GB (the real umT5 checkpoint)
// keep their true sizes/offsets in the zip64 records and in a zip64 extra field (id 0x0001) of each
// central entry, whose 32-bit fields then hold 0xFFFFFFFF. torch's writer pads the local header's
// extra field to align the data, so the data offset must come from the LOCAL header's name/extra
// lengths, never from the central ones.
//
// Nothing read from the file is trusted until checked: every offset and size is bounds-checked
// against the file and against the regions it must lie in, so a corrupt file gives a clear error.

import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/** A random-access byte source: a file (by positioned reads) or, in tests, memory. */
export interface ByteSource {
  readonly size: number;
  /** Exactly `length` bytes at `position` (callers only ask for ranges inside [0, size)). */
  read(position: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** Node's fs.read takes at most 2^31 - 1 bytes per call; stay well below it. */
const MAX_READ_CHUNK = 1 << 30;

/** Read exactly `length` bytes at `position` into `out[outOffset..]` (loops over chunks and short reads). */
export async function readFully(
  fh: FileHandle,
  out: Uint8Array,
  outOffset: number,
  length: number,
  position: number,
  label: string,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const want = Math.min(length - done, MAX_READ_CHUNK);
    const { bytesRead } = await fh.read(out, outOffset + done, want, position + done);
    if (bytesRead === 0) {
      throw new Error(`${label}: unexpected end of file reading ${length} bytes at offset ${position} (file truncated or changed?)`);
    }
    done += bytesRead;
  }
}

export async function openFileSource(path: string): Promise<ByteSource> {
  const fh = await fsp.open(path, 'r');
  let size: number;
  try {
    size = (await fh.stat()).size;
  } catch (e) {
    await fh.close();
    throw e;
  }
  let open = true;
  return {
    size,
    async read(position, length) {
      if (!open) throw new Error(`${path}: file is closed`);
      const out = new Uint8Array(length);
      await readFully(fh, out, 0, length, position, path);
      return out;
    },
    async close() {
      if (open) {
        open = false;
        await fh.close();
      }
    },
  };
}

/** Bytes in memory as a ByteSource (tests, small archives). Reads return copies. */
export function memorySource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.byteLength,
    async read(position, length) {
      if (position < 0 || position + length > bytes.byteLength) {
        throw new Error(`memory source: read [${position}, ${position + length}) outside ${bytes.byteLength} bytes`);
      }
      return bytes.slice(position, position + length);
    },
    async close() {},
  };
}

export const ZIP_METHOD_STORED = 0;
const METHOD_NAMES: Record<number, string> = { 0: 'stored', 8: 'deflate', 9: 'deflate64', 12: 'bzip2', 14: 'lzma', 93: 'zstd', 95: 'xz' };

export interface ZipEntry {
  name: string;
  /** Compression method from the central directory (0 = STORED). */
  method: number;
  /** General purpose flags (bit 0: encrypted, bit 3: sizes in a data descriptor, bit 11: UTF-8 name). */
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_MIN_SIZE = 56;
const CENTRAL_HEADER_SIZE = 46;
const LOCAL_HEADER_SIZE = 30;
const MAX_COMMENT = 0xffff;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;
/** Refuse central directories above this: torch checkpoints need ~100 bytes an entry. */
export const MAX_CENTRAL_DIRECTORY_BYTES = 256 * 1024 * 1024;

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** A little-endian u64 as a number, or null when it exceeds 2^53 - 1. */
function u64(dv: DataView, at: number): number | null {
  const v = dv.getBigUint64(at, true);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(v);
}

function hex(n: number): string {
  return '0x' + n.toString(16).padStart(8, '0');
}

function decodeName(bytes: Uint8Array): string {
  // Torch writes ASCII names; accept UTF-8 (flag 11 or not) and fall back to Latin-1 for the rest.
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return String.fromCharCode(...bytes);
  }
}

let crcTable: Uint32Array | null = null;

/** CRC-32 (IEEE, as zip uses), continuing from `crc` (0 to start). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

interface EndRecords {
  entryCount: number;
  cdOffset: number;
  cdSize: number;
  /** Where the end records start (central directory must end at or before this). */
  endStart: number;
  zip64: boolean;
}

/** A zip archive of STORED entries, read by positioned reads. */
export class ZipArchive {
  private readonly dataOffsets = new Map<string, number>();

  private constructor(
    readonly label: string,
    private readonly source: ByteSource,
    /** Entries by name, in central directory order. */
    readonly entries: ReadonlyMap<string, ZipEntry>,
    /** Where the central directory starts: every entry's data must end before it. */
    readonly centralDirectoryOffset: number,
    readonly zip64: boolean,
  ) {}

  get size(): number {
    return this.source.size;
  }

  static async open(path: string): Promise<ZipArchive> {
    const src = await openFileSource(path);
    try {
      return await ZipArchive.fromSource(src, path);
    } catch (e) {
      await src.close();
      throw e;
    }
  }

  /** Parse the end records and central directory of `source`; errors start with `label`. */
  static async fromSource(source: ByteSource, label: string): Promise<ZipArchive> {
    const fail = (msg: string): never => {
      throw new Error(`${label}: ${msg}`);
    };
    const end = await readEndRecords(source, fail);
    if (end.cdSize > MAX_CENTRAL_DIRECTORY_BYTES) {
      fail(`central directory of ${end.cdSize} bytes exceeds the limit of ${MAX_CENTRAL_DIRECTORY_BYTES} bytes`);
    }
    if (end.cdOffset + end.cdSize > end.endStart) {
      fail(
        `central directory [${end.cdOffset}, ${end.cdOffset + end.cdSize}) lies past the end records at offset ${end.endStart} ` +
          `(file size ${source.size}; truncated or corrupt zip)`,
      );
    }
    if (end.entryCount * CENTRAL_HEADER_SIZE > end.cdSize) {
      fail(`end record declares ${end.entryCount} entries, more than a ${end.cdSize}-byte central directory can hold`);
    }
    const cd = await source.read(end.cdOffset, end.cdSize);
    const entries = parseCentralDirectory(cd, end, fail);
    return new ZipArchive(label, source, entries, end.cdOffset, end.zip64);
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) throw new Error(`${this.label}: no zip entry "${name}"`);
    return e;
  }

  /**
   * Absolute file offset of the entry's data. Reads and checks the local header (once); refuses
   * compressed or encrypted entries, since their bytes cannot be addressed in place.
   */
  async dataOffset(entry: ZipEntry): Promise<number> {
    const cached = this.dataOffsets.get(entry.name);
    if (cached !== undefined) return cached;
    const fail = (msg: string): never => {
      throw new Error(`${this.label}: zip entry "${entry.name}": ${msg}`);
    };
    if (entry.method !== ZIP_METHOD_STORED) {
      const m = METHOD_NAMES[entry.method];
      fail(`is compressed (method ${entry.method}${m ? `, ${m}` : ''}); only STORED (uncompressed) entries can be read in place (torch.save never compresses)`);
    }
    if (entry.flags & 1) fail(`is encrypted, which is not supported`);
    if (entry.compressedSize !== entry.uncompressedSize) {
      fail(`is STORED but its compressed size ${entry.compressedSize} differs from its size ${entry.uncompressedSize}`);
    }
    const lho = entry.localHeaderOffset;
    if (lho + LOCAL_HEADER_SIZE > this.centralDirectoryOffset) {
      fail(`local header at offset ${lho} lies past the start of the central directory (${this.centralDirectoryOffset})`);
    }
    // One read for the fixed header and (usually) the name; the name length is checked below.
    const h = await this.source.read(lho, Math.min(LOCAL_HEADER_SIZE + 256, this.centralDirectoryOffset - lho));
    const dv = view(h);
    const sig = dv.getUint32(0, true);
    if (sig !== SIG_LOCAL) fail(`bad local header signature ${hex(sig)} at offset ${lho} (expected ${hex(SIG_LOCAL)})`);
    const method = dv.getUint16(8, true);
    if (method !== entry.method) fail(`local header says method ${method}, central directory says ${entry.method}`);
    const nameLen = dv.getUint16(26, true);
    const extraLen = dv.getUint16(28, true);
    const start = lho + LOCAL_HEADER_SIZE + nameLen + extraLen;
    if (start + entry.compressedSize > this.centralDirectoryOffset) {
      fail(
        `data [${start}, ${start + entry.compressedSize}) runs past the start of the central directory (${this.centralDirectoryOffset})`,
      );
    }
    const nameBytes =
      LOCAL_HEADER_SIZE + nameLen <= h.byteLength
        ? h.subarray(LOCAL_HEADER_SIZE, LOCAL_HEADER_SIZE + nameLen)
        : await this.source.read(lho + LOCAL_HEADER_SIZE, nameLen);
    const localName = decodeName(nameBytes);
    if (localName !== entry.name) fail(`local header names it "${localName}"`);
    this.dataOffsets.set(entry.name, start);
    return start;
  }

  /** `length` bytes at `offset` inside the entry's (uncompressed) data. */
  async read(entry: ZipEntry, offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > entry.uncompressedSize) {
      throw new Error(`${this.label}: zip entry "${entry.name}": read [${offset}, ${offset + length}) outside its ${entry.uncompressedSize} bytes`);
    }
    const start = await this.dataOffset(entry);
    return this.source.read(start + offset, length);
  }

  /** The whole entry, refused above `maxBytes`; the CRC-32 is checked. For small records (data.pkl). */
  async readAll(entry: ZipEntry, maxBytes: number): Promise<Uint8Array> {
    if (entry.uncompressedSize > maxBytes) {
      throw new Error(`${this.label}: zip entry "${entry.name}" has ${entry.uncompressedSize} bytes, more than the ${maxBytes} allowed`);
    }
    const bytes = await this.read(entry, 0, entry.uncompressedSize);
    const crc = crc32(bytes);
    if (crc !== entry.crc32) {
      throw new Error(`${this.label}: zip entry "${entry.name}" is corrupt: CRC-32 ${hex(crc)}, central directory says ${hex(entry.crc32)}`);
    }
    return bytes;
  }

  /** Check an entry's CRC-32 by streaming it in chunks (whole storages can be GBs). */
  async verifyCrc(entry: ZipEntry, chunkBytes = 64 * 1024 * 1024): Promise<boolean> {
    let crc = 0;
    for (let off = 0; off < entry.uncompressedSize; off += chunkBytes) {
      crc = crc32(await this.read(entry, off, Math.min(chunkBytes, entry.uncompressedSize - off)), crc);
    }
    return crc === entry.crc32;
  }

  /** Raw positioned read in the archive (callers check bounds; used for tensor data). */
  async readAt(position: number, length: number): Promise<Uint8Array> {
    if (position < 0 || length < 0 || position + length > this.source.size) {
      throw new Error(`${this.label}: read [${position}, ${position + length}) outside the file (${this.source.size} bytes)`);
    }
    return this.source.read(position, length);
  }

  close(): Promise<void> {
    return this.source.close();
  }
}

async function readEndRecords(src: ByteSource, fail: (msg: string) => never): Promise<EndRecords> {
  const size = src.size;
  if (size < EOCD_SIZE) fail(`file of ${size} bytes is too small to be a zip archive (no end-of-central-directory record)`);
  const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT);
  const tailStart = size - tailLen;
  const tail = await src.read(tailStart, tailLen);
  const tv = view(tail);
  // Search backwards for a record whose comment ends exactly at the end of the file.
  let at = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (tv.getUint32(i, true) === SIG_EOCD && i + EOCD_SIZE + tv.getUint16(i + 20, true) === tailLen) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    const head = await src.read(0, Math.min(size, 4));
    if (head[0] === 0x80 && head[1] !== undefined && head[1] <= 5) {
      fail(`not a zip archive: this looks like a legacy (pre-1.6) torch.save pickle stream, which is not supported (re-save it with torch >= 1.6)`);
    }
    const startsLikeZip = head.length >= 4 && view(head).getUint32(0, true) === SIG_LOCAL;
    fail(
      startsLikeZip
        ? `no end-of-central-directory record found: the zip archive is truncated or its end is corrupt`
        : `no end-of-central-directory record found: not a zip archive (bad or missing EOCD signature)`,
    );
  }
  const eocdPos = tailStart + at;
  const disk = tv.getUint16(at + 4, true);
  const cdDisk = tv.getUint16(at + 6, true);
  const entriesHere = tv.getUint16(at + 8, true);
  let entryCount = tv.getUint16(at + 10, true);
  let cdSize = tv.getUint32(at + 12, true);
  let cdOffset = tv.getUint32(at + 16, true);

  // A zip64 locator, if any, sits right before the EOCD record.
  const locPos = eocdPos - ZIP64_LOCATOR_SIZE;
  let zip64 = false;
  let endStart = eocdPos;
  if (locPos >= 0) {
    const loc = await src.read(locPos, ZIP64_LOCATOR_SIZE);
    const lv = view(loc);
    if (lv.getUint32(0, true) === SIG_ZIP64_LOCATOR) {
      zip64 = true;
      const z64Disk = lv.getUint32(4, true);
      const z64Pos = u64(lv, 8);
      const disks = lv.getUint32(16, true);
      if (z64Disk !== 0 || disks > 1) fail(`multi-disk (split) zip archives are not supported`);
      if (z64Pos === null || z64Pos + ZIP64_EOCD_MIN_SIZE > locPos) {
        fail(`zip64 end record offset ${lv.getBigUint64(8, true)} does not lie before its locator at ${locPos}`);
      }
      const rec = await src.read(z64Pos!, ZIP64_EOCD_MIN_SIZE);
      const rv = view(rec);
      const sig = rv.getUint32(0, true);
      if (sig !== SIG_ZIP64_EOCD) fail(`bad zip64 end record signature ${hex(sig)} at offset ${z64Pos} (expected ${hex(SIG_ZIP64_EOCD)})`);
      const recSize = u64(rv, 4);
      if (recSize === null || z64Pos! + 12 + recSize > locPos) fail(`zip64 end record size ${rv.getBigUint64(4, true)} overruns its locator`);
      if (rv.getUint32(16, true) !== 0 || rv.getUint32(20, true) !== 0) fail(`multi-disk (split) zip archives are not supported`);
      const count = u64(rv, 32);
      const size64 = u64(rv, 40);
      const off64 = u64(rv, 48);
      if (count === null || size64 === null || off64 === null) fail(`zip64 end record holds values beyond 2^53`);
      entryCount = count!;
      cdSize = size64!;
      cdOffset = off64!;
      endStart = z64Pos!;
    }
  }
  if (!zip64) {
    if (disk !== 0 || cdDisk !== 0 || entriesHere !== entryCount) fail(`multi-disk (split) zip archives are not supported`);
    if (entryCount === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
      fail(`end record fields are saturated (zip64 archive) but no zip64 locator precedes it: truncated or corrupt zip`);
    }
  }
  if (cdOffset > size) fail(`central directory offset ${cdOffset} is past the end of the file (${size} bytes)`);
  return { entryCount, cdOffset, cdSize, endStart, zip64 };
}

function parseCentralDirectory(cd: Uint8Array, end: EndRecords, fail: (msg: string) => never): Map<string, ZipEntry> {
  const dv = view(cd);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < end.entryCount; i++) {
    const where = `central directory entry ${i} (offset ${end.cdOffset + p})`;
    if (p + CENTRAL_HEADER_SIZE > cd.byteLength) fail(`${where} runs past the end of the central directory`);
    const sig = dv.getUint32(p, true);
    if (sig !== SIG_CENTRAL) fail(`${where}: bad signature ${hex(sig)} (expected ${hex(SIG_CENTRAL)})`);
    const flags = dv.getUint16(p + 8, true);
    const method = dv.getUint16(p + 10, true);
    const crc = dv.getUint32(p + 16, true);
    let compressedSize = dv.getUint32(p + 20, true);
    let uncompressedSize = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let diskStart = dv.getUint16(p + 34, true);
    let localHeaderOffset = dv.getUint32(p + 42, true);
    const nameAt = p + CENTRAL_HEADER_SIZE;
    const extraAt = nameAt + nameLen;
    const next = extraAt + extraLen + commentLen;
    if (next > cd.byteLength) fail(`${where}: name/extra/comment run past the end of the central directory`);
    const name = decodeName(cd.subarray(nameAt, nameAt + nameLen));
    const who = `${where} "${name}"`;

    // Saturated fields are replaced, in this order, by the 8-byte (disk: 4-byte) values of the zip64 extra field.
    const needU = uncompressedSize === U32_MAX;
    const needC = compressedSize === U32_MAX;
    const needO = localHeaderOffset === U32_MAX;
    const needD = diskStart === U16_MAX;
    if (needU || needC || needO || needD) {
      let found = false;
      for (let q = extraAt; q + 4 <= extraAt + extraLen; ) {
        const id = dv.getUint16(q, true);
        const len = dv.getUint16(q + 2, true);
        if (q + 4 + len > extraAt + extraLen) fail(`${who}: extra field overruns its ${extraLen} bytes`);
        if (id === 0x0001) {
          found = true;
          let r = q + 4;
          const take8 = (what: string): number => {
            if (r + 8 > q + 4 + len) fail(`${who}: zip64 extra field too short for the ${what}`);
            const v = u64(dv, r);
            if (v === null) fail(`${who}: zip64 ${what} ${dv.getBigUint64(r, true)} exceeds 2^53`);
            r += 8;
            return v!;
          };
          if (needU) uncompressedSize = take8('uncompressed size');
          if (needC) compressedSize = take8('compressed size');
          if (needO) localHeaderOffset = take8('local header offset');
          if (needD) {
            if (r + 4 > q + 4 + len) fail(`${who}: zip64 extra field too short for the disk number`);
            diskStart = dv.getUint32(r, true);
          }
          break;
        }
        q += 4 + len;
      }
      if (!found) fail(`${who}: sizes/offset are 0xFFFFFFFF but there is no zip64 extra field`);
    }
    if (diskStart !== 0) fail(`${who}: lives on disk ${diskStart}; multi-disk (split) zip archives are not supported`);
    if (localHeaderOffset >= end.cdOffset) {
      fail(`${who}: local header offset ${localHeaderOffset} is not before the central directory (${end.cdOffset})`);
    }
    if (entries.has(name)) fail(`${who}: duplicate entry name`);
    entries.set(name, { name, method, flags, crc32: crc, compressedSize, uncompressedSize, localHeaderOffset });
    p = next;
  }
  return entries;
}
