// Linear layers and batched matrix products.
//   linear(e, x, w, opts): Y = X·Wᵀ (+ bias, activation, gated residual), X [..., K] f32 or f16,
//     W [N, K] in bf16 / f16 / f32 storage, f32 accumulation. Large operands are windowed: X, Y and
//     the residual over M rows, W over N rows (each W window writes its column range of Y).
//   matmul(e, a, b, {transB}): batched f32 [B, M, K] x [B, K, N] (or b as [B, N, K]).
// Kernel variants (portable tiled, subgroup register tiles) are chosen per adapter and shape class by
// the autotuner (engine/tuning.ts); `tuneLinear` times them, `linear` uses the cached choice.
import { Uniforms, type Engine } from '../engine.ts';
import type { DType } from '../dtype.ts';
import type { Tensor } from '../tensor.ts';
import { planWindows, wholeBinding, type Binding } from '../windows.ts';
import { cachedVariant, forcedVariant, tuneVariant } from '../tuning.ts';
import { cachedPipeline, compileGenerated } from './pipelines.ts';
import { fixedSubgroupSize } from '../subgroups.ts';

export type LinearActivation = 'gelu_tanh' | 'silu';

export interface LinearOptions {
  /** [N] f32, added before the activation. */
  bias?: Tensor;
  activation?: LinearActivation;
  /**
   * out = x + y * gate with y = act(X·Wᵀ + bias). x has the output's shape and dtype (it may be `out`
   * itself: in place). gate is f32 [N] or [G, N] (any shape with G*N elements, e.g. [B, 1, N]):
   * output row m uses gate row floor(m / (M / G)).
   */
  residual?: { x: Tensor; gate?: Tensor };
  /** Preallocated output [..., N] (every element is overwritten). */
  out?: Tensor;
  /** Output dtype; defaults to X's. 'f16' needs the adapter's shader-f16. */
  outDtype?: 'f32' | 'f16';
  /** Force a kernel variant by name (see linearVariants); otherwise the tuned / default choice. */
  variant?: string;
}

// ------------------------------------------------------------------ variants

interface TiledVariant {
  kind: 'tiled';
  name: string;
  BM: number;
  BN: number;
  BK: number;
  RM: number;
  RN: number;
}

interface SgVariant {
  kind: 'sg';
  name: string;
  /** Output rows per workgroup and columns per lane. */
  TM: number;
  TN: number;
  /** X read as vec4 once per 32 k and rotated between lanes (8 lanes, f32 X; see sgKernelDefines). */
  xRot: boolean;
}

type LinearVariant = TiledVariant | SgVariant;

const tiled = (BM: number, BN: number, BK: number, RM: number, RN: number): TiledVariant => ({ kind: 'tiled', name: `tiled${BM}x${BN}`, BM, BN, BK, RM, RN });
const sg = (TM: number, TN: number, xRot = false): SgVariant => ({ kind: 'sg', name: `sg${TM}x${TN}${xRot ? 'r' : ''}`, TM, TN, xRot });

const TILED_FALLBACK = tiled(32, 32, 16, 4, 4);

/** Every linear kernel variant, portable ones first. */
const VARIANTS: LinearVariant[] = [tiled(64, 64, 16, 4, 4), TILED_FALLBACK, sg(16, 8), sg(8, 8), sg(4, 8), sg(1, 16), sg(32, 24, true)];

const FAMILY = 'linear';

function variantAvailable(e: Engine, v: LinearVariant): boolean {
  return v.kind === 'tiled' || fixedSubgroupSize(e.gpu) !== null;
}

/** Names of the linear variants this adapter can run (the ones tests force one by one). */
export function linearVariants(e: Engine): string[] {
  return VARIANTS.filter((v) => variantAvailable(e, v)).map((v) => v.name);
}

function variantByName(e: Engine, name: string): LinearVariant {
  const v = VARIANTS.find((c) => c.name === name);
  if (!v) throw new Error(`linear: unknown kernel variant "${name}" (known: ${VARIANTS.map((c) => c.name).join(', ')})`);
  if (!variantAvailable(e, v)) {
    throw new Error(`linear: variant "${name}" needs subgroups of a fixed size, which adapter "${e.gpu.summary.description}" does not provide`);
  }
  return v;
}

// ------------------------------------------------------------------ shape classes and tuning

type MClass = 'gemv' | 'small' | 'large';

function mClass(M: number): MClass {
  return M <= 8 ? 'gemv' : M <= 128 ? 'small' : 'large';
}

