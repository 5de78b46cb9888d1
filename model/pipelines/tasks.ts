// Per-task defaults and size rules, as the official wan/configs and generate.py define them.
// One module owns them: the CLI, the pipelines and `wan info` all read from here.
import type { DitConfig } from '../dit-config.ts';
import type { T5Config } from '../t5-config.ts';

export type TaskName = 't2v-A14B' | 'i2v-A14B' | 'ti2v-5B';
export const TASK_NAMES: readonly TaskName[] = ['t2v-A14B', 'i2v-A14B', 'ti2v-5B'];

export interface TaskSpec {
  name: TaskName;
  /** Which pipeline runs it. */
  flavour: 't2v' | 'i2v' | 'ti2v';
  /** Image input: required (i2v), optional (ti2v), forbidden (t2v). */
  image: 'required' | 'optional' | 'forbidden';
  vae: '2.1' | '2.2';
  vaeFile: string;
  zDim: number;
  vaeStride: [number, number, number];
  patch: [number, number, number];
  /** Two MoE experts (high noise while t >= boundary * 1000), or one dense model. */
  experts: boolean;
  boundary: number;
  sampleShift: number;
  sampleSteps: number;
  /** (low noise, high noise) guidance; a dense model uses the first. */
  guideScale: [number, number];
  fps: number;
  frameNum: number;
  /** The official --size choices (W*H) and the default. */
  sizes: readonly string[];
  defaultSize: string;
}

export const T5_FILE = 'models_t5_umt5-xxl-enc-bf16.pth';
export const TOKENIZER_DIR = 'google/umt5-xxl';
export const TEXT_LEN = 512;
export const NUM_TRAIN_TIMESTEPS = 1000;
export const SAMPLE_NEG_PROMPT =
  '色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走';

const A14B_SIZES = ['720*1280', '1280*720', '480*832', '832*480'] as const;

export const TASKS: Record<TaskName, TaskSpec> = {
  't2v-A14B': {
    name: 't2v-A14B',
    flavour: 't2v',
    image: 'forbidden',
    vae: '2.1',
    vaeFile: 'Wan2.1_VAE.pth',
    zDim: 16,
    vaeStride: [4, 8, 8],
    patch: [1, 2, 2],
    experts: true,
    boundary: 0.875,
    sampleShift: 12,
    sampleSteps: 40,
    guideScale: [3.0, 4.0],
    fps: 16,
    frameNum: 81,
    sizes: A14B_SIZES,
    defaultSize: '1280*720',
  },
  'i2v-A14B': {
    name: 'i2v-A14B',
    flavour: 'i2v',
    image: 'required',
    vae: '2.1',
    vaeFile: 'Wan2.1_VAE.pth',
    zDim: 16,
    vaeStride: [4, 8, 8],
    patch: [1, 2, 2],
    experts: true,
    boundary: 0.9,
    sampleShift: 5,
    sampleSteps: 40,
    guideScale: [3.5, 3.5],
    fps: 16,
    frameNum: 81,
    sizes: A14B_SIZES,
    defaultSize: '1280*720',
  },
  'ti2v-5B': {
    name: 'ti2v-5B',
    flavour: 'ti2v',
    image: 'optional',
    vae: '2.2',
    vaeFile: 'Wan2.2_VAE.pth',
    zDim: 48,
    vaeStride: [4, 16, 16],
    patch: [1, 2, 2],
    experts: false,
    boundary: 0,
    sampleShift: 5,
    sampleSteps: 50,
    guideScale: [5.0, 5.0],
    fps: 24,
    frameNum: 121,
    sizes: ['704*1280', '1280*704'],
    defaultSize: '1280*704',
  },
};

export function taskSpec(name: string): TaskSpec {
  const t = TASKS[name as TaskName];
  if (!t) throw new Error(`unknown task "${name}" (choose ${TASK_NAMES.join(', ')})`);
  return t;
}

/** Spatial stride a size must be a multiple of: VAE stride x patch (16 for A14B, 32 for ti2v-5B). */
export function spatialStride(t: TaskSpec): number {
  return t.vaeStride[1] * t.patch[1];
}

export interface SizeCheck {
  width: number;
  height: number;
  /** Set when the size is valid but not one the model was trained on. */
  warning?: string;
}

/** Parses `W*H` and checks it against the task: an official size, or any multiple of the stride. */
export function parseSize(t: TaskSpec, size: string): SizeCheck {
  const m = /^(\d+)\*(\d+)$/.exec(size.trim());
  if (!m) throw new Error(`--size must look like WIDTH*HEIGHT (e.g. ${t.defaultSize}), got "${size}"`);
  const width = Number(m[1]);
  const height = Number(m[2]);
  const s = spatialStride(t);
  if (width < s || height < s || width % s || height % s) {
    throw new Error(`--size ${size}: width and height must be positive multiples of ${s} for ${t.name} (official sizes: ${t.sizes.join(', ')})`);
  }
  if (t.sizes.includes(`${width}*${height}`)) return { width, height };
  const what = t.image === 'forbidden' ? 'sizes' : 'areas';
  return { width, height, warning: `${t.name} was trained on the ${what} ${t.sizes.join(', ')}; ${size} may look worse` };
}

export function checkFrameNum(n: number): void {
  if (!Number.isInteger(n) || n < 1 || (n - 1) % 4 !== 0) throw new Error(`--frame_num must be 4n+1 (1, 5, 9, ..., 81), got ${n}`);
}

/** The official WanModel configuration of a task (wan/configs/wan_*.py), for planning without a checkpoint. */
export function officialDitConfig(t: TaskSpec): DitConfig {
  const common = { freqDim: 256, textDim: 4096, textLen: TEXT_LEN, eps: 1e-6, patch: t.patch, crossAttnNorm: true, qkNorm: true };
  if (t.name === 'ti2v-5B') return { modelType: 'ti2v', dim: 3072, ffnDim: 14336, inDim: 48, outDim: 48, numHeads: 24, numLayers: 30, ...common };
  const i2v = t.name === 'i2v-A14B';
  return { modelType: i2v ? 'i2v' : 't2v', dim: 5120, ffnDim: 13824, inDim: i2v ? 36 : 16, outDim: 16, numHeads: 40, numLayers: 40, ...common };
}

/** umT5-XXL's encoder (models_t5_umt5-xxl-enc-bf16.pth), shared by every task. */
export const UMT5_XXL_CONFIG: T5Config = { vocab: 256384, dim: 4096, dimAttn: 4096, dimFfn: 10240, numHeads: 64, headDim: 64, numLayers: 24, numBuckets: 32, maxDist: 128, eps: 1e-6 };

/** Latent [C, f, h, w] and token counts of a text-only video of width x height x frameNum. */
export function latentGeometry(t: TaskSpec, width: number, height: number, frameNum: number): { latentShape: [number, number, number, number]; tokens: number; seqLen: number } {
  const f = Math.floor((frameNum - 1) / t.vaeStride[0]) + 1;
  const h = Math.floor(height / t.vaeStride[1]);
  const w = Math.floor(width / t.vaeStride[2]);
  const tokens = Math.ceil(((h * w) / (t.patch[1] * t.patch[2])) * f);
  return { latentShape: [t.zDim, f, h, w], tokens, seqLen: tokens };
}
