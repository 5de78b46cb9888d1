// The umT5-XXL text encoder of Wan2.2 (wan/modules/t5.py: T5Encoder with shared_pos=False, run by
// T5EncoderModel), on the engine. Token embeddings are gathered on the host from the checkpoint file
// (the table is 256384 x 4096, 2.1 GB in bf16: only the rows of the prompt's ids are read); the
// relative position buckets and each block's bias table are host integer / lookup work; the blocks
// run on the device. Dropout is inactive (eval).
import { Engine, Tensor, ops, type DType } from '../engine/index.ts';
import { DTYPE_SIZE, decodeToFloat32 } from '../loaders/safetensors.ts';
import { checkTensors, type TensorSource } from '../loaders/source.ts';
import { uploadTensor, type UploadStats } from '../loaders/upload.ts';
import { inferT5Config, type T5Config } from './t5-config.ts';

const EMBEDDING = 'token_embedding.weight';

interface Block {
  norm1: Tensor; // [dim] f32
  q: Tensor; // [dimAttn, dim]
  k: Tensor;
  v: Tensor;
  o: Tensor; // [dim, dimAttn]
  norm2: Tensor;
  gate: Tensor; // [dimFfn, dim], GELU (tanh) branch
  fc1: Tensor; // [dimFfn, dim], linear branch
  fc2: Tensor; // [dim, dimFfn]
}

export interface T5LoadOptions {
  /** Storage dtype of the linear weights on the device (default bf16, as the official file); norms stay f32. */
  dtype?: DType;
  /**
   * Block streaming: load() uploads only the final norm; encode() uploads each block just before it
   * runs and frees it after, the next block's upload overlapping the current one's compute (one block
   * on the device, the next one landing in the buffers of the one before: 0.4 GB for umT5-XXL in
   * bf16 instead of 9.5 GB).
   */
  stream?: boolean;
}

const BLOCK_TENSORS = (cfg: T5Config, i: number): [keyof Block, string, 'weight' | 'f32', number[]][] => {
  const { dim, dimAttn, dimFfn } = cfg;
  const p = `blocks.${i}`;
  return [
    ['norm1', `${p}.norm1.weight`, 'f32', [dim]],
    ['q', `${p}.attn.q.weight`, 'weight', [dimAttn, dim]],
    ['k', `${p}.attn.k.weight`, 'weight', [dimAttn, dim]],
    ['v', `${p}.attn.v.weight`, 'weight', [dimAttn, dim]],
    ['o', `${p}.attn.o.weight`, 'weight', [dim, dimAttn]],
    ['norm2', `${p}.norm2.weight`, 'f32', [dim]],
    ['gate', `${p}.ffn.gate.0.weight`, 'weight', [dimFfn, dim]],
    ['fc1', `${p}.ffn.fc1.weight`, 'weight', [dimFfn, dim]],
    ['fc2', `${p}.ffn.fc2.weight`, 'weight', [dim, dimFfn]],
  ];
};

/** Uploads block i (`unscoped`: a prefetch running beside scoped work, see UploadOptions). */
async function loadT5Block(e: Engine, src: TensorSource, cfg: T5Config, i: number, dtype: DType, unscoped: boolean, stats: UploadStats): Promise<Block> {
  const got: Partial<Block> = {};
  try {
    for (const [key, name, kind, shape] of BLOCK_TENSORS(cfg, i)) got[key] = await uploadTensor(e, src, name, { dtype: kind === 'weight' ? dtype : 'f32', shape, unscoped, exactSize: true }, stats);
    return got as Block;
  } catch (err) {
    for (const t of Object.values(got)) t.dispose();
    throw err;
  }
}

function disposeBlock(b: Block): void {
  for (const t of Object.values(b)) t.dispose();
}

/** Intermediates handed out while tracing, named like the t5 fixture (device tensors or host tables). */
export type T5Trace = (name: string, value: Tensor | Float32Array | Int32Array) => void | Promise<void>;

