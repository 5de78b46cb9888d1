// Peak device memory of a generation, predicted from the architectures before anything is loaded,
// and the memory mode that fits a budget. `wan info --plan` prints it; `wan generate` chooses its
// mode with it and reports the measured peak beside it.
//
// Modes (what is on the device when):
//   resident  umT5 while encoding; the VAE from the first use to the end; every DiT (both A14B
//             experts) for the whole denoising loop.
//   offload   umT5 while encoding; the VAE only for its stages (encode, decode); one MoE expert at a
//             time (the official --offload_model).
//   stream    as offload, and the umT5 and DiT blocks are streamed: uploaded just before they run,
//             the next one's upload overlapping the current one's compute (one block on the device,
//             plus the next one's first tensor while a block's work is recorded).
//
// The estimate replays each model's allocation order (model/dit.ts block(), model/t5.ts block(),
// model/vae/memory.ts for the VAE) with the buffer pool's size classes (engine/pool.ts) and keeps
// the maximum of the live bytes, i.e. what BufferPool.stats.peakLiveBytes measures. Small
// host-visible buffers (uniforms, readback staging) are outside the pool and left out.
import { storageBytes, storageSegments, type DType } from '../../engine/dtype.ts';
import { sizeClass } from '../../engine/pool.ts';
import { ffnChunkRows, type DitConfig } from '../dit-config.ts';
import type { T5Config } from '../t5-config.ts';
import { officialVaeArchitecture, vaeDecodePeakBytes, type VaeArchitecture } from '../vae/memory.ts';
import type { TaskSpec } from './tasks.ts';

export type MemoryMode = 'resident' | 'offload' | 'stream';
export const MEMORY_MODES: readonly MemoryMode[] = ['resident', 'offload', 'stream'];

/** The device limits the allocation sizes depend on. */
export interface PlanDevice {
  maxBufferBytes: number;
  maxBindingBytes: number;
  storageAlign: number;
}

/** Dawn on lavapipe (and a typical discrete GPU's buffer limit); pass the engine's own for accuracy. */
export const DEFAULT_PLAN_DEVICE: PlanDevice = { maxBufferBytes: 4294967040, maxBindingBytes: 134217728, storageAlign: 256 };

/**
 * Pool bytes of a tensor as Engine.empty allocates it (segments above the buffer limit; size classes,
 * or the 256-rounded size for `exact` allocations: the DiT's and umT5's weights).
 */
export function tensorPoolBytes(shape: readonly number[], dtype: DType, maxBufferBytes: number, exact = false): number {
  const size = (bytes: number) => (exact ? Math.max(256, Math.ceil(bytes / 256) * 256) : sizeClass(bytes, maxBufferBytes));
  return storageSegments(shape, dtype, maxBufferBytes).reduce((sum, seg) => sum + size(storageBytes(dtype, seg.elems)), 0);
}

/** Live-byte bookkeeping: allocations and frees in program order, the peak and where it was. */
class Ledger {
  live = 0;
  peak = 0;
  at = '';
  constructor(private readonly dev: PlanDevice) {}
  alloc(shape: readonly number[], dtype: DType, where: string): number {
    const b = tensorPoolBytes(shape, dtype, this.dev.maxBufferBytes);
    this.live += b;
    if (this.live > this.peak) {
      this.peak = this.live;
      this.at = where;
    }
    return b;
  }
  free(...bytes: number[]): void {
    for (const b of bytes) this.live -= b;
  }
}

// ------------------------------------------------------------------------------------------- DiT

