// Conv3d (Wan's CausalConv3d, the VAE's 2-D and 1x1x1 convs, the DiT patch embedding) as an implicit
// GEMM. Layout: x [C_in, T, H, W] f32 (batch 1), weight [C_out, C_in, kt, kh, kw] (f32 / f16 / bf16),
// output [C_out, T_out, H_out, W_out] f32.
//
// Causal mode reproduces wan/modules/vae2_1.py CausalConv3d: the temporal padding is 2*pt frames in
// front and none behind; a cache of c previous frames is concatenated in front of x and replaces c of
// those zero frames (a conv with pt = 0 ignores the cache).
//
// Large tensors: activations at 720p exceed one storage binding, and a channel-major layout makes a
// spatial window of all channels non-contiguous. So a dispatch covers a box of the problem:
// output channels [o0, o1) x output frames [f0, f1) (all rows) x input channels [c0, c1), each operand
// bound as the one contiguous element range that box touches. Later input-channel groups add onto
// the output (accumulate). Frame groups are only used when one channel's frames do not fit a binding.
import { Uniforms, type Engine } from '../engine.ts';
import type { Tensor } from '../tensor.ts';
import { wholeBinding } from '../windows.ts';
import { cachedPipeline, compileGenerated } from './pipelines.ts';
import { fixedSubgroupSize } from '../subgroups.ts';
import { cast } from './elementwise.ts';
import { bindElements, type RangeBinding } from './layout.ts';

export type Triple = [number, number, number];

export interface Conv3dOptions {
  /** [C_out] bias (f32; half types are widened). */
  bias?: Tensor;
  /** (st, sh, sw) or one number for all. Default 1. */
  stride?: Triple | number;
  /** Zero padding (pt, ph, pw) or one number. Default 0. */
  padding?: Triple | number;
  /** Wan CausalConv3d: 2*pt zero frames in front, none behind. */
  causal?: boolean;
  /** Causal only: [C_in, c, H, W] frames preceding x (c <= 2*pt); they replace c front zero frames. */
  cache?: Tensor;
  /** Output tensor to write ([C_out, T_out, H_out, W_out] f32); allocated when absent. */
  out?: Tensor;
  /** Kernel choice (tests, benchmarks): 'auto' picks the fastest the adapter supports. */
  variant?: Conv3dVariant;
}

export type Conv3dVariant = 'auto' | 'portable' | 'subgroup';

export interface Conv3dGeometry {
  cin: number;
  cout: number;
  t: number;
  h: number;
  w: number;
  /** Cache frames in front of x (0 without cache). */
  tc: number;
  k: Triple;
  stride: Triple;
  /** Zero frames in front (after the cache) and spatial padding. */
  padFront: number;
  padBack: number;
  padH: number;
  padW: number;
  to: number;
  ho: number;
  wo: number;
}

const triple = (v: Triple | number | undefined, dflt: number): Triple =>
  v === undefined ? [dflt, dflt, dflt] : typeof v === 'number' ? [v, v, v] : [v[0], v[1], v[2]];

/** Drops a leading batch dimension of 1 ([1, C, T, H, W] -> [C, T, H, W]). */
function unbatch(t: Tensor, what: string, op: string): Tensor {
  if (t.shape.length === 5) {
    if (t.shape[0] !== 1) throw new Error(`${op}: ${what} [${t.shape}] has batch ${t.shape[0]}; only batch 1 is supported`);
    return t.reshape(t.shape.slice(1));
  }
  if (t.shape.length !== 4) throw new Error(`${op}: ${what} must be [C, T, H, W] or [1, C, T, H, W], got [${t.shape}]`);
  return t.reshape(t.shape);
}

