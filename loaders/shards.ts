// The diffusers way of sharding a model's safetensors (ModelMixin.save_pretrained /
// huggingface_hub): shared by the synthetic checkpoints (bench/make-checkpoint.ts) and `wan convert`.
import { tensorBytes, type StreamTensor } from './safetensors-stream-writer.ts';

/** In state-dict order, a new shard when the next tensor would overflow (a larger tensor gets its own). */
export function splitShards<T extends StreamTensor>(tensors: readonly T[], maxShardBytes: number): T[][] {
  const shards: T[][] = [];
  let current: T[] = [];
  let size = 0;
  for (const t of tensors) {
    const b = tensorBytes(t);
    if (b > maxShardBytes) {
      shards.push([t]); // a tensor larger than a shard gets one of its own
      continue;
    }
    if (size + b > maxShardBytes && current.length) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(t);
    size += b;
  }
  if (current.length) shards.push(current);
  return shards;
}

/** `diffusion_pytorch_model-0000i-of-0000n.safetensors` (i from 0). */
export function shardFileName(i: number, n: number): string {
  return `diffusion_pytorch_model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

/** JSON with object keys sorted, 2-space indented, newline-terminated (diffusers' index and config files). */
export function sortedJson(v: unknown): string {
  const sort = (x: unknown): unknown =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, y]) => [k, sort(y)])) : x;
  return JSON.stringify(sort(v), null, 2) + '\n';
}
