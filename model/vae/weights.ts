// Reading the VAE checkpoint: device uploads (conv weights in the chosen storage dtype, biases and
// norm gammas in f32), host copies for the few tensors that are split on the host, and the list of
// everything uploaded (disposed with the model).
import type { DType, Engine, Tensor } from '../../engine/index.ts';
import { convertChunk } from '../../loaders/convert.ts';
import type { TensorSource } from '../../loaders/source.ts';
import { DTYPE_SIZE } from '../../loaders/safetensors.ts';
import { uploadTensor, type UploadStats } from '../../loaders/upload.ts';

export class VaeWeights {
  readonly loaded: Tensor[] = [];
  readonly stats: UploadStats = { overflows: 0 };

  constructor(
    readonly e: Engine,
    readonly src: TensorSource,
    /** Storage dtype of conv / linear weights. */
    readonly dtype: DType,
  ) {}

  has(name: string): boolean {
    return this.src.has(name);
  }

  shape(name: string): number[] {
    if (!this.src.has(name)) throw new Error(`${this.src.path}: missing tensor "${name}"`);
    return this.src.info(name).shape;
  }

  /** Uploads a tensor; `reshape` views it (e.g. a Conv2d weight as [Co, Ci, 1, kh, kw]). */
  async upload(name: string, kind: 'weight' | 'f32', reshape?: number[]): Promise<Tensor> {
    // Exact sizes: weights are allocated once, a size class would waste up to a third of them.
    const t = await uploadTensor(this.e, this.src, name, { dtype: kind === 'weight' ? this.dtype : 'f32', exactSize: true }, this.stats);
    if (!reshape) {
      this.loaded.push(t);
      return t;
    }
    const v = t.reshape(reshape);
    t.dispose();
    this.loaded.push(v);
    return v;
  }

  /** The tensor's values on the host (float32). */
  async host(name: string): Promise<Float32Array> {
    const info = this.src.info(name);
    const n = info.shape.reduce((a, b) => a * b, 1);
    const raw = await this.src.readRange(name, 0, n * DTYPE_SIZE[info.dtype]);
    const { bytes } = convertChunk(info.dtype, raw, 'f32');
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + n * 4));
  }

  /** Rows [r0, r1) of the tensor seen as [rows, rest], uploaded as [r1 - r0, rest] ([r1 - r0] for a 1-D tensor). */
  async uploadRows(name: string, r0: number, r1: number, kind: 'weight' | 'f32'): Promise<Tensor> {
    const all = await this.host(name);
    const shape = this.shape(name);
    const rest = all.length / shape[0];
    const t = this.e.upload(all.subarray(r0 * rest, r1 * rest), shape.length === 1 ? [r1 - r0] : [r1 - r0, rest], kind === 'weight' ? this.dtype : 'f32', `${name}[${r0}:${r1}]`, { exactSize: true });
    this.loaded.push(t);
    return t;
  }

  disposeAll(): void {
    for (const t of this.loaded) t.dispose();
    this.loaded.length = 0;
  }
}
