// A Wan2.1 / Wan2.2 VAE checkpoint of any width with deterministic synthetic bf16 weights, served
// from memory as a TensorSource (tensors drawn lazily, one at a time): for the memory check and the
// decode benchmark at the real widths without the real checkpoint.
import type { TensorInfo, TensorSource } from '../../loaders/source.ts';
import { vaeTensors, type TensorSpec } from '../demo/architecture.ts';
import { encodeBf16As, hashName, syntheticBf16 } from '../demo/synthetic.ts';
import type { VaeVersion } from './index.ts';
import { officialVaeArchitecture, type VaeArchitecture } from './memory.ts';

export class SyntheticVaeSource implements TensorSource {
  readonly path: string;
  private readonly specs: Map<string, TensorSpec>;
  private last: { name: string; bytes: Uint8Array } | null = null;

  constructor(
    readonly version: VaeVersion,
    readonly architecture: VaeArchitecture = officialVaeArchitecture(version),
    readonly seed = 1,
  ) {
    const a = architecture;
    const list = vaeTensors({ version, dim: a.encoderDim, decDim: a.decoderDim, zDim: a.zDim, dimMult: a.dimMult, numResBlocks: a.numResBlocks, temperalDownsample: a.temporalDownsample });
    if (version === '2.1' && a.encoderDim !== a.decoderDim) throw new Error('SyntheticVaeSource: Wan2.1 has one width for encoder and decoder');
    this.specs = new Map(list.map((s) => [s.name, s]));
    this.path = `synthetic Wan${version} VAE (width ${a.encoderDim}/${a.decoderDim}, seed ${seed})`;
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
    if (this.last?.name !== name) {
      const s = this.specs.get(name);
      if (!s) throw new Error(`${this.path}: no tensor "${name}"`);
      const n = s.shape.reduce((a, b) => a * b, 1);
      this.last = { name, bytes: encodeBf16As(syntheticBf16(n, hashName(`${this.seed}/${name}`), s.init), 'BF16') };
    }
    return this.last.bytes.slice(offset, offset + length);
  }

  async close(): Promise<void> {
    this.last = null;
  }
}
