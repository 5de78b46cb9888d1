// WanVAE: the Wan2.1 (16 latent channels, stride 4x8x8) and Wan2.2 (48 channels, 4x16x16 with a 2x2
// patchify around the network) video VAEs, encoding and decoding host float32 videos exactly as the
// official wrappers (Wan2_1_VAE / Wan2_2_VAE .encode / .decode) do:
//   encode: chunk 0 = frame 0, then chunks of 4 frames, all sharing the feature cache; model.conv1
//           (1x1x1) on the encoder output; latent = (mu - mean) * (1/std) with mu its first z channels.
//   decode: z = latent / (1/std) + mean; model.conv2 (1x1x1); the decoder once per latent frame
//           (1 output frame for latent frame 0, 4 after it); clamp to [-1, 1].
// Only one chunk of activations (plus the per-conv caches of 2 frames) is on the device at a time:
// chunks are uploaded from and read back to the host one by one.
import type { DType, Engine } from '../../engine/index.ts';
import type { TensorSource } from '../../loaders/source.ts';
import { Conv, FeatureCache, Resample, type Coder, type Pass, type VaeTrace } from './blocks.ts';
import { hostFrames, patchify, putFrames, unpatchify } from './host.ts';
import { axisWeights, blendTile, checkTile, cropFrames, defaultVaeTile, tileStarts, type VaeTileOptions } from './tiling.ts';
import { loadCoder21 } from './vae2_1.ts';
import { DownBlock, UpBlock, loadCoder22 } from './vae2_2.ts';
import { VaeWeights } from './weights.ts';

export { FeatureCache, Resample, type Pass, type VaeTrace, type VaeTraceValue } from './blocks.ts';
export { patchify, unpatchify } from './host.ts';
export { defaultVaeTile, tileStarts, type VaeTileOptions } from './tiling.ts';
export { officialVaeArchitecture, vaeDecodePeakBytes, type VaeArchitecture, type VaeDecodePeak, type VaeMemoryOptions } from './memory.ts';
export { SyntheticVaeSource } from './synthetic.ts';

export type VaeVersion = '2.1' | '2.2';

/** Latent statistics of the official wrappers (Wan2_1_VAE: 16 channels, Wan2_2_VAE: 48). */
export const VAE_LATENT_STATS: Record<VaeVersion, { mean: readonly number[]; std: readonly number[] }> = {
  '2.1': {
    mean: [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921],
    std: [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916],
  },
  '2.2': {
    mean: [
      -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891, 0.157, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207,
      -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.123, -0.0313, -0.1649, 0.0117, 0.0723,
      -0.2839, -0.2083, -0.052, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
    ],
    std: [
      0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.499, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135,
      0.6804, 0.5833, 1.4146, 0.8986, 0.5659, 0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042,
      0.5458, 1.6887, 0.3971, 1.06, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
    ],
  },
};

/** Frames per encoder chunk after the first (the official loop's 4). */
const CHUNK = 4;

export interface VaeConfig {
  version: VaeVersion;
  /** Latent channels. */
  zDim: number;
  /** Base widths (the official dim / dec_dim): encoder.conv1 output, decoder head input (real: 96 / 96 for 2.1, 160 / 256 for 2.2). */
  encoderDim: number;
  decoderDim: number;
  /** Patchify size around the network (1 for 2.1, 2 for 2.2). */
  patch: number;
  /** Video pixels per latent element: [4, 8, 8] (2.1) or [4, 16, 16] (2.2). */
  stride: [number, number, number];
}

export interface VaeLoadOptions {
  /** Storage of the conv and attention weights (default f32, as the official VAE runs). */
  dtype?: Extract<DType, 'f32' | 'bf16' | 'f16'>;
}

