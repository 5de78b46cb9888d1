// WanModel, the diffusion transformer of Wan2.2 (t2v / i2v 14B experts and the dense ti2v-5B), as
// the official wan/modules/model.py computes it, on the engine. Latents live on the host (the
// samplers run there); one forward uploads the patchified latent, runs every block on the device
// and reads back the head output. Classifier-free guidance runs as a batch: the same latent with B
// contexts (cond, uncond) in one pass, sharing the weights.
import { Engine, Tensor, ops, type DType } from '../engine/index.ts';
import { checkTensors, type TensorSource } from '../loaders/source.ts';
import { uploadTensor, type UploadStats } from '../loaders/upload.ts';
import { FFN_CHUNK_BYTES, ffnChunkRows, inferDitConfig, type DitConfig } from './dit-config.ts';

type GridSize = [number, number, number];

interface Linear {
  w: Tensor;
  b: Tensor | null;
}

interface Block {
  modulation: Tensor; // [1, 6, C] f32
  selfQ: Linear;
  selfK: Linear;
  selfV: Linear;
  selfO: Linear;
  selfNormQ: Tensor;
  selfNormK: Tensor;
  norm3W: Tensor | null;
  norm3B: Tensor | null;
  crossQ: Linear;
  crossK: Linear;
  crossV: Linear;
  crossO: Linear;
  crossNormQ: Tensor;
  crossNormK: Tensor;
  ffn0: Linear;
  ffn2: Linear;
}

export interface DitLoadOptions {
  /** Storage dtype of the linear weights on the device (default bf16); norms, biases, modulation stay f32. */
  dtype?: DType;
  /** Called after each tensor is uploaded (progress). */
  onTensor?: (name: string, done: number, total: number) => void;
  /** Activation dtype of the blocks' linear/norm/attention I/O (default f32); see WanDiT.activations. */
  activations?: ActivationDType;
  /**
   * Block streaming: only the non-block weights (embeddings, head: about 1% of the model) are
   * uploaded by load(); each forward uploads every block just before it runs and frees it after,
   * the next block's upload overlapping the current block's compute (one block on the device, the
   * next one landing in the buffers of the one before). The WanDiT then owns `src` (kept open, closed by dispose()). Slower by one model read
   * per forward (from the page cache when the file fits the host's memory).
   */
  stream?: boolean;
}

/**
 * 'f32': every activation in float32. 'f16' (needs the adapter's shader-f16): the tensors the blocks'
 * linears, norms, RoPE and attention read are stored in f16 (the modulated norms, q/k/v, the FFN hidden
 * state): half the activation memory and bandwidth. Accumulation, norm statistics, softmax, the residual
 * stream, the gates, the time/text embeddings and the head stay float32 (the official block keeps the
 * residual and gates in float32 too). Error on the dit.* fixtures: see the README.
 */
export type ActivationDType = 'f32' | 'f16';

/** Intermediate tensors handed out while tracing (verification against the reference). */
export type DitTrace = (name: string, t: Tensor) => void | Promise<void>;

export interface DitInput {
  /** Latent [inDim - yChannels, F, H, W] (host float32). */
  x: Float32Array;
  /** Latent shape (C, F, H, W) of x. */
  shape: [number, number, number, number];
  /** i2v conditioning, concatenated after x along channels: [C_y, F, H, W]. */
  y?: Float32Array;
  /** One timestep for all tokens (t2v, i2v) or one per token, seqLen values (ti2v). */
  t: number | Float32Array;
  /** Text contexts [L_i, textDim] (host float32): one per batch element (CFG: cond, uncond). */
  contexts: Float32Array[];
  /** Token count the model pads to (>= F*H*W/patch volume). */
  seqLen: number;
}

/** Every tensor of one block (kept in a list too, to free them). */
interface LoadedBlock {
  block: Block;
  tensors: Tensor[];
}