/** Output geometry of a conv (shared by the op, its reference and its tests). */
export function conv3dGeometry(
  xShape: readonly number[],
  wShape: readonly number[],
  opts: { stride?: Triple | number; padding?: Triple | number; causal?: boolean; cacheFrames?: number },
): Conv3dGeometry {
  const xs = xShape.length === 5 ? xShape.slice(1) : xShape;
  if (xs.length !== 4) throw new Error(`conv3d: x must be [C, T, H, W] or [1, C, T, H, W], got [${xShape}]`);
  const [cin, t, h, w] = xs;
  const [cout, wcin, kt, kh, kw] = wShape;
  if (wShape.length !== 5) throw new Error(`conv3d: weight must be [C_out, C_in, kt, kh, kw], got [${wShape}]`);
  if (wcin !== cin) throw new Error(`conv3d: weight [${wShape}] expects ${wcin} input channels, x has ${cin}`);
  const stride = triple(opts.stride, 1);
  const [pt, ph, pw] = triple(opts.padding, 0);
  if ([...stride, pt, ph, pw, kt, kh, kw].some((v) => !Number.isInteger(v) || v < 0) || stride.some((s) => s < 1) || kt * kh * kw < 1) {
    throw new Error(`conv3d: invalid kernel/stride/padding (${[kt, kh, kw]}, ${stride}, ${[pt, ph, pw]})`);
  }
  let tc = opts.cacheFrames ?? 0;
  if (tc > 0 && !opts.causal) throw new Error('conv3d: a frame cache needs causal mode');
  if (opts.causal && pt === 0) tc = 0; // CausalConv3d only uses the cache when it pads in time
  if (tc > 2 * pt && opts.causal) throw new Error(`conv3d: cache of ${tc} frames exceeds the causal padding 2*${pt}`);
  const padFront = opts.causal ? 2 * pt - tc : pt;
  const padBack = opts.causal ? 0 : pt;
  const tt = padFront + tc + t + padBack;
  const to = Math.floor((tt - kt) / stride[0]) + 1;
  const ho = Math.floor((h + 2 * ph - kh) / stride[1]) + 1;
  const wo = Math.floor((w + 2 * pw - kw) / stride[2]) + 1;
  if (!(to > 0 && ho > 0 && wo > 0)) throw new Error(`conv3d: empty output for x [${xShape}] and kernel [${kt}, ${kh}, ${kw}]`);
  return { cin, cout, t, h, w, tc, k: [kt, kh, kw], stride, padFront, padBack, padH: ph, padW: pw, to, ho, wo };
}

// ------------------------------------------------------------------ kernel variants

/** How the x values a workgroup shares reach its lanes (see shaders/conv3d.wgsl). */
type Share = 'broadcast' | 'uniform';

interface Kernel {
  share: Share;
  /** Lanes per workgroup (the subgroup size for 'broadcast'). */
  S: number;
  /** Input channels per K block. */
  KB: number;
}

/** Kernel variants this adapter runs ('portable' always). */
export function conv3dVariants(e: Engine): Conv3dVariant[] {
  return fixedSubgroupSize(e.gpu) !== null ? ['portable', 'subgroup'] : ['portable'];
}

function chooseKernel(e: Engine, variant: Conv3dVariant): Kernel {
  const S = fixedSubgroupSize(e.gpu);
  if (variant === 'subgroup' && S === null) throw new Error(`conv3d: variant "subgroup" needs a fixed subgroup size, which adapter "${e.gpu.summary.description}" lacks`);
  if (variant !== 'portable' && S !== null) return { share: 'broadcast', S, KB: S };
  // Portable: 32 lanes (one warp-sized workgroup on GPUs), x values loaded by every lane (uniform).
  return { share: 'uniform', S: 32, KB: 8 };
}

/**
 * Tile of one window: TN channels per lane (S*TN per workgroup) and TM positions per workgroup.
 * Portable kernel (GPUs): TM = 8 and the widest TN of 4, 2, 1 whose padding wastes little of the
 * window's output channels (few registers per invocation).
 * Broadcast kernel (CPU SIMD, lavapipe): every weight vec4 is a load that lavapipe runs lane by lane,
 * so tall and wide tiles pay: TM = 32 (when the window has at least 128 positions) and TN from
 * 12, 10, 8, ... (10 for the 2.2 VAE's 160 / 320 / 640 channels). Measured on the bench's quick
 * shapes: 8x4 -> 32x12 made [96, 5, 32, 32]->96 1.85x and [384, 3, 16, 16]->384 1.7x faster.
 */
