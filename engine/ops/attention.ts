// Flash attention: softmax(scale * q k^T + bias) v per head, with an online softmax that never forms
// the Lq x Lk logits. Windowed for tensors larger than one storage binding: query rows go in windows
// (one dispatch each), and when one batch element's K/V do not fit one binding, the keys go in windows
// too; the softmax state (running max and sum per row and head, unnormalised output) then carries from
// one key window's dispatch to the next through a scratch buffer and the output itself.
import { Uniforms, type Engine } from '../engine.ts';
import type { Tensor } from '../tensor.ts';
import { planWindows, wholeBinding, type Binding, type Window } from '../windows.ts';
import { subgroupSizeRange } from '../subgroups.ts';
import { cachedPipeline } from './pipelines.ts';

export type AttentionMaskMode = 'exclude' | 'float32min';
/** Storage of q, k and v (all three alike); arithmetic and the output are f32. */
export type AttentionDType = 'f32' | 'f16' | 'bf16';
export type AttentionVariant = 'auto' | 'subgroup' | 'portable';

export interface AttentionOptions {
  /** Per batch element: keys j >= kLens[b] are masked (see maskMode). Query rows are all computed. */
  kLens?: readonly number[];
  /** Logit scale; default 1/sqrt(D). umT5 uses 1. */
  scale?: number;
  /**
   * Additive per-head logit bias (natural-log units, not scaled): [N, Lq+Lk-1] relative table
   * (bias of query i, key j at [n, j - i + Lq - 1], umT5's pos_bias) or the full [N, Lq, Lk].
   * Windowed by heads (one head's bias must fit one storage binding).
   */
  bias?: Tensor;
  /**
   * 'exclude' (default, flash_attention's k_lens): masked keys take no part in the softmax; a row
   * with no key left gives zeros. 'float32min' (umT5): a masked key's logit becomes
   * finfo(float32).min, as torch's masked_fill on the bias does; a row whose keys are all masked
   * then averages V over all keys, exactly like torch.
   */
  maskMode?: AttentionMaskMode;
  /**
   * Kernel: 'subgroup' (attention_sg, needs subgroups of >= 8 lanes and a head dim multiple of 4),
   * 'portable' (attention.wgsl), or 'auto': the subgroup kernel where subgroups are exactly 8 lanes
   * (CPU SIMD8 adapters such as lavapipe, where it is the fast one), else the portable kernel.
   */
  variant?: AttentionVariant;
  /**
   * Subgroup kernel tile: query rows per workgroup and keys per lane and block. Default 16 x 8 for
   * problems of at least SG_BIG_TILE_LOGITS logits, else 8 x 4.
   */
  tile?: { rows: number; keysPerLane: number };
  /** Write the result here (f32, same element count as q) instead of a new tensor. */
  out?: Tensor;
}

interface Dims {
  B: number;
  L: number;
  N: number;
  D: number;
}

/** [B, L, N, D] or [L, N, D] (B = 1). */
function dimsOf(op: string, name: string, t: Tensor): Dims {
  const s = t.shape;
  if (s.length === 4) return { B: s[0], L: s[1], N: s[2], D: s[3] };
  if (s.length === 3) return { B: 1, L: s[0], N: s[1], D: s[2] };
  throw new Error(`${op}: ${name} "${t.label}" has shape [${s}], expected [B, L, N, D] or [L, N, D]`);
}

/** Logit count (B*N*Lq*Lk) from which the subgroup kernel uses its big 16x8 tile instead of 8x4. */
export const SG_BIG_TILE_LOGITS = 1 << 22;

/** Whether the 8-lane subgroup kernel is valid here, and whether it is the better choice. */
function subgroupKernelUsable(e: Engine): { valid: boolean; preferred: boolean } {
  const range = subgroupSizeRange(e.gpu);
  // A workgroup of 8 invocations is one subgroup when every subgroup has at least 8 lanes.
  const valid = range !== null && range.min >= 8;
  // Exactly 8 lanes: a CPU SIMD8 implementation (lavapipe), where the 8 lanes are one full vector.
  return { valid, preferred: valid && range.max === 8 };
}