/** The tensor names of block i (what a block upload reads). */
export function ditBlockTensorNames(i: number, cfg: DitConfig): string[] {
  const p = `blocks.${i}`;
  const lin = (n: string) => [`${p}.${n}.weight`, `${p}.${n}.bias`];
  return [
    `${p}.modulation`,
    ...['q', 'k', 'v', 'o'].flatMap((n) => lin(`self_attn.${n}`)),
    `${p}.self_attn.norm_q.weight`,
    `${p}.self_attn.norm_k.weight`,
    ...(cfg.crossAttnNorm ? [`${p}.norm3.weight`, `${p}.norm3.bias`] : []),
    ...['q', 'k', 'v', 'o'].flatMap((n) => lin(`cross_attn.${n}`)),
    `${p}.cross_attn.norm_q.weight`,
    `${p}.cross_attn.norm_k.weight`,
    ...lin('ffn.0'),
    ...lin('ffn.2'),
  ];
}

/** Uploads block i: linear weights in `dtype`, the rest f32. `unscoped` for prefetches (see UploadOptions). */
async function loadBlock(e: Engine, src: TensorSource, cfg: DitConfig, i: number, dtype: DType, unscoped: boolean, stats: UploadStats, onTensor?: (name: string) => void): Promise<LoadedBlock> {
  const tensors: Tensor[] = [];
  const get = async (name: string, kind: 'weight' | 'f32', shape?: number[]) => {
    const t = await uploadTensor(e, src, name, { dtype: kind === 'weight' ? dtype : 'f32', shape, unscoped, exactSize: true }, stats);
    tensors.push(t);
    onTensor?.(name);
    return t;
  };
  const lin = async (prefix: string): Promise<Linear> => ({ w: await get(`${prefix}.weight`, 'weight'), b: await get(`${prefix}.bias`, 'f32') });
  const p = `blocks.${i}`;
  try {
    const block: Block = {
      modulation: await get(`${p}.modulation`, 'f32', [1, 6, cfg.dim]),
      selfQ: await lin(`${p}.self_attn.q`),
      selfK: await lin(`${p}.self_attn.k`),
      selfV: await lin(`${p}.self_attn.v`),
      selfO: await lin(`${p}.self_attn.o`),
      selfNormQ: await get(`${p}.self_attn.norm_q.weight`, 'f32'),
      selfNormK: await get(`${p}.self_attn.norm_k.weight`, 'f32'),
      norm3W: cfg.crossAttnNorm ? await get(`${p}.norm3.weight`, 'f32') : null,
      norm3B: cfg.crossAttnNorm ? await get(`${p}.norm3.bias`, 'f32') : null,
      crossQ: await lin(`${p}.cross_attn.q`),
      crossK: await lin(`${p}.cross_attn.k`),
      crossV: await lin(`${p}.cross_attn.v`),
      crossO: await lin(`${p}.cross_attn.o`),
      crossNormQ: await get(`${p}.cross_attn.norm_q.weight`, 'f32'),
      crossNormK: await get(`${p}.cross_attn.norm_k.weight`, 'f32'),
      ffn0: await lin(`${p}.ffn.0`),
      ffn2: await lin(`${p}.ffn.2`),
    };
    return { block, tensors };
  } catch (err) {
    for (const t of tensors) t.dispose();
    throw err;
  }
}

/**
 * Where the blocks' weights are: all on the device, or streamed from the checkpoint (block i is
 * uploaded while block i-1 computes, and freed after its own compute is recorded).
 */
interface BlockStore {
  readonly count: number;
  /** Block i, ready to run (streamed: awaits its upload and starts the next one's). */
  acquire(i: number): Promise<Block>;
  /** Block i's compute is recorded: a streamed block is freed (its buffers reused by later uploads, which are queued after that compute). */
  release(i: number): void;
  /** Frees every block on the device now (a prefetch still running is freed when it lands). */
  dispose(): void;
}

class ResidentBlocks implements BlockStore {
  constructor(private readonly blocks: LoadedBlock[]) {}
  get count() {
    return this.blocks.length;
  }
  async acquire(i: number): Promise<Block> {
    return this.blocks[i].block;
  }
  release(): void {}
  dispose(): void {
    for (const b of this.blocks) for (const t of b.tensors) t.dispose();
  }
}

