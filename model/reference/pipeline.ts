// Fixture kinds `pipeline.t2v`, `pipeline.i2v`, `pipeline.ti2v`: a whole generate() run from the
// fixture's ckpt/ folder, through the same code path as `wan generate`.
import { join } from 'node:path';
import type { Engine } from '../../engine/index.ts';
import type { Fixture } from '../../loaders/fixture.ts';
import { generate } from '../pipelines/generate.ts';
import { taskSpec } from '../pipelines/tasks.ts';
import type { SolverName } from '../schedulers/index.ts';
import { compareOutput, type OutputCheck } from './compare.ts';
import { registerKind } from './registry.ts';

interface PipelineConfig {
  task: string;
  prompt: string;
  n_prompt: string;
  seed: number;
  frame_num: number;
  sample_solver: SolverName;
  sampling_steps: number;
  shift: number;
  guide_scale: number | [number, number];
  size?: [number, number];
  max_area?: number;
  latent_shape: number[];
}

/** Frames: |diff| <= 1 everywhere and at most 0.5% of the values differing. */
function compareFrames(got: Uint8Array, ref: Float64Array): OutputCheck {
  let maxAbs = 0;
  let differ = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (d > maxAbs) maxAbs = d;
    if (d) differ++;
  }
  const share = differ / ref.length;
  const c = compareOutput('frames', got, ref, 1, 'exact');
  return { ...c, pass: got.length === ref.length && maxAbs <= 1 && share <= 0.005, note: `${(share * 100).toFixed(3)}% of values differ` };
}

async function run(e: Engine, fx: Fixture): Promise<OutputCheck[]> {
  const cfg = fx.config as unknown as PipelineConfig;
  const task = taskSpec(cfg.task);
  const rec = new Map<string, Float32Array | number[] | number>();
  let image;
  if (fx.has('in', 'image')) {
    const im = fx.input('image');
    const [h, w] = im.shape;
    image = { width: w, height: h, rgb: Uint8Array.from(im.f64()) };
  }
  const g = cfg.guide_scale;
  const size: [number, number] = cfg.size ?? [cfg.latent_shape[3] * task.vaeStride[2], cfg.latent_shape[2] * task.vaeStride[1]];
  const res = await generate(e, {
    task,
    ckptDir: join(fx.dir, 'ckpt'),
    prompt: cfg.prompt,
    negativePrompt: cfg.n_prompt,
    image,
    size,
    maxArea: cfg.max_area,
    frameNum: cfg.frame_num,
    seed: cfg.seed,
    solver: cfg.sample_solver,
    steps: cfg.sampling_steps,
    shift: cfg.shift,
    guideScale: typeof g === 'number' ? [g, g] : g,
    record: (name, v) => rec.set(name, v),
  });
  const f32 = (name: string) => rec.get(name) as Float32Array;
  const checks: OutputCheck[] = [
    compareOutput('noise', f32('noise'), fx.input('noise').f64(), 0, 'exact'),
    compareOutput('ids_prompt', (rec.get('ids') as number[]).slice(0, fx.output('ids_prompt').shape[1]), fx.output('ids_prompt').f64(), 0, 'exact'),
    compareOutput('ids_neg', (rec.get('ids') as number[]).slice(fx.output('ids_prompt').shape[1]), fx.output('ids_neg').f64(), 0, 'exact'),
    compareOutput('mask_prompt', (rec.get('mask') as number[]).slice(0, fx.output('mask_prompt').shape[1]), fx.output('mask_prompt').f64(), 0, 'exact'),
    compareOutput('mask_neg', (rec.get('mask') as number[]).slice(fx.output('mask_prompt').shape[1]), fx.output('mask_neg').f64(), 0, 'exact'),
    compareOutput('context', f32('context'), fx.output('context').f64(), 1e-4),
    compareOutput('context_null', f32('context_null'), fx.output('context_null').f64(), 1e-4),
    compareOutput('timesteps', rec.get('timesteps') as number[], fx.output('timesteps').f64(), 0, 'exact'),
    compareOutput('sigmas', f32('sigmas'), fx.output('sigmas').f64(), 0, 'exact'),
  ];
  const steps = fx.intermediate('latent_in').shape[0];
  for (const name of ['latent_in', 'noise_pred_cond', 'noise_pred_uncond', 'noise_pred', 'step_out']) {
    const ref = fx.intermediate(name).f64();
    const n = ref.length / steps;
    let worst: OutputCheck | null = null;
    for (let i = 0; i < steps; i++) {
      const c = compareOutput(name, f32(`${name}.${i}`), ref.subarray(i * n, (i + 1) * n), 1e-3);
      if (!worst || !(c.relL2 <= worst.relL2)) worst = { ...c, note: `worst of ${steps} steps: step ${i}` };
    }
    checks.push(worst!);
  }
  if (fx.has('mid', 'expert')) {
    checks.push(compareOutput('expert', Array.from({ length: steps }, (_, i) => rec.get(`expert.${i}`) as number), fx.intermediate('expert').f64(), 0, 'exact'));
  }
  checks.push(compareOutput('x0', f32('x0'), fx.output('x0').f64(), 1e-3));
  checks.push(compareOutput('video', res.video, fx.output('video').f64(), 2e-3));
  checks.push(compareFrames(res.frames, fx.output('frames').f64()));
  return checks;
}

for (const kind of ['pipeline.t2v', 'pipeline.i2v', 'pipeline.ti2v']) {
  registerKind({ kind, description: `${kind.slice(9)} generate() end to end from a checkpoint folder`, run });
}
