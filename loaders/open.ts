// Opens any supported checkpoint file as a TensorSource, by its name.
import { existsSync } from 'node:fs';
import { PthSource } from './pth-source.ts';
import { SafetensorsFile } from './safetensors.ts';
import { ShardedSafetensors } from './sharded.ts';
import type { TensorSource } from './source.ts';

export async function openTensorSource(path: string): Promise<TensorSource> {
  if (!existsSync(path)) throw new Error(`checkpoint file not found: ${path}`);
  if (path.endsWith('.safetensors.index.json')) return ShardedSafetensors.open(path);
  if (path.endsWith('.safetensors')) return SafetensorsFile.open(path);
  if (path.endsWith('.pth') || path.endsWith('.pt') || path.endsWith('.bin')) return PthSource.open(path);
  throw new Error(`${path}: unknown checkpoint format (expected .safetensors, .safetensors.index.json or .pth)`);
}
