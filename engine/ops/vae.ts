// Layout kernels of the Wan video VAEs (shaders/vae_gather.wgsl, shaders/vae_tokens.wgsl), on
// channel-major videos [C, T, H, W] f32 (a leading batch of 1 is accepted):
//   frame copies (slice / concat / the time-conv interleave / the causal caches), the ZeroPad2d
//   before a strided downsample conv, nearest 2x upsampling, the Wan2.2 shortcuts AvgDown3D and
//   DupUp3D (optionally added in place onto the main path), and the channel <-> token transposes of
//   the attention block.
// Large tensors: a gather dispatch covers a window of (channel, frame) rows of what it writes and
// binds the element ranges of Y and X those rows touch, so activations far above one storage binding
// work; one channel of X (all its frames) must fit one binding.
import { Uniforms, type Engine } from '../engine.ts';
import type { Tensor } from '../tensor.ts';
import { wholeBinding } from '../windows.ts';
import { bindElements, type RangeBinding } from './layout.ts';

type Shape4 = [number, number, number, number];

const MODE = { frames: 1, pad: 2, up2: 3, avgdown: 4, dupup: 5 } as const;

/** The [C, T, H, W] shape of a video tensor ([1, C, T, H, W] accepted), f32 only. */
export function videoShape(t: Tensor, op: string, what = 'x'): Shape4 {
  t.assertAlive(op);
  if (t.dtype !== 'f32') throw new Error(`${op}: ${what} "${t.label}" is ${t.dtype}, expected f32`);
  const s = t.shape;
  if (s.length === 5 && s[0] === 1) return [s[1], s[2], s[3], s[4]];
  if (s.length === 4) return [s[0], s[1], s[2], s[3]];
  throw new Error(`${op}: ${what} "${t.label}" has shape [${s}], expected [C, T, H, W] (or [1, C, T, H, W])`);
}

interface Gather {
  op: string;
  mode: (typeof MODE)[keyof typeof MODE];
  x: Tensor;
  xs: Shape4;
  y: Tensor;
  ys: Shape4;
  /** Domain: channels x frames, each row one H_y x W_y plane written. */
  domC: number;
  domF: number;
  /** Row of Y (channel * T_y + frame) written by domain row (c, f). */
  dstRow(c: number, f: number): number;
  /** Channels of X read by domain channel c: [lo, hi] inclusive. */
  srcChannels(c: number): [number, number];
  abcd: [number, number, number, number];
  accumulate: boolean;
}

