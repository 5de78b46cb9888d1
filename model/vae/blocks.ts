// Building blocks shared by the Wan2.1 and Wan2.2 video VAEs (wan/modules/vae2_1.py, vae2_2.py) on
// channel-major device videos [C, T, H, W]: the causal 3-D conv with its feature cache, RMS norm over
// channels, residual blocks, the per-frame attention of the middle blocks, and the Resample stages.
//
// Chunked semantics (the official encode/decode loops): the network runs chunk by chunk and every
// causal conv keeps the last CACHE_T frames of its input in a FeatureCache slot; the next chunk's conv
// reads them in place of its front zero frames. Slots are taken in call order, exactly as the
// official feat_cache / feat_idx list. A Pass without a cache is the official feat_cache=None call
// (zero padding only, Resample skips its time conv), unless it is a `whole` pass: the whole sequence
// at once with the chunked semantics (README_vae.md, "whole-sequence" equivalence), used to verify
// the chunk loop.
import { Tensor, ops, type Engine } from '../../engine/index.ts';
import { concatFrames, vaeChannelsToTokens, interleaveFrames, sliceFrames, tailFrames, vaeTokensToChannels, vaeUpsampleNearest2x, videoShape, zeroPadBottomRight } from '../../engine/ops/vae.ts';
import type { VaeWeights } from './weights.ts';

/** Frames a causal conv keeps for the next chunk. */
export const CACHE_T = 2;

type Triple = [number, number, number];

export type CacheValue = Tensor | 'Rep' | null;

/** The official feat_cache list: one slot per cached layer, taken in call order each chunk. */
export class FeatureCache {
  private slots: CacheValue[] = [];
  private idx = 0;

  /** Start of a chunk (feat_idx = [0]). */
  rewind(): void {
    this.idx = 0;
  }

  /** The next slot of this chunk. */
  next(): number {
    const i = this.idx++;
    if (i >= this.slots.length) this.slots.push(null);
    return i;
  }

  get(i: number): CacheValue {
    return this.slots[i];
  }

  /** Replaces a slot's value (a replaced cache tensor is freed). */
  set(i: number, v: CacheValue): void {
    const old = this.slots[i];
    if (old instanceof Tensor && old !== v) old.dispose();
    this.slots[i] = v;
  }

  /** The cache tensors alive now (to keep them out of a chunk's scope). */
  tensors(): Tensor[] {
    return this.slots.filter((s): s is Tensor => s instanceof Tensor);
  }

  clear(): void {
    for (const s of this.slots) if (s instanceof Tensor) s.dispose();
    this.slots = [];
    this.idx = 0;
  }
}

/** One run of the network over a chunk (or the whole sequence when cache is null). */
export interface Pass {
  e: Engine;
  cache: FeatureCache | null;
  /** Decoder latent frame 0 (Wan2.2 DupUp3D drops its leading frames). */
  firstChunk: boolean;
  /**
   * No cache, all frames at once, with the result of the chunk loop: frame 0 bypasses the Resample
   * time convs and the others are convolved causally among themselves (firstChunk applies to the
   * whole sequence).
   */
  whole?: boolean;
}

/** A layer that maps a video to a video. */
export interface VaeModule {
  readonly inChannels: number;
  readonly outChannels: number;
  forward(p: Pass, x: Tensor): Tensor;
}

/** y = silu(RMS_norm(x)): F.normalize over channels * sqrt(C) * gamma, then SiLU. */
export function normSilu(e: Engine, x: Tensor, gamma: Tensor): Tensor {
  const n = ops.channelRmsNorm(e, x, gamma);
  const y = ops.activation(e, 'silu', n);
  n.dispose();
  return y;
}

// ------------------------------------------------------------------ convs

export interface ConvSpec {
  padding: Triple;
  stride?: Triple;
  /** CausalConv3d: 2 * pt zero (or cached) frames in front, none behind. */
  causal: boolean;
}

/** A conv layer (CausalConv3d, or a per-frame Conv2d held as a [Co, Ci, 1, kh, kw] kernel). */
export class Conv {
  constructor(
    readonly weight: Tensor,
    readonly bias: Tensor,
    readonly spec: ConvSpec,
  ) {}

  get inChannels(): number {
    return this.weight.shape[1];
  }

  get outChannels(): number {
    return this.weight.shape[0];
  }