export interface VaeRunOptions {
  /** Intermediates named as in the reference fixtures (module outputs per chunk, host assemblies). */
  trace?: VaeTrace;
  /** After every chunk: encoder chunks (1 + (T-1)/4) or latent frames decoded. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Run the network once over all frames instead of the official chunk loop. Same result (the chunk
   * loop is a causal computation; test/vae.test.ts checks the equality) but every frame's
   * activations are on the device at once: for verification and short clips only. Module-level
   * intermediates are not traced in this mode.
   */
  wholeSequence?: boolean;
}

export interface VaeDecodeOptions extends VaeRunOptions {
  /**
   * Spatial tiling of decode and encode (off by default): true for the default tiles of the version
   * (defaultVaeTile), or tile / stride in latent pixels. Tiles overlap by tile - stride (latent pixels)
   * and are blended linearly: in pixel space when decoding, in latent space when encoding.
   */
  tile?: boolean | VaeTileOptions;
}

function checkShape(what: string, data: Float32Array, shape: readonly number[]): [number, number, number, number] {
  if (!(data instanceof Float32Array)) throw new Error(`${what}: data must be a Float32Array`);
  if (shape.length !== 4 || shape.some((d) => !Number.isInteger(d) || d < 1)) throw new Error(`${what}: shape [${shape}] is not [C, T, H, W] with positive integer sizes`);
  const n = shape[0] * shape[1] * shape[2] * shape[3];
  if (data.length !== n) throw new Error(`${what}: ${data.length} values for shape [${shape}] (${n} expected)`);
  return [shape[0], shape[1], shape[2], shape[3]];
}

/** Concatenation along time of host chunks [C, t_i, H, W]. */
function joinFrames(parts: { data: Float32Array; shape: number[] }[]): { data: Float32Array; shape: number[] } {
  const [C, , H, W] = parts[0].shape;
  const T = parts.reduce((a, p) => a + p.shape[1], 0);
  const data = new Float32Array(C * T * H * W);
  let t = 0;
  for (const p of parts) {
    putFrames(data, [C, T, H, W], t, p.data, p.shape[1]);
    t += p.shape[1];
  }
  return { data, shape: [C, T, H, W] };
}

const withBatch = (v: { data: Float32Array; shape: number[] }) => ({ data: v.data, shape: [1, ...v.shape] });

export class WanVAE {
  /** mean[c] and 1/std[c] as float32 (the wrapper's scale = [mean, 1.0 / std] tensors). */
  readonly mean: Float32Array;
  readonly invStd: Float32Array;

  private constructor(
    readonly e: Engine,
    readonly config: VaeConfig,
    private readonly encoder: Coder,
    private readonly decoder: Coder,
    /** model.conv1 (encoder output -> mu, log_var) and model.conv2 (latent -> decoder input), 1x1x1. */
    private readonly conv1: Conv,
    private readonly conv2: Conv,
    private readonly weights: VaeWeights,
  ) {
    const stats = VAE_LATENT_STATS[config.version];
    this.mean = Float32Array.from(stats.mean);
    this.invStd = Float32Array.from(stats.std, (s) => 1 / Math.fround(s));
  }

