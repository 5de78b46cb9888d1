// Streams one checkpoint tensor onto the device in its storage dtype: positioned reads of a few MiB
// at a time, converted on the way, never the whole tensor in host memory.
//
// Throughput (bench/load.ts): the next chunks' reads are in flight (libuv's threads) while this one is
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
  /**
   * Keep the tensor out of every engine scope (Engine.detach at creation, in the same tick): for
   * uploads that run concurrently with scoped work (block streaming prefetches the next block while
   * the current one computes inside its scope, which would otherwise adopt and free it).
   */
  unscoped?: boolean;
  /** Allocate the 256-rounded size instead of the pool's size class (model weights: see BufferPool.acquire). */
  exactSize?: boolean;
}

export interface UploadStats {
  overflows: number;
}

const DEFAULT_CHUNK = 16 << 20;
/**
 * Reads in flight ahead of the chunk being converted (each converter has READ_AHEAD + 1 slots, 24 MiB
 * each at the default chunk). Several positioned reads in libuv's pool keep a cold disk busy: on this
 * machine 4 ahead loaded a cold 2 GB file at ~1.3-1.4 GB/s where 1 ahead managed ~0.8-0.9.
 */
const READ_AHEAD = 4;

/** An idle converter per chunk size, kept for the next tensor. */
const idle = new Map<number, Bf16Converter[]>();

function takeConverter(chunkElems: number): Bf16Converter {
  return idle.get(chunkElems)?.pop() ?? new Bf16Converter(chunkElems, READ_AHEAD + 1);
}

function giveBack(c: Bf16Converter): void {
  const list = idle.get(c.chunkElems) ?? [];
  if (list.length < 1) list.push(c);
  idle.set(c.chunkElems, list);
}

/** float32 -> bf16 with READ_AHEAD reads in flight into the converter's slots. */
async function streamF32ToBf16(e: Engine, src: TensorSource, name: string, t: Tensor, numel: number, chunkBytes: number): Promise<void> {
  // Whole chunks are a multiple of 8 values (SIMD groups; also keeps packed halves word aligned).
  const per = Math.max(8, Math.floor(chunkBytes / 4 / 8) * 8);
  const conv = takeConverter(per);
  const chunks = Math.ceil(numel / per);
  const read = async (k: number): Promise<void> => {
    const count = Math.min(per, numel - k * per);
    const dst = conv.input(k % conv.slots, count);
    if (src.readInto) await src.readInto(name, k * per * 4, dst);
    else dst.set(await src.readRange(name, k * per * 4, count * 4));
  };
  const inFlight: Promise<void>[] = [];
  // A later read may fail while an earlier one is awaited: mark it handled now, it is awaited in turn.
  const start = (k: number) => {
    const p = read(k);
    p.catch(() => {});
    inFlight.push(p);
  };
  try {
    for (let k = 0; k < Math.min(READ_AHEAD, chunks); k++) start(k);
    for (let k = 0; k < chunks; k++) {
      await inFlight.shift();
      if (k + READ_AHEAD < chunks) start(k + READ_AHEAD);
      e.writeTensorRange(t, k * per, conv.convert(k % conv.slots, Math.min(per, numel - k * per)));
      e.flush();
    }
  } finally {
    // Never hand back a converter a read is still writing into.
    await Promise.allSettled(inFlight);
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
  const t = e.empty(info.shape, dtype, opts.label ?? name, { exactSize: opts.exactSize });
  if (opts.unscoped) e.detach(t);
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
