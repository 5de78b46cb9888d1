// `npm run bench -- pipeline`: the tiny t2v pipeline (test/fixtures/pipeline.t2v: its checkpoint folder,
// prompt, seed, steps and size) end to end through generate(), the code path of `wan generate`, timed
// per stage: median of --runs runs after one warm-up run (which pays the shader compiles).
// The official PyTorch code beside it is not wired in yet (needs a driver for an official checkout).
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { deviceFlagSpec, deviceOptions } from '../cli/device-flags.ts';
import { Engine } from '../engine/index.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { generate, type Stage } from '../model/pipelines/generate.ts';
import { taskSpec } from '../model/pipelines/tasks.ts';

const usage = `usage: npm run bench -- pipeline [--runs N] [--fixture DIR] [--json]
  --runs N       timed runs after one warm-up (default 3)
  --fixture DIR  a pipeline.* fixture folder (default test/fixtures/pipeline.t2v)`;

export async function command(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string', default: '3' },
      fixture: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...deviceFlagSpec,
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const dir = values.fixture ?? join(import.meta.dirname ?? '.', '..', 'test', 'fixtures', 'pipeline.t2v');
  const fx = await loadFixture(dir);
  const c = fx.config as Record<string, any>;
  const task = taskSpec(c.task);
  const g = c.guide_scale;
  const runs = Math.max(1, Number(values.runs));
  const e = await Engine.create(deviceOptions(values));
  const samples: { stages: Partial<Record<Stage, number>>; total: number }[] = [];
  try {
    for (let r = 0; r <= runs; r++) {
      const t0 = performance.now();
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
      });
      const total = (performance.now() - t0) / 1000;
      if (r > 0) samples.push({ stages: res.timings, total });
      process.stderr.write(`${r === 0 ? 'warm-up' : `run ${r}`}: ${total.toFixed(2)} s\n`);
    }
  } finally {
    await e.destroy();
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const stages = [...new Set(samples.flatMap((s) => Object.keys(s.stages)))] as Stage[];
  const rows = [
    ...stages.map((st) => ({ system: 'wan', stage: st, medianS: med(samples.map((s) => s.stages[st] ?? 0)) })),
    { system: 'wan', stage: 'total', medianS: med(samples.map((s) => s.total)) },
    { system: 'torch-official', stage: 'total', medianS: null, note: 'not wired in yet' },
  ];
  if (values.json) console.log(JSON.stringify(rows, null, 1));
  else {
    console.log(`${c.task} pipeline, ${fx.dir}: ${c.frame_num} frames, ${c.sampling_steps} steps, median of ${runs} runs`);
    for (const r of rows) console.log(`  ${r.system.padEnd(15)} ${r.stage.padEnd(8)} ${r.medianS === null ? r.note : `${r.medianS.toFixed(3)} s`}`);
  }
  return 0;
}
