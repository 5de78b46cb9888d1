// Peak device memory of a WanVAE decode, computed from the architecture (no device needed): the
// memory planner's estimate, and the model behind the README's 720p numbers.
//
// The decoder runs one latent frame per chunk (1 + 4(T'-1) video frames come out 1, 4, 4, ...). What
// is live on the device at any moment is
//   - every loaded weight (encoder and decoder: WanVAE.load uploads both),
//   - the feature cache: for every cached conv the last 2 frames of its input at its resolution,
//   - the current chunk's activations: the stage input, the tensors a block holds at once
//     (residual block: x, its shortcut, normed input and conv output; upsample: the time-doubled
//     frames, the nearest-2x frames and the conv output), and each conv's prepared weight copy
//     (engine/ops/conv3d.ts re-lays the kernel out per call).
// This module replays the decoder's allocation order (model/vae/blocks.ts, vae2_2.ts, index.ts) for a
// steady chunk (caches full, 4 frames at the upsampled levels; later chunks repeat it, so the
// peak does not depend on the frame count) with the buffer pool's size classes (engine/pool.ts), and
// keeps the maximum. Small temporaries (per-position norm sums, attention state) are left out: the
// test compares the estimate with the pool's measured peak at reduced sizes.
import { sizeClass } from '../../engine/pool.ts';
import { tileStarts, defaultVaeTile, type VaeTileOptions } from './tiling.ts';
import type { VaeVersion } from './index.ts';

export interface VaeArchitecture {
  /** Latent channels (16 / 48). */
  zDim: number;
  /** Encoder and decoder base widths (2.1: 96 / 96, 2.2: 160 / 256). */
  encoderDim: number;
  decoderDim: number;
  dimMult: number[];
  numResBlocks: number;
  /** Temporal downsampling per encoder stage; the decoder upsamples in the reverse order. */
  temporalDownsample: boolean[];
}

/** The official configurations (Wan2_1_VAE, Wan2_2_VAE). */
export function officialVaeArchitecture(version: VaeVersion): VaeArchitecture {
  const common = { dimMult: [1, 2, 4, 4], numResBlocks: 2, temporalDownsample: [false, true, true] };
  return version === '2.1' ? { zDim: 16, encoderDim: 96, decoderDim: 96, ...common } : { zDim: 48, encoderDim: 160, decoderDim: 256, ...common };
}

export interface VaeMemoryOptions {
  /** Weight storage (WanVAE.load dtype; default f32). Biases and norm gammas are always f32. */
  dtype?: 'f32' | 'bf16' | 'f16';
  /** As WanVAE.decode: true for the version's default tiles, or tile / stride in latent pixels. */
  tile?: boolean | VaeTileOptions;
  /** Architecture (default: the official one of the version). */
  architecture?: VaeArchitecture;
  /** The device's largest buffer (tensors above it are split by rows); default 4 GiB - 256 (Dawn here). */
  maxBufferBytes?: number;
  /** Input channels a conv's prepared weight rows are padded to (the conv kernel's KB; 8 here, the subgroup size on GPUs). */
  convChannelPad?: number;
}

export interface VaeDecodePeak {
  /** Estimated peak of live device bytes during the decode. */
  peakBytes: number;
  /** Of which: the loaded weights (encoder and decoder). */
  weightBytes: number;
  /** The feature cache of a steady chunk. */
  cacheBytes: number;
  /** The rest at the peak: activations and a prepared conv weight. */
  activationBytes: number;
  /** Where the peak is (the block running). */
  at: string;
  /** Latent tile size decoded at once [h, w] and the number of tiles. */
  tile: [number, number];
  tiles: number;
}

/** Live-byte bookkeeping with the pool's rounding. */
class Ledger {
  live = 0;
  peak = 0;
  at = '';
  cacheAtPeak = 0;
  cache = 0;

  constructor(
    private readonly maxBuffer: number,
    private readonly where: () => string,
  ) {}