  /** Loads `<prefix>.weight` / `.bias`; a 4-D (Conv2d) weight becomes a 1-frame 3-D kernel. */
  static async load(W: VaeWeights, prefix: string, spec: ConvSpec): Promise<Conv> {
    const shape = W.shape(`${prefix}.weight`);
    if (shape.length !== 4 && shape.length !== 5) throw new Error(`${W.src.path}: "${prefix}.weight" [${shape}] is not a conv kernel`);
    const weight = await W.upload(`${prefix}.weight`, 'weight', shape.length === 4 ? [shape[0], shape[1], 1, shape[2], shape[3]] : undefined);
    const bias = await W.upload(`${prefix}.bias`, 'f32');
    return new Conv(weight, bias, spec);
  }

  /** The conv with zero padding (cache: frames that replace front zero frames). */
  run(e: Engine, x: Tensor, cache?: Tensor): Tensor {
    return ops.conv3d(e, x, this.weight, { bias: this.bias, padding: this.spec.padding, stride: this.spec.stride, causal: this.spec.causal, cache });
  }

  /**
   * The feat_cache call of a 3x3x3 CausalConv3d: the slot's frames (the end of the previous chunk's
   * input) precede x, and the slot becomes the last CACHE_T frames of [slot, x].
   */
  cached(p: Pass, x: Tensor): Tensor {
    if (!p.cache) return this.run(p.e, x);
    const i = p.cache.next();
    const prev = p.cache.get(i);
    if (prev === 'Rep') throw new Error('vae: a conv cache slot holds the Resample marker (cache order broken)');
    const y = this.run(p.e, x, prev ?? undefined);
    p.cache.set(i, tailFrames(p.e, prev, x, CACHE_T));
    return y;
  }
}

const causal3 = (): ConvSpec => ({ padding: [1, 1, 1], causal: true });
const pointwise = (): ConvSpec => ({ padding: [0, 0, 0], causal: true });

/** A 3x3x3 causal conv (padding 1) or 1x1x1 conv, from the kernel size in the checkpoint. */
export async function loadCausalConv(W: VaeWeights, prefix: string): Promise<Conv> {
  const k = W.shape(`${prefix}.weight`).slice(2);
  if (k.length !== 3 || !(k.every((v) => v === 3) || k.every((v) => v === 1))) throw new Error(`${W.src.path}: "${prefix}.weight" is not a 3x3x3 or 1x1x1 kernel`);
  return Conv.load(W, prefix, k[0] === 3 ? causal3() : pointwise());
}

// ------------------------------------------------------------------ residual block

/** ResidualBlock: x + (norm, SiLU, conv3, norm, SiLU, conv3)(x), shortcut 1x1x1 when widths differ. */
export class ResidualBlock implements VaeModule {
  constructor(
    readonly gamma1: Tensor,
    readonly conv1: Conv,
    readonly gamma2: Tensor,
    readonly conv2: Conv,
    readonly shortcut: Conv | null,
  ) {}

  get inChannels(): number {
    return this.conv1.inChannels;
  }

  get outChannels(): number {
    return this.conv2.outChannels;
  }

  static async load(W: VaeWeights, prefix: string): Promise<ResidualBlock> {
    const gamma1 = await W.upload(`${prefix}.residual.0.gamma`, 'f32');
    const conv1 = await loadCausalConv(W, `${prefix}.residual.2`);
    const gamma2 = await W.upload(`${prefix}.residual.3.gamma`, 'f32');
    const conv2 = await loadCausalConv(W, `${prefix}.residual.6`);
    const shortcut = W.has(`${prefix}.shortcut.weight`) ? await loadCausalConv(W, `${prefix}.shortcut`) : null;
    if (!shortcut && conv1.inChannels !== conv2.outChannels) throw new Error(`${W.src.path}: "${prefix}" changes width ${conv1.inChannels} -> ${conv2.outChannels} without a shortcut conv`);
    return new ResidualBlock(gamma1, conv1, gamma2, conv2, shortcut);
  }

  forward(p: Pass, x: Tensor): Tensor {
    const e = p.e;
    const h = this.shortcut ? this.shortcut.run(e, x) : null;
    const a = normSilu(e, x, this.gamma1);
    const b = this.conv1.cached(p, a);
    a.dispose();
    const c = normSilu(e, b, this.gamma2);
    b.dispose();
    const y = this.conv2.cached(p, c);
    c.dispose();
    ops.binary(e, 'add', y, h ?? x, { out: y });
    h?.dispose();
    return y;
  }
}