function lanesTile(k: Kernel, nCount: number, mCount: number): { TN: number; TM: number } {
  const big = k.share === 'broadcast' && mCount >= 128;
  const widths = big ? [12, 10, 8, 4, 2, 1] : [4, 2, 1];
  const options = widths.map((TN) => ({ TN, eff: nCount / (Math.ceil(nCount / (k.S * TN)) * k.S * TN) }));
  const pick = options.find((o) => o.eff >= 0.85) ?? options.reduce((a, b) => (b.eff > a.eff ? b : a));
  return { TN: pick.TN, TM: big ? 32 : 8 };
}

/** Weight kk (a literal 0..7) of the current chunk for lane channel j, from v{j}a/v{j}b (f32) or v{j} (8 packed halves). */
function weightValue(half: 'f32' | 'f16' | 'bf16', j: number, kk: number): string {
  if (half === 'f32') return `v${j}${kk < 4 ? 'a' : 'b'}.${'xyzw'[kk & 3]}`;
  const word = `v${j}.${'xyzw'[kk >> 1]}`;
  if (half === 'bf16') return kk & 1 ? `bitcast<f32>(${word} & 0xffff0000u)` : `bitcast<f32>(${word} << 16u)`;
  return `unpack2x16float(${word}).${kk & 1 ? 'y' : 'x'}`;
}

/** The same for a runtime index `kk` (the portable kernel's rolled loop). */
function weightValueAt(half: 'f32' | 'f16' | 'bf16', j: number, kk: string): string {
  if (half === 'f32') return `select(v${j}b[${kk} & 3u], v${j}a[${kk} & 3u], ${kk} < 4u)`;
  const word = `v${j}[${kk} >> 1u]`;
  if (half === 'bf16') return `bitcast<f32>(select(${word} << 16u, ${word} & 0xffff0000u, (${kk} & 1u) == 1u))`;
  return `unpack2x16float(${word})[${kk} & 1u]`;
}