  /** Pool bytes of a tensor with `rows` leading rows of `rowBytes` each (`exact`: weights, 256-rounded, no size class). */
  bytes(rows: number, rowBytes: number, exact = false): number {
    const size = (b: number) => (exact ? Math.max(256, Math.ceil(b / 256) * 256) : sizeClass(b, this.maxBuffer));
    const total = rows * rowBytes;
    if (total <= this.maxBuffer) return size(total);
    const per = Math.max(1, Math.floor(this.maxBuffer / rowBytes));
    let sum = 0;
    for (let r = 0; r < rows; r += per) sum += size(Math.min(per, rows - r) * rowBytes);
    return sum;
  }

  alloc(b: number): number {
    this.live += b;
    if (this.live > this.peak) {
      this.peak = this.live;
      this.at = this.where();
      this.cacheAtPeak = this.cache;
    }
    return b;
  }

  free(b: number): void {
    this.live -= b;
  }
}

type Shape = [number, number, number, number];

/**
 * Estimated peak device bytes of WanVAE.decode for a video of width x height pixels (any frame
 * count: the peak is that of one steady chunk). Checked against the pool's measured peak in
 * test/vae.test.ts; the README lists the 720p numbers.
 */
export function vaeDecodePeakBytes(version: VaeVersion, width: number, height: number, opts: VaeMemoryOptions = {}): VaeDecodePeak {
  const arch = opts.architecture ?? officialVaeArchitecture(version);
  const s = version === '2.1' ? 8 : 16;
  if (width % s || height % s) throw new Error(`vaeDecodePeakBytes: ${width}x${height} is not divisible by the Wan${version} VAE stride ${s}`);
  const wBytes = (opts.dtype ?? 'f32') === 'f32' ? 4 : 2;
  const pad = opts.convChannelPad ?? 8;
  let h = height / s;
  let w = width / s;
  let tiles = 1;
  const tile = opts.tile === true ? defaultVaeTile(version) : opts.tile || null;
  if (tile) {
    tiles = tileStarts(h, tile).length * tileStarts(w, tile).length;
    h = Math.min(h, tile.tile);
    w = Math.min(w, tile.tile);
  }
  let where = '';
  const L = new Ledger(opts.maxBufferBytes ?? 4294967040, () => where);
  const act = ([c, t, hh, ww]: Shape) => L.bytes(c, t * hh * ww * 4);

  // Weights: every tensor of both coders, as loaded.
  const weights = vaeWeightShapes(version, arch);
  let weightBytes = 0;
  for (const { shape, isWeight } of weights) weightBytes += L.bytes(shape[0], shape.slice(1).reduce((a, b) => a * b, 1) * (isWeight ? wBytes : 4), true);
  L.alloc(weightBytes);

  // The decoder walk of one steady chunk. Cache slots are taken in call order; a slot holds 2 frames.
  const p = version === '2.2' ? 2 : 1;
  const dims = [arch.dimMult[arch.dimMult.length - 1], ...[...arch.dimMult].reverse()].map((u) => u * arch.decoderDim);
  const tUp = [...arch.temporalDownsample].reverse();
  const slot = ([c, , hh, ww]: Shape) => act([c, 2, hh, ww]);
  // Steady caches exist before the chunk starts: count them from a dry walk first.
  const caches: number[] = [];
  const convRun = (x: Shape, cout: number, k: number, out: Shape): number => {
    const y = L.alloc(act(out));
    const prep = L.alloc(L.bytes(cout, k * Math.ceil(x[0] / pad) * pad * wBytes));
    L.free(prep);
    return y;
  };
  let slotIdx = 0;
  const dry = { on: true };
  const cached = (x: Shape, cout: number, k = 27): number => {
    const out: Shape = [cout, x[1], x[2], x[3]];
    if (dry.on) {
      caches.push(slot(x));
      return 0;
    }
    const y = convRun(x, cout, k, out);
    const i = slotIdx++;
    L.alloc(caches[i]); // the new tail is made before the old one is freed
    L.free(caches[i]);
    return y;
  };
  const normSilu = (x: Shape): number => {
    if (dry.on) return 0;
    const n = L.alloc(act(x));
    const y = L.alloc(act(x));
    L.free(n);
    return y;
  };
  const free = (b: number) => {
    if (!dry.on) L.free(b);
  };
  const residual = (x: Shape, cout: number): [Shape, number] => {
    const o: Shape = [cout, x[1], x[2], x[3]];
    const hb = x[0] !== cout && !dry.on ? convRun(x, cout, 1, o) : 0;
    const a = normSilu(x);
    const b = cached(x, cout);
    free(a);
    const c = normSilu(o);
    free(b);
    const y = cached(o, cout);
    free(c);
    free(hb);
    return [o, y];
  };
  const attention = (x: Shape): number => {
    if (dry.on) return 0;
    const n = x[1] * x[2] * x[3];
    const tok = L.bytes(n, x[0] * 4);
    const held = [act(x), tok, tok, tok, tok, tok, tok, act(x)].map((b) => L.alloc(b)); // norm, tokens, q, k, v, o, proj, y
    for (const b of held.slice(0, 7)) L.free(b);
    return held[7];
  };

  const walk = () => {
    slotIdx = 0;
    where = 'decoder.conv1';
    const z: Shape = [arch.zDim, 1, h, w];
    const xIn = dry.on ? 0 : L.alloc(act(z));
    const x2 = dry.on ? 0 : L.alloc(act(z)); // model.conv2 output
    let x: Shape = [dims[0], 1, h, w];
    let cur = cached(z, dims[0]);
    const step = (name: string, f: () => [Shape, number]) => {
      where = `decoder.${name}`;
      const [o, y] = f();
      free(cur);
      x = o;
      cur = y;
    };
    step('middle.0', () => residual(x, dims[0]));
    step('middle.1', () => [x, attention(x)]);
    step('middle.2', () => residual(x, dims[0]));
    for (let i = 0; i < arch.dimMult.length; i++) {
      const last = i === arch.dimMult.length - 1;
      const cout = dims[i + 1];
      // Wan2.1: the previous upsample conv halved the width; Wan2.2 keeps it.
      let cin = version === '2.1' && i > 0 ? dims[i] / 2 : dims[i];
      // Wan2.1: each module is a step of the decoder (its input freed after it). Wan2.2: a stage's
      // chain frees its intermediates but keeps the stage input (DupUp3D adds it in place at the end).
      const keepInput = version === '2.2';
      const stageIn = cur;
      for (let r = 0; r <= arch.numResBlocks; r++) {
        const c0 = cin;
        where = `decoder.upsamples.${i}.res${r}`;
        const [o, y] = residual([c0, x[1], x[2], x[3]], cout);
        if (!(keepInput && r === 0)) free(cur);
        x = o;
        cur = y;
        cin = cout;
      }
      if (!last) {
        where = `decoder.upsamples.${i}.resample`;
        const [o, y] = upsample(x, tUp[i], version === '2.1' ? cout / 2 : cout);
        free(cur);
        x = o;
        cur = y;
      }
      if (keepInput) free(stageIn);
    }
    where = 'decoder.head';
    const a = normSilu(x);
    free(cur);
    const out = cached(x, 3 * p * p);
    free(a);
    free(out);
    free(x2);
    free(xIn);
  };
  const upsample = (x: Shape, mode3d: boolean, cout: number): [Shape, number] => {
    let y: Shape = x;
    let owned = 0;
    if (mode3d) {
      if (dry.on) caches.push(slot(x));
      else {
        const t2 = convRun(x, 2 * x[0], 3, [2 * x[0], x[1], x[2], x[3]]);
        const i = slotIdx++;
        L.alloc(caches[i]);
        L.free(caches[i]);
        owned = L.alloc(act([x[0], 2 * x[1], x[2], x[3]]));
        L.free(t2);
      }
      y = [x[0], 2 * x[1], x[2], x[3]];
    }
    const upShape: Shape = [y[0], y[1], 2 * y[2], 2 * y[3]];
    const out: Shape = [cout, y[1], 2 * y[2], 2 * y[3]];
    if (dry.on) return [out, 0];
    const up = L.alloc(act(upShape));
    const r = convRun(upShape, cout, 9, out);
    L.free(up);
    L.free(owned);
    return [out, r];
  };

  walk();
  dry.on = false;
  L.cache = caches.reduce((a, b) => a + b, 0);
  L.alloc(L.cache);
  walk();
  return { peakBytes: L.peak, weightBytes, cacheBytes: L.cacheAtPeak, activationBytes: L.peak - weightBytes - L.cacheAtPeak, at: L.at, tile: [h, w], tiles };
}