/** Element loads of the portable kernel for a q/k/v dtype (halves are packed two per u32). */
function portableLoads(dtype: AttentionDType): Record<string, string> {
  const load = (a: string) => (dtype === 'f32' ? `${a}[i]` : `unpack_${dtype}(${a}[i >> 1u], (i & 1u) == 1u)`);
  return { WORD: dtype === 'f32' ? 'f32' : 'u32', LOAD_Q: load('Q'), LOAD_K: load('K'), LOAD_V: load('V') };
}

/** The part of a window that lies in [lo, hi): its offset inside the window's bindings and length. */
function clip(w: Window, lo: number, hi: number): { off: number; pos: number; rows: number } | null {
  const a = Math.max(w.row0, lo);
  const b = Math.min(w.row0 + w.rows, hi);
  return b > a ? { off: a - w.row0, pos: a - lo, rows: b - a } : null;
}

/**
 * Attention o = softmax(scale * q k^T + bias, masked) v, per batch element and head.
 * q [B, Lq, N, D], k/v [B, Lk, N, D] (or 3-D without B), f32 / f16 / bf16 (all alike); returns o
 * with q's shape, f32.
 */
export function flashAttention(e: Engine, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const op = 'flashAttention';
  const qd = dimsOf(op, 'q', q);
  const kd = dimsOf(op, 'k', k);
  const vd = dimsOf(op, 'v', v);
  const { B, N, D } = qd;
  const Lq = qd.L;
  const Lk = kd.L;
  if (kd.B !== B || kd.N !== N || kd.D !== D || vd.B !== B || vd.L !== Lk || vd.N !== N || vd.D !== D) {
    throw new Error(`${op}: shapes q [${q.shape}], k [${k.shape}], v [${v.shape}] do not agree (q [B, Lq, N, D], k/v [B, Lk, N, D])`);
  }
  const dtype = q.dtype as AttentionDType;
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') throw new Error(`${op}: ${name} "${t.label}" is ${t.dtype}, expected f32, f16 or bf16`);
    if (t.dtype !== dtype) throw new Error(`${op}: q, k and v must share one dtype (q is ${dtype}, ${name} "${t.label}" is ${t.dtype})`);
  }
  if (D === 0 || N === 0) throw new Error(`${op}: empty head dimension in q [${q.shape}]`);
  if (Lk === 0) throw new Error(`${op}: no keys (k [${k.shape}])`);
  const kLens = opts.kLens;
  if (kLens !== undefined) {
    if (kLens.length !== B) throw new Error(`${op}: kLens has ${kLens.length} entries for batch ${B}`);
    for (const n of kLens) if (!Number.isInteger(n) || n < 0) throw new Error(`${op}: kLens entry ${n} is not a non-negative integer`);
  }
  const maskMode = opts.maskMode ?? 'exclude';
  const scale = opts.scale ?? 1 / Math.sqrt(D);

  let biasMode = 0;
  if (opts.bias) {
    const b = opts.bias;
    if (b.dtype !== 'f32') throw new Error(`${op}: bias "${b.label}" is ${b.dtype}, expected f32`);
    if (b.shape.length === 2 && b.shape[0] === N && b.shape[1] === Lq + Lk - 1) biasMode = 1;
    else if (b.shape.length === 3 && b.shape[0] === N && b.shape[1] === Lq && b.shape[2] === Lk) biasMode = 2;
    else throw new Error(`${op}: bias [${b.shape}] is neither [N, Lq+Lk-1] = [${N}, ${Lq + Lk - 1}] nor [N, Lq, Lk] = [${N}, ${Lq}, ${Lk}]`);
  }

  const sg = subgroupKernelUsable(e);
  const variant = opts.variant ?? 'auto';
  let useSg: boolean;
  if (variant === 'subgroup') {
    if (!sg.valid) throw new Error(`${op}: the subgroup kernel needs subgroups of at least 8 lanes (adapter "${e.gpu.summary.description}")`);
    if (D % 4 !== 0) throw new Error(`${op}: the subgroup kernel needs a head dim multiple of 4 (got ${D})`);
    useSg = true;
  } else {
    useSg = variant === 'auto' && sg.preferred && D % 4 === 0;
  }
  if (!useSg && D > 2048) throw new Error(`${op}: the portable kernel supports head dims up to 2048 (got ${D})`);
  // Large problems take the big tile (measured ~20% faster on lavapipe, but its shader takes 3-4x
  // longer to compile: ~22 s at D = 128); small ones the tile that compiles in a few seconds.
  const big = Lq * Lk * N * B >= SG_BIG_TILE_LOGITS;
  const TM = opts.tile?.rows ?? (big ? 16 : 8);
  const TN = opts.tile?.keysPerLane ?? (big ? 8 : 4);
  const pipeline = useSg
    ? cachedPipeline(e, `sg|${TM}|${TN}|${Math.ceil(D / 32)}|${biasMode}|${dtype}`, () =>
        e.pipeline('attention_sg', sgAttentionDefines(TM, TN, Math.ceil(D / 32), biasMode, dtype)),
      )
    : cachedPipeline(e, `portable|${D}|${biasMode}|${dtype}`, () =>
        e.pipeline('attention', { D, BK: Math.max(1, Math.min(16, Math.floor(2048 / D))), BIAS: biasMode, ...portableLoads(dtype) }),
      );
  const rowsPerWorkgroup = useSg ? TM : 64;

  // Output rows: one token (all heads) per row, so segments and windows hold whole tokens.
  let o: Tensor;
  if (opts.out) {
    o = opts.out;
    if (o.dtype !== 'f32' || o.numel !== q.numel) throw new Error(`${op}: out "${o.label}" [${o.shape}] ${o.dtype} cannot hold o [${q.shape}] f32`);
  } else {
    const flat = e.empty([B * Lq, N, D], 'f32', 'attention out');
    o = q.shape.length === 3 ? flat : flat.reshape(q.shape);
    if (o !== flat) flat.dispose();
  }
  if (B * Lq === 0) return o;
  try {
    record(e, op, { q, k, v, o, B, Lq, Lk, N, D, kLens, maskMode, scale, bias: opts.bias, pipeline, rowsPerWorkgroup });
  } catch (err) {
    if (!opts.out) o.dispose();
    throw err;
  }
  return o;
}