class StreamedBlocks implements BlockStore {
  private pending = new Map<number, Promise<LoadedBlock>>();
  private ready = new Map<number, LoadedBlock>();
  /** Block uploads done (for tests and the bench: count x per-block bytes = bytes streamed). */
  uploads = 0;

  constructor(
    private readonly e: Engine,
    private readonly src: TensorSource,
    private readonly cfg: DitConfig,
    private readonly dtype: DType,
    private readonly stats: UploadStats,
  ) {}

  get count() {
    return this.cfg.numLayers;
  }

  private start(i: number): void {
    if (this.pending.has(i) || this.ready.has(i)) return;
    const p = loadBlock(this.e, this.src, this.cfg, i, this.dtype, true, this.stats).then((b) => {
      this.uploads++;
      return b;
    });
    p.catch(() => {}); // observed by acquire(); a prefetch nobody awaits must not be an unhandled rejection
    this.pending.set(i, p);
  }

  async acquire(i: number): Promise<Block> {
    this.start(i);
    const b = await this.pending.get(i)!;
    this.pending.delete(i);
    this.ready.set(i, b);
    // Prefetch the next block (after the last: block 0 of the next forward) once this one has
    // landed: its upload runs while this block computes on the device and reuses the buffers of the
    // block before (freed by then), so one block and the next one's first tensor are on the device
    // while a block's work is recorded (memory-plan.ts counts exactly that).
    this.start((i + 1) % this.count);
    return b.block;
  }

  release(i: number): void {
    const b = this.ready.get(i);
    this.ready.delete(i);
    if (b) for (const t of b.tensors) t.dispose();
  }

  dispose(): void {
    for (const i of [...this.ready.keys()]) this.release(i);
    const landing = [...this.pending.values()].map((p) => p.then((b) => b.tensors.forEach((t) => t.dispose())).catch(() => {}));
    this.pending.clear();
    void Promise.all(landing).then(() => this.src.close()).catch(() => {});
  }
}

export class WanDiT {
  /** Activation dtype of the blocks (set at load; may be changed between forwards). */
  activations: ActivationDType = 'f32';
  /** The FFN runs in token chunks when its hidden state would pass this many bytes (see feedForward). */
  ffnChunkBytes: number = FFN_CHUNK_BYTES;

  private constructor(
    readonly e: Engine,
    readonly config: DitConfig,
    private patchW: Tensor, // [dim, inDim*pt*ph*pw]
    private patchB: Tensor,
    private text0: Linear,
    private text2: Linear,
    private time0: Linear,
    private time2: Linear,
    private proj: Linear,
    private blocks: BlockStore,
    private headMod: Tensor, // [1, 2, C]
    private head: Linear,
  ) {}

  /** RoPE table rows 0..n-1 (only the positions a grid uses: the full 1024 rows would not fit small bindings). */
  private rope: Tensor | null = null;
  private ropeFor(grid: GridSize): Tensor {
    const rows = Math.max(...grid);
    if (!this.rope || this.rope.shape[0] < rows) {
      this.rope?.dispose();
      this.rope = ops.ropeTable(this.e, this.config.dim / this.config.numHeads, rows);
    }
    return this.rope;
  }