  /** Loads a Wan2.1 / Wan2.2 VAE checkpoint (official key names, any width). */
  static async load(e: Engine, src: TensorSource, version: VaeVersion, opts: VaeLoadOptions = {}): Promise<WanVAE> {
    if (version !== '2.1' && version !== '2.2') throw new Error(`WanVAE.load: version must be '2.1' or '2.2', got ${String(version)}`);
    const nested = src.has('encoder.downsamples.0.downsamples.0.residual.0.gamma');
    const flat = src.has('encoder.downsamples.0.residual.0.gamma');
    if (version === '2.2' && !nested) throw new Error(`${src.path}: not a Wan2.2 VAE (no encoder.downsamples.0.downsamples.0.*)${flat ? '; it looks like a Wan2.1 VAE' : ''}`);
    if (version === '2.1' && !flat) throw new Error(`${src.path}: not a Wan2.1 VAE (no encoder.downsamples.0.residual.*)${nested ? '; it looks like a Wan2.2 VAE' : ''}`);
    const W = new VaeWeights(e, src, opts.dtype ?? 'f32');
    try {
      const load = version === '2.1' ? loadCoder21 : loadCoder22;
      const encoder = await load(W, 'encoder');
      const decoder = await load(W, 'decoder');
      const conv1 = await Conv.load(W, 'conv1', { padding: [0, 0, 0], causal: true });
      const conv2 = await Conv.load(W, 'conv2', { padding: [0, 0, 0], causal: true });
      const zDim = conv2.inChannels;
      const patch = version === '2.2' ? 2 : 1;
      const stats = VAE_LATENT_STATS[version];
      const fail = (msg: string): never => {
        throw new Error(`${src.path}: ${msg}`);
      };
      if (zDim !== stats.mean.length) fail(`${zDim} latent channels; the Wan${version} VAE has ${stats.mean.length}`);
      if (conv1.outChannels !== 2 * zDim || encoder.outChannels !== 2 * zDim) fail(`encoder head / conv1 give ${encoder.outChannels} / ${conv1.outChannels} channels, expected ${2 * zDim}`);
      if (decoder.inChannels !== zDim) fail(`decoder.conv1 takes ${decoder.inChannels} channels, expected ${zDim}`);
      const pixels = 3 * patch * patch;
      if (encoder.inChannels !== pixels || decoder.outChannels !== pixels) fail(`encoder input / decoder output have ${encoder.inChannels} / ${decoder.outChannels} channels, expected ${pixels}`);
      const down = resampleFactors(encoder);
      const up = resampleFactors(decoder);
      if (down.t !== CHUNK || up.t !== CHUNK || down.s !== up.s) fail(`resampling ${down.t}x${down.s} down / ${up.t}x${up.s} up; the chunked loops need 4x in time both ways`);
      const s = down.s * patch;
      const config: VaeConfig = { version, zDim, encoderDim: encoder.conv1.outChannels, decoderDim: decoder.head.inChannels, patch, stride: [CHUNK, s, s] };
      if (W.stats.overflows > 0) console.warn(`warning: ${W.stats.overflows} VAE weights overflowed to infinity in ${W.dtype}`);
      return new WanVAE(e, config, encoder, decoder, conv1, conv2, W);
    } catch (err) {
      W.disposeAll();
      throw err;
    }
  }

  /** Frees every weight. */
  dispose(): void {
    this.weights.disposeAll();
  }

  /** Latent shape [z, T', H/s, W/s] of a video shape, or a clear error. */
  latentShape(shape: readonly number[]): [number, number, number, number] {
    const [, s] = this.config.stride;
    if (shape.length !== 4 || shape[0] !== 3) throw new Error(`WanVAE.encode: video shape [${shape}] is not [3, T, H, W]`);
    const [, T, H, W] = shape;
    if ((T - 1) % CHUNK !== 0) throw new Error(`WanVAE.encode: ${T} frames; the VAE takes 1 + 4n frames (the official encoder drops the others: trim them first)`);
    if (H % s || W % s) throw new Error(`WanVAE.encode: frame ${H}x${W} is not divisible by the Wan${this.config.version} VAE stride ${s}`);
    return [this.config.zDim, 1 + (T - 1) / CHUNK, H / s, W / s];
  }

  /** Video shape [3, 1 + 4(T'-1), h*s, w*s] a latent shape decodes to, or a clear error. */
  videoShape(shape: readonly number[]): [number, number, number, number] {
    const [, s] = this.config.stride;
    if (shape.length !== 4 || shape[0] !== this.config.zDim) throw new Error(`WanVAE.decode: latent shape [${shape}] is not [${this.config.zDim}, T, h, w]`);
    return [3, 1 + CHUNK * (shape[1] - 1), shape[2] * s, shape[3] * s];
  }