/**
 * `_relative_position_bucket` of a bidirectional T5RelativeEmbedding for rel = key_pos - query_pos,
 * in torch's float32 arithmetic: log(|rel| / max_exact) / log(max_dist / max_exact) * (n - max_exact),
 * each step rounded to float32 (the Python double log(max_dist / max_exact) becomes a float32 operand),
 * truncated toward zero by .long(), capped at n - 1; positive offsets use the upper half of the buckets.
 */
export function relativePositionBucket(rel: number, numBuckets: number, maxDist = 128): number {
  const f = Math.fround;
  const half = Math.floor(numBuckets / 2);
  const maxExact = Math.floor(half / 2);
  const base = rel > 0 ? half : 0;
  const dist = Math.abs(rel);
  if (dist < maxExact) return base + dist;
  const scaled = f(f(f(Math.log(f(dist / maxExact))) / f(Math.log(maxDist / maxExact))) * f(half - maxExact));
  return base + Math.min(maxExact + Math.trunc(scaled), half - 1);
}

/** Buckets of every relative position j - (L-1), j = 0..2L-2 (key_pos - query_pos from -(L-1) to L-1). */
export function relativeBucketTable(L: number, numBuckets: number, maxDist = 128): Int32Array {
  const out = new Int32Array(Math.max(0, 2 * L - 1));
  for (let j = 0; j < out.length; j++) out[j] = relativePositionBucket(j - (L - 1), numBuckets, maxDist);
  return out;
}

/**
 * A block's compact relative bias [N, 2L-1] (what flashAttention's `bias` takes; query i, key j reads
 * column j - i + L - 1) from its embedding [numBuckets, N] and the bucket table.
 */
export function relativeBiasTable(embedding: Float32Array, numHeads: number, buckets: Int32Array): Float32Array {
  const R = buckets.length;
  const out = new Float32Array(numHeads * R);
  for (let n = 0; n < numHeads; n++) for (let j = 0; j < R; j++) out[n * R + j] = embedding[buckets[j] * numHeads + n];
  return out;
}

/** Tokens per prompt from a prefix mask [batch, textLen] (the tokenizer pads at the end). */
export function sequenceLengths(mask: Int32Array, batch: number, textLen: number): number[] {
  const lens: number[] = [];
  for (let b = 0; b < batch; b++) {
    const row = mask.subarray(b * textLen, (b + 1) * textLen);
    let n = 0;
    while (n < textLen && row[n] !== 0) n++;
    for (let j = n; j < textLen; j++) {
      if (row[j] !== 0) throw new Error(`umT5 encode: mask of prompt ${b} is not a prefix (position ${j} is set after padding at ${n}); only end padding is supported`);
    }
    lens.push(n);
  }
  return lens;
}

export class UmT5Encoder {
  private constructor(
    readonly e: Engine,
    readonly config: T5Config,
    /** Kept open by the caller: encode() reads embedding rows (and streamed blocks) from it. */
    private src: TensorSource,
    /** Resident blocks, or null when streamed from `src`. */
    private blocks: Block[] | null,
    /** Each block's relative position embedding [numBuckets, numHeads] (host: only gathered on the host). */
    private posEmbeddings: Float32Array[],
    private norm: Tensor,
    private dtype: DType,
    private stats: UploadStats,
  ) {}

  /** Uploads the blocks' weights; the token embedding stays in `src`, which must stay open while encoding. */
  static async load(e: Engine, src: TensorSource, opts: T5LoadOptions = {}): Promise<UmT5Encoder> {
    const cfg = inferT5Config(src);
    const dtype = opts.dtype ?? 'bf16';
    const stats: UploadStats = { overflows: 0 };
    const loaded: Tensor[] = [];
    const get = async (name: string, kind: 'weight' | 'f32', shape: number[]) => {
      const t = await uploadTensor(e, src, name, { dtype: kind === 'weight' ? dtype : 'f32', shape, exactSize: true }, stats);
      loaded.push(t);
      return t;
    };
    const blocks: Block[] = [];
    try {
      const { dim, numHeads, numBuckets } = cfg;
      const posEmbeddings: Float32Array[] = [];
      for (let i = 0; i < cfg.numLayers; i++) {
        posEmbeddings.push(await readHost(src, `blocks.${i}.pos_embedding.embedding.weight`, [numBuckets, numHeads]));
        if (!opts.stream) blocks.push(await loadT5Block(e, src, cfg, i, dtype, false, stats));
        else checkTensors(src, BLOCK_TENSORS(cfg, i).map(([, name, , shape]) => [name, shape])); // fail at load, not mid-encode
      }
      const norm = await get('norm.weight', 'f32', [dim]);
      if (stats.overflows > 0) console.warn(`warning: ${stats.overflows} umT5 weights overflowed to infinity in ${dtype}; use bf16`);
      return new UmT5Encoder(e, cfg, src, opts.stream ? null : blocks, posEmbeddings, norm, dtype, stats);
    } catch (err) {
      for (const t of loaded) t.dispose();
      for (const b of blocks) disposeBlock(b);
      throw err;
    }
  }

