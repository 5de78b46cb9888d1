// A checkpoint with deterministic synthetic bf16 weights served from memory as a TensorSource: any
// tensor list of model/demo/architecture.ts (e.g. a DiT at the real widths) without a file. Tensors
// are drawn when first read and the last few kept, so concurrent readers (block streaming reads the
// next block while the current one is being read) do not redraw a tensor per chunk.
import type { TensorInfo, TensorSource } from '../../loaders/source.ts';
import type { TensorSpec } from './architecture.ts';
import { encodeBf16As, hashName, syntheticBf16 } from './synthetic.ts';

const KEEP = 4;

export class SyntheticTensorSource implements TensorSource {
  private readonly specs: Map<string, TensorSpec>;
  /** Recently drawn tensors, oldest first. */
  private drawn: { name: string; bytes: Uint8Array }[] = [];
  /** Bytes served by readRange (what a file would have read). */
  bytesRead = 0;

  constructor(
    list: TensorSpec[],
    readonly path = 'synthetic checkpoint',
  ) {
    this.specs = new Map(list.map((s) => [s.name, s]));
  }

  names(): string[] {
    return [...this.specs.keys()];
  }

  has(name: string): boolean {
    return this.specs.has(name);
  }

  info(name: string): TensorInfo {
    const s = this.specs.get(name);
    if (!s) throw new Error(`${this.path}: no tensor "${name}"`);
    return { name, dtype: 'BF16', shape: [...s.shape] };
  }

  async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    let hit = this.drawn.find((d) => d.name === name);
    if (!hit) {
      const s = this.specs.get(name);
      if (!s) throw new Error(`${this.path}: no tensor "${name}"`);
      const n = s.shape.reduce((a, b) => a * b, 1);
      hit = { name, bytes: encodeBf16As(syntheticBf16(n, hashName(name), s.init), 'BF16') };
      this.drawn.push(hit);
      if (this.drawn.length > KEEP) this.drawn.shift();
    }
    this.bytesRead += length;
    return hit.bytes.slice(offset, offset + length);
  }

  async close(): Promise<void> {
    this.drawn = [];
  }
}
