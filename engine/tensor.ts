// Tensors: a shape and dtype over a refcounted device storage. Reshape views share the storage.
// A storage is one buffer, or several ("segments") when it exceeds the device's buffer limit; each
// segment holds whole rows of the leading dimension. Kernels bind windows of it (see windows.ts).
import { type DType, decode, storageBytes } from './dtype.ts';
import type { Engine } from './engine.ts';

export interface Segment {
  buffer: GPUBuffer;
  /** First element of the tensor held by this segment, and how many. */
  elem0: number;
  elems: number;
}

export class Storage {
  refs = 1;
  constructor(
    readonly dtype: DType,
    readonly numel: number,
    readonly segments: Segment[],
  ) {}
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: readonly number[]): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`invalid shape [${shape.join(', ')}]: dimensions must be non-negative integers`);
  }
}

export class Tensor {
  readonly shape: readonly number[];
  readonly numel: number;
  private disposed = false;

  constructor(
    readonly engine: Engine,
    readonly storage: Storage,
    shape: readonly number[],
    readonly label = 'tensor',
  ) {
    checkShape(shape);
    this.shape = [...shape];
    this.numel = numelOf(shape);
    if (this.numel !== storage.numel) throw new Error(`tensor shape [${shape}] does not match its storage of ${storage.numel} elements`);
    engine.track(this);
  }

  get dtype(): DType {
    return this.storage.dtype;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Device bytes this tensor's data occupies (not counting pool rounding). */
  get bytes(): number {
    return storageBytes(this.dtype, this.numel);
  }

  /** A view with another shape over the same storage (no copy). One dimension may be -1. */
  reshape(shape: readonly number[]): Tensor {
    this.assertAlive('reshape');
    const s = [...shape];
    const free = s.indexOf(-1);
    if (free >= 0) {
      const rest = numelOf(s.filter((_, i) => i !== free));
      if (rest === 0 || this.numel % rest !== 0) throw new Error(`cannot reshape [${this.shape}] to [${shape}]`);
      s[free] = this.numel / rest;
    }
    if (numelOf(s) !== this.numel) throw new Error(`cannot reshape [${this.shape}] (${this.numel} elements) to [${shape}]`);
    this.storage.refs++;
    return new Tensor(this.engine, this.storage, s, this.label);
  }

  /** Frees this handle; the storage returns to the pool when its last view is disposed. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.engine.untrack(this);
    if (--this.storage.refs === 0) this.engine.releaseStorage(this.storage);
  }

  /** Reads the tensor back (floats widen to Float32Array). Flushes recorded work first. */
  async toArray(): Promise<Float32Array | Int32Array | Uint32Array> {
    this.assertAlive('toArray');
    const bytes = await this.engine.readBytes(this);
    return decode(this.dtype, bytes, this.numel);
  }

  assertAlive(what: string): void {
    if (this.disposed) throw new Error(`${what}: tensor "${this.label}" [${this.shape}] was already disposed`);
  }
}