  /** Frees every device weight (the caller closes the source). */
  dispose(): void {
    this.norm.dispose();
    for (const b of this.blocks ?? []) disposeBlock(b);
    this.blocks = [];
  }

  /** True when encode() streams the blocks from the checkpoint. */
  get streamed(): boolean {
    return this.blocks === null;
  }

  /**
   * Token embeddings of ids (host float32 [ids.length, dim]): one positioned read per run of
   * consecutive distinct ids, never the whole table.
   */
  async embed(ids: Int32Array): Promise<Float32Array> {
    const { vocab, dim } = this.config;
    const info = this.src.info(EMBEDDING);
    const rowBytes = dim * DTYPE_SIZE[info.dtype];
    const distinct = [...new Set(ids)].sort((a, b) => a - b);
    for (const id of distinct) {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new Error(`umT5 encode: token id ${id} outside the vocabulary of ${vocab} (${this.src.path})`);
    }
    const rows = new Map<number, Float32Array>();
    for (let i = 0; i < distinct.length; ) {
      let j = i + 1;
      while (j < distinct.length && distinct[j] === distinct[j - 1] + 1) j++;
      const first = distinct[i];
      const values = decodeToFloat32(info.dtype, await this.src.readRange(EMBEDDING, first * rowBytes, (j - i) * rowBytes));
      for (let r = 0; r < j - i; r++) rows.set(first + r, values.subarray(r * dim, (r + 1) * dim));
      i = j;
    }
    const out = new Float32Array(ids.length * dim);
    ids.forEach((id, t) => out.set(rows.get(id)!, t * dim));
    return out;
  }

