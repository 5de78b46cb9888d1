// Checkpoint folders in the Diffusers layout (what `WanPipeline.save_pretrained` writes):
//
//   model_index.json            pipeline class, components, boundary_ratio (A14B), expand_timesteps (TI2V)
//   transformer/                WanTransformer3DModel: config.json + diffusion_pytorch_model*.safetensors
//   transformer_2/              A14B only. diffusers runs `transformer` while t >= boundary_ratio * 1000
//                               (the high-noise expert) and `transformer_2` below it (the low-noise expert)
//   text_encoder/               HF UMT5EncoderModel: config.json + model*.safetensors
//   tokenizer/                  spiece.model (+ tokenizer.json, unused here)
//   vae/                        AutoencoderKLWan: config.json (z_dim 16: Wan2.1 VAE, 48: Wan2.2) + weights
//   scheduler/                  scheduler_config.json (UniPCMultistepScheduler, flow_shift)
//
// The tensors are renamed to the official names when opened (loaders/open.ts + diffusers.ts); here
// the files are found, and the transformer config is translated to the official config.json fields.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { TaskSpec } from '../model/pipelines/tasks.ts';

export interface DiffusersPipelineInfo {
  /** model_index.json `_class_name` (WanPipeline, WanImageToVideoPipeline). */
  pipelineClass: string;
  /** model_index.json boundary_ratio (A14B: the expert switch), null when absent. */
  boundaryRatio: number | null;
  /** model_index.json expand_timesteps (TI2V-5B's per-token timesteps). */
  expandTimesteps: boolean;
  /** scheduler/scheduler_config.json flow_shift (the diffusers default shift), null when absent. */
  flowShift: number | null;
}

function readJson(path: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${path}: not a JSON object`);
  return v as Record<string, unknown>;
}

export function isDiffusersFolder(dir: string): boolean {
  return existsSync(join(dir, 'model_index.json'));
}

export function readPipelineInfo(dir: string): DiffusersPipelineInfo {
  const index = readJson(join(dir, 'model_index.json'));
  const schedPath = join(dir, 'scheduler', 'scheduler_config.json');
  const sched = existsSync(schedPath) ? readJson(schedPath) : {};
  return {
    pipelineClass: typeof index._class_name === 'string' ? index._class_name : '?',
    boundaryRatio: typeof index.boundary_ratio === 'number' ? index.boundary_ratio : null,
    expandTimesteps: index.expand_timesteps === true,
    flowShift: typeof sched.flow_shift === 'number' ? sched.flow_shift : null,
  };
}

/** A component folder that must exist, with a message naming it and the task that needs it. */
export function componentDir(dir: string, name: string, what: string, task: TaskSpec): string {
  const p = join(dir, name);
  if (!existsSync(p) || !statSync(p).isDirectory()) {
    throw new Error(`checkpoint incomplete: ${p} is missing (${what}, needed by ${task.name}; Diffusers layout)`);
  }
  return p;
}

/** The weights of a component: `<stem>.safetensors.index.json` (sharded) or `<stem>.safetensors`. */
export function componentWeights(dir: string, stem: string, what: string, task: TaskSpec): string {
  const index = join(dir, `${stem}.safetensors.index.json`);
  const single = join(dir, `${stem}.safetensors`);
  if (existsSync(index)) return index;
  if (existsSync(single)) return single;
  throw new Error(`checkpoint incomplete: ${dir} has neither ${stem}.safetensors nor ${stem}.safetensors.index.json (${what}, needed by ${task.name})`);
}

/** A component's config.json, which must exist and name the expected class. */
export function componentConfig(dir: string, expect: { classNames?: string[]; architectures?: string[] }, what: string, task: TaskSpec): Record<string, unknown> {
  const p = join(dir, 'config.json');
  if (!existsSync(p)) throw new Error(`checkpoint incomplete: ${p} is missing (${what}, needed by ${task.name})`);
  const cfg = readJson(p);
  const cls = cfg._class_name;
  const arch = Array.isArray(cfg.architectures) ? (cfg.architectures as unknown[]) : [];
  const ok = (expect.classNames ?? []).includes(cls as string) || (expect.architectures ?? []).some((a) => arch.includes(a));
  if (!ok) {
    const want = [...(expect.classNames ?? []), ...(expect.architectures ?? [])].join(' or ');
    throw new Error(`${p}: expected ${want} (${what}), found ${JSON.stringify(cls ?? arch)}`);
  }
  return cfg;
}

/**
 * WanTransformer3DModel config.json -> the official WanModel config.json fields the model reads.
 * diffusers has no text_len (its pipelines pass max_sequence_length=512, the official text_len);
 * a non-standard "text_len" field is honoured so small test models can keep theirs.
 */
export function officialDitConfig(cfg: Record<string, unknown>, path: string): Record<string, unknown> {
  const num = (k: string): number | undefined => {
    const v = cfg[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${path}: "${k}" is not a number (${JSON.stringify(v)})`);
    return v;
  };
  const heads = num('num_attention_heads');
  const headDim = num('attention_head_dim');
  const out: Record<string, unknown> = {
    num_heads: heads,
    dim: heads !== undefined && headDim !== undefined ? heads * headDim : undefined,
    ffn_dim: num('ffn_dim'),
    freq_dim: num('freq_dim'),
    in_dim: num('in_channels'),
    out_dim: num('out_channels'),
    num_layers: num('num_layers'),
    eps: num('eps'),
    text_len: num('text_len') ?? 512,
  };
  if (cfg.image_dim !== undefined && cfg.image_dim !== null) {
    throw new Error(`${path}: image_dim ${JSON.stringify(cfg.image_dim)}: a CLIP image branch (Wan2.1 I2V) is not part of Wan2.2`);
  }
  if (cfg.qk_norm !== undefined && cfg.qk_norm !== null && cfg.qk_norm !== 'rms_norm_across_heads') {
    throw new Error(`${path}: qk_norm "${String(cfg.qk_norm)}" is not supported (Wan uses rms_norm_across_heads)`);
  }
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}

/** z_dim of vae/config.json (16: Wan2.1 VAE, 48: Wan2.2 VAE; diffusers' default is 16). */
export function vaeVersionOf(cfg: Record<string, unknown>, path: string): '2.1' | '2.2' {
  const z = cfg.z_dim ?? 16;
  if (z === 16) return '2.1';
  if (z === 48) return '2.2';
  throw new Error(`${path}: z_dim ${JSON.stringify(z)} is neither the Wan2.1 (16) nor the Wan2.2 (48) VAE`);
}