function shapeClass(M: number, xDtype: DType, wDtype: DType): string {
  return `${mClass(M)}.x${xDtype}.w${wDtype}`;
}

/** Candidates timed per class (names from VARIANTS; unavailable ones are skipped). */
const CANDIDATES: Record<MClass, string[]> = {
  gemv: ['tiled32x32', 'sg1x16', 'sg4x8', 'sg8x8'],
  small: ['tiled32x32', 'tiled64x64', 'sg4x8', 'sg8x8', 'sg16x8'],
  large: ['tiled64x64', 'sg16x8', 'sg32x24r'],
};

/** Untuned choice: what measurements on a CPU adapter (lavapipe) favoured, else the portable kernel. */
function defaultVariant(e: Engine, cls: MClass): string {
  const S = fixedSubgroupSize(e.gpu);
  if (S !== null) return cls === 'gemv' ? 'sg1x16' : cls === 'small' ? 'sg8x8' : S === 8 ? 'sg32x24r' : 'sg16x8';
  return cls === 'large' ? 'tiled64x64' : 'tiled32x32';
}

/** Representative problem timed for a class: [M, N, K]. */
const PROBLEM: Record<MClass, [number, number, number]> = {
  gemv: [1, 4096, 2048],
  small: [64, 2048, 1536],
  large: [512, 1536, 1536],
};

function chooseVariant(e: Engine, M: number, xDtype: DType, wDtype: DType): LinearVariant {
  const forced = forcedVariant();
  if (forced && VARIANTS.some((v) => v.name === forced)) return variantByName(e, forced);
  const cls = mClass(M);
  const cached = cachedVariant(e.gpu.summary.description, FAMILY, shapeClass(M, xDtype, wDtype));
  const name = cached && VARIANTS.some((v) => v.name === cached && variantAvailable(e, v)) ? cached : defaultVariant(e, cls);
  return variantByName(e, name);
}

/** Name of the variant linear() uses for M rows with these dtypes (forced, tuned or default). */
export function linearVariantFor(e: Engine, M: number, xDtype: DType = 'f32', wDtype: DType = 'bf16'): string {
  return chooseVariant(e, M, xDtype, wDtype).name;
}

export interface LinearProblem {
  M: number;
  xDtype?: 'f32' | 'f16';
  wDtype?: 'bf16' | 'f16' | 'f32';
}

/**
 * Makes sure the shape classes of these problems are tuned on this adapter: times the candidate
 * variants on a representative problem (checking each against the portable kernel) and caches the
 * fastest on disk (engine/tuning.ts). Cheap when already cached. Returns class -> the variant
 * linear() uses from now on. linear() itself never times anything (it records work synchronously):
 * call this once per process before the hot loop, e.g. when a model is loaded.
 */
export async function tuneLinear(e: Engine, problems: LinearProblem[], log?: (line: string) => void): Promise<Record<string, string>> {
  const chosen: Record<string, string> = {};
  for (const p of problems) {
    const xDtype = p.xDtype ?? 'f32';
    const wDtype = p.wDtype ?? 'bf16';
    const cls = mClass(p.M);
    const key = shapeClass(p.M, xDtype, wDtype);
    if (key in chosen) continue;
    const candidates = CANDIDATES[cls].filter((n) => variantAvailable(e, variantByName(e, n)));
    await tuneVariant(e.gpu.summary.description, FAMILY, key, candidates, (runs) => timeCandidates(e, PROBLEM[cls], xDtype, wDtype, candidates, runs), log);
    // What linear() will use from now on (a WAN_TUNE override included).
    chosen[key] = chooseVariant(e, p.M, xDtype, wDtype).name;
  }
  return chosen;
}