  /** Encodes a video [3, T, H, W] in [-1, 1] to the normalised latent [z, 1 + (T-1)/4, H/s, W/s]. */
  async encode(video: Float32Array, shape: readonly number[], opts: VaeDecodeOptions = {}): Promise<{ latent: Float32Array; shape: [number, number, number, number] }> {
    const e = this.e;
    checkShape('WanVAE.encode', video, shape);
    const ls = this.latentShape(shape);
    const [z, Tl, h, w] = ls;
    const tile = opts.tile === true ? defaultVaeTile(this.config.version) : opts.tile || null;
    if (tile) return this.encodeTiled(video, shape, ls, tile, opts);
    const { trace, onProgress } = opts;
    const p = this.config.patch;
    const whole = opts.wholeSequence === true;
    const cache = whole ? null : new FeatureCache();
    const pass: Pass = { e, cache, firstChunk: false, whole };
    const moments = new Float32Array(2 * z * Tl * h * w); // model.conv1 output [2z, T', h, w]
    const encParts: { data: Float32Array; shape: number[] }[] = [];
    // Chunk i: frames [f0, f1) -> latent frames [l0, l1).
    const chunks = whole ? [{ f0: 0, f1: shape[1], l0: 0, l1: Tl }] : Array.from({ length: Tl }, (_, i) => ({ f0: i === 0 ? 0 : 1 + CHUNK * (i - 1), f1: 1 + CHUNK * i, l0: i, l1: i + 1 }));
    try {
      for (let i = 0; i < chunks.length; i++) {
        const { f0, f1, l0, l1 } = chunks[i];
        const frames = hostFrames(video, shape, f0, f1);
        const chunk = p > 1 ? patchify(frames, [3, f1 - f0, shape[2], shape[3]], p) : { data: frames, shape: [3, f1 - f0, shape[2], shape[3]] };
        const got = await e.scope(async () => {
          const x = e.upload(chunk.data, chunk.shape, 'f32', `video chunk ${i}`);
          if (trace && p > 1 && !whole) await trace(`patchified_chunk${i}`, x);
          const enc = await this.encoder.forward(pass, x, i, whole ? undefined : trace);
          if (trace) {
            if (!whole) await trace(`enc_chunk${i}`, enc);
            encParts.push({ data: (await enc.toArray()) as Float32Array, shape: [...enc.shape] });
          }
          const m = this.conv1.run(e, enc);
          return { data: (await m.toArray()) as Float32Array, frames: m.shape[1], keep: cache?.tensors() ?? [] };
        });
        if (got.frames !== l1 - l0) throw new Error(`WanVAE.encode: chunk ${i} gave ${got.frames} latent frames, expected ${l1 - l0}`);
        putFrames(moments, [2 * z, Tl, h, w], l0, got.data, l1 - l0);
        onProgress?.(i + 1, chunks.length);
      }
    } finally {
      cache?.clear();
    }
    const plane = Tl * h * w;
    const latent = new Float32Array(z * plane);
    for (let c = 0; c < z; c++) {
      const m = this.mean[c];
      const s = this.invStd[c];
      for (let i = c * plane; i < (c + 1) * plane; i++) latent[i] = Math.fround(Math.fround(moments[i] - m) * s);
    }
    if (trace) {
      await trace('enc_out', withBatch(joinFrames(encParts)));
      await trace('enc_conv1_out', { data: moments, shape: [1, 2 * z, Tl, h, w] });
      await trace('mu_unnormalized', { data: moments.slice(0, z * plane), shape: [1, z, Tl, h, w] });
      await trace('log_var', { data: moments.slice(z * plane), shape: [1, z, Tl, h, w] });
    }
    return { latent, shape: ls };
  }