/** Pool bytes of the DiT's weights: the non-block part (embeddings, head) and one block. */
export function ditWeightBytes(cfg: DitConfig, dtype: DType, dev: PlanDevice = DEFAULT_PLAN_DEVICE): WeightBytes {
  const C = cfg.dim;
  const F = cfg.ffnDim;
  const pv = cfg.patch[0] * cfg.patch[1] * cfg.patch[2];
  const w = (shape: number[]) => tensorPoolBytes(shape, dtype, dev.maxBufferBytes, true);
  const f = (shape: number[]) => tensorPoolBytes(shape, 'f32', dev.maxBufferBytes, true);
  const lin = (out: number, inp: number) => w([out, inp]) + f([out]);
  const nonBlock =
    w([C, cfg.inDim, ...cfg.patch]) + f([C]) +
    lin(C, cfg.textDim) + lin(C, C) +
    lin(C, cfg.freqDim) + lin(C, C) +
    lin(6 * C, C) +
    f([1, 2, C]) + lin(cfg.outDim * pv, C);
  const block = f([1, 6, C]) + 8 * lin(C, C) + 4 * f([C]) + (cfg.crossAttnNorm ? 2 * f([C]) : 0) + lin(F, C) + lin(C, F);
  // A streamed block's first tensor is its modulation.
  return { nonBlock, block, firstOfBlock: f([1, 6, C]), total: nonBlock + cfg.numLayers * block };
}

/** Pool bytes of a model's device weights. */
export interface WeightBytes {
  /** Outside the blocks (embeddings, head, final norm). */
  nonBlock: number;
  /** One block. */
  block: number;
  /** A block's first uploaded tensor (what a streamed model's prefetch holds while a block's work is recorded). */
  firstOfBlock: number;
  total: number;
}

/** Device weights of a model in a mode: all of it, or (streamed) the non-block part, one block and the next one's first tensor. */
export function residentWeightBytes(w: WeightBytes, streamed: boolean): number {
  return streamed ? w.nonBlock + w.block + w.firstOfBlock : w.total;
}

export interface DitForwardShape {
  /** Batch (2 with classifier-free guidance). */
  batch: number;
  /** Real tokens (the latent grid) and the padded sequence length. */
  tokens: number;
  seqLen: number;
  /**
   * Per-token timesteps in two runs (ti2v with an image: the first frame's tokens at 0): two
   * modulation vectors per batch element instead of one (WanDiT embeds only the distinct values).
   */
  perTokenTimesteps: boolean;
  /** The largest token-grid side (rows of the RoPE table). */
  gridMax: number;
  activations?: 'f32' | 'f16';
  /** WanDiT.ffnChunkBytes (default FFN_CHUNK_BYTES). */
  ffnChunkBytes?: number;
}