/** Seconds per run (median) of each candidate on one problem; wrong results are reported as Infinity. */
async function timeCandidates(e: Engine, [M, N, K]: [number, number, number], xDtype: DType, wDtype: DType, candidates: string[], runs: number): Promise<Record<string, number>> {
  const rand = (n: number, seed: number) => {
    const a = new Float32Array(n);
    let s = seed;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      a[i] = s / 2 ** 32 - 0.5;
    }
    return a;
  };
  return e.scope(async () => {
    const x = e.upload(rand(M * K, 1), [M, K], xDtype, 'tune x');
    const w = e.upload(rand(N * K, 2), [N, K], wDtype, 'tune w');
    const ref = await linear(e, x, w, { variant: 'tiled32x32' }).toArray();
    const times: Record<string, number> = {};
    for (const name of candidates) {
      const y = e.empty([M, N], xDtype, 'tune y');
      linear(e, x, w, { variant: name, out: y }); // compiles and warms up
      const got = await y.toArray();
      let d = 0;
      let r = 0;
      for (let i = 0; i < ref.length; i++) {
        d += (got[i] - ref[i]) ** 2;
        r += ref[i] ** 2;
      }
      if (!(Math.sqrt(d / r) < 1e-3)) {
        times[name] = Infinity;
        continue;
      }
      const t: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        linear(e, x, w, { variant: name, out: y });
        await e.sync();
        t.push((performance.now() - t0) / 1000);
      }
      t.sort((a, b) => a - b);
      times[name] = t[Math.floor(t.length / 2)];
      y.dispose();
    }
    return times;
  });
}

// ------------------------------------------------------------------ kernel sources

type WFmt = 'bf16' | 'f16' | 'f32';

/**
 * Unrolled code of the subgroup kernel (shaders/matmul_sg.wgsl) for S lanes, rows of W read as
 * vec4<u32> (K % 8 == 0): SETUP (row offsets, accumulators c{i}_{j}), BODY (one block of S k values:
 * each lane's X values of each row, then per chunk of 8 k: W loads, broadcasts, and each
 * accumulator's 8 multiply-adds in a row, so a spilled accumulator is loaded and stored once per
 * chunk) and STORE (the epilogue as one rolled loop).
 * X is read one value per lane and row per block, or with `xRot` (S == 8) one vec4 per lane and
 * row per 32 k: lane l holds k0 + 4l .. 4l + 3, the block uses lanes 0 and 1, and then every lane takes
 * its neighbour's vec4 (subgroupShuffleDown by 2) for the next block. lavapipe turns each load whose
 * address varies per lane into a loop over the lanes with a bounds check per component, so this
 * quarters the X load loops; it pays off with tall tiles (TM >= 32), where X is most of the loads.
 * f16 X is read as vec4<f16> and widened to f32 at the load (the lanes exchange f32 values).
 */