/** Shapes of every tensor WanVAE.load uploads; isWeight: stored in the weight dtype (conv / linear kernels). */
export function vaeWeightShapes(version: VaeVersion, a: VaeArchitecture): { shape: number[]; isWeight: boolean }[] {
  const out: { shape: number[]; isWeight: boolean }[] = [];
  const conv = (cout: number, cin: number, k: number) => {
    out.push({ shape: [cout, cin, k, k, k], isWeight: true }, { shape: [cout], isWeight: false });
  };
  const res = (cin: number, cout: number) => {
    out.push({ shape: [cin], isWeight: false });
    conv(cout, cin, 3);
    out.push({ shape: [cout], isWeight: false });
    conv(cout, cout, 3);
    if (cin !== cout) conv(cout, cin, 1);
  };
  const attn = (c: number) => {
    out.push({ shape: [c], isWeight: false });
    for (let i = 0; i < 4; i++) out.push({ shape: [c, c], isWeight: true }, { shape: [c], isWeight: false });
  };
  const resample = (c: number, up: boolean, t: boolean) => {
    const o = up && version === '2.1' ? c / 2 : c;
    out.push({ shape: [o, c, 1, 3, 3], isWeight: true }, { shape: [o], isWeight: false });
    if (t) out.push({ shape: [up ? 2 * c : c, c, 3, 1, 1], isWeight: true }, { shape: [up ? 2 * c : c], isWeight: false });
  };
  const pix = version === '2.2' ? 12 : 3;
  const n = a.dimMult.length;
  const enc = [1, ...a.dimMult].map((u) => u * a.encoderDim);
  conv(enc[0], pix, 3);
  for (let i = 0; i < n; i++) {
    let cin = enc[i];
    for (let r = 0; r < a.numResBlocks; r++) {
      res(cin, enc[i + 1]);
      cin = enc[i + 1];
    }
    if (i < n - 1) resample(enc[i + 1], false, a.temporalDownsample[i]);
  }
  res(enc[n], enc[n]);
  attn(enc[n]);
  res(enc[n], enc[n]);
  out.push({ shape: [enc[n]], isWeight: false });
  conv(2 * a.zDim, enc[n], 3);
  conv(2 * a.zDim, 2 * a.zDim, 1);
  conv(a.zDim, a.zDim, 1);
  const dec = [a.dimMult[n - 1], ...[...a.dimMult].reverse()].map((u) => u * a.decoderDim);
  const tUp = [...a.temporalDownsample].reverse();
  conv(dec[0], a.zDim, 3);
  res(dec[0], dec[0]);
  attn(dec[0]);
  res(dec[0], dec[0]);
  for (let i = 0; i < n; i++) {
    let cin = version === '2.1' && i > 0 ? dec[i] / 2 : dec[i];
    for (let r = 0; r <= a.numResBlocks; r++) {
      res(cin, dec[i + 1]);
      cin = dec[i + 1];
    }
    if (i < n - 1) resample(dec[i + 1], true, tUp[i]);
  }
  out.push({ shape: [dec[n]], isWeight: false });
  conv(pix, dec[n], 3);
  return out;
}