/** Peak activation bytes of one WanDiT.forward (the RoPE table included), replaying model/dit.ts. */
export function ditForwardPeak(cfg: DitConfig, s: DitForwardShape, dev: PlanDevice = DEFAULT_PLAN_DEVICE): { peakBytes: number; at: string } {
  const L = new Ledger(dev);
  const a: DType = s.activations ?? 'f32';
  const { batch: B, tokens: Lr, seqLen: S } = s;
  const C = cfg.dim;
  const N = cfg.numHeads;
  const D = C / N;
  const T = cfg.textLen;
  const pv = cfg.patch[0] * cfg.patch[1] * cfg.patch[2];
  const G = s.perTokenTimesteps ? 2 : 1;
  const Gm = s.perTokenTimesteps && B > 1 ? B * G : G;
  L.alloc([s.gridMax, D / 2, 2], 'f32', 'rope table');
  // --- embeddings (held until the forward ends)
  L.alloc([Lr, cfg.inDim * pv], 'f32', 'patches');
  L.alloc([Lr, C], 'f32', 'patch tokens');
  // The residual stream entering a block: a padded copy of the tokens, or (one unpadded context) a
  // view of them for block 0 and the previous block's output from block 1 on, the steady state.
  const view = S === Lr && B === 1;
  let x = view && cfg.numLayers === 1 ? 0 : L.alloc([B, S, C], 'f32', view ? 'block input' : 'x tokens');
  L.alloc([G, cfg.freqDim], 'f32', 'time');
  for (let i = 0; i < 3; i++) L.alloc([G, C], 'f32', 'time');
  L.alloc([G, 6 * C], 'f32', 'time');
  if (Gm !== G) {
    L.alloc([Gm, 6, C], 'f32', 'modulation x batch');
    L.alloc([Gm, C], 'f32', 'modulation x batch');
  }
  L.alloc([B, T, cfg.textDim], 'f32', 'context');
  L.alloc([B, T, C], 'f32', 'context');
  L.alloc([B, T, C], 'f32', 'context');
  // --- one block (every block has the same peak)
  const attention = (Lq: number, Lk: number, kvDtype: DType, where: string) => {
    const o = L.alloc([B * Lq, N, D], 'f32', where);
    // Online-softmax state when the keys span several binding windows; a placeholder otherwise.
    const multi = storageBytes(kvDtype, B * Lk * C) > dev.maxBindingBytes;
    const align = dev.storageAlign / 4;
    const state = L.alloc(multi ? [B * Lq, Math.ceil((2 * N) / align) * align] : [1], 'f32', where);
    const bias = L.alloc([1], 'f32', where);
    L.free(state, bias);
    return o;
  };
  const mod = L.alloc([Gm, 6, C], 'f32', 'block modulation');
  const h = L.alloc([B, S, C], a, 'self-attention');
  const qk = () => {
    const lin = L.alloc([B, S, C], a, 'self-attention q/k');
    const normed = L.alloc([B, S, C], a, 'self-attention q/k');
    L.free(lin);
    const out = L.alloc([B, S, C], a, 'self-attention q/k');
    L.free(normed);
    return out;
  };
  const q = qk();
  const k = qk();
  const v = L.alloc([B, S, C], a, 'self-attention v');
  L.free(h);
  const att = attention(S, S, a, 'self-attention');
  L.free(q, k, v);
  const y = L.alloc([B, S, C], 'f32', 'self-attention out');
  L.free(att);
  const x1 = L.alloc([B, S, C], 'f32', 'self-attention residual');
  L.free(y);
  const n3 = cfg.crossAttnNorm ? L.alloc([B, S, C], a, 'cross-attention') : 0;
  const normedHeads = (rows: number) => {
    const lin = L.alloc([B, rows, C], a, 'cross-attention q/k');
    const normed = L.alloc([B, rows, C], a, 'cross-attention q/k');
    L.free(lin);
    return normed;
  };
  const cq = normedHeads(S);
  L.free(n3);
  const ck = normedHeads(T);
  const cv = L.alloc([B, T, C], a, 'cross-attention v');
  const ca = attention(S, T, a, 'cross-attention');
  L.free(cq, ck, cv);
  const x2 = L.alloc([B, S, C], 'f32', 'cross-attention residual');
  L.free(ca, x1);
  const fIn = L.alloc([B, S, C], a, 'ffn');
  const per = ffnChunkRows(B * S, cfg.ffnDim, a === 'f16' ? 2 : 4, s.ffnChunkBytes);
  let ff: number;
  if (per >= B * S) {
    const hidden = L.alloc([B, S, cfg.ffnDim], a, 'ffn hidden');
    L.free(fIn);
    ff = L.alloc([B, S, C], 'f32', 'ffn out');
    L.free(hidden);
  } else {
    ff = L.alloc([B, S, C], 'f32', 'ffn out');
    for (let r0 = 0; r0 < B * S; r0 += per) {
      const n = Math.min(per, B * S - r0);
      const fc = L.alloc([n, C], a, 'ffn chunk');
      const hc = L.alloc([n, cfg.ffnDim], a, 'ffn hidden chunk');
      L.free(fc);
      const oc = L.alloc([n, C], 'f32', 'ffn chunk out');
      L.free(hc, oc);
    }
    L.free(fIn);
  }
  const out = L.alloc([B, S, C], 'f32', 'block out');
  L.free(ff, x2, mod, x);
  x = out;
  // --- head
  L.alloc([Gm, 2, C], 'f32', 'head');
  L.alloc([B, S, C], 'f32', 'head');
  L.alloc([B, S, cfg.outDim * pv], 'f32', 'head');
  return { peakBytes: L.peak, at: L.at };
}

