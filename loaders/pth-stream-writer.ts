// Streaming torch.save writer for state dicts of many GB (the 11 GB umT5 checkpoint): the same
// archive as serializePth (loaders/pth-writer.ts: data.pkl, one STORED entry per storage in key
// order, 64-byte aligned data, "version"), written tensor by tensor, chunk by chunk. Every size
// is known before the data exists, so the whole layout is computed first; each entry's CRC-32 is
// computed while its data streams past and patched into its local header at the end (the central
// directory, written last, has them all).
//
// Archives past 4 GiB use zip64 as the format requires: a central entry whose local header starts
// at or beyond 0xFFFFFFFF stores its offset in a zip64 extra field (id 0x0001), and a zip64 end
// record and locator precede the end record, whose saturated fields point to them. Single entries
// must stay below 4 GiB (the largest official tensor, the 256384 x 4096 bf16 embedding, is 2.1 GB).
// Without zip64 the bytes equal serializePth's; `forceZip64` writes the zip64 records anyway, so the
// tests can check that path on small archives.
import { crc32 as zlibCrc32 } from 'node:zlib';
import { ChunkedFileWriter, type ChunkedWriterOptions } from './chunked-file.ts';
import { alignmentPad, statePickle, STORAGE_CLASS } from './pth-writer.ts';
import { tensorBytes, type FillTensor, type StreamTensor } from './safetensors-stream-writer.ts';
import { crc32 as jsCrc32 } from './zip.ts';

// zlib's CRC-32 is native (Node >= 20.15); the table-driven one in zip.ts is the fallback.
const crc32 = (bytes: Uint8Array, crc = 0): number => (typeof zlibCrc32 === 'function' ? zlibCrc32(bytes, crc) : jsCrc32(bytes, crc));

const LOCAL_HEADER = 30;
const CENTRAL_HEADER = 46;
const EOCD = 22;
const ZIP64_EOCD = 56;
const ZIP64_LOCATOR = 20;
const ZIP64_EXTRA = 12; // id, length, 8-byte local header offset
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;
const PAD_EXTRA_ID = 0x4246;
const DOS_DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1;
const FLAG_UTF8 = 0x0800;

interface ZipRecord {
  name: Uint8Array;
  /** Bytes known in advance (data.pkl, version), or the tensor whose data streams in. */
  bytes?: Uint8Array;
  tensor?: StreamTensor;
  size: number;
  offset: number;
  pad: number;
  zip64: boolean;
  crc: number;
}

export interface PthStreamOptions extends ChunkedWriterOptions {
  /** Folder inside the archive (torch 1.13 uses the file's stem; see pthFolderFor). */
  folder: string;
  /** Write zip64 records even when the archive does not need them (tests). */
  forceZip64?: boolean;
}

export interface PthLayout {
  records: ZipRecord[];
  cdOffset: number;
  cdSize: number;
  zip64: boolean;
  fileBytes: number;
}

/** Where every record of the archive goes; throws for names, dtypes or sizes the format cannot hold. */
export function pthStreamLayout(tensors: readonly StreamTensor[], opts: Pick<PthStreamOptions, 'folder' | 'forceZip64'>): PthLayout {
  const folder = opts.folder;
  if (!/^[A-Za-z0-9_.+-]+$/.test(folder) || folder === '.' || folder === '..') throw new Error(`pth: archive folder "${folder}" must be a plain name`);
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new Error(`pth: tensor "${t.name}" appears twice`);
    seen.add(t.name);
    if (!STORAGE_CLASS[t.dtype]) throw new Error(`pth: tensor "${t.name}": dtype ${t.dtype} has no torch storage type`);
    if (tensorBytes(t) >= U32_MAX) throw new Error(`pth: tensor "${t.name}" has ${tensorBytes(t)} bytes; entries of 4 GiB and more need zip64 sizes, which this writer does not write`);
  }
  const enc = new TextEncoder();
  const pickle = statePickle(tensors.map((t) => [t.name, t]));
  const keys = tensors.map((_, i) => String(i)).sort(); // torch writes storages in key (string) order
  const items: Omit<ZipRecord, 'offset' | 'pad' | 'zip64' | 'crc'>[] = [
    { name: enc.encode(`${folder}/data.pkl`), bytes: pickle, size: pickle.byteLength },
    ...keys.map((k) => ({ name: enc.encode(`${folder}/data/${k}`), tensor: tensors[Number(k)]!, size: tensorBytes(tensors[Number(k)]!) })),
    { name: enc.encode(`${folder}/version`), bytes: enc.encode('3\n'), size: 2 },
  ];
  const records: ZipRecord[] = [];
  let pos = 0;
  for (const it of items) {
    const pad = alignmentPad(pos + LOCAL_HEADER + it.name.byteLength);
    const zip64 = !!opts.forceZip64 || pos >= U32_MAX;
    records.push({ ...it, offset: pos, pad, zip64, crc: it.bytes ? crc32(it.bytes) : 0 });
    pos += LOCAL_HEADER + it.name.byteLength + pad + it.size;
  }
  const cdOffset = pos;
  const cdSize = records.reduce((a, r) => a + CENTRAL_HEADER + r.name.byteLength + (r.zip64 ? ZIP64_EXTRA : 0), 0);
  const zip64 = !!opts.forceZip64 || records.some((r) => r.zip64) || cdOffset >= U32_MAX || cdSize >= U32_MAX || records.length >= U16_MAX;
  const fileBytes = cdOffset + cdSize + (zip64 ? ZIP64_EOCD + ZIP64_LOCATOR : 0) + EOCD;
  return { records, cdOffset, cdSize, zip64, fileBytes };
}

