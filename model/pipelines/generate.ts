// The three Wan2.2 pipelines, exactly as the official generate() loops (wan/text2video.py,
// image2video.py, textimage2video.py) run them: text encoding, seeded noise, the MoE switch and
// guidance pair, UniPC or DPM++, i2v / ti2v image conditioning, VAE decode, uint8 frames.
// Latents stay on the host between steps (the samplers are host code); each DiT forward runs
// cond and uncond as one batch.
import type { Engine, DType } from '../../engine/index.ts';
import type { RgbImage } from '../../loaders/image.ts';
import { locateCheckpoint, type CheckpointFiles, type DitFiles } from '../../loaders/checkpoint.ts';
import { openTensorSource } from '../../loaders/open.ts';
import type { TensorSource } from '../../loaders/source.ts';
import { WanDiT, type ActivationDType } from '../dit.ts';
import { inferDitConfig, type DitConfig } from '../dit-config.ts';
import { preprocessI2vA14b, preprocessTi2v5b } from '../image/preprocess.ts';
import { TorchCpuGenerator } from '../rng.ts';
import { createScheduler, type SolverName } from '../schedulers/index.ts';
import { UmT5Encoder, sequenceLengths } from '../t5.ts';
import { inferT5Config, type T5Config } from '../t5-config.ts';
import { UmT5Tokenizer } from '../tokenizer.ts';
import { WanVAE, type VaeArchitecture } from '../vae/index.ts';
import { MEMORY_MODES, choosePlan, planMemory, type MemoryMode, type MemoryPlan, type PlanDevice, type PlanInput, type PlanStage } from './memory-plan.ts';
import { NUM_TRAIN_TIMESTEPS, SAMPLE_NEG_PROMPT, checkFrameNum, type TaskSpec } from './tasks.ts';

export type Stage = 'load' | 'text' | 'encode' | 'denoise' | 'decode';

export interface GenerateOptions {
  task: TaskSpec;
  ckptDir: string;
  prompt: string;
  /** Empty: the config's Chinese negative prompt, as the official code. */
  negativePrompt?: string;
  image?: RgbImage;
  /** Target (width, height); for image tasks the target area. */
  size: [number, number];
  /** Image tasks: the target pixel area (default width * height). */
  maxArea?: number;
  frameNum: number;
  seed: number;
  solver: SolverName;
  steps: number;
  shift: number;
  /** (low-noise, high-noise) guidance scales. */
  guideScale: [number, number];
  /** Storage dtype of the weights on the device. */
  dtype?: DType;
  /** The DiT's activation dtype (default f32; 'f16' needs shader-f16: half the activation memory). */
  activations?: ActivationDType;
  /** Encode the image and decode the video in overlapping spatial tiles (WanVAE `tile`: less device memory, seams blended). */
  vaeTile?: boolean;
  /**
   * MoE tasks: keep one expert on the device at a time (the official `--offload_model`): the
   * high-noise expert is loaded first and freed at the boundary before the low-noise one is read
   * from the checkpoint. Same result, about one expert less device memory, one extra load.
   */
  offloadModel?: boolean;
  /**
   * What stays on the device (model/pipelines/memory-plan.ts): 'resident', 'offload' (one MoE expert
   * at a time, the VAE only for its stages), 'stream' (offload, and the umT5 and DiT blocks uploaded
   * just in time), or 'auto': the first of those whose predicted peak fits `maxDeviceMemory`.
   * Default: 'auto' when a budget is given, else 'offload' with offloadModel, else 'resident'.
   */
  memoryMode?: MemoryMode | 'auto';
  /** Run the guidance passes one after the other even when the batch fits (see MemoryPlan.cfgSequential). */
  cfgSequential?: boolean;
  /** Device-memory budget in bytes for 'auto' (null / absent: no budget, the first candidate mode). */
  maxDeviceMemory?: number | null;
  /** Called with the chosen memory plan before anything is loaded. */
  onPlan?: (plan: MemoryPlan) => void;
  /** Stage progress: `done` of `total` units (steps for denoise, frames for decode). */
  onProgress?: (stage: Stage, done: number, total: number, info?: string) => void;
  /** Checked between steps: a cancelled run stops cleanly with an AbortError. */
  signal?: AbortSignal;
  /** Verification hook: every recorded tensor of the run (host float32 / int arrays). */
  record?: (name: string, value: Float32Array | number[] | number) => void;
}