interface Recording {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  B: number;
  Lq: number;
  Lk: number;
  N: number;
  D: number;
  kLens?: readonly number[];
  maskMode: AttentionMaskMode;
  scale: number;
  bias?: Tensor;
  pipeline: GPUComputePipeline;
  rowsPerWorkgroup: number;
}

/** Plans the query and key windows and records the dispatches (one per query window, batch element and key window). */
function record(e: Engine, op: string, r: Recording): void {
  const { q, k, v, o, B, Lq, Lk, N, D, kLens, maskMode, scale, pipeline, rowsPerWorkgroup } = r;
  e.scope(() => {
    const rowElems = N * D;
    const kWins = planWindows(e.gpu, op, B * Lk, [
      { tensor: k, rowElems },
      { tensor: v, rowElems },
    ]);
    // Keys each batch element iterates: all Lk under float32min masking, else the unmasked ones.
    const keyEnd = (b: number) => (maskMode === 'exclude' ? Math.min(Lk, kLens?.[b] ?? Lk) : Lk);
    const keyWindows = (b: number) => {
      const parts = kWins.map((w) => ({ w, c: clip(w, b * Lk, b * Lk + keyEnd(b)) })).filter((p): p is { w: Window; c: NonNullable<ReturnType<typeof clip>> } => p.c !== null);
      // An empty key set still needs one dispatch (it writes zeros).
      return parts.length ? parts : [{ w: kWins[0], c: { off: 0, pos: 0, rows: 0 } }];
    };
    let multi = false;
    for (let b = 0; b < B; b++) if (keyWindows(b).length > 1) multi = true;

    // State rows padded to the storage offset alignment, so that they never constrain the windows.
    const alignElems = e.gpu.storageAlign / 4;
    const stStride = Math.ceil((2 * N) / alignElems) * alignElems;
    const state = multi ? e.empty([B * Lq, stStride], 'f32', 'attention state') : e.empty([1], 'f32', 'attention state (unused)');
    const qOperands = [
      { tensor: q, rowElems },
      { tensor: o, rowElems },
    ];
    if (multi) qOperands.push({ tensor: state, rowElems: stStride });
    const qWins = planWindows(e.gpu, op, B * Lq, qOperands);
    const stateWhole = multi ? null : wholeBinding(e.gpu, state, op);
    const headWins = headWindows(e, op, N, r.bias);

    for (const qw of qWins) {
      for (let b = 0; b < B; b++) {
        const qc = clip(qw, b * Lq, (b + 1) * Lq);
        if (!qc) continue;
        const kValid = Math.min(Lk, kLens?.[b] ?? Lk);
        const parts = keyWindows(b);
        for (const hw of headWins) parts.forEach(({ w: kw, c: kc }, i) => {
          const flags = (i === 0 ? 1 : 0) | (i === parts.length - 1 ? 2 : 0);
          const params = new Uniforms()
            .u32(qc.rows)
            .u32(qc.off)
            .u32(qc.pos)
            .u32(kc.rows)
            .u32(kc.off)
            .u32(kc.pos)
            .u32(Math.max(0, Math.min(kc.rows, kValid - kc.pos)))
            .u32(N)
            .u32(flags)
            .u32(Lq)
            .u32(Lk)
            .f32(scale * Math.LOG2E)
            .u32(stStride)
            .u32(D)
            .u32(hw.h0)
            .u32(hw.hn)
            .u32(hw.stride);
          const buffers: Binding[] = [qw.bindings[0], kw.bindings[0], kw.bindings[1], qw.bindings[1], multi ? qw.bindings[2] : stateWhole!, hw.bias];
          e.dispatch({ op, pipeline, params, buffers, workgroups: Math.ceil(qc.rows / rowsPerWorkgroup) * hw.hn });
        });
      }
    }
  });
}