  static async load(e: Engine, src: TensorSource, json: Record<string, unknown> | null, opts: DitLoadOptions = {}): Promise<WanDiT> {
    const cfg = inferDitConfig(src, json);
    const dtype = opts.dtype ?? 'bf16';
    const activations = opts.activations ?? 'f32';
    if (activations === 'f16' && !e.gpu.hasF16) throw new Error('f16 activations need the shader-f16 feature, which this adapter lacks; use f32 activations');
    // Progress counts what load() uploads: streamed blocks are uploaded by each forward instead.
    const total = src.names().filter((n) => !(opts.stream && n.startsWith('blocks.'))).length;
    let done = 0;
    const stats: UploadStats = { overflows: 0 };
    const loaded: Tensor[] = [];
    const get = async (name: string, kind: 'weight' | 'f32', shape?: number[]) => {
      const t = await uploadTensor(e, src, name, { dtype: kind === 'weight' ? dtype : 'f32', shape, exactSize: true }, stats);
      loaded.push(t);
      opts.onTensor?.(name, ++done, total);
      return t;
    };
    const lin = async (prefix: string, bias = true): Promise<Linear> => ({
      w: await get(`${prefix}.weight`, 'weight'),
      b: bias ? await get(`${prefix}.bias`, 'f32') : null,
    });
    let blocks: BlockStore | null = null;
    try {
      const C = cfg.dim;
      const patchVolume = cfg.patch[0] * cfg.patch[1] * cfg.patch[2];
      // kernel == stride: the conv is a linear map of each flattened patch (c, kt, kh, kw order).
      const patchConv = await get('patch_embedding.weight', 'weight');
      const patchW = patchConv.reshape([C, cfg.inDim * patchVolume]);
      loaded.push(patchW);
      patchConv.dispose();
      const patchB = await get('patch_embedding.bias', 'f32');
      const text0 = await lin('text_embedding.0');
      const text2 = await lin('text_embedding.2');
      const time0 = await lin('time_embedding.0');
      const time2 = await lin('time_embedding.2');
      const proj = await lin('time_projection.1');
      if (opts.stream) {
        // Fail at load, not in the middle of the first forward.
        for (let i = 0; i < cfg.numLayers; i++) checkTensors(src, ditBlockTensorNames(i, cfg).map((n) => [n, null]));
        blocks = new StreamedBlocks(e, src, cfg, dtype, stats);
      } else {
        // (on a failure below, the catch frees the blocks loaded so far)
        const list: LoadedBlock[] = [];
        try {
          for (let i = 0; i < cfg.numLayers; i++) list.push(await loadBlock(e, src, cfg, i, dtype, false, stats, (name) => opts.onTensor?.(name, ++done, total)));
        } catch (err) {
          for (const b of list) for (const t of b.tensors) t.dispose();
          throw err;
        }
        blocks = new ResidentBlocks(list);
      }
      const headMod = await get('head.modulation', 'f32', [1, 2, C]);
      const head = await lin('head.head');
      if (stats.overflows > 0) console.warn(`warning: ${stats.overflows} DiT weights overflowed to infinity in ${dtype}; use --dtype bf16`);
      const dit = new WanDiT(e, cfg, patchW, patchB, text0, text2, time0, time2, proj, blocks, headMod, head);
      dit.activations = activations;
      return dit;
    } catch (err) {
      for (const t of loaded) t.dispose();
      if (blocks instanceof ResidentBlocks) blocks.dispose(); // a streaming load's source stays the caller's on failure
      throw err;
    }
  }

  /** True when the blocks are streamed from the checkpoint (see DitLoadOptions.stream). */
  get streamed(): boolean {
    return this.blocks instanceof StreamedBlocks;
  }

  /** Block uploads done by forwards so far (streamed blocks; 0 when resident). */
  get blockUploads(): number {
    return this.blocks instanceof StreamedBlocks ? this.blocks.uploads : 0;
  }

  /** Frees every weight (a streaming model also closes its checkpoint source). */
  dispose(): void {
    const all: (Tensor | null)[] = [this.patchW, this.patchB, this.headMod, this.rope];
    this.rope = null;
    for (const l of [this.text0, this.text2, this.time0, this.time2, this.proj, this.head]) all.push(l.w, l.b);
    for (const t of all) t?.dispose();
    this.blocks.dispose();
  }

  private linear(x: Tensor, l: Linear, opts: ops.LinearOptions = {}): Tensor {
    return ops.linear(this.e, x, l.w, { ...opts, bias: l.b ?? undefined });
  }

  /** Token grid (F, H/ph, W/pw) of a latent. */
  grid(shape: [number, number, number, number]): GridSize {
    const [pt, ph, pw] = this.config.patch;
    const [, F, H, W] = shape;
    if (F % pt || H % ph || W % pw) throw new Error(`latent [${shape}] is not divisible by the patch ${this.config.patch}`);
    return [F / pt, H / ph, W / pw];
  }

