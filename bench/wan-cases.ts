// Our kernels, timed in this process on the harness's engine. Each kernel family is loaded
// dynamically from engine/ops/, so the harness runs (and says "not implemented yet") before a family
// exists. One timed execution = record the op's dispatches, submit, await completion (gently polled),
// dispose the result. Operands are uploaded once per case, before timing.
import type { Engine, Tensor } from '../engine/index.ts';
import type { BenchCase } from './cases.ts';
import { gently } from './idle.ts';
import type { Measurement } from './rows.ts';
import { timeRuns, type TimingPolicy } from './timing.ts';

type AnyFn = (...args: any[]) => any;

interface OpModule {
  module: string;
  fn: string;
}

const MODULES: Record<BenchCase['kernel'], OpModule> = {
  matmul: { module: '../engine/ops/matmul.ts', fn: 'linear' },
  attention: { module: '../engine/ops/attention.ts', fn: 'flashAttention' },
  conv3d: { module: '../engine/ops/conv3d.ts', fn: 'conv3d' },
  layernorm: { module: '../engine/ops/norm.ts', fn: 'layerNorm' },
};

export const NOT_IMPLEMENTED = 'not implemented yet';

/**
 * The exports of the module at `url` if it exports `fn`, or the reason it cannot be used:
 * "not implemented yet" when the module or the function does not exist (yet), a load error otherwise.
 */
export async function loadOpModule(url: URL, fn: string): Promise<{ mod: Record<string, unknown> } | { reason: string }> {
  const file = url.pathname.split('/').pop()!;
  let mod: Record<string, unknown>;
  try {
    mod = await import(url.href);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    // Only the module itself missing means "not written yet"; anything else is a real failure.
    if (err.code === 'ERR_MODULE_NOT_FOUND' && err.message.includes(file)) return { reason: `${NOT_IMPLEMENTED} (${file} missing)` };
    return { reason: `failed to load ${file}: ${err.message.split('\n')[0]}` };
  }
  if (typeof mod[fn] !== 'function') return { reason: `${NOT_IMPLEMENTED} (no ${fn}() in ${file})` };
  return { mod };
}

function loadFamily(kernel: BenchCase['kernel']): Promise<{ mod: Record<string, unknown> } | { reason: string }> {
  const { module, fn } = MODULES[kernel];
  return loadOpModule(new URL(module, import.meta.url), fn);
}

/** Uniform values in [-1, 1) from a fixed seed (the values do not affect timing). */
function randomValues(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) / 2147483648 - 1;
  }
  return out;
}

function rand(e: Engine, shape: number[], seed: number, dtype: 'f32' | 'bf16' = 'f32', label = 'bench input'): Tensor {
  return e.upload(randomValues(shape.reduce((a, b) => a * b, 1), seed), shape, dtype, label);
}

interface Prepared {
  /** Records the op and returns its result (disposed after each run). */
  record: () => Tensor;
  inputs: Tensor[];
  note: string;
}

export interface WanOptions {
  /** Run the matmul autotuner for the case's shape class first (cached on disk after the first time). */
  tune: boolean;
}

async function prepare(e: Engine, c: BenchCase, mod: Record<string, unknown>, o: WanOptions): Promise<Prepared> {
  switch (c.kernel) {
    case 'matmul': {
      const linear = mod.linear as AnyFn;
      let note = 'linear, X f32, W bf16 [N, K], Y f32';
      // Make sure the shape class is tuned (timed once and cached on disk) before we time it.
      if (o.tune && typeof mod.tuneLinear === 'function' && process.env.WAN_TUNE !== 'off') {
        const chosen = (await mod.tuneLinear(e, [{ M: c.M, xDtype: 'f32', wDtype: 'bf16' }])) as Record<string, string>;
        note += `; tuned variant ${Object.values(chosen).join(', ')}`;
      } else note += '; untuned (cached or default variant)';
      const x = rand(e, [c.M, c.K], 1);
      const w = rand(e, [c.N, c.K], 2, 'bf16');
      return { inputs: [x, w], record: () => linear(e, x, w), note };
    }
    case 'attention': {
      const f = mod.flashAttention as AnyFn;
      const shape = [c.S, c.H, c.D];
      const [q, k, v] = [1, 2, 3].map((s) => rand(e, shape, s));
      return { inputs: [q, k, v], record: () => f(e, q, k, v), note: 'flashAttention, f32 [L, N, D]' };
    }
    case 'conv3d': {
      const f = mod.conv3d as AnyFn;
      const x = rand(e, [c.C, c.T, c.H, c.W], 1);
      const w = rand(e, [c.O, c.C, 3, 3, 3], 2);
      return { inputs: [x, w], record: () => f(e, x, w, { padding: 1 }), note: 'conv3d, f32 weights, padding 1 (weight re-layout included)' };
    }
    case 'layernorm': {
      const f = mod.layerNorm as AnyFn;
      const x = rand(e, [c.rows, c.cols], 1);
      return { inputs: [x], record: () => f(e, x, { eps: 1e-6 }), note: 'layerNorm, f32, no affine' };
    }
  }
}

/** Times one case with our kernel, or says why it cannot. */
export async function timeWanCase(e: Engine, c: BenchCase, policy: TimingPolicy, o: WanOptions): Promise<Measurement> {
  const family = await loadFamily(c.kernel);
  if ('reason' in family) return { medianMs: null, runs: 0, note: family.reason };
  let p: Prepared | null = null;
  try {
    p = await prepare(e, c, family.mod, o);
    const prepared = p;
    await gently(() => e.sync());
    const t = await timeRuns(async () => {
      const y = prepared.record();
      await gently(() => e.sync());
      y.dispose();
    }, policy);
    return { medianMs: t.medianMs, runs: t.runs, note: [prepared.note, t.note].filter(Boolean).join('; ') };
  } catch (err) {
    return { medianMs: null, runs: 0, note: `failed: ${(err as Error).message.split('\n')[0].slice(0, 200)}` };
  } finally {
    for (const t of p?.inputs ?? []) t.dispose();
  }
}