// ------------------------------------------------------------------------------------------ umT5

/** Pool bytes of the umT5 encoder's device weights (the token embedding stays in the file). */
export function t5WeightBytes(cfg: T5Config, dtype: DType, dev: PlanDevice = DEFAULT_PLAN_DEVICE): WeightBytes {
  const w = (shape: number[]) => tensorPoolBytes(shape, dtype, dev.maxBufferBytes, true);
  const f = (shape: number[]) => tensorPoolBytes(shape, 'f32', dev.maxBufferBytes, true);
  const { dim, dimAttn, dimFfn } = cfg;
  const block = 2 * f([dim]) + 3 * w([dimAttn, dim]) + w([dim, dimAttn]) + 2 * w([dimFfn, dim]) + w([dim, dimFfn]);
  const nonBlock = f([dim]);
  return { nonBlock, block, firstOfBlock: f([dim]), total: nonBlock + cfg.numLayers * block };
}

/** Peak activation bytes of UmT5Encoder.encode of `batch` prompts run to `tokens` positions. */
export function t5EncodePeak(cfg: T5Config, batch: number, tokens: number, dev: PlanDevice = DEFAULT_PLAN_DEVICE): { peakBytes: number; at: string } {
  const L = new Ledger(dev);
  const B = batch;
  const { dim, dimAttn, dimFfn, numHeads: N } = cfg;
  L.alloc([B, tokens, dim], 'f32', 'embeddings');
  // A block's intermediates live until its scope ends (model/t5.ts block()).
  const held = [
    L.alloc([B, tokens, dim], 'f32', 'attention'),
    L.alloc([B, tokens, dimAttn], 'f32', 'attention'),
    L.alloc([B, tokens, dimAttn], 'f32', 'attention'),
    L.alloc([B, tokens, dimAttn], 'f32', 'attention'),
    L.alloc([N, 2 * tokens - 1], 'f32', 'attention'),
  ];
  const o = L.alloc([B * tokens, N, cfg.headDim], 'f32', 'attention');
  const align = dev.storageAlign / 4;
  const multi = storageBytes('f32', B * tokens * dimAttn) > dev.maxBindingBytes;
  const tmp = [
    L.alloc(multi ? [B * tokens, Math.ceil((2 * N) / align) * align] : [1], 'f32', 'attention'),
    L.alloc([N, Math.ceil((2 * tokens - 1) / align) * align], 'f32', 'attention'),
  ];
  L.free(...tmp);
  held.push(o);
  for (const [shape, where] of [
    [[B, tokens, dim], 'attention out'],
    [[B, tokens, dim], 'ffn'],
    [[B, tokens, dimFfn], 'ffn'],
    [[B, tokens, dimFfn], 'ffn'],
    [[B, tokens, dimFfn], 'ffn'],
    [[B, tokens, dim], 'block out'],
  ] as [number[], string][]) {
    held.push(L.alloc(shape, 'f32', where));
  }
  return { peakBytes: L.peak, at: L.at };
}

// ------------------------------------------------------------------------------------- the plan

export type PlanStage = 'text' | 'encode' | 'denoise' | 'decode';

export interface StagePlan {
  stage: PlanStage;
  /** Predicted peak of live device bytes in the stage. */
  peakBytes: number;
  /** Of which weights (of every model on the device then). */
  weightBytes: number;
  /** Where the peak is. */
  at: string;
}

export interface MemoryPlan {
  mode: MemoryMode;
  /** The VAE encodes and decodes in spatial tiles. */
  vaeTile: boolean;
  /**
   * Classifier-free guidance as two forwards (cond, then uncond) instead of one batch of two: half
   * the DiT's activations, twice the weight traffic of a streamed model. The last resort of 'auto'.
   */
  cfgSequential: boolean;
  stages: StagePlan[];
  peakBytes: number;
  /** The stage holding the peak. */
  peakStage: PlanStage;
}

