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
  /** Rows per workgroup; columns per lane; k values each lane loads per X row and block (1 or 4). */
  TM: number;
  TN: number;
  AV: 0 | 1 | 4;
}

type LinearVariant = TiledVariant | SgVariant;

const tiled = (BM: number, BN: number, BK: number, RM: number, RN: number): TiledVariant => ({ kind: 'tiled', name: `tiled${BM}x${BN}`, BM, BN, BK, RM, RN });
const sg = (TM: number, TN: number, AV: 0 | 1 | 4): SgVariant => ({ kind: 'sg', name: `sg${TM}x${TN}${AV === 4 ? 'v' : AV === 0 ? 'u' : ''}`, TM, TN, AV });

/** Every linear kernel variant, portable ones first. */
const VARIANTS: LinearVariant[] = [
  tiled(64, 64, 16, 4, 4),
  tiled(32, 32, 16, 4, 4),
  sg(16, 8, 1),
  sg(16, 8, 4),
  sg(8, 16, 1),
  sg(8, 16, 4),
  sg(32, 4, 4),
  sg(8, 8, 4),
  sg(4, 8, 4),
  sg(1, 16, 1),
  sg(2, 16, 4),
  sg(16, 8, 0),
  sg(8, 8, 0),
  sg(16, 4, 0),
  sg(32, 4, 0),
  sg(8, 16, 0),
  sg(16, 4, 4),
  sg(16, 4, 1),
];

const FAMILY = 'linear';

/** The fixed subgroup size the subgroup variants run with, or null when they are unavailable. */
export function subgroupLanes(e: Engine): number | null {
  if (!e.gpu.hasSubgroups) return null;
  const info: any = (e.gpu.adapter as any).info ?? {};
  const lo = Number(info.subgroupMinSize);
  const hi = Number(info.subgroupMaxSize);
  // The kernels assume one workgroup == one full subgroup, so the size must be fixed and known.
  if (!Number.isInteger(lo) || lo !== hi || lo < 4 || lo > 128 || (lo & (lo - 1)) !== 0) return null;
  if (lo > e.gpu.summary.limits.maxComputeInvocationsPerWorkgroup) return null;
  return lo;
}

