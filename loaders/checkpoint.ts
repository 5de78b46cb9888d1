// Checkpoint folders, official or Diffusers layout: which files a task needs, with an error that
// names the missing file and the task when one is absent. Both layouts give the same
// CheckpointFiles; the Diffusers tensors are renamed to the official ones when opened (open.ts).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { T5_FILE, TASK_NAMES, TOKENIZER_DIR, taskSpec, type TaskSpec } from '../model/pipelines/tasks.ts';
import {
  componentConfig,
  componentDir,
  componentWeights,
  isDiffusersFolder,
  officialDitConfig,
  readPipelineInfo,
  vaeVersionOf,
  type DiffusersPipelineInfo,
} from './diffusers-checkpoint.ts';

export interface DitFiles {
  /** safetensors file, or shard index. */
  weights: string;
  config: Record<string, unknown> | null;
  dir: string;
}

export interface CheckpointFiles {
  dir: string;
  layout: 'official' | 'diffusers';
  /** Diffusers layout: what model_index.json and the scheduler config say. */
  pipeline?: DiffusersPipelineInfo;
  t5: string;
  spiece: string;
  vae: string;
  /** Dense model (ti2v) or the two experts (t2v / i2v). */
  dit?: DitFiles;
  high?: DitFiles;
  low?: DitFiles;
}

function need(path: string, what: string, task: TaskSpec): string {
  if (!existsSync(path)) throw new Error(`checkpoint incomplete: ${path} is missing (${what}, needed by ${task.name})`);
  return path;
}

function ditFiles(dir: string, what: string, task: TaskSpec): DitFiles {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`checkpoint incomplete: ${dir} is missing (${what}, needed by ${task.name})`);
  const index = join(dir, 'diffusion_pytorch_model.safetensors.index.json');
  const single = join(dir, 'diffusion_pytorch_model.safetensors');
  const weights = existsSync(index) ? index : existsSync(single) ? single : null;
  if (!weights) throw new Error(`checkpoint incomplete: ${dir} has neither diffusion_pytorch_model.safetensors nor its .index.json (${what}, needed by ${task.name})`);
  const cfgPath = join(dir, 'config.json');
  let config: Record<string, unknown> | null = null;
  if (existsSync(cfgPath)) {
    try {
      config = JSON.parse(readFileSync(cfgPath, 'utf8'));
    } catch (e) {
      throw new Error(`${cfgPath}: not valid JSON (${(e as Error).message})`);
    }
  }
  return { weights, config, dir };
}

/** Every file `task` reads from `dir`, checked to exist. */
export function locateCheckpoint(dir: string, task: TaskSpec): CheckpointFiles {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`--ckpt_dir ${dir} is not a folder`);
  if (isDiffusersFolder(dir)) return locateDiffusers(dir, task);
  const files: CheckpointFiles = {
    dir,
    layout: 'official',
    t5: need(join(dir, T5_FILE), 'the umT5 text encoder', task),
    spiece: need(join(dir, TOKENIZER_DIR, 'spiece.model'), 'the umT5 tokenizer', task),
    vae: need(join(dir, task.vaeFile), `the Wan${task.vae} VAE`, task),
  };
  if (task.experts) {
    files.high = ditFiles(join(dir, 'high_noise_model'), 'the high-noise expert', task);
    files.low = ditFiles(join(dir, 'low_noise_model'), 'the low-noise expert', task);
  } else {
    files.dit = ditFiles(dir, 'the diffusion transformer', task);
  }
  return files;
}

function diffusersDit(dir: string, name: string, what: string, task: TaskSpec): DitFiles {
  const d = componentDir(dir, name, what, task);
  const cfg = componentConfig(d, { classNames: ['WanTransformer3DModel'] }, what, task);
  return { dir: d, weights: componentWeights(d, 'diffusion_pytorch_model', what, task), config: officialDitConfig(cfg, join(d, 'config.json')) };
}

function locateDiffusers(dir: string, task: TaskSpec): CheckpointFiles {
  const pipeline = readPipelineInfo(dir);
  const te = componentDir(dir, 'text_encoder', 'the umT5 text encoder', task);
  componentConfig(te, { architectures: ['UMT5EncoderModel'] }, 'the umT5 text encoder', task);
  const tok = componentDir(dir, 'tokenizer', 'the umT5 tokenizer', task);
  const vaeDir = componentDir(dir, 'vae', `the Wan${task.vae} VAE`, task);
  const vaeCfg = componentConfig(vaeDir, { classNames: ['AutoencoderKLWan'] }, `the Wan${task.vae} VAE`, task);
  const version = vaeVersionOf(vaeCfg, join(vaeDir, 'config.json'));
  if (version !== task.vae) throw new Error(`${vaeDir} holds the Wan${version} VAE, ${task.name} needs the Wan${task.vae} VAE`);
  const spiece = join(tok, 'spiece.model');
  if (!existsSync(spiece)) throw new Error(`checkpoint incomplete: ${spiece} is missing (the umT5 tokenizer's SentencePiece model, needed by ${task.name}; tokenizer.json alone is not read)`);
  const files: CheckpointFiles = {
    dir,
    layout: 'diffusers',
    pipeline,
    t5: componentWeights(te, 'model', 'the umT5 text encoder', task),
    spiece,
    vae: componentWeights(vaeDir, 'diffusion_pytorch_model', `the Wan${task.vae} VAE`, task),
  };
  if (task.experts) {
    // diffusers: `transformer` runs while t >= boundary (high noise), `transformer_2` after it.
    files.high = diffusersDit(dir, 'transformer', 'the high-noise expert', task);
    files.low = diffusersDit(dir, 'transformer_2', 'the low-noise expert', task);
  } else {
    if (existsSync(join(dir, 'transformer_2'))) throw new Error(`${join(dir, 'transformer_2')}: ${task.name} is a single model, this folder holds two experts (an A14B task?)`);
    files.dit = diffusersDit(dir, 'transformer', 'the diffusion transformer', task);
  }
  return files;
}

/**
 * The first task whose checkpoint folder `dir` completes (t2v and i2v share the layout: callers tell
 * them apart by the DiT's config). Throws every task's reason when none fits.
 */
export function detectCheckpointTask(dir: string): TaskSpec {
  const errors: string[] = [];
  for (const name of TASK_NAMES) {
    try {
      locateCheckpoint(dir, taskSpec(name));
      return taskSpec(name);
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  throw new Error(`${dir} is not a complete checkpoint folder of any task:\n  ${errors.join('\n  ')}`);
}
