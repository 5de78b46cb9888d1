// A PyTorch .pth state dict as a TensorSource (contiguous tensors stream by range; others are
// gathered whole by PthFile).
import { PthFile } from './pth.ts';
import type { TensorInfo, TensorSource } from './source.ts';

export class PthSource implements TensorSource {
  private constructor(
    readonly path: string,
    private pth: PthFile,
  ) {}

  static async open(path: string): Promise<PthSource> {
    return new PthSource(path, await PthFile.open(path));
  }

  names(): string[] {
    return this.pth.keys();
  }
  has(name: string): boolean {
    return this.pth.has(name);
  }
  info(name: string): TensorInfo {
    const e = this.pth.entry(name);
    return { name, dtype: e.dtype, shape: [...e.shape] };
  }
  async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    const e = this.pth.entry(name);
    if (e.contiguous) return this.pth.readRange(name, offset, offset + length);
    const all = await this.pth.readRaw(name);
    return all.subarray(offset, offset + length);
  }
  close(): Promise<void> {
    return this.pth.close();
  }
}