  /**
   * Tiled encode (diffusers' tiled_encode): pixel tiles of tile * s every stride * s pixels, each
   * encoded on its own (own cache), the latents blended linearly over the tile - stride overlapping
   * latent pixels (model/vae/tiling.ts). One tile covering the video is the untiled encode.
   */
  private async encodeTiled(video: Float32Array, shape: readonly number[], ls: [number, number, number, number], tile: VaeTileOptions, opts: VaeRunOptions): Promise<{ latent: Float32Array; shape: [number, number, number, number] }> {
    checkTile(tile);
    if (opts.trace) throw new Error('WanVAE.encode: trace is not available with tiling');
    const [, s] = this.config.stride;
    const [z, Tl, h, w] = ls;
    const ys = tileStarts(h, tile);
    const xs = tileStarts(w, tile);
    const chunks = opts.wholeSequence ? 1 : Tl;
    const total = ys.length * xs.length * chunks;
    const latent = new Float32Array(z * Tl * h * w);
    let done = 0;
    for (let a = 0; a < ys.length; a++)
      for (let b = 0; b < xs.length; b++) {
        const [i0, i1] = [ys[a], Math.min(ys[a] + tile.tile, h)];
        const [j0, j1] = [xs[b], Math.min(xs[b] + tile.tile, w)];
        const part = await this.encode(cropFrames(video, shape, i0 * s, i1 * s, j0 * s, j1 * s), [3, shape[1], (i1 - i0) * s, (j1 - j0) * s], {
          wholeSequence: opts.wholeSequence,
          onProgress: opts.onProgress && ((d) => opts.onProgress!(done + d, total)),
        });
        done += chunks;
        blendTile(latent, ls, part.latent, part.shape, i0, j0, axisWeights(ys, a, i1 - i0, tile, 1), axisWeights(xs, b, j1 - j0, tile, 1));
      }
    return { latent, shape: ls };
  }

  /**
   * Decodes a normalised latent [z, T', h, w] to a video [3, 1 + 4(T'-1), h*s, w*s] clamped to [-1, 1].
   * With `tile`, the latent is decoded in overlapping spatial tiles blended in pixel space
   * (model/vae/tiling.ts): device memory then follows the tile size, not the frame size.
   */
  async decode(latent: Float32Array, shape: readonly number[], opts: VaeDecodeOptions = {}): Promise<{ video: Float32Array; shape: [number, number, number, number] }> {
    checkShape('WanVAE.decode', latent, shape);
    const vs = this.videoShape(shape);
    const [z, Tl, h, w] = shape;
    // z / (1/std) + mean, in float32 as the wrapper computes it.
    const plane = Tl * h * w;
    const zUn = new Float32Array(latent.length);
    for (let c = 0; c < z; c++) {
      const m = this.mean[c];
      const s = this.invStd[c];
      for (let i = c * plane; i < (c + 1) * plane; i++) zUn[i] = Math.fround(Math.fround(latent[i] / s) + m);
    }
    const tile = opts.tile === true ? defaultVaeTile(this.config.version) : opts.tile || null;
    let video: Float32Array;
    if (!tile) {
      video = await this.decodeUnclamped(zUn, shape, opts);
    } else {
      checkTile(tile);
      if (opts.trace) throw new Error('WanVAE.decode: trace is not available with tiling');
      const [, s] = this.config.stride;
      const ys = tileStarts(h, tile);
      const xs = tileStarts(w, tile);
      const total = ys.length * xs.length * Tl;
      video = new Float32Array(vs.reduce((a, b) => a * b, 1));
      let done = 0;
      for (let a = 0; a < ys.length; a++)
        for (let b = 0; b < xs.length; b++) {
          const [i0, i1] = [ys[a], Math.min(ys[a] + tile.tile, h)];
          const [j0, j1] = [xs[b], Math.min(xs[b] + tile.tile, w)];
          const part = await this.decodeUnclamped(cropFrames(zUn, shape, i0, i1, j0, j1), [z, Tl, i1 - i0, j1 - j0], {
            wholeSequence: opts.wholeSequence,
            onProgress: opts.onProgress && ((d) => opts.onProgress!(done + d, total)),
          });
          done += Tl;
          const ps = [3, vs[1], (i1 - i0) * s, (j1 - j0) * s];
          blendTile(video, vs, part, ps, i0 * s, j0 * s, axisWeights(ys, a, ps[2], tile, s), axisWeights(xs, b, ps[3], tile, s));
        }
    }
    for (let i = 0; i < video.length; i++) {
      const v = video[i];
      video[i] = v < -1 ? -1 : v > 1 ? 1 : v; // NaN stays NaN, as torch.clamp
    }
    return { video, shape: vs };
  }

