// `wan info --plan`: the predicted peak device memory of a generation in each memory mode, and the
// mode `wan generate` would choose, before anything is loaded (model/pipelines/memory-plan.ts).
// With a checkpoint folder the architectures come from its weights, else the official ones.
import { parseArgs } from 'node:util';
import { Engine, type DType } from '../engine/index.ts';
import { locateCheckpoint } from '../loaders/checkpoint.ts';
import { checkpointArchitectures, planDevice } from '../model/pipelines/generate.ts';
import { DEFAULT_PLAN_DEVICE, MEMORY_MODES, MemoryPlanError, choosePlan, fmtGiB, planMemory, type MemoryMode, type PlanInput } from '../model/pipelines/memory-plan.ts';
import { UMT5_XXL_CONFIG, checkFrameNum, latentGeometry, officialDitConfig, parseSize, taskSpec } from '../model/pipelines/tasks.ts';
import { officialVaeArchitecture } from '../model/vae/memory.ts';
import { deviceFlagSpec, deviceOptions } from './device-flags.ts';
import { normalizeArgv } from './generate.ts';
import { memoryFlagSpec, memorySettings, planLines, resolveMode } from './memory-flags.ts';

export const planHelp = `usage: wan info --plan [--task T] [--size W*H] [--frame_num N] [ckpt_dir] [options]

Predicts the peak device memory of \`wan generate\` with these settings in each memory mode, per
stage (text encoding, image encoding, denoising, VAE decoding), and says which mode
--memory-mode auto picks under the budget. Nothing is loaded: the architectures come from the
checkpoint's tensor index when ckpt_dir is given, else from the official configs.
  --task, --size, --frame_num, --dtype, --activations, --vae-tile   as for wan generate
  --image                     plan ti2v-5B with an input image (per-token timesteps); i2v always has one
  --memory-mode, --max-device-memory   as for wan generate
  --no-device                 do not open the adapter (default limits; no CPU-adapter budget)
  --json                      machine-readable`;

export async function planCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: normalizeArgv(argv),
    allowPositionals: true,
    options: {
      plan: { type: 'boolean' },
      task: { type: 'string' },
      size: { type: 'string' },
      frame_num: { type: 'string' },
      dtype: { type: 'string' },
      activations: { type: 'string' },
      vae_tile: { type: 'boolean' },
      image: { type: 'boolean' },
      no_device: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...memoryFlagSpec,
      ...deviceFlagSpec,
    },
  });
  if (values.help) {
    console.log(planHelp);
    return 0;
  }
  if (positionals.length > 1) throw new Error(`wan info --plan takes at most one checkpoint folder, got ${positionals.length} arguments`);
  const task = taskSpec(values.task ?? 't2v-A14B');
  const sizeText = values.size ?? task.defaultSize;
  const size = parseSize(task, sizeText);
  const frameNum = values.frame_num === undefined ? task.frameNum : Number(values.frame_num);
  checkFrameNum(frameNum);
  const dtype = (values.dtype ?? 'bf16') as DType;
  if (!['bf16', 'f16', 'f32'].includes(dtype)) throw new Error(`--dtype must be bf16, f16 or f32, got "${dtype}"`);
  const activations = (values.activations ?? 'f32') as 'f32' | 'f16';
  if (activations !== 'f32' && activations !== 'f16') throw new Error(`--activations must be f32 or f16, got "${values.activations}"`);
  const image = task.image === 'required' || (task.image === 'optional' && values.image === true);
  if (values.image && task.image === 'forbidden') throw new Error(`${task.name} takes no image`);

  const e = values.no_device ? null : await Engine.create(deviceOptions(values));
  try {
    const settings = memorySettings(values, e);
    const arch = positionals.length
      ? await checkpointArchitectures(locateCheckpoint(positionals[0], task), task)
      : { dit: officialDitConfig(task), t5: UMT5_XXL_CONFIG, vae: officialVaeArchitecture(task.vae) };
    const g = latentGeometry(task, size.width, size.height, frameNum);
    const input: PlanInput = { task, dit: arch.dit, t5: arch.t5, vae: arch.vae, latentShape: g.latentShape, seqLen: g.seqLen, image, dtype, activations, device: e ? planDevice(e) : DEFAULT_PLAN_DEVICE };
    const plans = MEMORY_MODES.flatMap((m: MemoryMode) =>
      m !== 'stream' ? [planMemory(input, m, values.vae_tile === true)] : [...(values.vae_tile ? [] : [planMemory(input, m, false)]), planMemory(input, m, true), planMemory(input, m, true, true)],
    );
    const mode = resolveMode(settings, null);
    let chosen: string;
    try {
      const c = choosePlan(input, mode === 'auto' ? settings.budget : null, mode === 'auto' ? MEMORY_MODES : [mode], values.vae_tile ? true : undefined);
      chosen = planLines(c.plan)[0].replace(/^memory mode /, '').replace(/: predicted.*$/, '');
    } catch (err) {
      if (!(err instanceof MemoryPlanError)) throw err;
      chosen = `none fits: ${err.message}`;
    }
    const what = `${task.name} ${size.width}x${size.height}, ${frameNum} frames${image ? ', with an image' : ''}: latent [${g.latentShape}], ${g.tokens} tokens; weights ${dtype}, activations ${activations}; ${positionals.length ? `architectures of ${positionals[0]}` : 'official architectures'}`;
    if (values.json) {
      console.log(JSON.stringify({ task: task.name, width: size.width, height: size.height, frameNum, image, latentShape: g.latentShape, tokens: g.tokens, dtype, activations, budget: settings.budget, budgetSource: settings.budgetSource, chosen, plans }, null, 1));
      return 0;
    }
    console.log(what);
    console.log(`budget: ${settings.budget === null ? 'none' : fmtGiB(settings.budget)} (${settings.budgetSource})`);
    for (const p of plans) for (const line of planLines(p)) console.log(line);
    console.log(`wan generate would use: ${chosen}`);
    return 0;
  } finally {
    await e?.destroy();
  }
}