/** The unrolled code of one kernel shape (the {{...}} defines of shaders/conv3d.wgsl). */
function kernelDefines(k: Kernel, TM: number, TN: number, half: 'f32' | 'f16' | 'bf16'): Record<string, string | number> {
  const { S, KB, share } = k;
  const I = [...Array(TM).keys()];
  const J = [...Array(TN).keys()];
  const per = half === 'f32' ? 4 : 8; // weights per WVEC
  const setup: string[] = [];
  if (share === 'broadcast') setup.push(`  let init = bitcast<f32>(select(0u, 0x7fc00000u, sgs != ${S}u)); // NaN unless one subgroup of ${S}`);
  else setup.push('  let init = 0.0;');
  for (const i of I) {
    setup.push(`  let m${i} = P.m_start + min(mb + ${i}u, P.m_count - 1u); let r${i} = m${i} % P.howo;`);
    setup.push(`  let ot${i} = i32(m${i} / P.howo) * P.st - P.pf; let oh${i} = i32(r${i} / P.wo) * P.sh - P.ph; let ow${i} = i32(r${i} % P.wo) * P.sw - P.pw;`);
  }
  for (const j of J) setup.push(`  let n${j} = nb + ${j * S}u + lane; let wr${j} = i32(min(n${j}, P.n_count - 1u) * P.w_row) + P.w_off;`);
  for (const i of I) setup.push('  ' + J.map((j) => `var c${i}_${j} = init;`).join(' '));

  const tap: string[] = [];
  const ind = '        ';
  for (const i of I) {
    tap.push(`${ind}let tv${i} = ot${i} + dt; let hi${i} = oh${i} + dh; let wi${i} = ow${i} + dw;`);
    tap.push(`${ind}let in${i} = tv${i} >= 0 && tv${i} < tv_end && hi${i} >= 0 && hi${i} < P.h && wi${i} >= 0 && wi${i} < P.w;`);
    tap.push(`${ind}let xo${i} = select(-1, (tv${i} - P.t_c) * hw + hi${i} * P.w + wi${i} + P.x_off, in${i} && tv${i} >= P.t_c);`);
    tap.push(`${ind}let co${i} = select(-1, tv${i} * hw + hi${i} * P.w + wi${i} + P.c_off, in${i} && tv${i} < P.t_c);`);
  }

  const body: string[] = [];
  const b = '          ';
  if (share === 'broadcast') {
    body.push(`${b}let ci = cb + lane; let cok = ci < P.c_count; let xl = i32(ci) * P.x_chan; let cl = i32(ci) * P.c_chan;`);
    for (const i of I) body.push(`${b}let a${i} = load_x(xo${i}, co${i}, xl, cl, cok);`);
  }
  for (let c = 0; c < KB / 8; c++) {
    body.push(`${b}{`);
    const p = b + '  ';
    for (const j of J) {
      if (half === 'f32') body.push(`${p}let v${j}a = W[wr${j} + wb + ${2 * c}]; let v${j}b = W[wr${j} + wb + ${2 * c + 1}];`);
      else body.push(`${p}let v${j} = W[wr${j} + wb + ${c}];`);
    }
    if (share === 'broadcast') {
      // Unrolled (subgroupBroadcast needs a constant lane): the chunk's weights and shared x values,
      // then one chain of 8 multiply-adds per accumulator (measured ~10% faster on lavapipe than
      // interleaving them).
      for (let kk = 0; kk < 8; kk++) for (const j of J) body.push(`${p}let w${j}_${kk} = ${weightValue(half, j, kk)};`);
      for (const i of I) for (let kk = 0; kk < 8; kk++) body.push(`${p}let s${i}_${kk} = subgroupBroadcast(a${i}, ${c * 8 + kk}u);`);
      for (const i of I) {
        for (const j of J) {
          let acc = `c${i}_${j}`;
          for (let kk = 0; kk < 8; kk++) acc = `fma(s${i}_${kk}, w${j}_${kk}, ${acc})`;
          body.push(`${p}c${i}_${j} = ${acc};`);
        }
      }
    } else {
      // A loop over the chunk's channels keeps the portable kernel small (fast to compile).
      body.push(`${p}for (var kk = 0u; kk < 8u; kk++) {`);
      body.push(`${p}  let ci = cb + ${c * 8}u + kk; let cok = ci < P.c_count; let xl = i32(ci) * P.x_chan; let cl = i32(ci) * P.c_chan;`);
      for (const j of J) body.push(`${p}  let w${j} = ${weightValueAt(half, j, 'kk')};`);
      for (const i of I) {
        body.push(`${p}  { let s = load_x(xo${i}, co${i}, xl, cl, cok);`);
        for (const j of J) body.push(`${p}    c${i}_${j} = fma(s, w${j}, c${i}_${j});`);
        body.push(`${p}  }`);
      }
      body.push(`${p}}`);
    }
    body.push(`${b}}`);
  }

  // Epilogue as a rolled loop: one copy of the store code instead of TM*TN (compile time).
  const store: string[] = [`  var acc: array<f32, ${TM * TN}>;`];
  for (const i of I) store.push('  ' + J.map((j) => `acc[${i * TN + j}] = c${i}_${j};`).join(' '));
  store.push(`  let tile_m = min(${TM}u, P.m_count - mb);`);
  store.push(`  for (var j = 0u; j < ${TN}u; j++) {`);
  store.push(`    let n = nb + j * ${S}u + lane;`);
  store.push('    if (n >= P.n_count) { continue; }');
  store.push('    for (var i = 0u; i < tile_m; i++) {');
  store.push(`      store_y(n, P.m_start + mb + i, acc[i * ${TN}u + j]);`);
  store.push('    }');
  store.push('  }');
  return {
    ENABLE: share === 'broadcast' ? 'enable subgroups;' : '',
    LANE_BUILTINS:
      share === 'broadcast'
        ? '@builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) sgs: u32'
        : '@builtin(local_invocation_index) lane: u32',
    S,
    TM,
    NTILE: S * TN,
    KB,
    KB_UNITS: KB / per,
    WVEC: half === 'f32' ? 'vec4<f32>' : 'vec4<u32>',
    SETUP: setup.join('\n'),
    TAP: tap.join('\n'),
    BODY: body.join('\n'),
    STORE: store.join('\n'),
  };
}

