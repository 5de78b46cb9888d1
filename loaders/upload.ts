// Streams one checkpoint tensor onto the device in its storage dtype: positioned reads of a few MiB
// at a time, converted on the way, never the whole tensor in host memory.
import type { DType, Engine, Tensor } from '../engine/index.ts';
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

export async function uploadTensor(e: Engine, src: TensorSource, name: string, opts: UploadOptions = {}, stats?: UploadStats): Promise<Tensor> {
  if (!src.has(name)) throw new Error(`${src.path}: missing tensor ${src.describeMissing?.(name) ?? `"${name}"`}`);
  const info = src.info(name);
  if (opts.shape && (opts.shape.length !== info.shape.length || opts.shape.some((d, i) => d !== info.shape[i]))) {
    throw new Error(`${src.path}: tensor "${name}" has shape [${info.shape}], expected [${opts.shape}]`);
  }
  const dtype = opts.dtype ?? 'bf16';
  const elemBytes = DTYPE_SIZE[info.dtype];
  const numel = info.shape.reduce((a, b) => a * b, 1);
  const t = e.empty(info.shape, dtype, opts.label ?? name);
  try {
    // Chunks hold an even number of elements so packed half types stay word aligned.
    let perChunk = Math.max(2, Math.floor((opts.chunkBytes ?? 16 << 20) / elemBytes));
    perChunk -= perChunk % 2;
    for (let el = 0; el < numel; el += perChunk) {
      const count = Math.min(perChunk, numel - el);
      const raw = await src.readRange(name, el * elemBytes, count * elemBytes);
      const { bytes, overflows } = convertChunk(info.dtype, raw, dtype);
      if (stats) stats.overflows += overflows;
      e.writeTensorRange(t, el, bytes);
    }
  } catch (err) {
    t.dispose();
    throw err;
  }
  return t;
}
