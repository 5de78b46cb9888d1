// Streams one checkpoint tensor onto the device in its storage dtype: positioned reads of a few MiB
// at a time, converted on the way, never the whole tensor in host memory.
//
// Throughput (bench/load.ts): the next chunk's read is in flight (libuv's thread) while this one is
// converted and handed to the queue, and each chunk is submitted at once so the device copies it
// while the host reads on. The common case, float32 on disk to bf16 on the device (every official
// A14B expert and Diffusers transformer), reads straight into WebAssembly memory and converts with
// SIMD (bf16-simd.ts): no per-chunk allocation, no copy besides the queue's own.
import type { DType, Engine, Tensor } from '../engine/index.ts';
import { Bf16Converter } from './bf16-simd.ts';
import { convertChunk } from './convert.ts';
import { DTYPE_SIZE } from './safetensors.ts';
import type { TensorSource } from './source.ts';

export interface UploadOptions {
  /** Storage dtype on the device (weights: bf16 by default). */
  dtype?: DType;
  /** Checked against the stored shape; a mismatch is an error naming the file and key. */
  shape?: readonly number[];
  /** Host bytes per read (default 16 MiB). */
  chunkBytes?: number;
  label?: string;
}

export interface UploadStats {
  overflows: number;
}

const DEFAULT_CHUNK = 16 << 20;

/** Idle converters by chunk size (each owns 2 read slots; a few dozen MiB, kept for the next tensor). */
const idle = new Map<number, Bf16Converter[]>();

function takeConverter(chunkElems: number): Bf16Converter {
  return idle.get(chunkElems)?.pop() ?? new Bf16Converter(chunkElems, 2);
}

function giveBack(c: Bf16Converter): void {
  const list = idle.get(c.chunkElems) ?? [];
  if (list.length < 2) list.push(c);
  idle.set(c.chunkElems, list);
}

/** float32 -> bf16 with double-buffered reads into the converter's slots. */
async function streamF32ToBf16(e: Engine, src: TensorSource, name: string, t: Tensor, numel: number, chunkBytes: number): Promise<void> {
  // Whole chunks are a multiple of 8 values (SIMD groups; also keeps packed halves word aligned).
  const per = Math.max(8, Math.floor(chunkBytes / 4 / 8) * 8);
  const conv = takeConverter(per);
  const read = async (slot: number, el: number, count: number): Promise<void> => {
    const dst = conv.input(slot, count);
    if (src.readInto) await src.readInto(name, el * 4, dst);
    else dst.set(await src.readRange(name, el * 4, count * 4));
  };
  let inFlight: Promise<void> | null = read(0, 0, Math.min(per, numel));
  try {
    for (let el = 0, k = 0; el < numel; el += per, k++) {
      const count = Math.min(per, numel - el);
      await inFlight;
      inFlight = null;
      const next = el + per;
      if (next < numel) inFlight = read((k + 1) % 2, next, Math.min(per, numel - next));
      e.writeTensorRange(t, el, conv.convert(k % 2, count));
      e.flush();
    }
  } finally {
    // Never hand back a converter a read is still writing into.
    if (inFlight) await inFlight.catch(() => {});
    giveBack(conv);
  }
}

/** Any other dtype pair: read-ahead of one chunk, converted by convertChunk. */
async function streamGeneric(e: Engine, src: TensorSource, name: string, t: Tensor, numel: number, dtype: DType, chunkBytes: number, stats?: UploadStats): Promise<void> {
  const info = src.info(name);
  const elemBytes = DTYPE_SIZE[info.dtype];
  // Chunks hold an even number of elements so packed half types stay word aligned.
  let per = Math.max(2, Math.floor(chunkBytes / elemBytes));
  per -= per % 2;
  const read = (el: number) => src.readRange(name, el * elemBytes, Math.min(per, numel - el) * elemBytes);
  let inFlight: Promise<Uint8Array> | null = read(0);
  try {
    for (let el = 0; el < numel; el += per) {
      const raw = await inFlight!;
      inFlight = el + per < numel ? read(el + per) : null;
      const { bytes, overflows } = convertChunk(info.dtype, raw, dtype);
      if (stats) stats.overflows += overflows;
      e.writeTensorRange(t, el, bytes);
      e.flush();
    }
  } finally {
    if (inFlight) await inFlight.catch(() => {});
  }
}

export async function uploadTensor(e: Engine, src: TensorSource, name: string, opts: UploadOptions = {}, stats?: UploadStats): Promise<Tensor> {
  if (!src.has(name)) throw new Error(`${src.path}: missing tensor ${src.describeMissing?.(name) ?? `"${name}"`}`);
  const info = src.info(name);
  if (opts.shape && (opts.shape.length !== info.shape.length || opts.shape.some((d, i) => d !== info.shape[i]))) {
    throw new Error(`${src.path}: tensor "${name}" has shape [${info.shape}], expected [${opts.shape}]`);
  }
  const dtype = opts.dtype ?? 'bf16';
  const numel = info.shape.reduce((a, b) => a * b, 1);
  const chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK;
  const t = e.empty(info.shape, dtype, opts.label ?? name);
  try {
    if (numel === 0) return t;
    if (info.dtype === 'F32' && dtype === 'bf16') await streamF32ToBf16(e, src, name, t, numel, chunkBytes);
    else await streamGeneric(e, src, name, t, numel, dtype, chunkBytes, stats);
  } catch (err) {
    t.dispose();
    throw err;
  }
  return t;
}