/** The conv kernel for one tile shape, compiled once per engine. */
function convPipeline(e: Engine, k: Kernel, TM: number, TN: number, wfmt: 'f32' | 'f16' | 'bf16'): GPUComputePipeline {
  const label = `conv3d ${k.share} S=${k.S} ${TM}x${TN} w=${wfmt}`;
  return cachedPipeline(e, label, () => compileGenerated(e, 'conv3d', kernelDefines(k, TM, TN, wfmt), label));
}

// ------------------------------------------------------------------ weights

/** Largest end in (start, limit] for which `fits(start, end)` holds (fits is monotone), or start if none. */
function largestFit(start: number, limit: number, fits: (a: number, b: number) => boolean): number {
  if (fits(start, limit)) return limit;
  let lo = start;
  let hi = limit;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (fits(start, mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * Weight [C_out, C_in, kt, kh, kw] -> W' [G * C_out, KK * cgPad] in the weight's own storage type:
 * for input-channel group g = [c0, c1) the rows g*C_out + n hold [tap][channel c0.., zero padded].
 */
function prepareWeight(e: Engine, weight: Tensor, groups: [number, number][], cgPad: number): Tensor {
  const op = 'conv3d weights';
  const [cout, cin, kt, kh, kw] = weight.shape;
  const kk = kt * kh * kw;
  const fmt = weight.dtype;
  if (fmt !== 'f32' && fmt !== 'f16' && fmt !== 'bf16') throw new Error(`${op}: weight dtype ${fmt} is not a float type`);
  const half = fmt !== 'f32';
  const rowElems = kk * cgPad;
  const wp = e.empty([groups.length * cout, rowElems], fmt, 'conv3d weight (prepared)');
  const pipeline = e.pipeline('conv3d_weights', { HALF: String(half) });
  const per = half ? 2 : 1;
  groups.forEach(([c0, c1], g) => {
    const dstRange = (a: number, b: number) => bindElements(e.gpu, wp, (g * cout + a) * rowElems, (g * cout + b) * rowElems);
    const srcRange = (a: number, b: number) => bindElements(e.gpu, weight, (a * cin + c0) * kk, ((b - 1) * cin + c1) * kk);
    for (let n0 = 0; n0 < cout; ) {
      const n1 = largestFit(n0, cout, (a, b) => dstRange(a, b) !== null && srcRange(a, b) !== null);
      if (n1 === n0) throw new Error(`${op}: weight [${weight.shape}] ${fmt}: one output channel does not fit a storage binding`);
      const dst = dstRange(n0, n1)!;
      const src = srcRange(n0, n1)!;
      const words = ((n1 - n0) * rowElems) / per;
      e.dispatch({
        op,
        pipeline,
        params: new Uniforms()
          .u32(n0)
          .u32(n1 - n0)
          .u32(cin)
          .u32(kk)
          .u32(cgPad)
          .u32(c0)
          .u32(c1 - c0)
          .i32(-src.base)
          .u32(((g * cout + n0) * rowElems - dst.base) / per),
        buffers: [src.binding, dst.binding],
        workgroups: Math.ceil(words / 256),
      });
      n0 = n1;
    }
  });
  return wp;
}

// ------------------------------------------------------------------ the op

/** 3-D convolution; see the module comment for layout and causal/cache semantics. */
export function conv3d(e: Engine, x: Tensor, weight: Tensor, opts: Conv3dOptions = {}): Tensor {
  const op = 'conv3d';
  return e.scope(() => {
    const x4 = unbatch(x, 'x', op);
    const cache4 = opts.cache ? unbatch(opts.cache, 'cache', op) : undefined;
    const g = conv3dGeometry(x4.shape, weight.shape, { ...opts, cacheFrames: cache4?.shape[1] ?? 0 });
    if (x4.dtype !== 'f32') throw new Error(`${op}: x must be f32, got ${x4.dtype}`);
    if (cache4) {
      const [cc, , ch, cw] = cache4.shape;
      if (cc !== g.cin || ch !== g.h || cw !== g.w || cache4.dtype !== 'f32') {
        throw new Error(`${op}: cache [${cache4.shape}] ${cache4.dtype} does not match x [${x4.shape}] (need f32 [C_in, c, H, W])`);
      }
    }
    const useCache = cache4 !== undefined && g.tc > 0;
    const { cin, cout, t, h, w, tc, to, ho, wo } = g;
    const [kt, kh, kw] = g.k;
    const kk = kt * kh * kw;
    const outShape = [cout, to, ho, wo];
    if (opts.out && (opts.out.dtype !== 'f32' || opts.out.numel !== cout * to * ho * wo)) {
      throw new Error(`${op}: out [${opts.out.shape}] ${opts.out.dtype} does not hold f32 [${outShape}]`);
    }
    if (opts.out && (opts.out.storage === x.storage || opts.out.storage === opts.cache?.storage)) {
      throw new Error(`${op}: out must not alias x or the cache`);
    }
    const y = opts.out ?? e.empty(outShape, 'f32', 'conv3d out');
    let bias: Tensor | undefined = opts.bias;
    if (bias) {
      if (bias.numel !== cout) throw new Error(`${op}: bias [${bias.shape}] does not have ${cout} elements`);
      if (bias.dtype !== 'f32') bias = cast(e, bias, 'f32');
    }
    const wfmt = weight.dtype as 'f32' | 'f16' | 'bf16';
    const kernel = chooseKernel(e, opts.variant ?? 'auto');
    const per = wfmt === 'f32' ? 4 : 8;
    const wBytes = wfmt === 'f32' ? 4 : 2;

    const gpu = e.gpu;
    const hw = h * w;
    const howo = ho * wo;
    const yChan = to * howo;
    const xChan = t * hw;
    const cChan = tc * hw;
    const [st] = g.stride;
    // x frames (indices into x) that output frames [f0, f1) read.
    const xFrames = (f0: number, f1: number): [number, number] => {
      const v0 = f0 * st - g.padFront;
      const v1 = (f1 - 1) * st - g.padFront + kt; // exclusive, virtual frames (cache first)
      const a = Math.min(Math.max(v0 - tc, 0), t);
      const b = Math.min(Math.max(v1 - tc, 0), t);
      return b > a ? [a, b] : [0, 1]; // a window that reads only cache / padding still binds something
    };
    const yRange = (o0: number, o1: number, f0: number, f1: number) => bindElements(gpu, y, o0 * yChan + f0 * howo, (o1 - 1) * yChan + f1 * howo);
    const xRange = (c0: number, c1: number, fr: [number, number]) => bindElements(gpu, x4, c0 * xChan + fr[0] * hw, (c1 - 1) * xChan + fr[1] * hw);
    const cRange = (c0: number, c1: number) => bindElements(gpu, cache4!, c0 * cChan, c1 * cChan);
    const wRowFits = (cg: number) => kk * Math.ceil(cg / kernel.KB) * kernel.KB * wBytes <= gpu.maxBindingBytes;
    const inFits = (c0: number, c1: number, fr: [number, number]) =>
      xRange(c0, c1, fr) !== null && (!useCache || cRange(c0, c1) !== null) && wRowFits(c1 - c0);

    // 1. Output frame groups: all frames, unless one channel's frames do not fit a binding.
    const frameGroupFits = (f0: number, f1: number) => {
      for (let o = 0; o < cout; o++) if (!yRange(o, o + 1, f0, f1)) return false;
      for (let c = 0; c < cin; c++) if (!inFits(c, c + 1, xFrames(f0, f1))) return false;
      return true;
    };
    const frameGroups: [number, number][] = [];
    for (let f0 = 0; f0 < to; ) {
      const f1 = largestFit(f0, to, frameGroupFits);
      if (f1 === f0) {
        throw new Error(
          `${op}: one output frame of one channel (x [${x4.shape}], weight [${weight.shape}]) does not fit a storage binding of ` +
            `${gpu.maxBindingBytes} bytes; windows inside a frame are not implemented`,
        );
      }
      frameGroups.push([f0, f1]);
      f0 = f1;
    }
    // 2. Input channel groups, valid for every frame group.
    const groupFits = (c0: number, c1: number) => frameGroups.every(([f0, f1]) => inFits(c0, c1, xFrames(f0, f1)));
    const cGroups: [number, number][] = [];
    for (let c0 = 0; c0 < cin; ) {
      const c1 = largestFit(c0, cin, groupFits);
      if (c1 === c0) throw new Error(`${op}: input channel ${c0} does not fit a storage binding`);
      cGroups.push([c0, c1]);
      c0 = c1;
    }
    const cgPad = Math.ceil(Math.max(...cGroups.map(([a, b]) => b - a)) / kernel.KB) * kernel.KB;
    const wp = prepareWeight(e, weight, cGroups, cgPad);
    const rowElems = kk * cgPad;
    const wRange = (gi: number, o0: number, o1: number) => bindElements(gpu, wp, (gi * cout + o0) * rowElems, (gi * cout + o1) * rowElems);
    const biasBinding = bias ? wholeBinding(gpu, bias, op) : undefined;

    // 3. Per frame group: output channel groups (y and every W' group fit), then one dispatch per input group.
    for (const [f0, f1] of frameGroups) {
      const fr = xFrames(f0, f1);
      const mCount = (f1 - f0) * howo;
      for (let o0 = 0; o0 < cout; ) {
        const o1 = largestFit(o0, cout, (a, b) => yRange(a, b, f0, f1) !== null && cGroups.every((_, gi) => wRange(gi, a, b) !== null));
        if (o1 === o0) throw new Error(`${op}: output channel ${o0} does not fit a storage binding`);
        const yb = yRange(o0, o1, f0, f1)!;
        const nCount = o1 - o0;
        const { TN, TM } = lanesTile(kernel, nCount, mCount);
        const pipeline = convPipeline(e, kernel, TM, TN, wfmt);
        const nTiles = Math.ceil(nCount / (kernel.S * TN));
        cGroups.forEach(([c0, c1], gi) => {
          const xb = xRange(c0, c1, fr)!;
          const cb: RangeBinding = useCache ? cRange(c0, c1)! : xb;
          const wb = wRange(gi, o0, o1)!;
          const params = new Uniforms()
            .u32(f0 * howo)
            .u32(mCount)
            .u32(nCount)
            .u32(c1 - c0)
            .u32(nTiles)
            .i32(o0 * yChan - yb.base)
            .i32(c0 * xChan - xb.base)
            .i32(c0 * cChan - cb.base)
            .i32(((gi * cout + o0) * rowElems - wb.base) / per)
            .i32(o0)
            .u32(c0 > 0 ? 1 : 0)
            .u32(bias ? 1 : 0)
            .u32(yChan)
            .i32(xChan)
            .i32(cChan)
            .u32(howo)
            .u32(wo)
            .i32(h)
            .i32(w)
            .i32(t)
            .i32(tc)
            .i32(g.stride[0])
            .i32(g.stride[1])
            .i32(g.stride[2])
            .i32(g.padFront)
            .i32(g.padH)
            .i32(g.padW)
            .i32(kt)
            .i32(kh)
            .i32(kw)
            .u32(rowElems / per)
            .i32(cgPad / per);
          e.dispatch({
            op,
            pipeline,
            params,
            buffers: [xb.binding, cb.binding, wb.binding, biasBinding ?? wb.binding, yb.binding],
            workgroups: nTiles * Math.ceil(mCount / TM),
          });
        });
        o0 = o1;
      }
    }
    return y;
  });
}