export interface PlanInput {
  task: TaskSpec;
  dit: DitConfig;
  t5: T5Config;
  vae?: VaeArchitecture;
  /** Latent [C, f, h, w] of the video. */
  latentShape: [number, number, number, number];
  seqLen: number;
  /** An input image (i2v-A14B always; ti2v-5B optionally). */
  image: boolean;
  /** umT5 positions run (the longer prompt's tokens; default text_len, the worst case). */
  textTokens?: number;
  /** Weight storage dtype (default bf16) and the DiT's activation dtype. */
  dtype?: DType;
  activations?: 'f32' | 'f16';
  /** Device weights of the VAE (default f32, as WanVAE.load). */
  vaeDtype?: 'f32' | 'bf16' | 'f16';
  device?: PlanDevice;
}

/** The prediction of one mode. */
export function planMemory(p: PlanInput, mode: MemoryMode, vaeTile = false, cfgSequential = false): MemoryPlan {
  const dev = p.device ?? DEFAULT_PLAN_DEVICE;
  const dtype = p.dtype ?? 'bf16';
  const stream = mode === 'stream';
  const stages: StagePlan[] = [];
  // text
  const tw = t5WeightBytes(p.t5, dtype, dev);
  const t5Weights = residentWeightBytes(tw, stream);
  const t5Act = t5EncodePeak(p.t5, 2, p.textTokens ?? p.dit.textLen, dev);
  stages.push({ stage: 'text', peakBytes: t5Weights + t5Act.peakBytes, weightBytes: t5Weights, at: `umT5 ${t5Act.at}` });
  // VAE (encode and decode); its decode estimate stands in for the encoder's mirror image
  const [, f, lh, lw] = p.latentShape;
  const s = p.task.vaeStride;
  const vaeVersion = p.task.vae;
  const vaeArch = p.vae ?? officialVaeArchitecture(vaeVersion);
  const dec = vaeDecodePeakBytes(vaeVersion, lw * s[2], lh * s[1], { architecture: vaeArch, dtype: p.vaeDtype, tile: vaeTile, maxBufferBytes: dev.maxBufferBytes });
  const vaeResident = mode === 'resident' ? dec.weightBytes : 0;
  if (p.image) {
    // The encoder's allocations are not replayed: a decode of the same size (and tiling) stands in.
    // It is an upper bound: measured at reduced widths, a multi-frame encode's activations are 1.3x
    // below it, a single frame's (ti2v) 2-3x (test/memory-plan.test.ts checks the bound).
    stages.push({ stage: 'encode', peakBytes: dec.peakBytes, weightBytes: dec.weightBytes, at: 'VAE encode (bounded by a decode of the same size)' });
  }
  // denoise
  const dw = ditWeightBytes(p.dit, dtype, dev);
  const experts = p.task.experts && mode === 'resident' ? 2 : 1;
  const ditWeights = stream ? residentWeightBytes(dw, true) : experts * dw.total;
  const [pt, ph, pw] = p.dit.patch;
  const grid = [f / pt, lh / ph, lw / pw];
  const act = ditForwardPeak(p.dit, {
    batch: cfgSequential ? 1 : 2,
    tokens: grid[0] * grid[1] * grid[2],
    seqLen: p.seqLen,
    perTokenTimesteps: p.task.flavour === 'ti2v' && p.image,
    gridMax: Math.max(...grid),
    activations: p.activations,
  }, dev);
  stages.push({ stage: 'denoise', peakBytes: ditWeights + vaeResident + act.peakBytes, weightBytes: ditWeights + vaeResident, at: `DiT ${act.at}` });
  stages.push({ stage: 'decode', peakBytes: dec.peakBytes, weightBytes: dec.weightBytes, at: `VAE ${dec.at}` });
  const top = stages.reduce((m, x) => (x.peakBytes > m.peakBytes ? x : m));
  return { mode, vaeTile, cfgSequential, stages, peakBytes: top.peakBytes, peakStage: top.stage };
}

