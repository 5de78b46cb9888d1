// Sharded safetensors checkpoints: `<name>.safetensors.index.json` maps each tensor to its shard.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { SafetensorsFile } from './safetensors.ts';
import type { TensorInfo, TensorSource } from './source.ts';

export class ShardedSafetensors implements TensorSource {
  private constructor(
    readonly path: string,
    private shardOf: Map<string, SafetensorsFile>,
    private shards: SafetensorsFile[],
  ) {}

  static async open(indexPath: string): Promise<ShardedSafetensors> {
    let index: { weight_map?: Record<string, string> };
    try {
      index = JSON.parse(await readFile(indexPath, 'utf8'));
    } catch (e) {
      throw new Error(`${indexPath}: cannot read the shard index (${(e as Error).message})`);
    }
    const map = index.weight_map;
    if (!map || typeof map !== 'object') throw new Error(`${indexPath}: no "weight_map" object`);
    const files = new Map<string, SafetensorsFile>();
    const shardOf = new Map<string, SafetensorsFile>();
    try {
      for (const [name, file] of Object.entries(map)) {
        if (typeof file !== 'string' || file.includes('/') || file.includes('\\')) throw new Error(`${indexPath}: bad shard name for "${name}"`);
        let shard = files.get(file);
        if (!shard) {
          const p = join(dirname(indexPath), file);
          try {
            shard = await SafetensorsFile.open(p);
          } catch (e) {
            throw new Error(`${indexPath}: shard ${file} (listed for "${name}"): ${(e as Error).message}`);
          }
          files.set(file, shard);
        }
        if (!shard.has(name)) throw new Error(`${indexPath}: "${name}" is listed in ${file} but that shard does not hold it`);
        shardOf.set(name, shard);
      }
    } catch (e) {
      for (const f of files.values()) await f.close();
      throw e;
    }
    return new ShardedSafetensors(indexPath, shardOf, [...files.values()]);
  }

  names(): string[] {
    return [...this.shardOf.keys()];
  }
  has(name: string): boolean {
    return this.shardOf.has(name);
  }
  private shard(name: string): SafetensorsFile {
    const s = this.shardOf.get(name);
    if (!s) throw new Error(`${this.path}: no tensor "${name}"`);
    return s;
  }
  info(name: string): TensorInfo {
    return this.shard(name).info(name);
  }
  readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    return this.shard(name).readRange(name, offset, length);
  }
  readInto(name: string, offset: number, dst: Uint8Array): Promise<void> {
    return this.shard(name).readInto(name, offset, dst);
  }
  async close(): Promise<void> {
    for (const s of this.shards) await s.close();
  }
}