  /**
   * One forward pass. Returns the model output [outDim, F, H, W] per context (host float32).
   * `trace` receives intermediates (named like the reference fixtures) for verification.
   */
  async forward(input: DitInput, trace?: DitTrace): Promise<Float32Array[]> {
    const e = this.e;
    const cfg = this.config;
    const B = input.contexts.length;
    if (B < 1) throw new Error('DiT forward: no context');
    const grid = this.grid(input.shape);
    const L = grid[0] * grid[1] * grid[2];
    const S = input.seqLen;
    if (S < L) throw new Error(`DiT forward: seq_len ${S} < ${L} tokens`);
    const C = cfg.dim;
    const N = cfg.numHeads;
    const D = C / N;
    // Kept across forwards (outside the scope that frees the activations).
    const rope = this.ropeFor(grid);
    const head = await e.scope(async () => {
      // --- patch embedding: host patchify, one linear; padded rows stay zero
      const patches = this.patchify(input, grid);
      const tokensReal = this.linear(e.upload(patches, [L, patches.length / L], 'f32', 'patches'), { w: this.patchW, b: this.patchB });
      if (trace) await trace('patch_tokens', tokensReal.reshape([1, L, C]));
      let x: Tensor;
      if (S === L && B === 1) x = tokensReal.reshape([1, L, C]);
      else {
        x = e.zeros([B, S, C], 'f32', 'x tokens');
        for (let b = 0; b < B; b++) e.copyElements(tokensReal, 0, x, b * S * C, L * C);
      }
      if (trace) await trace('x_tokens', x);
      // --- time embedding (float64 sinusoid on the host), per token or one for all
      const tHost = typeof input.t === 'number' ? Float32Array.of(input.t) : input.t;
      if (typeof input.t !== 'number' && tHost.length !== S) throw new Error(`DiT forward: ${tHost.length} per-token timesteps for seq_len ${S}`);
      // Per-token timesteps usually take one value, or two in runs (ti2v with an image: the first
      // latent frame's tokens at 0, the rest at t): only those values are embedded, and the kernels
      // pick a token's vector (split modulation) instead of a [S, 6, C] tensor per token and block.
      const { values: tEmb, split } = timestepRuns(tHost);
      const perToken = tEmb.length === S && S > 1 && split === 0;
      const G = tEmb.length;
      const sin = ops.sinusoidalEmbedding(e, tEmb, cfg.freqDim);
      const eEmb = this.linear(this.linear(sin, this.time0, { activation: 'silu' }), this.time2); // [G, C]
      const e0 = this.linear(ops.silu(e, eEmb), this.proj).reshape([G, 6, C]);
      if (trace) {
        // The reference records them per token (or once): expand the runs.
        const rows = tHost.length;
        const runOf = (s: number) => (G === rows ? s : split > 0 && s >= split ? 1 : 0);
        await trace('sin_emb', await this.expandRows(sin, rows, runOf, [1, rows, cfg.freqDim]));
        await trace('e', await this.expandRows(eEmb, rows, runOf, [1, rows, C]));
        await trace('e0', await this.expandRows(e0, rows, runOf, [1, rows, 6, C]));
      }
      // Per-token (and split) modulation is per batch element too: repeat it for the B contexts.
      const e0b = (perToken || split > 0) && B > 1 ? this.repeatBatch(e0, B) : e0;
      const eb = (perToken || split > 0) && B > 1 ? this.repeatBatch(eEmb, B) : eEmb;
      // --- text embedding of the contexts zero-padded to text_len
      const ctxHost = new Float32Array(B * cfg.textLen * cfg.textDim);
      input.contexts.forEach((c, b) => {
        if (c.length % cfg.textDim !== 0) throw new Error(`DiT forward: context of ${c.length} values is not rows of ${cfg.textDim}`);
        if (c.length / cfg.textDim > cfg.textLen) throw new Error(`DiT forward: context of ${c.length / cfg.textDim} tokens exceeds text_len ${cfg.textLen}`);
        ctxHost.set(c, b * cfg.textLen * cfg.textDim);
      });
      const ctxPadded = e.upload(ctxHost, [B, cfg.textLen, cfg.textDim], 'f32', 'context');
      if (trace) await trace('context_padded', ctxPadded);
      const ctx = this.linear(this.linear(ctxPadded, this.text0, { activation: 'gelu_tanh' }), this.text2);
      if (trace) await trace('context_emb', ctx);
      const grids = Array.from({ length: B }, () => grid);
      for (let i = 0; i < this.blocks.count; i++) {
        const blk = await this.blocks.acquire(i);
        const prev = x;
        x = await e.scope(() => this.block(blk, prev, e0b, split, ctx, grids, rope, L, i === 0 ? trace : undefined));
        this.blocks.release(i);
        if (trace) await trace(`block.${i}`, x);
        prev.dispose(); // only the next block reads the stream (a view of tokensReal shares its storage)
      }
      // --- head: norm, modulation by (head.modulation + e), linear
      const hm = ops.binary(e, 'add', this.headMod, eb.reshape([eb.shape[0], 1, C])); // [G', 2, C]
      const h = ops.layerNormModulate(e, x, { tensor: hm, chunk: 0, split }, { tensor: hm, chunk: 1, split }, { eps: cfg.eps });
      const out = this.linear(h, this.head);
      if (trace) await trace('head', out);
      return out;
    });
    const data = (await head.toArray()) as Float32Array;
    head.dispose();
    return Array.from({ length: B }, (_, b) => this.unpatchify(data.subarray(b * S * head.shape[2], (b * S + L) * head.shape[2]), grid));
  }