export interface PlanChoice {
  plan: MemoryPlan;
  /** Every plan considered, in order. */
  tried: MemoryPlan[];
}

/**
 * The lightest-touch plan that fits `budgetBytes`: resident, then offload, then stream, then stream
 * with the VAE in tiles, then that with the guidance passes one after the other; `modes` narrows
 * the candidates (an explicit --memory-mode or --offload_model). Throws a MemoryPlanError saying what
 * the lightest plan needs when none fits.
 */
export function choosePlan(p: PlanInput, budgetBytes: number | null, modes: readonly MemoryMode[] = MEMORY_MODES, vaeTile?: boolean): PlanChoice {
  const tried: MemoryPlan[] = [];
  const last = modes[modes.length - 1];
  for (const mode of modes) {
    const tiles = vaeTile === undefined ? (mode === last ? [false, true] : [false]) : [vaeTile];
    const variants: [boolean, boolean][] = tiles.map((t) => [t, false]);
    if (mode === last) variants.push([tiles[tiles.length - 1], true]);
    for (const [tile, seq] of variants) {
      const plan = planMemory(p, mode, tile, seq);
      tried.push(plan);
      if (budgetBytes === null || plan.peakBytes <= budgetBytes) return { plan, tried };
    }
  }
  const best = tried.reduce((m, x) => (x.peakBytes <= m.peakBytes ? x : m)); // ties: the later (lighter) mode
  throw new MemoryPlanError(best, budgetBytes!, tried);
}

export class MemoryPlanError extends Error {
  constructor(readonly best: MemoryPlan, readonly budgetBytes: number, readonly tried: MemoryPlan[]) {
    const st = best.stages.find((x) => x.stage === best.peakStage)!;
    const hints = ['a smaller --size or --frame_num'];
    if (best.peakStage === 'denoise') hints.unshift('--activations f16 (where the adapter has shader-f16)');
    if ((best.peakStage === 'decode' || best.peakStage === 'encode') && !best.vaeTile) hints.unshift('--vae-tile');
    if (best.mode !== 'stream') hints.unshift('--memory-mode stream');
    super(
      `not enough device memory: the lightest plan (--memory-mode ${best.mode}${best.vaeTile ? ', tiled VAE' : ''}${best.cfgSequential ? ', guidance passes one at a time' : ''}) needs ${fmtGiB(best.peakBytes)} ` +
        `at its peak (${best.peakStage}: ${st.at}), the budget is ${fmtGiB(budgetBytes)}. Try ${hints.join(', or ')}; ` +
        `or raise --max-device-memory if the device has more.`,
    );
    this.name = 'MemoryPlanError';
  }
}

export function fmtGiB(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/**
 * "8GB", "8 GiB", "512MiB", "8e9", "8000000000" -> bytes (GB = 10^9, GiB = 2^30; a bare number is bytes).
 * Throws a message naming the flag on anything else.
 */
export function parseByteSize(text: string, flag = '--max-device-memory'): number {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgt]i?b?|b)?\s*$/i.exec(text);
  if (!m) throw new Error(`${flag}: "${text}" is not a size (e.g. 8GB, 12GiB, 512MiB or a byte count)`);
  const v = Number(m[1]);
  const unit = (m[2] ?? 'b').toLowerCase();
  const pow = { b: 0, k: 1, m: 2, g: 3, t: 4 }[unit[0] as 'b' | 'k' | 'm' | 'g' | 't'];
  const base = unit.includes('i') ? 1024 : 1000;
  const bytes = Math.floor(v * base ** pow);
  if (!(bytes >= 2 ** 20)) throw new Error(`${flag}: ${text} is less than 1 MiB`);
  return bytes;
}