export interface GenerateResult {
  /** Decoded video [3, T, H, W] in [-1, 1]. */
  video: Float32Array;
  /** uint8 frames [T, H, W, 3] as the official save path writes them. */
  frames: Uint8Array;
  frameCount: number;
  height: number;
  width: number;
  /** Final latent handed to the VAE. */
  x0: Float32Array;
  latentShape: [number, number, number, number];
  timings: Partial<Record<Stage, number>>;
  /** The memory plan the run followed and the measured peak of live device bytes per stage. */
  memory: { plan: MemoryPlan; measured: Partial<Record<PlanStage, number>> };
}

function aborted(signal?: AbortSignal): void {
  if (signal?.aborted) {
    const e = new Error('generation cancelled');
    e.name = 'AbortError';
    throw e;
  }
}

/**
 * Loads a DiT. Streamed: the model keeps `files` open and reads each block per forward (it closes
 * the source when disposed); otherwise every weight is uploaded and the source closed.
 */
async function loadDit(e: Engine, files: DitFiles, dtype: DType | undefined, activations: ActivationDType | undefined, stream: boolean, onTensor?: (n: string, d: number, t: number) => void): Promise<WanDiT> {
  const src = await openTensorSource(files.weights);
  let owned = false;
  try {
    const dit = await WanDiT.load(e, src, files.config, { dtype, activations, onTensor, stream });
    owned = stream;
    return dit;
  } finally {
    if (!owned) await src.close();
  }
}

/** Opens a file's tensor index only (no weights read) to learn its architecture. */
async function probe<T>(path: string, read: (src: TensorSource) => T): Promise<T> {
  const src = await openTensorSource(path);
  try {
    return read(src);
  } finally {
    await src.close();
  }
}

/** The VAE's widths from its weights (the multipliers and block counts are the official ones). */
export function inferVaeArchitecture(src: TensorSource, version: '2.1' | '2.2'): VaeArchitecture {
  const shape = (n: string) => {
    if (!src.has(n)) throw new Error(`${src.path}: missing tensor "${n}" (not a Wan VAE?)`);
    return src.info(n).shape;
  };
  const dimMult = [1, 2, 4, 4];
  const dec = shape('decoder.conv1.weight');
  return { zDim: dec[1], encoderDim: shape('encoder.conv1.weight')[0], decoderDim: dec[0] / dimMult[dimMult.length - 1], dimMult, numResBlocks: 2, temporalDownsample: [false, true, true] };
}

/** The architectures of a checkpoint's models, read from their tensor indexes and configs. */
export async function checkpointArchitectures(files: CheckpointFiles, task: TaskSpec): Promise<{ dit: DitConfig; t5: T5Config; vae: VaeArchitecture }> {
  const ditFiles = (files.high ?? files.dit)!;
  return {
    dit: await probe(ditFiles.weights, (src) => inferDitConfig(src, ditFiles.config)),
    t5: await probe(files.t5, (src) => inferT5Config(src)),
    vae: await probe(files.vae, (src) => inferVaeArchitecture(src, task.vae)),
  };
}

/** Text encoder pass: [prompt, negative] -> trimmed contexts. Frees the encoder afterwards. */
async function encodeText(e: Engine, files: CheckpointFiles, textLen: number, ids: Int32Array, mask: Int32Array, o: GenerateOptions, stream: boolean) {
  const src = await openTensorSource(files.t5);
  let t5: UmT5Encoder | null = null;
  try {
    t5 = await UmT5Encoder.load(e, src, { dtype: o.dtype, stream });
    const [context, contextNull] = await t5.encode(ids, mask, 2, textLen);
    return { context, contextNull };
  } finally {
    t5?.dispose();
    await src.close();
    e.pool.trim();
  }
}