  /**
   * One block. Intermediates are freed as soon as their last reader is recorded (the pool reuses a
   * freed buffer only for work queued after it), so the block's peak is its FFN, not the sum of
   * everything it makes: see blockPeakBytes in model/pipelines/memory-plan.ts, which replays this order.
   * x (the input) stays the caller's.
   */
  private async block(blk: Block, xIn: Tensor, e0: Tensor, split: number, ctx: Tensor, grids: GridSize[], rope: Tensor, L: number, trace?: DitTrace): Promise<Tensor> {
    const e = this.e;
    const cfg = this.config;
    const [B, S, C] = xIn.shape;
    const N = cfg.numHeads;
    const D = C / N;
    const free = (...ts: Tensor[]) => ts.forEach((t) => t.dispose());
    // Views that take over their base's storage (the base handle is freed at once, not at scope end).
    const view = (t: Tensor, shape: number[]) => {
      const v = t.reshape(shape);
      t.dispose();
      return v;
    };
    const heads = (t: Tensor, rows: number) => view(t, [B, rows, N, D]);
    const tokens = (t: Tensor) => view(t, [B, S, C]);
    // The dtype of what the linears/norms/attention read (f32, or f16 in the f16 activation mode);
    // the residual stream x and every tensor added to it stay f32.
    const outDtype = this.activations;
    const mod = ops.binary(e, 'add', blk.modulation, e0); // [G, 6, C]
    const chunk = (k: number) => ({ tensor: mod, chunk: k, split });
    // self-attention on the modulated norm1
    const h = ops.layerNormModulate(e, xIn, chunk(0), chunk(1), { eps: cfg.eps, outDtype });
    if (trace) await trace('block0.self_attn_in', h);
    const qk = (w: Linear, norm: Tensor) => {
      const lin = this.linear(h, w, { outDtype });
      const normed = ops.rmsNorm(e, lin, norm, { eps: cfg.eps, outDtype });
      free(lin);
      const split = normed.reshape([B, S, N, D]);
      const out = ops.ropeApply(e, split, grids, rope, { outDtype });
      free(normed, split);
      return out;
    };
    const q = qk(blk.selfQ, blk.selfNormQ);
    const k = qk(blk.selfK, blk.selfNormK);
    const v = heads(this.linear(h, blk.selfV, { outDtype }), S);
    if (trace) {
      await trace('block0.q_rope', q);
      await trace('block0.k_rope', k);
    }
    free(h);
    const a = tokens(ops.flashAttention(e, q, k, v, { kLens: Array(B).fill(L) }));
    free(q, k, v);
    if (trace) await trace('block0.self_attn_raw', a);
    const y = this.linear(a, blk.selfO, { outDtype: 'f32' });
    free(a);
    if (trace) await trace('block0.self_attn_out', y);
    const x1 = ops.gatedResidual(e, xIn, y, chunk(2));
    free(y);
    // cross-attention (no mask: the padded context rows are attended to, as in the official model)
    const n3 = blk.norm3W ? ops.layerNorm(e, x1, { weight: blk.norm3W, bias: blk.norm3B ?? undefined, eps: cfg.eps, outDtype }) : x1;
    if (trace) await trace('block0.norm3_out', n3);
    const T = ctx.shape[1];
    const normedHeads = (lin: Tensor, norm: Tensor, rows: number) => {
      const normed = ops.rmsNorm(e, lin, norm, { eps: cfg.eps, outDtype });
      free(lin);
      return heads(normed, rows);
    };
    const cq = normedHeads(this.linear(n3, blk.crossQ, { outDtype }), blk.crossNormQ, S);
    if (n3 !== x1) free(n3);
    const ck = normedHeads(this.linear(ctx, blk.crossK, { outDtype }), blk.crossNormK, T);
    const cv = heads(this.linear(ctx, blk.crossV, { outDtype }), T);
    const ca = tokens(ops.flashAttention(e, cq, ck, cv));
    free(cq, ck, cv);
    let x2: Tensor;
    if (trace) {
      await trace('block0.cross_attn_raw', ca);
      const co = this.linear(ca, blk.crossO, { outDtype: 'f32' });
      await trace('block0.cross_attn_out', co);
      x2 = ops.binary(e, 'add', x1, co);
    } else {
      x2 = this.linear(ca, blk.crossO, { residual: { x: x1 } });
    }
    free(ca, x1);
    // feed-forward on the modulated norm2
    const f = ops.layerNormModulate(e, x2, chunk(3), chunk(4), { eps: cfg.eps, outDtype });
    if (trace) await trace('block0.ffn_in', f);
    const ff = this.feedForward(f, blk); // frees f
    if (trace) await trace('block0.ffn_out', ff);
    const out = ops.gatedResidual(e, x2, ff, chunk(5));
    free(ff, x2, mod);
    return out;
  }

