// WanModel architecture, inferred from tensor shapes (checkpoint config.json files do not carry
// text_dim, and tiny test models differ from the official sizes), checked against config.json.
import type { TensorSource } from '../loaders/source.ts';

export type DitFlavour = 't2v' | 'i2v' | 'ti2v';

export interface DitConfig {
  modelType: DitFlavour;
  dim: number;
  ffnDim: number;
  freqDim: number;
  textDim: number;
  inDim: number;
  outDim: number;
  numHeads: number;
  numLayers: number;
  patch: [number, number, number];
  textLen: number;
  eps: number;
  crossAttnNorm: boolean;
  qkNorm: boolean;
}

/** Official head counts by width (used when config.json is absent). */
const HEADS_BY_DIM: Record<number, number> = { 1536: 12, 2048: 16, 3072: 24, 5120: 40 };

export function inferDitConfig(src: TensorSource, json: Record<string, unknown> | null): DitConfig {
  const shape = (name: string): number[] => {
    if (!src.has(name)) throw new Error(`${src.path}: missing tensor "${name}" (not a WanModel checkpoint?)`);
    return src.info(name).shape;
  };
  const pe = shape('patch_embedding.weight');
  if (pe.length !== 5) throw new Error(`${src.path}: patch_embedding.weight has shape [${pe}], expected 5 dimensions`);
  const [dim, inDim, pt, ph, pw] = pe;
  let numLayers = 0;
  while (src.has(`blocks.${numLayers}.modulation`)) numLayers++;
  if (numLayers === 0) throw new Error(`${src.path}: no transformer blocks (blocks.0.modulation missing)`);
  const patchVolume = pt * ph * pw;
  const headOut = shape('head.head.weight')[0];
  if (headOut % patchVolume !== 0) throw new Error(`${src.path}: head.head.weight rows ${headOut} not a multiple of the patch volume ${patchVolume}`);
  const jsonNum = (k: string): number | undefined => (typeof json?.[k] === 'number' ? (json[k] as number) : undefined);
  const numHeads = jsonNum('num_heads') ?? HEADS_BY_DIM[dim];
  if (!numHeads) throw new Error(`${src.path}: cannot tell the number of heads for dim ${dim}: config.json needs "num_heads"`);
  if (dim % numHeads !== 0 || (dim / numHeads) % 2 !== 0) throw new Error(`${src.path}: dim ${dim} is not divisible into ${numHeads} heads of even size`);
  const cfg: DitConfig = {
    modelType: (json?.model_type as DitFlavour) ?? (inDim === 36 ? 'i2v' : inDim === 48 ? 'ti2v' : 't2v'),
    dim,
    ffnDim: shape('blocks.0.ffn.0.weight')[0],
    freqDim: shape('time_embedding.0.weight')[1],
    textDim: shape('text_embedding.0.weight')[1],
    inDim,
    outDim: headOut / patchVolume,
    numHeads,
    numLayers,
    patch: [pt, ph, pw],
    textLen: jsonNum('text_len') ?? 512,
    eps: jsonNum('eps') ?? 1e-6,
    crossAttnNorm: src.has('blocks.0.norm3.weight'),
    qkNorm: src.has('blocks.0.self_attn.norm_q.weight'),
  };
  if (!['t2v', 'i2v', 'ti2v'].includes(cfg.modelType)) throw new Error(`${src.path}: unsupported model_type "${cfg.modelType}"`);
  // Every number config.json states must agree with the weights.
  const pairs: [string, number][] = [
    ['dim', cfg.dim],
    ['ffn_dim', cfg.ffnDim],
    ['freq_dim', cfg.freqDim],
    ['in_dim', cfg.inDim],
    ['out_dim', cfg.outDim],
    ['num_layers', cfg.numLayers],
  ];
  for (const [k, v] of pairs) {
    const j = jsonNum(k);
    if (j !== undefined && j !== v) throw new Error(`${src.path}: config.json says ${k} = ${j}, the weights say ${v}`);
  }
  return cfg;
}

/** Parameter count of every tensor of a source (for `wan info`). */
export function parameterCount(src: TensorSource): number {
  let n = 0;
  for (const name of src.names()) n += src.info(name).shape.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * Default bound on the FFN hidden state computed at once: above it, WanDiT runs the feed-forward in
 * token chunks (the [tokens, ffn_dim] state is the block's largest tensor: 3.1 GB at 720p for ti2v-5B
 * in f32 with CFG).
 */
export const FFN_CHUNK_BYTES = 256 * 2 ** 20;

/** Rows (tokens x batch) per FFN chunk: all of them when the hidden state fits `limitBytes`. */
export function ffnChunkRows(rows: number, ffnDim: number, elemBytes: number, limitBytes: number = FFN_CHUNK_BYTES): number {
  if (rows * ffnDim * elemBytes <= limitBytes) return rows;
  return Math.max(1, Math.floor(limitBytes / (ffnDim * elemBytes)));
}