export function sgKernelDefines(S: number, v: SgVariant, wfmt: WFmt, xt: DType): Record<string, string | number> {
  const { TM, TN } = v;
  if (S % 8 !== 0) throw new Error(`sg kernel: ${S} lanes is not a multiple of 8`);
  // Rotated X needs 8 lanes (f32 or f16 X); otherwise the variant reads X one value per lane.
  const xRot = v.xRot && S === 8 && (xt === 'f32' || xt === 'f16');
  // With S == 8 and K % 8 == 0 every block lies inside K; with 16 lanes the last may overhang it.
  const overhang = S > 8;
  const I = [...Array(TM).keys()];
  const J = [...Array(TN).keys()];
  const comp = (q: number) => 'xyzw'[q];
  const setup: string[] = [];
  for (const i of I) setup.push(`  let xr${i} = min(mb + ${i}u, P.rows - 1u) * K;`);
  // Rotated X: vec4 index of the row start and of its last vec4 (lanes past K re-read it, unused).
  if (xRot) for (const i of I) setup.push(`  let xq${i} = xr${i} >> 2u; let xe${i} = xq${i} + (K >> 2u) - 1u; var a${i} = vec4<f32>();`);
  for (const j of J) setup.push(`  let wr${j} = min(nb + ${j * S}u + lane, P.cols - 1u) * K;`);
  for (const i of I) setup.push('  ' + J.map((j) => `var c${i}_${j} = init;`).join(' '));

  const ind = '    ';
  const body: string[] = [];
  if (xRot) {
    body.push(`${ind}if ((k0 & 31u) == 0u) {`);
    const widen = xt === 'f16' ? (s: string) => `vec4<f32>(${s})` : (s: string) => s;
    for (const i of I) body.push(`${ind}  a${i} = ${widen(`X[min(xq${i} + (k0 >> 2u) + lane, xe${i})]`)};`);
    body.push(`${ind}}`);
  } else {
    body.push(`${ind}let kl = ${overhang ? 'min(k0 + lane, K - 1u)' : 'k0 + lane'};`);
    for (const i of I) body.push(`${ind}let a${i} = f32(X[xr${i} + kl]);`);
  }
  for (let off = 0; off < S; off += 8) {
    // Each chunk is its own scope (names repeat); a chunk past K is skipped (uniform branch).
    body.push(off > 0 ? `${ind}if (k0 + ${off}u < K) {` : `${ind}{`);
    const p = ind + '  ';
    for (const j of J) {
      const w: string[] = [];
      if (wfmt === 'f32') {
        body.push(`${p}let v${j}a = W[(wr${j} + k0 + ${off}u) >> 2u];`);
        body.push(`${p}let v${j}b = W[((wr${j} + k0 + ${off}u) >> 2u) + 1u];`);
        for (let kk = 0; kk < 8; kk++) w.push(`bitcast<f32>(v${j}${kk < 4 ? 'a' : 'b'}.${comp(kk & 3)})`);
      } else {
        body.push(`${p}let v${j} = W[(wr${j} + k0 + ${off}u) >> 3u];`);
        for (let q = 0; q < 4; q++) {
          if (wfmt === 'bf16') {
            w.push(`bitcast<f32>(v${j}.${comp(q)} << 16u)`, `bitcast<f32>(v${j}.${comp(q)} & 0xffff0000u)`);
          } else {
            body.push(`${p}let h${j}_${q} = unpack2x16float(v${j}.${comp(q)});`);
            w.push(`h${j}_${q}.x`, `h${j}_${q}.y`);
          }
        }
      }
      for (let kk = 0; kk < 8; kk++) body.push(`${p}let w${j}_${kk} = ${w[kk]};`);
    }
    // X value of row i at k0 + off + kk, shared from the lane that holds it.
    const xAt = (i: number, k: number) => (xRot ? `subgroupBroadcast(a${i}.${comp(k & 3)}, ${k >> 2}u)` : `subgroupBroadcast(a${i}, ${k}u)`);
    for (const i of I) for (let kk = 0; kk < 8; kk++) body.push(`${p}let s${i}_${kk} = ${xAt(i, off + kk)};`);
    for (const i of I) {
      for (const j of J) {
        let acc = `c${i}_${j}`;
        for (let kk = 0; kk < 8; kk++) acc = `fma(s${i}_${kk}, w${j}_${kk}, ${acc})`;
        body.push(`${p}c${i}_${j} = ${acc};`);
      }
    }
    body.push(`${ind}}`);
  }
  if (xRot) for (const i of I) body.push(`${ind}a${i} = subgroupShuffleDown(a${i}, 2u);`);

  // Epilogue: one rolled loop over the tile. Its bound is not a compile-time constant, so the
  // compiler keeps one copy of the epilogue code instead of TM*TN inlined ones (compile time).
  const store: string[] = [`  var acc: array<f32, ${TM * TN}>;`];
  for (const i of I) store.push('  ' + J.map((j) => `acc[${i * TN + j}] = c${i}_${j};`).join(' '));
  store.push(`  let tile_rows = min(${TM}u, P.rows - mb);`);
  store.push(`  let tile_cols = select(${TN}u, 0u, K == 0u);`);
  store.push('  for (var i = 0u; i < tile_rows; i++) {');
  store.push('    for (var j = 0u; j < tile_cols; j++) {');
  store.push(`      let n = nb + j * ${S}u + lane;`);
  store.push(`      if (n < P.cols) { mm_store(mb + i, n, acc[i * ${TN}u + j]); }`);
  store.push('    }');
  store.push('  }');
  return { S, TM, NTILE: S * TN, XT: xt, XARR: xRot ? `vec4<${xt}>` : xt, SETUP: setup.join('\n'), BODY: body.join('\n'), STORE: store.join('\n') };
}

/** Subgroup kernels read W rows as vec4<u32>: K must be a multiple of 8 (other K use the tiled kernel). */
function sgSupportsK(K: number): boolean {
  return K % 8 === 0;
}

/** The kernel actually run: a subgroup variant hands unaligned K (never in Wan) to the portable one. */
function effectiveVariant(v: LinearVariant, K: number): LinearVariant {
  return v.kind === 'sg' && !sgSupportsK(K) ? TILED_FALLBACK : v;
}

function linearPipeline(e: Engine, v: LinearVariant, xt: DType, yt: DType, wfmt: WFmt): GPUComputePipeline {
  if (v.kind === 'tiled') {
    return cachedPipeline(e, `${v.name}|${xt}|${yt}|${wfmt}`, () =>
      e.pipeline('matmul_tiled', { XT: xt, YT: yt, WFMT: wfmt, BM: v.BM, BN: v.BN, BK: v.BK, RM: v.RM, RN: v.RN }),
    );
  }
  return cachedPipeline(e, `${v.name}|${xt}|${yt}|${wfmt}`, () => {
    const S = fixedSubgroupSize(e.gpu)!;
    return compileGenerated(e, 'matmul_sg', { ...sgKernelDefines(S, v, wfmt, xt), YT: yt }, `matmul_sg ${v.name} S=${S} x=${xt} y=${yt} w=${wfmt}`);
  });
}