  /**
   * ffn.2(gelu_tanh(ffn.0(f))) -> f32. When the hidden state [rows, ffn_dim] would pass
   * `ffnChunkBytes`, the rows run in chunks (copied out and back: C-wide copies, cheap beside the
   * two matmuls), so the block's peak no longer grows with ffn_dim x tokens. Frees `f` as soon as
   * it is read.
   */
  private feedForward(f: Tensor, blk: Block): Tensor {
    const e = this.e;
    const C = this.config.dim;
    const rows = f.numel / C;
    const per = ffnChunkRows(rows, this.config.ffnDim, f.dtype === 'f16' ? 2 : 4, this.ffnChunkBytes);
    if (per >= rows) {
      const hidden = this.linear(f, blk.ffn0, { activation: 'gelu_tanh', outDtype: f.dtype as ActivationDType });
      f.dispose();
      const ff = this.linear(hidden, blk.ffn2, { outDtype: 'f32' });
      hidden.dispose();
      return ff;
    }
    const ff = e.empty(f.shape, 'f32', 'ffn out');
    for (let r0 = 0; r0 < rows; r0 += per) {
      const n = Math.min(per, rows - r0);
      const fc = e.empty([n, C], f.dtype, 'ffn in chunk');
      e.copyElements(f, r0 * C, fc, 0, n * C);
      const hc = this.linear(fc, blk.ffn0, { activation: 'gelu_tanh', outDtype: f.dtype as ActivationDType });
      fc.dispose();
      const oc = this.linear(hc, blk.ffn2, { outDtype: 'f32' });
      hc.dispose();
      e.copyElements(oc, 0, ff, r0 * C, n * C);
      oc.dispose();
    }
    f.dispose();
    return ff;
  }

  /** Rows of `t` [G, ...] picked per position (runOf) into a new tensor of `shape` (tracing only). */
  private async expandRows(t: Tensor, rows: number, runOf: (s: number) => number, shape: number[]): Promise<Tensor> {
    const data = (await t.toArray()) as Float32Array;
    const per = t.numel / t.shape[0];
    const out = new Float32Array(rows * per);
    for (let s = 0; s < rows; s++) out.set(data.subarray(runOf(s) * per, (runOf(s) + 1) * per), s * per);
    return this.e.upload(out, shape, 'f32', `${t.label} per token`);
  }