// ------------------------------------------------------------------ attention

/**
 * AttentionBlock: per frame, one head over the h*w tokens with head dim C (scale 1/sqrt(C)), q/k/v
 * from a 1x1 conv of the RMS-normed x, proj (1x1) and the residual. No cache: frames are independent.
 */
export class AttentionBlock implements VaeModule {
  constructor(
    readonly gamma: Tensor,
    /** q, k, v, proj as linear layers over channel-last tokens: weights [C, C], biases [C]. */
    readonly wq: Tensor,
    readonly bq: Tensor,
    readonly wk: Tensor,
    readonly bk: Tensor,
    readonly wv: Tensor,
    readonly bv: Tensor,
    readonly wo: Tensor,
    readonly bo: Tensor,
  ) {}

  get inChannels(): number {
    return this.wo.shape[0];
  }

  get outChannels(): number {
    return this.wo.shape[0];
  }

  static async load(W: VaeWeights, prefix: string): Promise<AttentionBlock> {
    const qkv = W.shape(`${prefix}.to_qkv.weight`);
    const C = qkv[1];
    if (qkv[0] !== 3 * C || W.shape(`${prefix}.proj.weight`)[0] !== C) throw new Error(`${W.src.path}: "${prefix}" to_qkv [${qkv}] is not [3C, C, 1, 1]`);
    const gamma = await W.upload(`${prefix}.norm.gamma`, 'f32');
    const part = async (k: number) => [await W.uploadRows(`${prefix}.to_qkv.weight`, k * C, (k + 1) * C, 'weight'), await W.uploadRows(`${prefix}.to_qkv.bias`, k * C, (k + 1) * C, 'f32')];
    const [wq, bq] = await part(0);
    const [wk, bk] = await part(1);
    const [wv, bv] = await part(2);
    const wo = await W.upload(`${prefix}.proj.weight`, 'weight', [C, C]);
    const bo = await W.upload(`${prefix}.proj.bias`, 'f32');
    return new AttentionBlock(gamma, wq, bq, wk, bk, wv, bv, wo, bo);
  }

  forward(p: Pass, x: Tensor): Tensor {
    const e = p.e;
    return e.scope(() => {
      const [C, T, H, W] = videoShape(x, 'vae attention');
      const n = ops.channelRmsNorm(e, x, this.gamma);
      const tokens = vaeChannelsToTokens(e, n, 0, C); // [T*H*W, C]
      n.dispose();
      const head = (w: Tensor, b: Tensor) => ops.linear(e, tokens, w, { bias: b }).reshape([T, H * W, 1, C]);
      // The head dim is the full width (384..1024 in the real models): the 8-lane subgroup kernel
      // unrolls per head dim and takes minutes to compile there (6 min for 384 on lavapipe), so
      // wide heads use the portable kernel (what 'auto' picks on GPUs anyway).
      const variant = C > 128 ? 'portable' : 'auto';
      const o = ops.flashAttention(e, head(this.wq, this.bq), head(this.wk, this.bk), head(this.wv, this.bv), { variant });
      const proj = ops.linear(e, o.reshape([T * H * W, C]), this.wo, { bias: this.bo });
      const y = vaeTokensToChannels(e, proj, [C, T, H, W]);
      ops.binary(e, 'add', y, x, { out: y });
      return y;
    });
  }
}

// ------------------------------------------------------------------ resample

export type ResampleMode = 'upsample2d' | 'upsample3d' | 'downsample2d' | 'downsample3d';

/**
 * Resample: spatial 2x down (ZeroPad2d right/bottom, 3x3 stride-2 conv) or up (nearest 2x, 3x3 conv),
 * per frame, with the temporal half of the 3d modes:
 *  - downsample3d, after the spatial part: the first chunk passes through (its last frame is
 *    cached); later chunks run the 3x1x1 stride-2 conv over [cached last frame, chunk].
 *  - upsample3d, before the spatial part: the first chunk stores the 'Rep' marker and passes through
 *    (not doubled); later chunks run the causal 3x1x1 conv to 2C channels (zero padded right after
 *    'Rep', i.e. it never sees the first chunk) and interleave: channels [0, C) -> frame 2t,
 *    [C, 2C) -> frame 2t + 1.
 * Without a cache no time conv runs at all (official feat_cache=None), except in a `whole` pass.
 */
