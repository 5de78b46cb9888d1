// Streaming safetensors writer: the header (every name, dtype, shape and offset) is known before any
// data, so a file of any size is written tensor by tensor, chunk by chunk, never held in memory.
// The bytes equal serializeSafetensors' for the same tensors, order and metadata.
import { ChunkedFileWriter, type ChunkedWriterOptions } from './chunked-file.ts';
import { DTYPE_SIZE, isStDType, shapeNumel, type StDType } from './safetensors.ts';

/** A tensor to be written: its data comes from a fill function, not from memory. */
export interface StreamTensor {
  name: string;
  dtype: StDType;
  shape: number[];
}

/** Writes bytes [byteOffset, byteOffset + dst.byteLength) of tensor `t` into `dst`. */
export type FillTensor = (t: StreamTensor, dst: Uint8Array, byteOffset: number) => void;

export function tensorBytes(t: StreamTensor): number {
  const numel = t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) ? shapeNumel(t.shape) : null;
  if (numel === null || !isStDType(t.dtype)) throw new Error(`tensor "${t.name}": invalid shape ${JSON.stringify(t.shape)} or dtype ${JSON.stringify(t.dtype)}`);
  return numel * DTYPE_SIZE[t.dtype];
}

export interface SafetensorsLayout {
  /** 8-byte length + JSON header (space-padded to 8 bytes). */
  header: Uint8Array;
  dataBytes: number;
  fileBytes: number;
}

/** The header of a safetensors file holding `tensors` in this order. */
export function safetensorsLayout(tensors: readonly StreamTensor[], metadata?: Record<string, string>): SafetensorsLayout {
  const entries: [string, unknown][] = [];
  if (metadata) entries.push(['__metadata__', metadata]);
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name)) throw new Error(`safetensors: tensor name "${t.name}" is reserved or repeated`);
    seen.add(t.name);
    const n = tensorBytes(t);
    entries.push([t.name, { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] }]);
    offset += n;
  }
  const json = new TextEncoder().encode(JSON.stringify(Object.fromEntries(entries)));
  const headerLen = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + headerLen).fill(0x20, 8 + json.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(headerLen), true);
  header.set(json, 8);
  return { header, dataBytes: offset, fileBytes: header.byteLength + offset };
}

/** Writes `tensors` (in this order) to `path`, each tensor's bytes produced by `fill`; returns the file size. */
export async function writeSafetensorsStreaming(
  path: string,
  tensors: readonly StreamTensor[],
  fill: FillTensor,
  opts: ChunkedWriterOptions & { metadata?: Record<string, string> } = {},
): Promise<number> {
  const layout = safetensorsLayout(tensors, opts.metadata);
  const w = await ChunkedFileWriter.create(path, opts);
  try {
    await w.write(layout.header);
    for (const t of tensors) await w.stream(tensorBytes(t), (dst, off) => fill(t, dst, off));
    await w.close();
  } catch (e) {
    await w.abort();
    throw e;
  }
  if (w.position !== layout.fileBytes) throw new Error(`${path}: wrote ${w.position} bytes, the layout says ${layout.fileBytes}`);
  return w.position;
}

/** Like FillTensor, but may read (e.g. from another file) before the chunk is complete. */
export type FillTensorAsync = (t: StreamTensor, dst: Uint8Array, byteOffset: number) => Promise<void>;

/**
 * writeSafetensorsStreaming with an asynchronous fill: two chunk buffers, one being filled while the
 * other is written (ChunkedFileWriter.write returns only once the previous write has landed, so the
 * buffer filled next is never one still being written). Same bytes as the synchronous writer.
 */
export async function writeSafetensorsStreamingAsync(
  path: string,
  tensors: readonly StreamTensor[],
  fill: FillTensorAsync,
  opts: ChunkedWriterOptions & { metadata?: Record<string, string> } = {},
): Promise<number> {
  const layout = safetensorsLayout(tensors, opts.metadata);
  const w = await ChunkedFileWriter.create(path, opts);
  const buffers: Uint8Array[] = [];
  let next = 0;
  try {
    await w.write(layout.header);
    for (const t of tensors) {
      const total = tensorBytes(t);
      for (let off = 0; off < total; ) {
        const n = Math.min(w.chunkBytes, total - off);
        buffers[next] ??= new Uint8Array(w.chunkBytes);
        const dst = buffers[next]!.subarray(0, n);
        next ^= 1;
        await fill(t, dst, off);
        await w.write(dst);
        off += n;
      }
    }
    await w.close();
  } catch (e) {
    await w.abort();
    throw e;
  }
  if (w.position !== layout.fileBytes) throw new Error(`${path}: wrote ${w.position} bytes, the layout says ${layout.fileBytes}`);
  return w.position;
}