  /** [G, ...] -> [B*G, ...] by copying (per-token modulation shared by the CFG batch). */
  private repeatBatch(t: Tensor, B: number): Tensor {
    const out = this.e.empty([B * t.shape[0], ...t.shape.slice(1)], t.dtype, `${t.label} x${B}`);
    for (let b = 0; b < B; b++) this.e.copyElements(t, 0, out, b * t.numel, t.numel);
    return out;
  }

  /** x (and y) [C, F, H, W] -> patches [L, C*pt*ph*pw], tokens in (f, h, w) order, features (c, kt, kh, kw). */
  private patchify(input: DitInput, grid: GridSize): Float32Array {
    const [pt, ph, pw] = this.config.patch;
    const [Cx, F, H, W] = input.shape;
    const plane = F * H * W;
    if (input.x.length !== Cx * plane) throw new Error(`DiT forward: latent has ${input.x.length} values, expected ${Cx}x${F}x${H}x${W}`);
    const Cy = input.y ? input.y.length / plane : 0;
    if (!Number.isInteger(Cy)) throw new Error('DiT forward: y is not a whole number of latent channels');
    const Cin = Cx + Cy;
    if (Cin !== this.config.inDim) throw new Error(`DiT forward: ${Cin} input channels (x ${Cx} + y ${Cy}), the model takes ${this.config.inDim}`);
    const [gf, gh, gw] = grid;
    const K = Cin * pt * ph * pw;
    const out = new Float32Array(gf * gh * gw * K);
    let r = 0;
    for (let f = 0; f < gf; f++)
      for (let hh = 0; hh < gh; hh++)
        for (let ww = 0; ww < gw; ww++, r++) {
          let k = 0;
          for (let c = 0; c < Cin; c++) {
            const src = c < Cx ? input.x : input.y!;
            const base = (c < Cx ? c : c - Cx) * plane;
            for (let a = 0; a < pt; a++)
              for (let b = 0; b < ph; b++)
                for (let d = 0; d < pw; d++) out[r * K + k++] = src[base + ((f * pt + a) * H + hh * ph + b) * W + ww * pw + d];
          }
        }
    return out;
  }

  /** Head rows [L, pt*ph*pw*outDim] -> [outDim, F, H, W] (channel fastest in the head: 'fhwpqrc->cfphqwr'). */
  private unpatchify(rows: Float32Array, grid: GridSize): Float32Array {
    const [pt, ph, pw] = this.config.patch;
    const c = this.config.outDim;
    const [gf, gh, gw] = grid;
    const F = gf * pt;
    const H = gh * ph;
    const W = gw * pw;
    const out = new Float32Array(c * F * H * W);
    const K = pt * ph * pw * c;
    let r = 0;
    for (let f = 0; f < gf; f++)
      for (let hh = 0; hh < gh; hh++)
        for (let ww = 0; ww < gw; ww++, r++)
          for (let a = 0; a < pt; a++)
            for (let b = 0; b < ph; b++)
              for (let d = 0; d < pw; d++)
                for (let ch = 0; ch < c; ch++) {
                  out[((ch * F + f * pt + a) * H + hh * ph + b) * W + ww * pw + d] = rows[r * K + ((a * ph + b) * pw + d) * c + ch];
                }
    return out;
  }
}

/**
 * The distinct timesteps of per-token timesteps when they form at most two runs: one value (split 0),
 * or the first `split` tokens at values[0] and the rest at values[1]. Otherwise every token's own
 * value (split 0).
 */
export function timestepRuns(t: Float32Array): { values: Float32Array; split: number } {
  let k = 1;
  while (k < t.length && t[k] === t[0]) k++;
  if (k >= t.length) return { values: t.subarray(0, 1), split: 0 };
  let j = k + 1;
  while (j < t.length && t[j] === t[k]) j++;
  if (j >= t.length) return { values: Float32Array.of(t[0], t[k]), split: k };
  return { values: t, split: 0 };
}
