// umT5 encoder architecture (wan/modules/t5.py T5Encoder, shared_pos=False), inferred from the
// tensor shapes of a checkpoint: the official file carries no config, and tiny test models differ
// from umt5_xxl (vocab 256384, dim 4096, dim_attn 4096, dim_ffn 10240, 64 heads, 24 layers, 32 buckets).
import type { TensorSource } from '../loaders/source.ts';

export interface T5Config {
  vocab: number;
  dim: number;
  dimAttn: number;
  dimFfn: number;
  numHeads: number;
  headDim: number;
  numLayers: number;
  /** Buckets of the relative position embedding (both directions together). */
  numBuckets: number;
  /** T5RelativeEmbedding's max_dist (fixed at its default by the official code). */
  maxDist: number;
  /** T5LayerNorm eps (fixed by the official code). */
  eps: number;
}

export function inferT5Config(src: TensorSource): T5Config {
  const shape = (name: string, rank: number): number[] => {
    if (!src.has(name)) throw new Error(`${src.path}: missing tensor "${name}" (not a umT5 encoder checkpoint?)`);
    const s = src.info(name).shape;
    if (s.length !== rank) throw new Error(`${src.path}: tensor "${name}" has shape [${s}], expected ${rank} dimensions`);
    return s;
  };
  const [vocab, dim] = shape('token_embedding.weight', 2);
  let numLayers = 0;
  while (src.has(`blocks.${numLayers}.attn.q.weight`)) numLayers++;
  if (numLayers === 0) throw new Error(`${src.path}: no encoder blocks (blocks.0.attn.q.weight missing)`);
  if (src.has('pos_embedding.embedding.weight') || !src.has('blocks.0.pos_embedding.embedding.weight')) {
    throw new Error(`${src.path}: expected one relative position embedding per block (shared_pos=False, as umT5), found ${src.has('pos_embedding.embedding.weight') ? 'a shared one' : 'none'}`);
  }
  const [numBuckets, numHeads] = shape('blocks.0.pos_embedding.embedding.weight', 2);
  const dimAttn = shape('blocks.0.attn.q.weight', 2)[0];
  const dimFfn = shape('blocks.0.ffn.fc1.weight', 2)[0];
  if (dimAttn % numHeads !== 0) throw new Error(`${src.path}: dim_attn ${dimAttn} is not divisible into ${numHeads} heads`);
  if (numBuckets < 4 || numBuckets % 2 !== 0) throw new Error(`${src.path}: ${numBuckets} position buckets: a bidirectional embedding needs an even number >= 4`);
  return { vocab, dim, dimAttn, dimFfn, numHeads, headDim: dimAttn / numHeads, numLayers, numBuckets, maxDist: 128, eps: 1e-6 };
}