/** Largest end in (start, limit] with fits(start, end) (monotone), or start when none. */
function largestFit(start: number, limit: number, fits: (a: number, b: number) => boolean): number {
  if (fits(start, limit)) return limit;
  let lo = start;
  let hi = limit;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(start, mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

function runGather(e: Engine, g: Gather): void {
  const [, ts, hs, ws] = g.xs;
  const [, td, hd, wd] = g.ys;
  for (const t of [g.x, g.y]) if (t.numel >= 2 ** 32) throw new Error(`${g.op}: "${t.label}" [${t.shape}] has 2^32 elements or more`);
  const plane = hd * wd;
  const xChan = ts * hs * ws;
  const rows = g.domC * g.domF;
  if (rows === 0 || plane === 0) return;
  const dstRow = (r: number) => g.dstRow(Math.floor(r / g.domF), r % g.domF);
  const yRange = (r0: number, r1: number) => bindElements(e.gpu, g.y, dstRow(r0) * plane, (dstRow(r1 - 1) + 1) * plane);
  // X channels [lo, hi] a window reads; bound in place, or (when they straddle a buffer segment)
  // copied into a temporary whose element 0 stands for tensor element lo * xChan.
  const xChannels = (r0: number, r1: number): [number, number] => [g.srcChannels(Math.floor(r0 / g.domF))[0], g.srcChannels(Math.floor((r1 - 1) / g.domF))[1]];
  const xInPlace = (r0: number, r1: number) => {
    const [lo, hi] = xChannels(r0, r1);
    return bindElements(e.gpu, g.x, lo * xChan, (hi + 1) * xChan) !== null;
  };
  const xCopyable = (r0: number, r1: number) => {
    const [lo, hi] = xChannels(r0, r1);
    const bytes = (hi + 1 - lo) * xChan * 4;
    return bytes <= e.gpu.maxBindingBytes && bytes <= e.gpu.maxBufferBytes;
  };
  const pipeline = e.pipeline('vae_gather', { MODE: g.mode, ACCUM: String(g.accumulate) });
  for (let r0 = 0; r0 < rows; ) {
    let r1 = largestFit(r0, rows, (a, b) => yRange(a, b) !== null && xInPlace(a, b));
    if (r1 === r0) r1 = largestFit(r0, rows, (a, b) => yRange(a, b) !== null && xCopyable(a, b));
    if (r1 === r0) {
      throw new Error(
        `${g.op}: one ${hd}x${wd} plane of "${g.y.label}" [${g.y.shape}] and the channels of "${g.x.label}" [${g.x.shape}] it reads ` +
          `do not fit storage bindings of ${e.gpu.maxBindingBytes} bytes`,
      );
    }
    const yb = yRange(r0, r1) as RangeBinding;
    const [lo, hi] = xChannels(r0, r1);
    let xb = bindElements(e.gpu, g.x, lo * xChan, (hi + 1) * xChan);
    let temp: Tensor | null = null;
    if (!xb) {
      temp = e.empty([(hi + 1 - lo) * xChan], 'f32', `${g.op} channels`);
      e.copyElements(g.x, lo * xChan, temp, 0, temp.numel);
      xb = { binding: wholeBinding(e.gpu, temp, g.op), base: lo * xChan };
    }
    const n = (r1 - r0) * plane;
    const [a, b, c, d] = g.abcd;
    const params = new Uniforms()
      .u32(n)
      .u32(plane)
      .u32(r0)
      .u32(g.domF)
      .u32(yb.base)
      .u32(xb.base)
      .u32(td)
      .u32(wd)
      .u32(ts)
      .u32(hs)
      .u32(ws)
      .u32(a)
      .u32(b)
      .u32(c)
      .u32(d);
    e.dispatch({ op: g.op, pipeline, params, buffers: [xb.binding, yb.binding], workgroups: Math.ceil(n / 256) });
    temp?.dispose(); // released to the pool after the dispatch is recorded: later work is ordered after it
    r0 = r1;
  }
}

// ------------------------------------------------------------------ frame copies

export interface CopyFramesOptions {
  /** First channel of src read (default 0); channels default to dst's channel count. */
  srcChannel0?: number;
  channels?: number;
  srcFrame0: number;
  dstFrame0: number;
  frames: number;
  /** dst frame index step between copied frames (default 1; 2 interleaves). */
  dstStep?: number;
}

/** dst[c, dstFrame0 + f * dstStep] = src[srcChannel0 + c, srcFrame0 + f] for f < frames (same H, W). */
export function copyFrames(e: Engine, src: Tensor, dst: Tensor, o: CopyFramesOptions): void {
  const op = 'vae copyFrames';
  const xs = videoShape(src, op, 'src');
  const ys = videoShape(dst, op, 'dst');
  const c0 = o.srcChannel0 ?? 0;
  const C = o.channels ?? ys[0];
  const step = o.dstStep ?? 1;
  const ints = [c0, C, o.srcFrame0, o.dstFrame0, o.frames, step];
  if (ints.some((v) => !Number.isInteger(v) || v < 0) || step < 1) throw new Error(`${op}: invalid options ${JSON.stringify(o)}`);
  if (xs[2] !== ys[2] || xs[3] !== ys[3]) throw new Error(`${op}: frame sizes differ: src [${src.shape}], dst [${dst.shape}]`);
  if (c0 + C > xs[0] || C > ys[0] || o.srcFrame0 + o.frames > xs[1] || (o.frames > 0 && o.dstFrame0 + (o.frames - 1) * step >= ys[1])) {
    throw new Error(`${op}: ${C} channels from ${c0}, ${o.frames} frames ${o.srcFrame0} -> ${o.dstFrame0} (step ${step}) exceed src [${src.shape}] or dst [${dst.shape}]`);
  }
  if (src.storage === dst.storage) throw new Error(`${op}: src and dst must not share storage`);
  runGather(e, {
    op,
    mode: MODE.frames,
    x: src,
    xs,
    y: dst,
    ys,
    domC: C,
    domF: o.frames,
    dstRow: (c, f) => c * ys[1] + o.dstFrame0 + f * step,
    srcChannels: (c) => [c + c0, c + c0],
    abcd: [c0, o.srcFrame0, o.dstFrame0, step],
    accumulate: false,
  });
}

/** Frames [f0, f1) of x as a new tensor [C, f1 - f0, H, W]. */
export function sliceFrames(e: Engine, x: Tensor, f0: number, f1: number): Tensor {
  const [C, T, H, W] = videoShape(x, 'vae sliceFrames');
  if (!(Number.isInteger(f0) && Number.isInteger(f1) && 0 <= f0 && f0 < f1 && f1 <= T)) throw new Error(`vae sliceFrames: frames [${f0}, ${f1}) outside [0, ${T})`);
  const y = e.empty([C, f1 - f0, H, W], 'f32', 'vae frames');
  copyFrames(e, x, y, { srcFrame0: f0, dstFrame0: 0, frames: f1 - f0 });
  return y;
}

/** Concatenation along time of videos with the same C, H, W. */
export function concatFrames(e: Engine, parts: Tensor[]): Tensor {
  const op = 'vae concatFrames';
  if (parts.length === 0) throw new Error(`${op}: nothing to concatenate`);
  const shapes = parts.map((p) => videoShape(p, op));
  const [C, , H, W] = shapes[0];
  if (shapes.some((s) => s[0] !== C || s[2] !== H || s[3] !== W)) throw new Error(`${op}: shapes ${parts.map((p) => `[${p.shape}]`).join(', ')} differ beyond time`);
  const y = e.empty([C, shapes.reduce((a, s) => a + s[1], 0), H, W], 'f32', 'vae concat');
  let at = 0;
  parts.forEach((p, i) => {
    copyFrames(e, p, y, { srcFrame0: 0, dstFrame0: at, frames: shapes[i][1] });
    at += shapes[i][1];
  });
  return y;
}

/**
 * The last min(n, frames available) frames of concat(prev, x) along time: the feature cache a causal
 * conv keeps for the next chunk (prev null: x alone).
 */
export function tailFrames(e: Engine, prev: Tensor | null, x: Tensor, n: number): Tensor {
  const op = 'vae tailFrames';
  const [C, T, H, W] = videoShape(x, op);
  const fromX = Math.min(n, T);
  let fromPrev = 0;
  let ps: Shape4 | null = null;
  if (prev) {
    ps = videoShape(prev, op, 'prev');
    if (ps[0] !== C || ps[2] !== H || ps[3] !== W) throw new Error(`${op}: prev [${prev.shape}] does not match x [${x.shape}]`);
    fromPrev = Math.min(n - fromX, ps[1]);
  }
  const y = e.empty([C, fromPrev + fromX, H, W], 'f32', 'vae cache');
  if (fromPrev > 0) copyFrames(e, prev!, y, { srcFrame0: ps![1] - fromPrev, dstFrame0: 0, frames: fromPrev });
  copyFrames(e, x, y, { srcFrame0: T - fromX, dstFrame0: fromPrev, frames: fromX });
  return y;
}

/** [2C, T, H, W] -> [C, 2T, H, W]: frame 2t from channels [0, C), frame 2t + 1 from [C, 2C) (the upsample3d time conv). */
export function interleaveFrames(e: Engine, x: Tensor): Tensor {
  const op = 'vae interleaveFrames';
  const [C2, T, H, W] = videoShape(x, op);
  if (C2 % 2 !== 0) throw new Error(`${op}: x [${x.shape}] has an odd channel count`);
  const C = C2 / 2;
  const y = e.empty([C, 2 * T, H, W], 'f32', 'vae interleave');
  copyFrames(e, x, y, { srcChannel0: 0, channels: C, srcFrame0: 0, dstFrame0: 0, frames: T, dstStep: 2 });
  copyFrames(e, x, y, { srcChannel0: C, channels: C, srcFrame0: 0, dstFrame0: 1, frames: T, dstStep: 2 });
  return y;
}

// ------------------------------------------------------------------ spatial resampling

/** ZeroPad2d((0, padW, 0, padH)): zeros on the right and the bottom of every frame. */
export function zeroPadBottomRight(e: Engine, x: Tensor, padH = 1, padW = 1): Tensor {
  const op = 'vae zeroPadBottomRight';
  const xs = videoShape(x, op);
  if (![padH, padW].every((p) => Number.isInteger(p) && p >= 0)) throw new Error(`${op}: invalid padding ${padH}, ${padW}`);
  const [C, T, H, W] = xs;
  const ys: Shape4 = [C, T, H + padH, W + padW];
  const y = e.empty(ys, 'f32', 'vae pad');
  runGather(e, { op, mode: MODE.pad, x, xs, y, ys, domC: C, domF: T, dstRow: (c, f) => c * T + f, srcChannels: (c) => [c, c], abcd: [0, 0, 0, 0], accumulate: false });
  return y;
}

/** Nearest-neighbour 2x upsampling of every frame (nn.Upsample(scale_factor=2, mode='nearest-exact')). */
export function vaeUpsampleNearest2x(e: Engine, x: Tensor): Tensor {
  const op = 'vae upsampleNearest2x';
  const xs = videoShape(x, op);
  const [C, T, H, W] = xs;
  const ys: Shape4 = [C, T, 2 * H, 2 * W];
  const y = e.empty(ys, 'f32', 'vae upsample');
  runGather(e, { op, mode: MODE.up2, x, xs, y, ys, domC: C, domF: T, dstRow: (c, f) => c * T + f, srcChannels: (c) => [c, c], abcd: [0, 0, 0, 0], accumulate: false });
  return y;
}

// ------------------------------------------------------------------ Wan2.2 shortcuts

export interface ShortcutOptions {
  outChannels: number;
  factorT: number;
  factorS: number;
  /** Add the result onto this tensor (in place; returned) instead of writing a new one. */
  addTo?: Tensor;
}

function checkFactors(op: string, o: ShortcutOptions): void {
  for (const [k, v] of [['outChannels', o.outChannels], ['factorT', o.factorT], ['factorS', o.factorS]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${op}: ${k} must be a positive integer, got ${v}`);
  }
}

function target(e: Engine, op: string, shape: Shape4, addTo: Tensor | undefined, x: Tensor, label: string): Tensor {
  if (!addTo) return e.empty(shape, 'f32', label);
  const s = videoShape(addTo, op, 'addTo');
  if (s.some((d, i) => d !== shape[i])) throw new Error(`${op}: addTo [${addTo.shape}] is not the result shape [${shape}]`);
  if (addTo.storage === x.storage) throw new Error(`${op}: addTo must not alias x`);
  return addTo;
}

/**
 * AvgDown3D (wan/modules/vae2_2.py): zero frames in front up to a multiple of factorT, then each
 * output channel is the mean of a group of the (channel, t, h, w offset) sub-samples.
 */
export function vaeAvgDown3d(e: Engine, x: Tensor, o: ShortcutOptions): Tensor {
  const op = 'vae avgDown3d';
  checkFactors(op, o);
  const xs = videoShape(x, op);
  const [C, T, H, W] = xs;
  const { factorT: ft, factorS: fs, outChannels: Co } = o;
  const factor = ft * fs * fs;
  if ((C * factor) % Co !== 0) throw new Error(`${op}: ${C} channels x factor ${factor} do not group into ${Co} output channels`);
  if (H % fs !== 0 || W % fs !== 0) throw new Error(`${op}: frame ${H}x${W} is not divisible by factor ${fs}`);
  const G = (C * factor) / Co;
  const padT = (ft - (T % ft)) % ft;
  const ys: Shape4 = [Co, (T + padT) / ft, H / fs, W / fs];
  const y = target(e, op, ys, o.addTo, x, 'vae avgDown3d');
  runGather(e, {
    op,
    mode: MODE.avgdown,
    x,
    xs,
    y,
    ys,
    domC: Co,
    domF: ys[1],
    dstRow: (c, f) => c * ys[1] + f,
    srcChannels: (c) => [Math.floor((c * G) / factor), Math.floor(((c + 1) * G - 1) / factor)],
    abcd: [ft, fs, G, padT],
    accumulate: !!o.addTo,
  });
  return y;
}

/**
 * DupUp3D (wan/modules/vae2_2.py): channels repeated (repeat_interleave), spread over factorT frames
 * and factorS x factorS pixels; firstChunk drops the first factorT - 1 output frames.
 */
export function vaeDupUp3d(e: Engine, x: Tensor, o: ShortcutOptions & { firstChunk?: boolean }): Tensor {
  const op = 'vae dupUp3d';
  checkFactors(op, o);
  const xs = videoShape(x, op);
  const [C, T, H, W] = xs;
  const { factorT: ft, factorS: fs, outChannels: Co } = o;
  const factor = ft * fs * fs;
  if ((Co * factor) % C !== 0) throw new Error(`${op}: ${Co} output channels x factor ${factor} are not a multiple of the ${C} input channels`);
  const repeats = (Co * factor) / C;
  const drop = o.firstChunk ? ft - 1 : 0;
  const ys: Shape4 = [Co, T * ft - drop, H * fs, W * fs];
  const y = target(e, op, ys, o.addTo, x, 'vae dupUp3d');
  runGather(e, {
    op,
    mode: MODE.dupup,
    x,
    xs,
    y,
    ys,
    domC: Co,
    domF: ys[1],
    dstRow: (c, f) => c * ys[1] + f,
    srcChannels: (c) => [Math.floor((c * factor) / repeats), Math.floor(((c + 1) * factor - 1) / repeats)],
    abcd: [ft, fs, repeats, drop],
    accumulate: !!o.addTo,
  });
  return y;
}

// ------------------------------------------------------------------ attention layout

function tokens(e: Engine, dir: 'to_tokens' | 'to_channels', x: Tensor, y: Tensor, C: number, N: number, c0: number, op: string): void {
  const total = C * N;
  if (total === 0) return;
  const params = new Uniforms().u32(total).u32(C).u32(N).u32(c0);
  const buffers = [wholeBinding(e.gpu, x, op), wholeBinding(e.gpu, y, op)];
  e.dispatch({ op, pipeline: e.pipeline('vae_tokens', { DIR: dir }), params, buffers, workgroups: Math.ceil(total / 256) });
}

/** Channels [c0, c0 + channels) of x [C, T, H, W] as token rows [T*H*W, channels]. */
export function vaeChannelsToTokens(e: Engine, x: Tensor, c0: number, channels: number): Tensor {
  const op = 'vae channelsToTokens';
  const [C, T, H, W] = videoShape(x, op);
  if (!(Number.isInteger(c0) && Number.isInteger(channels) && c0 >= 0 && channels > 0 && c0 + channels <= C)) {
    throw new Error(`${op}: channels [${c0}, ${c0 + channels}) outside the ${C} of x [${x.shape}]`);
  }
  const N = T * H * W;
  const y = e.empty([N, channels], 'f32', 'vae tokens');
  tokens(e, 'to_tokens', x, y, channels, N, c0, op);
  return y;
}

/** Token rows [N, C] back to a channel-major video of `shape` [C, T, H, W] (T*H*W = N). */
export function vaeTokensToChannels(e: Engine, t: Tensor, shape: readonly number[]): Tensor {
  const op = 'vae tokensToChannels';
  t.assertAlive(op);
  if (t.dtype !== 'f32' || t.shape.length !== 2) throw new Error(`${op}: "${t.label}" must be f32 [N, C], got ${t.dtype} [${t.shape}]`);
  const [N, C] = t.shape;
  if (shape.length !== 4 || shape[0] !== C || shape[1] * shape[2] * shape[3] !== N) throw new Error(`${op}: [${t.shape}] does not hold a video [${shape}]`);
  const y = e.empty(shape, 'f32', 'vae channels');
  tokens(e, 'to_channels', t, y, C, N, 0, op);
  return y;
}