function tileShape(e: Engine, v: LinearVariant): { rows: number; cols: number } {
  return v.kind === 'tiled' ? { rows: v.BM, cols: v.BN } : { rows: v.TM, cols: fixedSubgroupSize(e.gpu)! * v.TN };
}

// ------------------------------------------------------------------ linear

const ACT_CODE: Record<LinearActivation, number> = { gelu_tanh: 1, silu: 2 };

function fail(msg: string): never {
  throw new Error(`linear: ${msg}`);
}

function describeTensor(t: Tensor): string {
  return `"${t.label}" [${t.shape}] ${t.dtype}`;
}

/** Y = act(X·Wᵀ + bias), or residual + that * gate. See LinearOptions. */
export function linear(e: Engine, x: Tensor, w: Tensor, opts: LinearOptions = {}): Tensor {
  x.assertAlive('linear');
  w.assertAlive('linear');
  if (w.shape.length !== 2) fail(`weight ${describeTensor(w)} must be [N, K]`);
  const [N, K] = w.shape;
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== K) fail(`input ${describeTensor(x)} does not end in K = ${K} of weight ${describeTensor(w)}`);
  if (N === 0 || K === 0) fail(`empty weight ${describeTensor(w)}`);
  const M = x.numel / K;
  if (x.dtype !== 'f32' && x.dtype !== 'f16') fail(`input ${describeTensor(x)} must be f32 or f16`);
  if (w.dtype !== 'bf16' && w.dtype !== 'f16' && w.dtype !== 'f32') fail(`weight ${describeTensor(w)} must be bf16, f16 or f32`);
  const yDtype = opts.outDtype ?? (x.dtype as 'f32' | 'f16');
  if ((x.dtype === 'f16' || yDtype === 'f16') && !e.gpu.hasF16) fail(`f16 activations need the shader-f16 feature, which this adapter lacks`);

  const { bias, residual } = opts;
  if (bias && (bias.dtype !== 'f32' || bias.numel !== N)) fail(`bias ${describeTensor(bias)} must be f32 with ${N} elements`);
  let rowsPerGate = Math.max(1, M);
  if (residual) {
    if (residual.x.dtype !== yDtype || residual.x.numel !== M * N) fail(`residual ${describeTensor(residual.x)} must be ${yDtype} with ${M}x${N} elements`);
    const g = residual.gate;
    if (g) {
      if (g.dtype !== 'f32' || g.numel % N !== 0 || g.numel === 0) fail(`gate ${describeTensor(g)} must be f32 with G*${N} elements`);
      const G = g.numel / N;
      if (M % G !== 0) fail(`gate ${describeTensor(g)} has ${G} rows, which do not divide the ${M} output rows`);
      rowsPerGate = Math.max(1, M / G);
    }
  }
  const outShape = [...x.shape.slice(0, -1), N];
  let y: Tensor;
  if (opts.out) {
    y = opts.out;
    y.assertAlive('linear');
    if (y.numel !== M * N || y.dtype !== yDtype) fail(`out ${describeTensor(y)} must be ${yDtype} [${outShape}]`);
    const readOnly = [x, w, bias, residual?.gate].filter((t): t is Tensor => t !== undefined);
    if (readOnly.some((t) => t.storage === y.storage)) fail(`out ${describeTensor(y)} must not alias the input, weight, bias or gate`);
  } else {
    y = e.empty(outShape, yDtype, 'linear');
  }
  if (M === 0) return y;
  const inPlace = residual !== undefined && residual.x.storage === y.storage;

  const v = opts.variant ? variantByName(e, opts.variant) : chooseVariant(e, M, x.dtype, w.dtype);
  const run = effectiveVariant(v, K);
  const pipeline = linearPipeline(e, run, x.dtype, yDtype, w.dtype as WFmt);
  const tile = tileShape(e, run);
  const maxWg = e.gpu.maxWorkgroupsPerDim;
  const op = `linear ${run.name}`;
  const mOperands = [
    { tensor: x, rowElems: K },
    { tensor: y, rowElems: N },
  ];
  if (residual && !inPlace) mOperands.push({ tensor: residual.x, rowElems: N });
  const mWindows = planWindows(e.gpu, op, M, mOperands, maxWg * tile.rows);
  const nWindows = planWindows(e.gpu, op, N, [{ tensor: w, rowElems: K }], maxWg * tile.cols);
  const biasB = bias ? wholeBinding(e.gpu, bias, op) : undefined;
  const gateB = residual?.gate ? wholeBinding(e.gpu, residual.gate, op) : undefined;
  for (const mw of mWindows) {
    const [xB, yB, rB] = mw.bindings;
    // Absent optional operands: bind X again (read-only, never read: the flags say so).
    const buffers: Binding[] = [xB, xB, yB, biasB ?? xB, rB ?? xB, gateB ?? xB];
    for (const nw of nWindows) {
      buffers[1] = nw.bindings[0];
      const params = new Uniforms()
        .u32(mw.rows)
        .u32(nw.rows)
        .u32(K)
        .u32(N)
        .u32(nw.row0)
        .u32(mw.row0)
        .u32(rowsPerGate)
        .u32(bias ? 1 : 0)
        .u32(opts.activation ? ACT_CODE[opts.activation] : 0)
        .u32(residual ? (inPlace ? 2 : 1) : 0)
        .u32(residual?.gate ? 1 : 0);
      e.dispatch({ op, pipeline, params, buffers: [...buffers], workgroups: [Math.ceil(nw.rows / tile.cols), Math.ceil(mw.rows / tile.rows), 1] });
    }
  }
  return y;
}