  /** The official decode loop on an unnormalised latent, without the final clamp. */
  private async decodeUnclamped(zUn: Float32Array, shape: readonly number[], opts: VaeRunOptions): Promise<Float32Array> {
    const e = this.e;
    const vs = this.videoShape(shape);
    const [z, Tl, h, w] = shape;
    const { trace, onProgress } = opts;
    const p = this.config.patch;
    if (trace) await trace('z_unnormalized', { data: zUn, shape: [1, ...shape] });
    const video = new Float32Array(vs.reduce((a, b) => a * b, 1));
    const conv2Parts: { data: Float32Array; shape: number[] }[] = [];
    const whole = opts.wholeSequence === true;
    const cache = whole ? null : new FeatureCache();
    // Chunk i: latent frames [l0, l1) -> video frames from f0.
    const chunks = whole ? [{ l0: 0, l1: Tl }] : Array.from({ length: Tl }, (_, i) => ({ l0: i, l1: i + 1 }));
    try {
      for (let i = 0; i < chunks.length; i++) {
        const { l0, l1 } = chunks[i];
        const pass: Pass = { e, cache, firstChunk: l0 === 0, whole };
        const got = await e.scope(async () => {
          const x = e.upload(hostFrames(zUn, shape, l0, l1), [z, l1 - l0, h, w], 'f32', `latent frames ${l0}-${l1}`);
          const x2 = this.conv2.run(e, x);
          if (trace) conv2Parts.push({ data: (await x2.toArray()) as Float32Array, shape: [...x2.shape] });
          const out = await this.decoder.forward(pass, x2, i, whole ? undefined : trace);
          if (trace && !whole) await trace(`dec_chunk${i}`, out);
          return { data: (await out.toArray()) as Float32Array, shape: [...out.shape], keep: cache?.tensors() ?? [] };
        });
        const frames = got.shape[1];
        const f0 = l0 === 0 ? 0 : 1 + CHUNK * (l0 - 1);
        const expected = 1 + CHUNK * (l1 - 1) - f0;
        if (frames !== expected) throw new Error(`WanVAE.decode: latent frames [${l0}, ${l1}) decoded to ${frames} frames, expected ${expected}`);
        const pix = p > 1 ? unpatchify(got.data, got.shape, p).data : got.data;
        putFrames(video, vs, f0, pix, frames);
        onProgress?.(i + 1, chunks.length);
      }
    } finally {
      cache?.clear();
    }
    if (trace) {
      await trace('dec_conv2_out', withBatch(joinFrames(conv2Parts)));
      await trace('dec_out_unclamped', { data: video.slice(), shape: [1, ...vs] });
    }
    return video;
  }
}

/** Total time / space factors of a coder's resamples (stages of 2.2 hold theirs inside). */
function resampleFactors(coder: Coder): { t: number; s: number } {
  let t = 1;
  let s = 1;
  for (const st of coder.stages) {
    const mods = st.module instanceof DownBlock || st.module instanceof UpBlock ? st.module.modules : [st.module];
    for (const m of mods) {
      if (!(m instanceof Resample)) continue;
      s *= 2;
      if (m.timeConv) t *= 2;
    }
  }
  return { t, s };
}
