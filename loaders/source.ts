// What the model loaders need from a checkpoint file: names, dtypes, shapes and byte ranges.
// Implemented by safetensors files, sharded safetensors and PyTorch .pth files.
import type { StDType } from './safetensors.ts';

export interface TensorInfo {
  name: string;
  dtype: StDType;
  shape: number[];
}

export interface TensorSource {
  /** Where the tensors come from (for error messages). */
  readonly path: string;
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** `length` bytes of tensor `name` (its stored dtype, contiguous, little endian) from `offset`. */
  readRange(name: string, offset: number, length: number): Promise<Uint8Array>;
  /** Optional: readRange into the caller's buffer (`dst.byteLength` bytes), for streaming without allocation. */
  readInto?(name: string, offset: number, dst: Uint8Array): Promise<void>;
  /** Optional: how to name a missing tensor in an error (e.g. with its name in another layout). */
  describeMissing?(name: string): string;
  close(): Promise<void>;
}

/** Every named tensor exists with its shape (what a streamed load checks up front). */
export function checkTensors(src: TensorSource, list: [string, number[] | null][]): void {
  for (const [name, shape] of list) {
    if (!src.has(name)) throw new Error(`${src.path}: missing tensor ${src.describeMissing?.(name) ?? `"${name}"`}`);
    const got = src.info(name).shape;
    if (shape && (got.length !== shape.length || got.some((d, i) => d !== shape[i]))) throw new Error(`${src.path}: tensor "${name}" has shape [${got}], expected [${shape}]`);
  }
}
