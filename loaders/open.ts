// Opens any supported checkpoint file as a TensorSource, by its name. A weights file of a Diffusers
// component (its config.json names WanTransformer3DModel, AutoencoderKLWan or UMT5EncoderModel)
// comes back under the official tensor names, so the model code sees one naming.
import { existsSync } from 'node:fs';
import { diffusersComponentOf, officialNames } from './diffusers.ts';
import { PthSource } from './pth-source.ts';
import { SafetensorsFile } from './safetensors.ts';
import { ShardedSafetensors } from './sharded.ts';
import type { TensorSource } from './source.ts';

/** The file's tensors exactly as stored (no renaming). */
export async function openRawTensorSource(path: string): Promise<TensorSource> {
  if (!existsSync(path)) throw new Error(`checkpoint file not found: ${path}`);
  if (path.endsWith('.safetensors.index.json')) return ShardedSafetensors.open(path);
  if (path.endsWith('.safetensors')) return SafetensorsFile.open(path);
  if (path.endsWith('.pth') || path.endsWith('.pt') || path.endsWith('.bin')) return PthSource.open(path);
  throw new Error(`${path}: unknown checkpoint format (expected .safetensors, .safetensors.index.json or .pth)`);
}

export async function openTensorSource(path: string): Promise<TensorSource> {
  const src = await openRawTensorSource(path);
  const component = diffusersComponentOf(path);
  if (!component) return src;
  try {
    return officialNames(src, component);
  } catch (e) {
    await src.close();
    throw e;
  }
}