/**
 * Head ranges of the dispatches with their bias binding: all heads at once when the bias fits one
 * binding (or there is none), else as many heads as fit, from a copy of the bias whose head rows are
 * padded to the storage offset alignment (so that any head can start a binding).
 */
function headWindows(e: Engine, op: string, N: number, bias?: Tensor): { h0: number; hn: number; bias: Binding; stride: number }[] {
  if (!bias) return [{ h0: 0, hn: N, bias: wholeBinding(e.gpu, e.empty([1], 'f32', 'attention bias (unused)'), op), stride: 0 }];
  const row = bias.numel / N;
  if (bias.storage.segments.length === 1 && bias.bytes <= e.gpu.maxBindingBytes) return [{ h0: 0, hn: N, bias: wholeBinding(e.gpu, bias, op), stride: row }];
  const alignElems = e.gpu.storageAlign / 4;
  const padded = e.empty([N, Math.ceil(row / alignElems) * alignElems], 'f32', 'attention bias (padded rows)');
  const at = (t: Tensor, elem: number): Binding => {
    const seg = t.storage.segments.find((sg) => elem >= sg.elem0 && elem < sg.elem0 + sg.elems)!;
    return { buffer: seg.buffer, offset: (elem - seg.elem0) * 4, size: row * 4 };
  };
  for (let h = 0; h < N; h++) e.copy(at(bias, h * row), at(padded, h * padded.shape[1]), row * 4, `${op} bias rows`);
  return planWindows(e.gpu, op, N, [{ tensor: padded, rowElems: padded.shape[1] }]).map((w) => ({ h0: w.row0, hn: w.rows, bias: w.bindings[0], stride: padded.shape[1] }));
}

// ------------------------------------------------------------------ subgroup kernel code

/** Rows grouped by up to 4 (one vector per subgroup reduction). */
function rowGroups(TM: number): number[][] {
  const groups: number[][] = [];
  for (let i = 0; i < TM; i += 4) groups.push([...Array(Math.min(4, TM - i)).keys()].map((x) => x + i));
  return groups;
}

/** One subgroup reduction over a group of row scalars: `let out_i = ...` lines. */
function reduceRows(fn: string, rows: number[], expr: (i: number) => string, out: (i: number) => string, ind: string): string[] {
  if (rows.length === 1) return [`${ind}let ${out(rows[0])} = ${fn}(${expr(rows[0])});`];
  const vec = `vec${rows.length}<f32>`;
  const tmp = `${out(rows[0])}_v`;
  const lines = [`${ind}let ${tmp} = ${fn}(${vec}(${rows.map(expr).join(', ')}));`];
  rows.forEach((i, k) => lines.push(`${ind}let ${out(i)} = ${tmp}.${'xyzw'[k]};`));
  return lines;
}