function variantAvailable(e: Engine, v: LinearVariant): boolean {
  return v.kind === 'tiled' || subgroupLanes(e) !== null;
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

/** Candidates timed per class (subset of VARIANTS). */
const CANDIDATES: Record<MClass, string[]> = {
  gemv: ['tiled32x32', 'sg1x16', 'sg2x16v', 'sg4x8v'],
  small: ['tiled32x32', 'tiled64x64', 'sg4x8v', 'sg8x8v', 'sg8x16v', 'sg16x8v'],
  large: ['tiled64x64', 'sg16x8', 'sg16x8v', 'sg8x16', 'sg8x16v', 'sg32x4v', 'sg8x8v'],
};

/** Untuned choice: what the measurements on CPU (lavapipe) favoured, else the portable kernel. */
function defaultVariant(e: Engine, cls: MClass): string {
  if (subgroupLanes(e) !== null) return cls === 'gemv' ? 'sg2x16v' : cls === 'small' ? 'sg8x16v' : 'sg16x8v';
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

export interface LinearProblem {
  M: number;
  xDtype?: 'f32' | 'f16';
  wDtype?: 'bf16' | 'f16' | 'f32';
}

/**
 * Makes sure the shape classes of these problems are tuned on this adapter: times the candidate
 * variants on a representative problem (checking each against the portable kernel) and caches the
 * fastest on disk (engine/tuning.ts). Cheap when already cached. Returns class -> chosen variant.
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
    chosen[key] = await tuneVariant(e.gpu.summary.description, FAMILY, key, candidates, (runs) => timeCandidates(e, PROBLEM[cls], xDtype, wDtype, candidates, runs), log);
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

const pipelines = new WeakMap<Engine, Map<string, GPUComputePipeline>>();

function cachedPipeline(e: Engine, key: string, make: () => GPUComputePipeline): GPUComputePipeline {
  let m = pipelines.get(e);
  if (!m) pipelines.set(e, (m = new Map()));
  let p = m.get(key);
  if (!p) m.set(key, (p = make()));
  return p;
}

type WFmt = 'bf16' | 'f16' | 'f32';

/** W rows can be read as whole vec4<u32> words (K a multiple of 8 elements). */
function alignedK(K: number): boolean {
  return K % 8 === 0;
}

/**
 * Unrolled code of the subgroup kernel for S lanes: SETUP (row offsets, accumulators c{i}_{j}),
 * BODY (one block of KB = S*AV k values: X loads, then chunks of C k values: W loads, broadcasts,
 * multiply-adds) and STORE. `aligned`: K % 8 == 0, W read as vec4<u32>; otherwise any K, W read
 * as u32 words with per-row realignment (rows may start mid-word) and masking past K.
 */
export function sgKernelDefines(S: number, v: SgVariant, wfmt: WFmt, aligned: boolean): Record<string, string | number> {
  const { TM, TN } = v;
  const AV = aligned ? v.AV : 1;
  const KB = AV === 0 ? 8 : S * AV;
  const C = aligned ? 8 : Math.min(8, S);
  if (KB % C !== 0) throw new Error(`sg kernel: block ${KB} is not a multiple of chunk ${C}`);
  // In aligned mode with KB == 8 every block lies inside K; otherwise the last one may overhang.
  const overhang = !(aligned && KB === 8);
  const I = [...Array(TM).keys()];
  const J = [...Array(TN).keys()];
  const setup: string[] = [];
  for (const i of I) setup.push(`  let xr${i} = min(mb + ${i}u, P.rows - 1u) * K;`);
  if (AV === 4) for (const i of I) setup.push(`  let xq${i} = xr${i} >> 2u;`);
  for (const j of J) setup.push(`  let wr${j} = min(nb + ${j * S}u + lane, P.cols - 1u) * K;`);
  if (!aligned) setup.push('  let wlast = arrayLength(&W) - 1u;');
  if (process.env.MM_ABLATE) setup.push('  _ = X[0]; _ = W[0];');
  for (const i of I) setup.push('  ' + J.map((j) => `var c${i}_${j} = init;`).join(' '));

  const body: string[] = [];
  const ind = '    ';
  // X: per row, this lane's value (AV = 1) or 4 consecutive values (AV = 4) of the block.
  if (AV === 0) {
  } else if (AV === 4) {
    body.push(`${ind}let kq = ${overhang ? 'min((k0 >> 2u) + lane, (K >> 2u) - 1u)' : '(k0 >> 2u) + lane'};`);
    for (const i of I) body.push(process.env.MM_ABLATE?.includes('a') ? `${ind}let a${i} = vec4<f32>(f32(kq + ${i}u));` : `${ind}let a${i} = vec4<f32>(X[xq${i} + kq]);`);
  } else {
    body.push(`${ind}let kl = k0 + lane;`);
    const idx = overhang ? 'min(kl, K - 1u)' : 'kl';
    for (const i of I) {
      const load = `f32(X[xr${i} + ${idx}])`;
      body.push(`${ind}let a${i} = ${aligned ? load : `select(0.0, ${load}, kl < K)`};`);
    }
  }
  for (let c = 0; c < KB / C; c++) {
    const off = c * C;
    const guarded = off > 0;
    const p = ind + '  ';
    // Each chunk is its own scope (the names repeat); later chunks may lie past K.
    body.push(guarded ? `${ind}if (k0 + ${off}u < K) {` : `${ind}{`);
    // W values w{j}_{kk} for the chunk's C k values of this lane's TN rows.
    const wval: string[][] = J.map(() => []);
    for (const j of J) {
      if (aligned) {
        if (wfmt === 'f32') {
          body.push(`${p}let v${j}a = W[(wr${j} + k0 + ${off}u) >> 2u];`);
          body.push(`${p}let v${j}b = W[((wr${j} + k0 + ${off}u) >> 2u) + 1u];`);
          for (let kk = 0; kk < 8; kk++) wval[j].push(`bitcast<f32>(v${j}${kk < 4 ? 'a' : 'b'}.${'xyzw'[kk & 3]})`);
        } else {
          body.push(process.env.MM_ABLATE?.includes('w') ? `${p}let v${j} = vec4<u32>(wr${j} + k0);` : `${p}let v${j} = W[(wr${j} + k0 + ${off}u) >> 3u];`);
          for (let q = 0; q < 4; q++) {
            const word = `v${j}.${'xyzw'[q]}`;
            if (wfmt === 'bf16') wval[j].push(`bitcast<f32>(${word} << 16u)`, `bitcast<f32>(${word} & 0xffff0000u)`);
            else {
              body.push(`${p}let h${j}_${q} = unpack2x16float(${word});`);
              wval[j].push(`h${j}_${q}.x`, `h${j}_${q}.y`);
            }
          }
        }
      } else if (wfmt === 'f32') {
        for (let kk = 0; kk < C; kk++) {
          body.push(`${p}let w${j}_${kk} = select(0.0, bitcast<f32>(W[min(wr${j} + k0 + ${off + kk}u, wlast)]), k0 + ${off + kk}u < K);`);
          wval[j].push(`w${j}_${kk}`);
        }
      } else {
        // Halves from any element offset: C/2 + 1 words, shifted by one half when the offset is odd.
        body.push(`${p}let e${j} = wr${j} + k0 + ${off}u;`);
        body.push(`${p}let odd${j} = (e${j} & 1u) == 1u;`);
        for (let q = 0; q <= C / 2; q++) body.push(`${p}let u${j}_${q} = W[min((e${j} >> 1u) + ${q}u, wlast)];`);
        for (let q = 0; q < C / 2; q++) {
          body.push(`${p}let r${j}_${q} = select(u${j}_${q}, (u${j}_${q} >> 16u) | (u${j}_${q + 1} << 16u), odd${j});`);
          const lo = wfmt === 'bf16' ? `bitcast<f32>(r${j}_${q} << 16u)` : `unpack2x16float(r${j}_${q}).x`;
          const hi = wfmt === 'bf16' ? `bitcast<f32>(r${j}_${q} & 0xffff0000u)` : `unpack2x16float(r${j}_${q}).y`;
          body.push(`${p}let w${j}_${2 * q} = select(0.0, ${lo}, k0 + ${off + 2 * q}u < K);`);
          body.push(`${p}let w${j}_${2 * q + 1} = select(0.0, ${hi}, k0 + ${off + 2 * q + 1}u < K);`);
          wval[j].push(`w${j}_${2 * q}`, `w${j}_${2 * q + 1}`);
        }
      }
    }
    // Broadcast X values of the chunk's k and accumulate.
    if (AV === 4) {
      for (let L = off / 4; L < (off + C) / 4; L++) for (const i of I) body.push(`${p}let b${i}_${L} = subgroupBroadcast(a${i}, ${L}u);`);
    }
    for (let kk = 0; kk < C; kk++) {
      const o = off + kk;
      for (const j of J) if (aligned) body.push(`${p}let w${j}_${kk} = ${wval[j][kk]};`);
      for (const i of I) {
        const b = AV === 0 ? `f32(X[xr${i} + k0 + ${o}u])` : AV === 4 ? `b${i}_${o >> 2}.${'xyzw'[o & 3]}` : `subgroupBroadcast(a${i}, ${o}u)`;
        body.push(`${p}{ let s = ${b};`);
        for (const j of J) body.push(`${p}  c${i}_${j} = fma(s, w${j}_${kk}, c${i}_${j});`);
        body.push(`${p}}`);
      }
    }
    body.push(`${ind}}`);
  }
  const store: string[] = [];
  for (const i of I) {
    store.push(`  if (mb + ${i}u < P.rows) {`);
    for (const j of J) store.push(`    { let n = nb + ${j * S}u + lane; if (n < P.cols) { mm_store(mb + ${i}u, n, c${i}_${j}); } }`);
    store.push('  }');
  }
  return {
    S,
    TM,
    NTILE: S * TN,
    KB,
    WVEC: aligned ? 'vec4<u32>' : 'u32',
    SETUP: setup.join('\n'),
    BODY: body.join('\n'),
    STORE: store.join('\n'),
  };
}

function linearPipeline(e: Engine, v: LinearVariant, xt: DType, yt: DType, wfmt: WFmt, K: number): GPUComputePipeline {
  const aligned = alignedK(K);
  if (v.kind === 'tiled') {
    return cachedPipeline(e, `${v.name}|${xt}|${yt}|${wfmt}`, () =>
      e.pipeline('matmul_tiled', { XT: xt, YT: yt, WFMT: wfmt, BM: v.BM, BN: v.BN, BK: v.BK, RM: v.RM, RN: v.RN }),
    );
  }
  const S = subgroupLanes(e)!;
  const av = aligned ? v.AV : 1;
  return cachedPipeline(e, `${v.name}|${xt}|${yt}|${wfmt}|${aligned}`, () => {
    const d = sgKernelDefines(S, v, wfmt, aligned);
    return e.pipeline('matmul_sg', { ...d, XT: xt, YT: yt, XVEC: av === 4 ? `vec4<${xt}>` : xt });
  });
}

function tileShape(e: Engine, v: LinearVariant): { rows: number; cols: number } {
  return v.kind === 'tiled' ? { rows: v.BM, cols: v.BN } : { rows: v.TM, cols: subgroupLanes(e)! * v.TN };
}

// ------------------------------------------------------------------ linear

const ACT_CODE: Record<LinearActivation, number> = { gelu_tanh: 1, silu: 2 };

function fail(msg: string): never {
  throw new Error(`linear: ${msg}`);
}

function describe(t: Tensor): string {
  return `"${t.label}" [${t.shape}] ${t.dtype}`;
}

/** Y = act(X·Wᵀ + bias), or residual + that * gate. See LinearOptions. */
export function linear(e: Engine, x: Tensor, w: Tensor, opts: LinearOptions = {}): Tensor {
  x.assertAlive('linear');
  w.assertAlive('linear');
  if (w.shape.length !== 2) fail(`weight ${describe(w)} must be [N, K]`);
  const [N, K] = w.shape;
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== K) fail(`input ${describe(x)} does not end in K = ${K} of weight ${describe(w)}`);
  if (N === 0 || K === 0) fail(`empty weight ${describe(w)}`);
  const M = x.numel / K;
  if (x.dtype !== 'f32' && x.dtype !== 'f16') fail(`input ${describe(x)} must be f32 or f16`);
  if (w.dtype !== 'bf16' && w.dtype !== 'f16' && w.dtype !== 'f32') fail(`weight ${describe(w)} must be bf16, f16 or f32`);
  const yDtype = opts.outDtype ?? (x.dtype as 'f32' | 'f16');
  if ((x.dtype === 'f16' || yDtype === 'f16') && !e.gpu.hasF16) fail(`f16 activations need the shader-f16 feature, which this adapter lacks`);

  const { bias, residual } = opts;
  if (bias && (bias.dtype !== 'f32' || bias.numel !== N)) fail(`bias ${describe(bias)} must be f32 with ${N} elements`);
  let rowsPerGate = Math.max(1, M);
  if (residual) {
    if (residual.x.dtype !== yDtype || residual.x.numel !== M * N) fail(`residual ${describe(residual.x)} must be ${yDtype} with ${M}x${N} elements`);
    const g = residual.gate;
    if (g) {
      if (g.dtype !== 'f32' || g.numel % N !== 0 || g.numel === 0) fail(`gate ${describe(g)} must be f32 with G*${N} elements`);
      const G = g.numel / N;
      if (M % G !== 0) fail(`gate ${describe(g)} has ${G} rows, which do not divide the ${M} output rows`);
      rowsPerGate = Math.max(1, M / G);
    }
  }
  const outShape = [...x.shape.slice(0, -1), N];
  let y: Tensor;
  if (opts.out) {
    y = opts.out;
    y.assertAlive('linear');
    if (y.numel !== M * N || y.dtype !== yDtype) fail(`out ${describe(y)} must be ${yDtype} [${outShape}]`);
    if (y.storage === x.storage || y.storage === w.storage) fail(`out ${describe(y)} must not alias the input or the weight`);
  } else {
    y = e.empty(outShape, yDtype, 'linear');
  }
  if (M === 0) return y;
  const inPlace = residual !== undefined && residual.x.storage === y.storage;

  const v = opts.variant ? variantByName(e, opts.variant) : chooseVariant(e, M, x.dtype, w.dtype);
  const pipeline = linearPipeline(e, v, x.dtype, yDtype, w.dtype as WFmt, K);
  const tile = tileShape(e, v);
  const maxWg = e.gpu.maxWorkgroupsPerDim;
  const op = `linear ${v.name}`;
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
  const as3 = (t: Tensor) => (t.shape.length === 2 ? [1, ...t.shape] : t.shape);
  const [B, M, K] = as3(a);
  const bs = as3(b);
  if (a.shape.length < 2 || a.shape.length > 3 || b.shape.length !== a.shape.length) throw new Error(`${op}: operands ${describe(a)} and ${describe(b)} must both be [B, M, K]-style 3-D (or 2-D)`);
  const [Bb, r1, r2] = bs;
  const N = opts.transB ? r1 : r2;
  const Kb = opts.transB ? r2 : r1;
  if (Bb !== B || Kb !== K) throw new Error(`${op}: ${describe(a)} x ${describe(b)}${opts.transB ? 'ᵀ' : ''} do not match`);
  if (a.dtype !== 'f32' || b.dtype !== 'f32') throw new Error(`${op}: operands must be f32 (${describe(a)}, ${describe(b)})`);
  const outShape = a.shape.length === 2 ? [M, N] : [B, M, N];
  let c: Tensor;
  if (opts.out) {
    c = opts.out;
    if (c.numel !== B * M * N || c.dtype !== 'f32') throw new Error(`${op}: out ${describe(c)} must be f32 [${outShape}]`);
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
  const tiles = Math.ceil(N / 32) * Math.ceil(M / 32);
  if (tiles > e.gpu.maxWorkgroupsPerDim) throw new Error(`${op}: ${M}x${N} is too large for one batched dispatch; use linear`);
  for (const w of windows) {
    e.dispatch({ op, pipeline, params: new Uniforms().u32(M).u32(N).u32(K), buffers: w.bindings, workgroups: [Math.ceil(N / 32), Math.ceil(M / 32), w.rows] });
  }
  return c;
}
