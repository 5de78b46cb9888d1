// --memory-mode and --max-device-memory (shared by `wan generate` and `wan info --plan`): the
// device-memory budget and how it is found, and the printed plan.
import { totalmem } from 'node:os';
import type { Engine } from '../engine/index.ts';
import { MEMORY_MODES, fmtGiB, parseByteSize, type MemoryMode, type MemoryPlan, type PlanStage } from '../model/pipelines/memory-plan.ts';

export const memoryFlagSpec = {
  memory_mode: { type: 'string' },
  max_device_memory: { type: 'string' },
} as const;

export const memoryFlagHelp = `  --memory-mode auto|resident|offload|stream
                              what stays on the device: resident (everything the stage needs),
                              offload (one A14B expert at a time, the VAE only for its stages),
                              stream (offload, and the umT5 / DiT blocks uploaded just in time);
                              auto (default): the first that fits the budget, as predicted
                              before anything is loaded (see wan info --plan)
  --max-device-memory SIZE    the budget, e.g. 8GB, 12GiB (env WAN_MAX_DEVICE_MEMORY); default on
                              CPU adapters (lavapipe) half the system memory, else none (WebGPU
                              does not report a GPU's memory): auto then keeps the official
                              single-GPU default, offload`;

/** Fraction of the system memory a CPU adapter's budget takes (the weights' files share the page cache). */
const CPU_BUDGET_FRACTION = 0.5;

export interface MemorySettings {
  mode: MemoryMode | 'auto';
  /** Bytes, or null (unknown). */
  budget: number | null;
  /** Where the budget came from (for the printed plan). */
  budgetSource: string;
}

/** True for adapters whose "device memory" is the host's (lavapipe, SwiftShader, WARP). */
export function isCpuAdapter(e: Engine): boolean {
  const s = e.gpu.summary;
  return s.architecture === 'software' || /llvmpipe|lavapipe|swiftshader|warp|software/i.test(`${s.device} ${s.description}`);
}

/** Reads the flags (and WAN_MAX_DEVICE_MEMORY); the CPU-adapter default needs the engine. */
export function memorySettings(values: { memory_mode?: string; max_device_memory?: string }, e: Engine | null): MemorySettings {
  const mode = (values.memory_mode ?? 'auto') as MemoryMode | 'auto';
  if (mode !== 'auto' && !MEMORY_MODES.includes(mode)) throw new Error(`--memory-mode must be auto, ${MEMORY_MODES.join(', ')}; got "${values.memory_mode}"`);
  if (values.max_device_memory !== undefined) return { mode, budget: parseByteSize(values.max_device_memory), budgetSource: '--max-device-memory' };
  const env = process.env.WAN_MAX_DEVICE_MEMORY;
  if (env) return { mode, budget: parseByteSize(env, 'WAN_MAX_DEVICE_MEMORY'), budgetSource: 'WAN_MAX_DEVICE_MEMORY' };
  if (e && isCpuAdapter(e)) return { mode, budget: Math.floor(totalmem() * CPU_BUDGET_FRACTION), budgetSource: `CPU adapter: half of ${fmtGiB(totalmem())} system memory` };
  return { mode, budget: null, budgetSource: 'the adapter does not report its memory' };
}

/**
 * The candidate modes generate() chooses among: an explicit --memory-mode; else with a budget, all
 * (resident first; --offload_model true drops resident, false keeps only resident); else the
 * official single-device default (--offload_model absent or true: offload; false: resident).
 */
export function resolveMode(s: MemorySettings, offloadModel: boolean | null): MemoryMode | 'auto' {
  if (s.mode !== 'auto') return s.mode;
  if (offloadModel === false) return 'resident';
  if (s.budget === null) return 'offload';
  return 'auto';
}

const STAGE_LABEL: Record<PlanStage, string> = { text: 'text encoding', encode: 'image encoding', denoise: 'denoising', decode: 'VAE decoding' };

/** The plan as lines: mode, then each stage's predicted peak (and the measured one when known). */
export function planLines(plan: MemoryPlan, measured?: Partial<Record<PlanStage, number>>): string[] {
  const extra = [plan.vaeTile ? 'tiled VAE' : '', plan.cfgSequential ? 'guidance passes one at a time' : ''].filter(Boolean).join(', ');
  const lines = [`memory mode ${plan.mode}${extra ? ` (${extra})` : ''}: predicted peak ${fmtGiB(plan.peakBytes)} (${STAGE_LABEL[plan.peakStage]})`];
  for (const st of plan.stages) {
    const m = measured?.[st.stage];
    const vs = m === undefined ? '' : `, measured ${fmtGiB(m)} (${m >= st.peakBytes ? '+' : ''}${(((m - st.peakBytes) / st.peakBytes) * 100).toFixed(1)}%)`;
    lines.push(`  ${STAGE_LABEL[st.stage].padEnd(15)} predicted ${fmtGiB(st.peakBytes).padStart(10)} (weights ${fmtGiB(st.weightBytes)}; peak at ${st.at})${vs}`);
  }
  return lines;
}