function localHeader(r: ZipRecord): Uint8Array {
  const out = new Uint8Array(LOCAL_HEADER + r.name.byteLength + r.pad);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0x04034b50, true);
  dv.setUint16(4, 20, true); // version needed: 2.0 (the local header itself has no zip64 fields)
  dv.setUint16(6, FLAG_UTF8, true);
  dv.setUint16(8, 0, true); // STORED
  dv.setUint16(10, 0, true); // time
  dv.setUint16(12, DOS_DATE_1980_01_01, true);
  dv.setUint32(14, r.crc, true); // patched after streaming for tensor entries
  dv.setUint32(18, r.size, true);
  dv.setUint32(22, r.size, true);
  dv.setUint16(26, r.name.byteLength, true);
  dv.setUint16(28, r.pad, true);
  out.set(r.name, LOCAL_HEADER);
  if (r.pad > 0) {
    const p = LOCAL_HEADER + r.name.byteLength;
    dv.setUint16(p, PAD_EXTRA_ID, true);
    dv.setUint16(p + 2, r.pad - 4, true);
    out.fill(0x5a, p + 4, p + r.pad); // torch pads with 'Z'
  }
  return out;
}

/** Central directory and end records. */
function trailer(l: PthLayout): Uint8Array {
  const out = new Uint8Array(l.fileBytes - l.cdOffset);
  const dv = new DataView(out.buffer);
  let p = 0;
  for (const r of l.records) {
    dv.setUint32(p, 0x02014b50, true);
    dv.setUint16(p + 4, r.zip64 ? 45 : 20, true); // made by
    dv.setUint16(p + 6, r.zip64 ? 45 : 20, true); // version needed (4.5: zip64)
    dv.setUint16(p + 8, FLAG_UTF8, true);
    dv.setUint16(p + 14, DOS_DATE_1980_01_01, true);
    dv.setUint32(p + 16, r.crc, true);
    dv.setUint32(p + 20, r.size, true);
    dv.setUint32(p + 24, r.size, true);
    dv.setUint16(p + 28, r.name.byteLength, true);
    dv.setUint16(p + 30, r.zip64 ? ZIP64_EXTRA : 0, true);
    dv.setUint32(p + 42, r.zip64 ? U32_MAX : r.offset, true);
    out.set(r.name, p + CENTRAL_HEADER);
    p += CENTRAL_HEADER + r.name.byteLength;
    if (r.zip64) {
      dv.setUint16(p, 0x0001, true);
      dv.setUint16(p + 2, 8, true);
      dv.setBigUint64(p + 4, BigInt(r.offset), true);
      p += ZIP64_EXTRA;
    }
  }
  const n = l.records.length;
  const force = l.zip64;
  if (l.zip64) {
    const at = l.cdOffset + p;
    dv.setUint32(p, 0x06064b50, true);
    dv.setBigUint64(p + 4, BigInt(ZIP64_EOCD - 12), true); // size of the rest of the record
    dv.setUint16(p + 12, 45, true);
    dv.setUint16(p + 14, 45, true);
    // disk numbers 0
    dv.setBigUint64(p + 24, BigInt(n), true);
    dv.setBigUint64(p + 32, BigInt(n), true);
    dv.setBigUint64(p + 40, BigInt(l.cdSize), true);
    dv.setBigUint64(p + 48, BigInt(l.cdOffset), true);
    p += ZIP64_EOCD;
    dv.setUint32(p, 0x07064b50, true);
    dv.setBigUint64(p + 8, BigInt(at), true);
    dv.setUint32(p + 16, 1, true); // total disks
    p += ZIP64_LOCATOR;
  }
  dv.setUint32(p, 0x06054b50, true);
  dv.setUint16(p + 8, force || n >= U16_MAX ? U16_MAX : n, true);
  dv.setUint16(p + 10, force || n >= U16_MAX ? U16_MAX : n, true);
  dv.setUint32(p + 12, force || l.cdSize >= U32_MAX ? U32_MAX : l.cdSize, true);
  dv.setUint32(p + 16, force || l.cdOffset >= U32_MAX ? U32_MAX : l.cdOffset, true);
  return out;
}

/**
 * torch.save(state_dict, path) for tensors whose bytes come from `fill`, in state dict order
 * (`tensors`); memory stays at two chunks. Returns the file size.
 */
export async function writePthStreaming(path: string, tensors: readonly StreamTensor[], fill: FillTensor, opts: PthStreamOptions): Promise<number> {
  const layout = pthStreamLayout(tensors, opts);
  const w = await ChunkedFileWriter.create(path, opts);
  try {
    for (const r of layout.records) {
      await w.write(localHeader(r));
      if (r.bytes) {
        await w.write(r.bytes);
        continue;
      }
      const t = r.tensor!;
      let crc = 0;
      await w.stream(r.size, (dst, off) => fill(t, dst, off), (chunk) => (crc = crc32(chunk, crc)));
      r.crc = crc;
    }
    if (w.position !== layout.cdOffset) throw new Error(`${path}: data ends at ${w.position}, the layout says ${layout.cdOffset}`);
    await w.write(trailer(layout));
    const crcBytes = new Uint8Array(4);
    for (const r of layout.records) {
      if (!r.tensor) continue;
      new DataView(crcBytes.buffer).setUint32(0, r.crc, true);
      await w.patch(r.offset + 14, crcBytes);
    }
    await w.close();
  } catch (e) {
    await w.abort();
    throw e;
  }
  return layout.fileBytes;
}
