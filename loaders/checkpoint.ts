// Checkpoint folders in the official layout: which files a task needs, with an error that names
// the missing file and the task when one is absent.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { T5_FILE, TOKENIZER_DIR, type TaskSpec } from '../model/pipelines/tasks.ts';

export interface DitFiles {
  /** safetensors file, or shard index. */
  weights: string;
  config: Record<string, unknown> | null;
  dir: string;
}

export interface CheckpointFiles {
  dir: string;
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
  const files: CheckpointFiles = {
    dir,
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
