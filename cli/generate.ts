// `wan generate`: the official generate.py command line (snake_case flags, also kebab-case), plus
// --negative-prompt, --fps, --dtype, --adapter / --backend.
import { existsSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { parseArgs } from 'node:util';
import { Engine, type DType } from '../engine/index.ts';
import { decodeImage } from '../loaders/image.ts';
import type { ActivationDType } from '../model/dit.ts';
import { generate, type GenerateResult } from '../model/pipelines/generate.ts';
import { TASK_NAMES, checkFrameNum, parseSize, taskSpec } from '../model/pipelines/tasks.ts';
import type { SolverName } from '../model/schedulers/index.ts';
import { deviceFlagHelp, deviceFlagSpec, deviceOptions } from './device-flags.ts';
import { memoryFlagHelp, memoryFlagSpec, memorySettings, planLines, resolveMode } from './memory-flags.ts';
import { animatedFormatOf, writeAnimated } from './output/animated.ts';
import { writeMp4 } from './output/mp4.ts';
import { writePngFrames } from './output/png.ts';
import { Progress, fmtBytes, fmtTime } from './progress.ts';

export const EXAMPLE_PROMPT: Record<string, string> = {
  't2v-A14B': 'Two anthropomorphic cats in comfy boxing gear and bright gloves fight intensely on a spotlighted stage.',
  'i2v-A14B':
    'Summer beach vacation style, a white cat wearing sunglasses sits on a surfboard. The fluffy-furred feline gazes directly at the camera with a relaxed expression. Blurred beach scenery forms the background featuring crystal-clear waters, distant green hills, and a blue sky dotted with white clouds. The cat assumes a naturally relaxed posture, as if savoring the sea breeze and warm sunlight. A close-up shot highlights the feline\'s intricate details and the refreshing atmosphere of the seaside.',
  'ti2v-5B': 'Two anthropomorphic cats in comfy boxing gear and bright gloves fight intensely on a spotlighted stage.',
};

export const generateHelp = `usage: wan generate --task TASK --ckpt_dir DIR [options]

Generates a video with the official Wan2.2 semantics (flags as generate.py; kebab-case works too).
  --task t2v-A14B|i2v-A14B|ti2v-5B   (default t2v-A14B)
  --ckpt_dir DIR              checkpoint folder: the official layout (Wan2.2-T2V-A14B, ...) or the
                              Diffusers one (model_index.json, transformer/, ...)
  --size W*H                  official: t2v/i2v 1280*720 720*1280 832*480 480*832, ti2v 1280*704 704*1280;
                              other multiples of 16 (A14B) / 32 (ti2v) work with a warning; image tasks: area
  --frame_num N               4n+1 (default 81, ti2v 121)
  --prompt TEXT               (default: the official example prompt)
  --negative-prompt TEXT      (default: the official Chinese negative prompt)
  --image FILE                PNG/JPEG/WebP; required for i2v-A14B, optional for ti2v-5B, not for t2v
  --base_seed N               (default -1: random, printed)
  --sample_solver unipc|dpm++ (default unipc)
  --sample_steps N            (default 40, ti2v 50)
  --sample_shift X            (default 12 t2v, 5 i2v/ti2v)
  --sample_guide_scale X      one scale for both experts (default (3, 4) t2v, 3.5 i2v, 5 ti2v)
  --save_file PATH            .mp4 (H.264), .webp (animated, lossless), .gif, or a folder
                              (trailing /) of PNG frames;
                              default: <task>_<size>_1_<prompt>_<time>.mp4 like generate.py
  --fps N                     (default 16, ti2v 24)
  --dtype bf16|f16|f32        weight storage on the device (default bf16)
  --activations f32|f16       the DiT's activations (default f32; f16 halves their memory, needs the
                              adapter's shader-f16; about 4e-4 relative error on the reference fixtures)
  --vae-tile                  encode the image and decode the video in overlapping spatial tiles
                              (256 px, 64 px blended): less device memory, seams blended
  --offload_model true|false  keep one A14B expert on the device at a time, the other is read from
                              the checkpoint at the boundary (= --memory-mode offload; false =
                              resident; absent: as --memory-mode says)
${memoryFlagHelp}
  --t5_cpu, --convert_model_dtype
                              accepted for compatibility: this engine always frees the text encoder
                              after use, runs everything on the WebGPU device, and stores weights in --dtype
${deviceFlagHelp}`;

const SPEC = {
  task: { type: 'string' },
  size: { type: 'string' },
  frame_num: { type: 'string' },
  ckpt_dir: { type: 'string' },
  prompt: { type: 'string' },
  negative_prompt: { type: 'string' },
  image: { type: 'string' },
  base_seed: { type: 'string' },
  sample_solver: { type: 'string' },
  sample_steps: { type: 'string' },
  sample_shift: { type: 'string' },
  sample_guide_scale: { type: 'string' },
  save_file: { type: 'string' },
  fps: { type: 'string' },
  dtype: { type: 'string' },
  activations: { type: 'string' },
  vae_tile: { type: 'boolean' },
  offload_model: { type: 'string' },
  ...memoryFlagSpec,
  t5_cpu: { type: 'boolean' },
  convert_model_dtype: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  ...deviceFlagSpec,
} as const;

/** --kebab-case -> --snake_case for our flags (device flags stay kebab), --n_prompt alias. */
export function normalizeArgv(argv: string[]): string[] {
  const device = new Set(Object.keys(deviceFlagSpec));
  return argv.map((a) => {
    if (!a.startsWith('--')) return a;
    const [flag, ...rest] = a.slice(2).split('=');
    let name = device.has(flag) ? flag : flag.replace(/-/g, '_');
    if (name === 'n_prompt') name = 'negative_prompt';
    return `--${name}${rest.length ? `=${rest.join('=')}` : ''}`;
  });
}

function num(name: string, v: string | undefined, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'}, got "${v}"`);
  return n;
}

/** generate.py's str2bool spellings; absent = null. */
function parseBool(flag: string, v: string | undefined): boolean | null {
  if (v === undefined) return null;
  const s = v.toLowerCase();
  if (['true', 't', 'yes', 'y', '1'].includes(s)) return true;
  if (['false', 'f', 'no', 'n', '0'].includes(s)) return false;
  throw new Error(`--${flag} ${v}: expected true or false`);
}

export function defaultSaveFile(task: string, size: string, prompt: string, now = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const time = `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}_${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
  const sz = process.platform === 'win32' ? size.replace('*', 'x') : size;
  return `${task}_${sz}_1_${prompt.replace(/ /g, '_').replace(/\//g, '_').slice(0, 50)}_${time}.mp4`;
}

export async function generateCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: normalizeArgv(argv), options: SPEC, allowPositionals: false });
  if (values.help) {
    console.log(generateHelp);
    return 0;
  }
  const task = taskSpec(values.task ?? 't2v-A14B');
  if (!values.ckpt_dir) throw new Error(`--ckpt_dir is required (a checkpoint folder of ${task.name}); tasks: ${TASK_NAMES.join(', ')}`);
  const sizeText = values.size ?? task.defaultSize;
  const size = parseSize(task, sizeText);
  if (size.warning) console.warn(`warning: ${size.warning}`);
  const frameNum = num('frame_num', values.frame_num, true) ?? task.frameNum;
  checkFrameNum(frameNum);
  const solver = (values.sample_solver ?? 'unipc') as SolverName;
  if (solver !== 'unipc' && solver !== 'dpm++') throw new Error(`--sample_solver must be unipc or dpm++, got "${solver}"`);
  const steps = num('sample_steps', values.sample_steps, true) ?? task.sampleSteps;
  if (steps < 1) throw new Error(`--sample_steps must be at least 1, got ${steps}`);
  const shift = num('sample_shift', values.sample_shift, false) ?? task.sampleShift;
  if (!(shift > 0)) throw new Error(`--sample_shift must be positive, got ${shift}`);
  const g = num('sample_guide_scale', values.sample_guide_scale, false);
  const guideScale: [number, number] = g === undefined ? task.guideScale : [g, g];
  const fps = num('fps', values.fps, false) ?? task.fps;
  if (!(fps > 0)) throw new Error(`--fps must be positive, got ${fps}`);
  const dtype = (values.dtype ?? 'bf16') as DType;
  if (!['bf16', 'f16', 'f32'].includes(dtype)) throw new Error(`--dtype must be bf16, f16 or f32, got "${dtype}"`);
  const activations = (values.activations ?? 'f32') as ActivationDType;
  if (activations !== 'f32' && activations !== 'f16') throw new Error(`--activations must be f32 or f16, got "${values.activations}"`);
  let seed = num('base_seed', values.base_seed, true) ?? -1;
  if (seed < 0) {
    seed = Math.floor(Math.random() * 2 ** 53);
    console.log(`seed: ${seed}`);
  }
  if (task.image === 'forbidden' && values.image) throw new Error(`${task.name} takes no --image (use i2v-A14B or ti2v-5B)`);
  if (task.image === 'required' && !values.image) throw new Error(`${task.name} needs --image (a PNG, JPEG or WebP file)`);
  const offloadModel = parseBool('offload_model', values.offload_model);
  if (offloadModel && !task.experts) console.warn(`note: --offload_model only changes the two-expert A14B tasks`);
  for (const flag of ['t5_cpu', 'convert_model_dtype'] as const) {
    if (values[flag] !== undefined) console.warn(`note: --${flag} has no effect here (see wan generate --help)`);
  }
  const prompt = values.prompt ?? EXAMPLE_PROMPT[task.name];
  const saveFile = values.save_file ?? defaultSaveFile(task.name, sizeText, prompt);
  const asFrames = saveFile.endsWith('/') || (existsSync(saveFile) && statSync(saveFile).isDirectory());
  const animated = asFrames ? null : animatedFormatOf(saveFile);
  if (!asFrames && !animated && extname(saveFile).toLowerCase() !== '.mp4') {
    throw new Error(`--save_file ${saveFile}: write .mp4, .webp, .gif, or a folder of PNG frames (end the path with /)`);
  }
  const image = values.image ? await decodeImage(values.image) : undefined;
  if (image?.orientation && image.orientation !== 1) {
    console.warn(`warning: ${values.image} has EXIF orientation ${image.orientation}; like the official code it is used as stored (not rotated)`);
  }

  const engine = await Engine.create(deviceOptions(values));
  let memory;
  try {
    memory = memorySettings(values, engine);
  } catch (err) {
    await engine.destroy();
    throw err;
  }
  const memoryMode = resolveMode(memory, offloadModel);
  // The budget is enforced too: an allocation past it fails with a clear error, not a driver OOM.
  engine.pool.limitBytes = memory.budget;
  if (memory.budget !== null) console.log(`device-memory budget ${fmtBytes(memory.budget)} (${memory.budgetSource})`);
  const progress = new Progress();
  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(130);
    console.error('\nstopping after the current step (Ctrl-C again to quit at once)...');
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  const started = performance.now();
  let res: GenerateResult;
  try {
    res = await generate(engine, {
      task,
      ckptDir: values.ckpt_dir,
      prompt,
      negativePrompt: values.negative_prompt,
      image,
      size: [size.width, size.height],
      frameNum,
      seed,
      solver,
      steps,
      shift,
      guideScale,
      dtype,
      activations,
      vaeTile: values.vae_tile === true,
      offloadModel: offloadModel === true,
      memoryMode,
      maxDeviceMemory: memory.budget,
      onPlan: (plan) => console.log(planLines(plan)[0]),
      signal: abort.signal,
      onProgress: (stage, done, total, info) => progress.update(stage, done, total, info),
    });
    progress.end();
  } catch (e) {
    progress.end();
    if ((e as Error).name === 'AbortError') {
      console.error('cancelled: nothing was written');
      return 130;
    }
    if (/OutOfMemory|out of memory/i.test((e as Error).message) && memory.budget === null) {
      // WebGPU does not report a GPU's memory: with a budget the planner would have chosen a lighter mode.
      (e as Error).message +=
        `\nThe device ran out of memory in --memory-mode ${memoryMode === 'auto' ? 'auto' : memoryMode}. Tell the planner the GPU's memory ` +
        `(--max-device-memory, e.g. 24GB) so it can choose a lighter mode, or pass --memory-mode stream; ` +
        `npx wan info --plan with the same --task --size --frame_num shows what each mode needs.`;
    }
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
  }
  const mem = engine.memory();
  await engine.destroy();
  const video = { rgb: res.frames, frames: res.frameCount, height: res.height, width: res.width };
  if (asFrames) await writePngFrames(saveFile.replace(/\/+$/, ''), video);
  else if (animated) await writeAnimated(saveFile, video, fps, animated);
  else await writeMp4(saveFile, video, fps);
  const stages = Object.entries(res.timings)
    .map(([k, v]) => `${k} ${fmtTime(v!)}`)
    .join(', ');
  console.log(`${res.frameCount} frames ${res.width}x${res.height} at ${fps} fps -> ${saveFile}`);
  console.log(`time: ${fmtTime((performance.now() - started) / 1000)} (${stages}); peak device memory ${fmtBytes(mem.peakLiveBytes)} in tensors, ${fmtBytes(mem.peakAllocatedBytes)} allocated (with the pool's cached buffers)`);
  for (const line of planLines(res.memory.plan, res.memory.measured)) console.log(line);
  return 0;
}