// ------------------------------------------------------------------ batched matmul

export interface MatmulOptions {
  /** b is [B, N, K] (multiply by its transpose). */
  transB?: boolean;
  out?: Tensor;
}

/** Batched f32 product: a [B, M, K] x b [B, K, N] -> [B, M, N] (2-D operands are a batch of one). */
export function matmul(e: Engine, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const op = 'matmul';
  a.assertAlive(op);
  b.assertAlive(op);
  if (a.shape.length < 2 || a.shape.length > 3 || b.shape.length !== a.shape.length) {
    throw new Error(`${op}: operands ${describeTensor(a)} and ${describeTensor(b)} must both be 3-D [B, ., .] (or both 2-D)`);
  }
  const as3 = (t: Tensor) => (t.shape.length === 2 ? [1, ...t.shape] : t.shape);
  const [B, M, K] = as3(a);
  const [Bb, r1, r2] = as3(b);
  const N = opts.transB ? r1 : r2;
  const Kb = opts.transB ? r2 : r1;
  if (Bb !== B || Kb !== K) throw new Error(`${op}: ${describeTensor(a)} x ${describeTensor(b)}${opts.transB ? 'ᵀ' : ''} do not match`);
  if (a.dtype !== 'f32' || b.dtype !== 'f32') throw new Error(`${op}: operands must be f32 (${describeTensor(a)}, ${describeTensor(b)})`);
  const outShape = a.shape.length === 2 ? [M, N] : [B, M, N];
  let c: Tensor;
  if (opts.out) {
    c = opts.out;
    if (c.numel !== B * M * N || c.dtype !== 'f32') throw new Error(`${op}: out ${describeTensor(c)} must be f32 [${outShape}]`);
    if (c.storage === a.storage || c.storage === b.storage) throw new Error(`${op}: out must not alias an operand`);
  } else {
    c = e.empty(outShape, 'f32', 'matmul');
  }
  if (c.numel === 0) return c;
  if (K === 0) throw new Error(`${op}: K = 0`);
  const pipeline = e.pipeline('matmul_batched', { TRANS_B: opts.transB ? 1 : 0 });
  const windows = planWindows(
    e.gpu,
    op,
    B,
    [
      { tensor: a, rowElems: M * K },
      { tensor: b, rowElems: K * N },
      { tensor: c, rowElems: M * N },
    ],
    e.gpu.maxWorkgroupsPerDim,
  );
  const max = e.gpu.maxWorkgroupsPerDim;
  if (Math.ceil(N / 32) > max || Math.ceil(M / 32) > max) throw new Error(`${op}: ${M}x${N} per batch is too large for one dispatch; use linear`);
  for (const w of windows) {
    e.dispatch({ op, pipeline, params: new Uniforms().u32(M).u32(N).u32(K), buffers: w.bindings, workgroups: [Math.ceil(N / 32), Math.ceil(M / 32), w.rows] });
  }
  return c;
}