  /**
   * Encodes a batch of tokenized prompts: ids and mask [batch, textLen] (as the tokenizer gives them,
   * padded at the end). Returns each prompt's hidden states trimmed to its length, [len_b, dim] host
   * float32, as T5EncoderModel.__call__ does. `trace` receives intermediates named like the fixture
   * (and makes the padded positions run too, as the official model computes them).
   */
  async encode(ids: Int32Array, mask: Int32Array, batch: number, textLen: number, trace?: T5Trace): Promise<Float32Array[]> {
    const e = this.e;
    const cfg = this.config;
    const { dim, numHeads, numBuckets, maxDist } = cfg;
    if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(textLen) || textLen < 1) throw new Error(`umT5 encode: bad batch ${batch} / text length ${textLen}`);
    const n = batch * textLen;
    if (ids.length !== n || mask.length !== n) throw new Error(`umT5 encode: ids (${ids.length}) and mask (${mask.length}) must both hold batch x textLen = ${batch}x${textLen} values`);
    const lens = sequenceLengths(mask, batch, textLen);
    // Only keys are masked, and a masked key's weight underflows to exactly 0: the padded positions
    // never reach the real ones, and the position bias depends on key - query only. So unless a
    // trace asks for every row (the fixture records them), only the first max(len) positions run.
    const L = trace ? textLen : Math.max(...lens);
    if (L === 0) return lens.map(() => new Float32Array(0));
    const used = L === textLen ? ids : new Int32Array(batch * L);
    if (used !== ids) for (let b = 0; b < batch; b++) used.set(ids.subarray(b * textLen, b * textLen + L), b * L);
    const embedded = await this.embed(used);
    const buckets = relativeBucketTable(L, numBuckets, maxDist);
    const hidden = await e.scope(async () => {
      let x = e.upload(embedded, [batch, L, dim], 'f32', 'umT5 embeddings');
      if (trace) {
        await trace('embed', x);
        await trace('rel_bucket', buckets);
      }
      // Streamed: block i+1 is uploaded (outside the scopes) while block i computes.
      const load = (i: number) => {
        const p = loadT5Block(e, this.src, cfg, i, this.dtype, true, this.stats);
        p.catch(() => {}); // observed when awaited
        return p;
      };
      let next: Promise<Block> | null = this.blocks ? null : load(0);
      try {
        for (let i = 0; i < cfg.numLayers; i++) {
          const blk = this.blocks ? this.blocks[i] : await next!;
          next = !this.blocks && i + 1 < cfg.numLayers ? load(i + 1) : null;
          const biasHost = relativeBiasTable(this.posEmbeddings[i], numHeads, buckets);
          if (trace) await trace(`pos_bias.${i}`, biasHost);
          const prev = x;
          try {
            x = await e.scope(() => this.block(blk, prev, biasHost, lens, i === 0 ? trace : undefined));
          } finally {
            if (!this.blocks) disposeBlock(blk);
          }
          if (trace) await trace(`block.${i}`, x);
          prev.dispose(); // only the next block reads it
        }
      } finally {
        if (next) void next.then(disposeBlock, () => {});
      }
      const y = ops.rmsNorm(e, x, this.norm, { eps: cfg.eps });
      if (trace) await trace('last_hidden', y);
      return y;
    });
    const data = (await hidden.toArray()) as Float32Array;
    hidden.dispose();
    return lens.map((len, b) => data.slice(b * L * dim, (b * L + len) * dim));
  }

  private async block(blk: Block, x: Tensor, biasHost: Float32Array, lens: number[], trace?: T5Trace): Promise<Tensor> {
    const e = this.e;
    const cfg = this.config;
    const [B, L] = x.shape;
    const N = cfg.numHeads;
    const D = cfg.headDim;
    // Self-attention: no 1/sqrt(d) scaling; masked keys' logits become finfo(float32).min.
    const h = ops.rmsNorm(e, x, blk.norm1, { eps: cfg.eps });
    const q = ops.linear(e, h, blk.q).reshape([B, L, N, D]);
    const k = ops.linear(e, h, blk.k).reshape([B, L, N, D]);
    const v = ops.linear(e, h, blk.v).reshape([B, L, N, D]);
    const bias = e.upload(biasHost, [N, 2 * L - 1], 'f32', 'umT5 position bias');
    const a = ops.flashAttention(e, q, k, v, { kLens: lens, scale: 1, bias, maskMode: 'float32min' }).reshape([B, L, cfg.dimAttn]);
    if (trace) {
      const y = ops.linear(e, a, blk.o);
      await trace('block.0.attn_out', y);
      x = ops.binary(e, 'add', x, y);
    } else {
      x = ops.linear(e, a, blk.o, { residual: { x } });
    }
    // Gated feed-forward: fc2(fc1(h) * gelu_tanh(gate(h))).
    const h2 = ops.rmsNorm(e, x, blk.norm2, { eps: cfg.eps });
    const gated = ops.binary(e, 'mul', ops.linear(e, h2, blk.fc1), ops.linear(e, h2, blk.gate, { activation: 'gelu_tanh' }));
    return ops.linear(e, gated, blk.fc2, { residual: { x } });
  }
}

/** A small tensor read whole to host float32, with its shape checked. */
async function readHost(src: TensorSource, name: string, shape: number[]): Promise<Float32Array> {
  if (!src.has(name)) throw new Error(`${src.path}: missing tensor "${name}"`);
  const info = src.info(name);
  if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`${src.path}: tensor "${name}" has shape [${info.shape}], expected [${shape}]`);
  }
  const bytes = shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[info.dtype];
  return decodeToFloat32(info.dtype, await src.readRange(name, 0, bytes));
}