export class Resample implements VaeModule {
  constructor(
    readonly mode: ResampleMode,
    readonly spatial: Conv,
    readonly timeConv: Conv | null,
  ) {}

  get inChannels(): number {
    return this.spatial.inChannels;
  }

  get outChannels(): number {
    return this.spatial.outChannels;
  }

  /** `<prefix>.resample.1` (+ `<prefix>.time_conv` for the 3d modes); direction from the caller. */
  static async load(W: VaeWeights, prefix: string, direction: 'down' | 'up'): Promise<Resample> {
    const has3d = W.has(`${prefix}.time_conv.weight`);
    const mode: ResampleMode = `${direction}sample${has3d ? '3d' : '2d'}`;
    const k = W.shape(`${prefix}.resample.1.weight`);
    if (k.length !== 4 || k[2] !== 3 || k[3] !== 3) throw new Error(`${W.src.path}: "${prefix}.resample.1.weight" [${k}] is not a 3x3 Conv2d kernel`);
    const spatial = await Conv.load(W, `${prefix}.resample.1`, direction === 'down' ? { padding: [0, 0, 0], stride: [1, 2, 2], causal: false } : { padding: [0, 1, 1], causal: false });
    let timeConv: Conv | null = null;
    if (has3d) {
      const tk = W.shape(`${prefix}.time_conv.weight`);
      const C = direction === 'down' ? spatial.outChannels : spatial.inChannels;
      const expect = direction === 'down' ? [C, C, 3, 1, 1] : [2 * C, C, 3, 1, 1];
      if (tk.join() !== expect.join()) throw new Error(`${W.src.path}: "${prefix}.time_conv.weight" [${tk}] is not [${expect}]`);
      timeConv = await Conv.load(W, `${prefix}.time_conv`, direction === 'down' ? { padding: [0, 0, 0], stride: [2, 1, 1], causal: false } : { padding: [1, 0, 0], causal: true });
    }
    return new Resample(mode, spatial, timeConv);
  }

  forward(p: Pass, x: Tensor): Tensor {
    const e = p.e;
    let owned: Tensor | null = null; // a temporary this call made
    if (this.mode === 'upsample3d' && p.whole && x.shape[1] > 1) {
      // Frame 0 ('Rep') passes; frames 1.. go through the zero-padded causal time conv.
      const T = x.shape[1];
      const first = sliceFrames(e, x, 0, 1);
      const rest = sliceFrames(e, x, 1, T);
      const t2 = this.timeConv!.run(e, rest);
      rest.dispose();
      const doubled = interleaveFrames(e, t2);
      t2.dispose();
      owned = concatFrames(e, [first, doubled]);
      first.dispose();
      doubled.dispose();
      x = owned;
    } else if (this.mode === 'upsample3d' && p.cache) {
      const i = p.cache.next();
      const prev = p.cache.get(i);
      if (prev === null) {
        p.cache.set(i, 'Rep');
      } else {
        const cache = prev === 'Rep' ? null : prev;
        const t2 = this.timeConv!.run(e, x, cache ?? undefined);
        p.cache.set(i, tailFrames(e, cache, x, CACHE_T));
        owned = interleaveFrames(e, t2);
        t2.dispose();
        x = owned;
      }
    }
    let y: Tensor;
    if (this.mode.startsWith('up')) {
      const up = vaeUpsampleNearest2x(e, x);
      y = this.spatial.run(e, up);
      up.dispose();
    } else {
      const padded = zeroPadBottomRight(e, x, 1, 1);
      y = this.spatial.run(e, padded);
      padded.dispose();
    }
    owned?.dispose();
    if (this.mode === 'downsample3d' && p.whole && y.shape[1] > 1) {
      // [y0, conv(y0, y1, y2), conv(y2, y3, y4), ...]: y0, then the stride-2 conv over all frames.
      const first = sliceFrames(e, y, 0, 1);
      const conv = this.timeConv!.run(e, y);
      y.dispose();
      y = concatFrames(e, [first, conv]);
      first.dispose();
      conv.dispose();
    } else if (this.mode === 'downsample3d' && p.cache) {
      const i = p.cache.next();
      const prev = p.cache.get(i);
      if (prev === 'Rep') throw new Error('vae: a downsample cache slot holds the upsample marker (cache order broken)');
      const T = y.shape[1];
      const last = sliceFrames(e, y, T - 1, T);
      if (prev) {
        const joined = concatFrames(e, [prev, y]);
        y.dispose();
        y = this.timeConv!.run(e, joined);
        joined.dispose();
      }
      p.cache.set(i, last);
    }
    return y;
  }
}