/**
 * The unrolled parts of attention_sg.wgsl for TM query rows per workgroup, TN keys per lane and
 * block, and head dims up to 32*CV. Per-lane values are named scalars / vec4s so that they stay in
 * registers; the loops over head dims and over the keys of a block stay loops (subgroupShuffle takes
 * a loop-counter lane), which keeps the shader small enough for lavapipe's LLVM to compile in seconds.
 */
export function sgAttentionDefines(TM: number, TN: number, CV: number, biasMode: number, dtype: AttentionDType = 'f32'): Record<string, string | number> {
  const I = [...Array(TM).keys()];
  const J = [...Array(TN).keys()];
  const C = [...Array(CV).keys()];
  const groups = rowGroups(TM);
  const i4 = '    ';
  const i6 = '      ';

  const setup: string[] = [];
  for (const i of I) {
    setup.push(`  let r${i} = P.q_off + min(row0 + ${i}u, P.q_rows - 1u);`);
    setup.push(`  let qr${i} = r${i} * stride4 + head4;`);
    setup.push(`  let qp${i} = P.q_pos + min(row0 + ${i}u, P.q_rows - 1u);`);
    setup.push(`  var m${i} = F32_MIN;`);
    setup.push(`  var l${i} = l_init;`);
    setup.push('  ' + C.map((c) => `var a${i}_${c} = vec4<f32>(0.0);`).join(' '));
  }
  setup.push('  if (!first) {');
  for (const i of I) {
    setup.push(`    m${i} = ST[r${i} * P.st_stride + 2u * n];`);
    setup.push(`    l${i} = select(0.0, ST[r${i} * P.st_stride + 2u * n + 1u], lane == 0u) + l_init;`);
    setup.push('    ' + C.map((c) => `a${i}_${c} = O[qr${i} + min(lane + ${8 * c}u, d4 - 1u)];`).join(' '));
  }
  setup.push('  }');

  const keys: string[] = [];
  for (const j of J) keys.push(`${i4}let kr${j} = (P.k_off + min(kb + ${8 * j}u + lane, P.k_rows - 1u)) * stride4 + head4;`);
  for (const i of I) keys.push(i4 + J.map((j) => `var s${i}_${j} = 0.0;`).join(' '));

  // Logits, 8 vec4s (32 head dims) per step: lane l holds vec4 g0 + l of every row; lane x's are
  // shuffled to all lanes, which multiply them with vec4 g0 + x of their keys.
  const logits: string[] = [];
  logits.push(`${i4}for (var g0 = 0u; g0 < d4; g0 += 8u) {`);
  for (const i of I) logits.push(`${i6}let q${i} = ld4(Q[qr${i} + min(g0 + lane, d4 - 1u)]);`);
  logits.push(`${i6}for (var x = 0u; x < min(8u, d4 - g0); x++) {`);
  for (const j of J) logits.push(`${i6}  let k${j} = ld4(K[kr${j} + g0 + x]);`);
  for (const i of I) {
    logits.push(`${i6}  { let b = subgroupShuffle(q${i}, x);`);
    logits.push(`${i6}    ` + J.map((j) => `s${i}_${j} = fma(b.w, k${j}.w, fma(b.z, k${j}.z, fma(b.y, k${j}.y, fma(b.x, k${j}.x, s${i}_${j}))));`).join(' '));
    logits.push(`${i6}  }`);
  }
  logits.push(`${i6}}`);
  logits.push(`${i4}}`);

  // Online softmax over the block (keys past k_rows get p = 0; masked keys the logit F32_MIN).
  const sm: string[] = [];
  for (const j of J) {
    sm.push(`${i4}let key${j} = kb + ${8 * j}u + lane;`);
    sm.push(`${i4}let out${j} = key${j} >= P.k_rows;`);
    sm.push(`${i4}let msk${j} = out${j} || key${j} >= P.k_valid;`);
    sm.push(`${i4}let kp${j} = P.k_pos + min(key${j}, P.k_rows - 1u);`);
  }
  // (bias_at folds to 0 without a bias; calling it regardless keeps the bias binding in the layout.)
  for (const i of I) {
    for (const j of J) sm.push(`${i4}let t${i}_${j} = select(s${i}_${j} * P.scale_log2 + bias_at(n - P.head0, qp${i}, kp${j}), F32_MIN, msk${j});`);
  }
  const maxOf = (i: number) => J.reduce((acc, j) => (acc ? `max(${acc}, t${i}_${j})` : `t${i}_${j}`), '');
  for (const g of groups) sm.push(...reduceRows('subgroupMax', g, maxOf, (i) => `bm${i}`, i4));
  for (const i of I) {
    sm.push(`${i4}let mn${i} = max(m${i}, bm${i});`);
    sm.push(`${i4}let al${i} = exp2(m${i} - mn${i});`);
    sm.push(`${i4}m${i} = mn${i};`);
    for (const j of J) sm.push(`${i4}let p${i}_${j} = select(exp2(t${i}_${j} - mn${i}), 0.0, out${j});`);
    sm.push(`${i4}l${i} = l${i} * al${i} + ${J.map((j) => `p${i}_${j}`).join(' + ')};`);
    sm.push(i4 + C.map((c) => `a${i}_${c} *= al${i};`).join(' '));
  }

  // acc += p V, key by key: key kb + 8j + x belongs to lane x, its p values are p{i}_{j} there. The
  // groups j are unrolled so that p stays in named registers: a p array indexed by the key would be
  // private memory, which lavapipe reads lane by lane (measured: a quarter of the kernel's time).
  const pv: string[] = [];
  pv.push(`${i4}let rem = P.k_rows - kb;`);
  for (const j of J) {
    pv.push(`${i4}for (var x = 0u; x < min(8u, select(0u, rem - ${8 * j}u, rem > ${8 * j}u)); x++) {`);
    pv.push(`${i6}let vr = (P.k_off + kb + ${8 * j}u + x) * stride4 + head4;`);
    pv.push(i6 + C.map((c) => `let v${c} = ld4(V[vr + min(lane + ${8 * c}u, d4 - 1u)]);`).join(' '));
    for (const i of I) {
      pv.push(`${i6}{ let p = vec4<f32>(subgroupShuffle(p${i}_${j}, x)); ` + C.map((c) => `a${i}_${c} = fma(p, v${c}, a${i}_${c});`).join(' ') + ' }');
    }
    pv.push(`${i4}}`);
  }

  const fin: string[] = [];
  for (const g of groups) fin.push(...reduceRows('subgroupAdd', g, (i) => `l${i}`, (i) => `lt${i}`, '  '));
  for (const i of I) {
    fin.push(`  if (row0 + ${i}u < P.q_rows) {`);
    fin.push(`    let inv = select(1.0, select(1.0 / lt${i}, 0.0, lt${i} == 0.0), last);`);
    for (const c of C) fin.push(`    if (lane + ${8 * c}u < d4) { O[qr${i} + lane + ${8 * c}u] = a${i}_${c} * inv; }`);
    fin.push(`    if (!last && lane == 0u) { ST[r${i} * P.st_stride + 2u * n] = m${i}; ST[r${i} * P.st_stride + 2u * n + 1u] = lt${i}; }`);
    fin.push('  }');
  }
  const unpack4 = {
    f32: 'w',
    f16: 'vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y))',
    bf16: 'vec4<f32>(bitcast<f32>(w.x << 16u), bitcast<f32>(w.x & 0xffff0000u), bitcast<f32>(w.y << 16u), bitcast<f32>(w.y & 0xffff0000u))',
  }[dtype];
  return {
    QKV: dtype === 'f32' ? 'vec4<f32>' : 'vec2<u32>',
    UNPACK4: unpack4,
    TM,
    KB: 8 * TN,
    BIAS: biasMode,
    SETUP: setup.join('\n'),
    KEYS: keys.join('\n'),
    LOGITS: logits.join('\n'),
    SOFTMAX: sm.join('\n'),
    PV: pv.join('\n'),
    FINISH: fin.join('\n'),
  };
}