/** The modes 'auto' may choose from, given the options. */
function candidateModes(o: GenerateOptions): MemoryMode[] {
  const m = o.memoryMode ?? (o.maxDeviceMemory != null ? 'auto' : o.offloadModel ? 'offload' : 'resident');
  if (m !== 'auto') {
    if (!MEMORY_MODES.includes(m)) throw new Error(`memory mode must be auto, ${MEMORY_MODES.join(', ')}; got "${String(m)}"`);
    return [m];
  }
  // --offload_model true rules out keeping both experts resident.
  return MEMORY_MODES.filter((x) => !(o.offloadModel && x === 'resident'));
}

export async function generate(e: Engine, o: GenerateOptions): Promise<GenerateResult> {
  const t = o.task;
  checkFrameNum(o.frameNum);
  if (t.image === 'required' && !o.image) throw new Error(`${t.name} needs an input image (--image)`);
  if (t.image === 'forbidden' && o.image) throw new Error(`${t.name} takes no input image (use i2v-A14B or ti2v-5B)`);
  const files = locateCheckpoint(o.ckptDir, t);
  const timings: Partial<Record<Stage, number>> = {};
  const clock = (stage: Stage, t0: number) => (timings[stage] = (timings[stage] ?? 0) + (performance.now() - t0) / 1000);
  const rec = o.record ?? (() => {});
  const F = o.frameNum;
  const [W, H] = o.size;
  const f = Math.floor((F - 1) / t.vaeStride[0]) + 1;

  // --- latent grid and conditioning image
  let latH: number;
  let latW: number;
  let condPixels: Float32Array | null = null;
  if (t.flavour === 'i2v') {
    const p = preprocessI2vA14b(o.image!, o.maxArea ?? W * H, t.vaeStride[1], t.patch[1]);
    latH = p.latH;
    latW = p.latW;
    condPixels = p.pixels; // [3, h, w]
  } else if (t.flavour === 'ti2v' && o.image) {
    const p = preprocessTi2v5b(o.image, o.maxArea ?? W * H, t.vaeStride[1] * t.patch[1], t.vaeStride[2] * t.patch[2]);
    latH = p.oh / t.vaeStride[1];
    latW = p.ow / t.vaeStride[2];
    condPixels = p.pixels; // [3, 1, oh, ow]
  } else {
    latH = Math.floor(H / t.vaeStride[1]);
    latW = Math.floor(W / t.vaeStride[2]);
  }
  const latentShape: [number, number, number, number] = [t.zDim, f, latH, latW];
  const tokens = Math.ceil(((latH * latW) / (t.patch[1] * t.patch[2])) * f);
  const seqLen = t.flavour === 'i2v' ? Math.floor((f * latH * latW) / (t.patch[1] * t.patch[2])) : tokens;

  // --- noise from the seed (torch CPU generator)
  const gen = new TorchCpuGenerator(o.seed);
  const noise = gen.randn(latentShape);
  rec('noise', noise);

  // --- the memory plan: what is on the device when (model/pipelines/memory-plan.ts)
  const arch = await checkpointArchitectures(files, t);
  const textLen = arch.dit.textLen;
  const tok = await UmT5Tokenizer.fromFile(files.spiece);
  const neg = o.negativePrompt ? o.negativePrompt : SAMPLE_NEG_PROMPT;
  const { ids, mask } = tok.tokenize([o.prompt, neg], textLen);
  const planInput: PlanInput = {
    task: t,
    dit: arch.dit,
    t5: arch.t5,
    vae: arch.vae,
    latentShape,
    seqLen,
    image: condPixels !== null,
    textTokens: Math.max(1, ...sequenceLengths(mask, 2, textLen)),
    dtype: o.dtype,
    activations: o.activations,
    device: planDevice(e),
  };
  let { plan } = choosePlan(planInput, o.maxDeviceMemory ?? null, candidateModes(o), o.vaeTile ? true : undefined);
  if (o.cfgSequential && !plan.cfgSequential) plan = planMemory(planInput, plan.mode, plan.vaeTile, true);
  o.onPlan?.(plan);
  const stream = plan.mode === 'stream';
  const oneExpert = plan.mode !== 'resident';
  const measured: Partial<Record<PlanStage, number>> = {};
  const stageStart = () => {
    e.pool.trim();
    e.pool.resetPeaks();
  };
  const stageEnd = (stage: PlanStage) => (measured[stage] = Math.max(measured[stage] ?? 0, e.memory().peakLiveBytes));
  aborted(o.signal);

  // --- text (first: nothing else is on the device yet)
  let t0 = performance.now();
  o.onProgress?.('text', 0, 1);
  stageStart();
  const text = await encodeText(e, files, textLen, ids, mask, o, stream);
  stageEnd('text');
  rec('context', text.context);
  rec('context_null', text.contextNull);
  rec('ids', Array.from(ids));
  rec('mask', Array.from(mask));
  o.onProgress?.('text', 1, 1);
  clock('text', t0);
  aborted(o.signal);

  const dits: { high?: WanDiT; low?: WanDiT; dense?: WanDiT } = {};
  let vae: WanVAE | null = null;
  const loadVae = async () => {
    const src = await openTensorSource(files.vae);
    try {
      return await WanVAE.load(e, src, t.vae);
    } finally {
      await src.close();
    }
  };
  const freeVae = () => {
    vae?.dispose();
    vae = null;
    e.pool.trim();
  };
  const freeDits = () => {
    for (const d of Object.values(dits)) d?.dispose();
    dits.high = dits.low = dits.dense = undefined;
    e.pool.trim();
  };
  try {
    // --- image conditioning through the VAE (kept for the decode only when resident)
    let y: Float32Array | undefined;
    let z0: Float32Array | undefined;
    if (condPixels) {
      t0 = performance.now();
      stageStart();
      vae = await loadVae();
      if (t.flavour === 'i2v') {
        // [image, zeros x (F-1)] -> latent [16, f, h, w]; y = cat(mask [4, f, h, w], latent)
        const h = latH * t.vaeStride[1];
        const w = latW * t.vaeStride[2];
        const video = new Float32Array(3 * F * h * w);
        for (let c = 0; c < 3; c++) video.set(condPixels.subarray(c * h * w, (c + 1) * h * w), c * F * h * w);
        const enc = await vae.encode(video, [3, F, h, w], { tile: plan.vaeTile, onProgress: (d, n) => o.onProgress?.('encode', d, n) });
        const plane = f * latH * latW;
        y = new Float32Array((4 + t.zDim) * plane);
        for (let c = 0; c < 4; c++) y.fill(1, c * plane, c * plane + latH * latW);
        y.set(enc.latent, 4 * plane);
      } else {
        const enc = await vae.encode(condPixels, [3, 1, latH * t.vaeStride[1], latW * t.vaeStride[2]], { tile: plan.vaeTile, onProgress: (d, n) => o.onProgress?.('encode', d, n) });
        z0 = enc.latent; // [48, 1, h, w]
      }
      stageEnd('encode');
      if (oneExpert) freeVae();
      clock('encode', t0);
      aborted(o.signal);
    }

    // --- the diffusion model(s)
    t0 = performance.now();
    stageStart();
    const progress = (what: string) => (n: string, d: number, total: number) => o.onProgress?.('load', d, total, `${what}: ${n}`);
    if (plan.mode === 'resident' && !vae) vae = await loadVae();
    if (t.experts) {
      dits.high = await loadDit(e, files.high!, o.dtype, o.activations, stream, progress('high-noise expert'));
      if (!oneExpert) dits.low = await loadDit(e, files.low!, o.dtype, o.activations, stream, progress('low-noise expert'));
    } else {
      dits.dense = await loadDit(e, files.dit!, o.dtype, o.activations, stream, progress('model'));
    }
    clock('load', t0);
    aborted(o.signal);

    // --- denoising loop
    t0 = performance.now();
    const sched = createScheduler(o.solver, o.steps, o.shift, NUM_TRAIN_TIMESTEPS);
    rec('timesteps', sched.timesteps);
    rec('sigmas', sched.sigmas);
    const boundary = t.boundary * NUM_TRAIN_TIMESTEPS;
    const plane = latH * latW;
    const firstFrame = (latent: Float32Array) => {
      // ti2v with image: frame 0 of every channel is the image latent.
      if (!z0) return latent;
      for (let c = 0; c < t.zDim; c++) latent.set(z0.subarray(c * plane, (c + 1) * plane), c * f * plane);
      return latent;
    };
    let latent = firstFrame(noise.slice());
    const steps = sched.timesteps.length;
    for (let i = 0; i < steps; i++) {
      aborted(o.signal);
      const stepStart = performance.now();
      const ts = sched.timesteps[i];
      const high = t.experts && ts >= boundary;
      if (t.experts && !(high ? dits.high : dits.low)) {
        // One expert on the device: free the other before reading this one (counted as load time).
        const tl = performance.now();
        const other = high ? 'low' : 'high';
        dits[other]?.dispose();
        dits[other] = undefined;
        e.pool.trim();
        dits[high ? 'high' : 'low'] = await loadDit(e, high ? files.high! : files.low!, o.dtype, o.activations, stream, progress(high ? 'high-noise expert' : 'low-noise expert'));
        clock('load', tl);
        t0 += performance.now() - tl; // keep the load out of the denoise time
        aborted(o.signal);
      }
      const model = t.experts ? (high ? dits.high! : dits.low!) : dits.dense!;
      const g = t.experts ? (high ? o.guideScale[1] : o.guideScale[0]) : o.guideScale[0];
      // ti2v with image: timestep 0 on the first latent frame's tokens, padded with t.
      let tIn: number | Float32Array = ts;
      if (z0) {
        const perToken = new Float32Array(seqLen).fill(ts);
        perToken.fill(0, 0, (latH / t.patch[1]) * (latW / t.patch[2]));
        tIn = perToken;
      }
      rec(`latent_in.${i}`, latent);
      const input = { x: latent, shape: latentShape, y, t: tIn, seqLen };
      const [cond, uncond] = plan.cfgSequential
        ? [(await model.forward({ ...input, contexts: [text.context] }))[0], (await model.forward({ ...input, contexts: [text.contextNull] }))[0]]
        : await model.forward({ ...input, contexts: [text.context, text.contextNull] });
      const pred = new Float32Array(cond.length);
      for (let k = 0; k < pred.length; k++) pred[k] = Math.fround(uncond[k] + Math.fround(g * Math.fround(cond[k] - uncond[k])));
      rec(`noise_pred_cond.${i}`, cond);
      rec(`noise_pred_uncond.${i}`, uncond);
      rec(`noise_pred.${i}`, pred);
      rec(`expert.${i}`, high ? 1 : 0);
      rec(`guide_scale.${i}`, g);
      const stepped = sched.step(pred, ts, latent);
      rec(`step_out.${i}`, stepped); // the solver's output, before ti2v re-blends the image frame
      latent = firstFrame(stepped.slice());
      o.onProgress?.('denoise', i + 1, steps, `${((performance.now() - stepStart) / 1000).toFixed(2)} s/it`);
    }
    clock('denoise', t0);
    stageEnd('denoise');
    rec('x0', latent);
    freeDits();
    aborted(o.signal);

    // --- decode
    t0 = performance.now();
    stageStart();
    if (!vae) vae = await loadVae();
    const dec = await vae.decode(latent, latentShape, { tile: plan.vaeTile, onProgress: (d, n) => o.onProgress?.('decode', d, n) });
    stageEnd('decode');
    clock('decode', t0);
    const [, T, Hout, Wout] = dec.shape;
    rec('video', dec.video);
    const frames = toFrames(dec.video, T, Hout, Wout);
    return { video: dec.video, frames, frameCount: T, height: Hout, width: Wout, x0: latent, latentShape, timings, memory: { plan, measured } };
  } finally {
    freeDits();
    freeVae();
  }
}

/** The limits of the engine's device that allocation sizes depend on. */
export function planDevice(e: Engine): PlanDevice {
  return { maxBufferBytes: e.gpu.maxBufferBytes, maxBindingBytes: e.gpu.maxBindingBytes, storageAlign: e.gpu.storageAlign };
}

/** save_video's uint8 frames: clamp(-1,1), (x + 1) / 2, * 255, truncated; [T, H, W, 3]. */
export function toFrames(video: Float32Array, T: number, H: number, W: number): Uint8Array {
  const f = Math.fround;
  const out = new Uint8Array(T * H * W * 3);
  const plane = T * H * W;
  for (let c = 0; c < 3; c++)
    for (let p = 0; p < plane; p++) {
      const x = Math.min(1, Math.max(-1, video[c * plane + p]));
      out[p * 3 + c] = Math.trunc(f(f(f(x + 1) / 2) * 255));
    }
  return out;
}