// ------------------------------------------------------------------ encoder / decoder skeleton

/** A traced unit of an encoder / decoder: `<prefix>.<name>` in the official module tree. */
export interface Stage {
  name: string;
  module: VaeModule;
}

export type VaeTraceValue = Tensor | { data: Float32Array; shape: number[] };
/** Receives intermediates named like the reference fixtures (`<module>.chunk<i>`, `enc_out`, ...). */
export type VaeTrace = (name: string, value: VaeTraceValue) => void | Promise<void>;

/**
 * Encoder3d / Decoder3d: conv1, the down- (encoder) or up-sampling stages, the middle
 * (residual, attention, residual) and the head (norm, SiLU, conv). The encoder runs its stages before
 * the middle, the decoder after.
 */
export class Coder {
  constructor(
    readonly prefix: 'encoder' | 'decoder',
    readonly conv1: Conv,
    readonly stages: Stage[],
    readonly middle: [ResidualBlock, AttentionBlock, ResidualBlock],
    readonly headGamma: Tensor,
    readonly head: Conv,
  ) {}

  get inChannels(): number {
    return this.conv1.inChannels;
  }

  get outChannels(): number {
    return this.head.outChannels;
  }

  static async loadCommon(W: VaeWeights, prefix: 'encoder' | 'decoder') {
    const conv1 = await loadCausalConv(W, `${prefix}.conv1`);
    const middle: [ResidualBlock, AttentionBlock, ResidualBlock] = [
      await ResidualBlock.load(W, `${prefix}.middle.0`),
      await AttentionBlock.load(W, `${prefix}.middle.1`),
      await ResidualBlock.load(W, `${prefix}.middle.2`),
    ];
    const headGamma = await W.upload(`${prefix}.head.0.gamma`, 'f32');
    const head = await loadCausalConv(W, `${prefix}.head.2`);
    return { conv1, middle, headGamma, head };
  }

  /** Checks that every layer's input width is the previous layer's output width. */
  validate(path: string): void {
    const order: [string, { inChannels: number; outChannels: number }][] = [['conv1', this.conv1]];
    const mids = this.middle.map((m, i) => [`middle.${i}`, m] as [string, VaeModule]);
    const stages = this.stages.map((s) => [s.name, s.module] as [string, VaeModule]);
    order.push(...(this.prefix === 'encoder' ? [...stages, ...mids] : [...mids, ...stages]), ['head.2', this.head]);
    for (let i = 1; i < order.length; i++) {
      if (order[i][1].inChannels !== order[i - 1][1].outChannels) {
        throw new Error(`${path}: ${this.prefix}.${order[i][0]} takes ${order[i][1].inChannels} channels but ${this.prefix}.${order[i - 1][0]} gives ${order[i - 1][1].outChannels}`);
      }
    }
  }

  /** One chunk (or the whole sequence without a cache); x is the caller's and is not freed. */
  async forward(p: Pass, x: Tensor, chunk: number, trace?: VaeTrace): Promise<Tensor> {
    const e = p.e;
    p.cache?.rewind();
    const name = (n: string) => `${this.prefix}.${n}.chunk${chunk}`;
    let y = this.conv1.cached(p, x);
    if (trace) await trace(name('conv1'), y);
    const step = async (n: string, m: VaeModule) => {
      const next = m.forward(p, y);
      y.dispose();
      y = next;
      if (trace) await trace(name(n), y);
    };
    const middle = async () => {
      for (let i = 0; i < 3; i++) await step(`middle.${i}`, this.middle[i]);
    };
    if (this.prefix === 'decoder') await middle();
    for (const s of this.stages) await step(s.name, s.module);
    if (this.prefix === 'encoder') await middle();
    const a = normSilu(e, y, this.headGamma);
    y.dispose();
    const out = this.head.cached(p, a);
    a.dispose();
    return out;
  }
}
