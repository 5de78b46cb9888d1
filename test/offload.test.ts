// --offload_model: one MoE expert on the device at a time gives the same video with less device memory.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine } from '../engine/index.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { generate } from '../model/pipelines/generate.ts';
import { taskSpec } from '../model/pipelines/tasks.ts';
import { fixturesDir } from './helpers.ts';

describe('offloadModel (one expert resident)', () => {
  it('t2v-A14B: identical frames to the resident run, both experts used, less device memory while denoising', async () => {
    const fx = await loadFixture(join(fixturesDir, 'pipeline.t2v'));
    const c = fx.config as Record<string, any>;
    const task = taskSpec(c.task);
    const g = c.guide_scale;
    const run = async (offloadModel: boolean) => {
      const e = await Engine.create();
      const experts: number[] = [];
      let denoiseLive = 0; // device bytes held between steps: the weights resident while denoising
      try {
        const res = await generate(e, {
          task,
          ckptDir: join(fx.dir, 'ckpt'),
          prompt: c.prompt,
          negativePrompt: c.n_prompt,
          size: c.size ?? [c.latent_shape[3] * task.vaeStride[2], c.latent_shape[2] * task.vaeStride[1]],
          frameNum: c.frame_num,
          seed: c.seed,
          solver: c.sample_solver,
          steps: c.sampling_steps,
          shift: c.shift,
          guideScale: typeof g === 'number' ? [g, g] : g,
          offloadModel,
          onProgress: (stage) => {
            if (stage === 'denoise') denoiseLive = Math.max(denoiseLive, e.memory().liveBytes);
          },
          record: (name, v) => {
            if (name.startsWith('expert.')) experts.push(v as number);
          },
        });
        return { res, experts, denoiseLive };
      } finally {
        await e.destroy();
      }
    };
    const resident = await run(false);
    const offload = await run(true);
    expect(new Set(offload.experts)).toEqual(new Set([0, 1])); // the run crosses the boundary
    expect(offload.experts).toEqual(resident.experts);
    expect(Buffer.compare(Buffer.from(offload.res.frames), Buffer.from(resident.res.frames))).toBe(0);
    expect(Buffer.compare(Buffer.from(offload.res.x0.buffer), Buffer.from(resident.res.x0.buffer))).toBe(0);
    // The tiny fixture's overall peak is the VAE's, so compare what stays live while denoising.
    expect(offload.denoiseLive).toBeGreaterThan(0);
    expect(offload.denoiseLive).toBeLessThan(resident.denoiseLive);
    console.log(`pipeline.t2v device bytes live while denoising: both experts ${resident.denoiseLive}, one expert ${offload.denoiseLive}`);
  }, 120_000);
});
