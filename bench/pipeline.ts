// `npm run bench -- pipeline`: the tiny t2v pipeline (test/fixtures/pipeline.t2v: its checkpoint folder,
// prompt, seed, steps and size) end to end through generate(), the code path of `wan generate`, timed
// per stage: median of --runs runs after one warm-up run (which pays the shader compiles).
// Given an official Wan2.2 checkout (--wan-repo DIR or WAN_REPO) and a Python with torch (--python,
// default /usr/bin/python3), bench/pipeline_torch.py then runs the official pipeline's generate() on the
// same fixture (same checkpoint, prompt, seed, size, frames, solver, steps, shift, guidance; float32 CPU)
// with the same per-stage split, and the ratio ours / PyTorch is printed per stage.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { deviceFlagSpec, deviceOptions } from '../cli/device-flags.ts';
import { Engine } from '../engine/index.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { generate, type Stage } from '../model/pipelines/generate.ts';
import { taskSpec } from '../model/pipelines/tasks.ts';

const usage = `usage: npm run bench -- pipeline [--runs N] [--fixture DIR] [--wan-repo DIR] [--python PATH] [--json]
  --runs N        timed runs after one warm-up (default 3), on both sides
  --fixture DIR   a text-only pipeline.* fixture folder (default test/fixtures/pipeline.t2v)
  --wan-repo DIR  official Wan2.2 checkout for the PyTorch side (default: env WAN_REPO; none: skipped)
  --python PATH   interpreter with torch (default /usr/bin/python3)`;

/** The official pipeline's stage times (bench/pipeline_torch.py), or why there are none. */
interface TorchTimes {
  load: number;
  text: number;
  denoise: number;
  decode: number;
  generate: number;
  total: number;
  threads: number;
  torch: string;
  video_rel_l2_vs_fixture: number;
}

function torchTimes(python: string, repo: string, fixture: string, runs: number): TorchTimes | string {
  const script = fileURLToPath(new URL('./pipeline_torch.py', import.meta.url));
  const r = spawnSync(python, [script, '--wan-repo', repo, '--fixture', fixture, '--runs', String(runs)], { encoding: 'utf8', maxBuffer: 1 << 22 });
  if (r.status !== 0) return `PyTorch run failed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-1)[0]}`;
  return JSON.parse(r.stdout.trim().split('\n').slice(-1)[0]) as TorchTimes;
}

export async function command(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string', default: '3' },
      fixture: { type: 'string' },
      json: { type: 'boolean' },
      'wan-repo': { type: 'string' },
      python: { type: 'string', default: '/usr/bin/python3' },
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
  type Row = { system: string; stage: string; medianS: number | null; ratio?: number; note?: string };
  const rows: Row[] = [
    ...stages.map((st) => ({ system: 'wan', stage: st, medianS: med(samples.map((s) => s.stages[st] ?? 0)) })),
    { system: 'wan', stage: 'total', medianS: med(samples.map((s) => s.total)) },
  ];
  // The PyTorch side: the official generate() on the same fixture.
  const repo = values['wan-repo'] ?? process.env.WAN_REPO;
  let note: string | undefined;
  if (!repo) note = 'no --wan-repo / WAN_REPO: PyTorch not timed';
  else if (!existsSync(join(repo, 'wan', 'modules', 'model.py'))) note = `${repo}: no wan/modules/model.py (not an official Wan2.2 checkout): PyTorch not timed`;
  else if (spawnSync(values.python!, ['-c', 'import torch'], { stdio: 'ignore' }).status !== 0) note = `${values.python}: no torch: PyTorch not timed`;
  let torch: TorchTimes | undefined;
  if (!note) {
    process.stderr.write(`PyTorch (official ${c.task} pipeline, ${values.python}) ...\n`);
    const got = torchTimes(values.python!, repo!, fx.dir, runs);
    if (typeof got === 'string') note = got;
    else torch = got;
  }
  if (torch) {
    for (const st of ['load', 'text', 'denoise', 'decode', 'total'] as const) {
      const ours = rows.find((r) => r.system === 'wan' && r.stage === st);
      rows.push({ system: 'torch-official', stage: st, medianS: torch[st], ...(ours?.medianS ? { ratio: ours.medianS / torch[st] } : {}) });
    }
  } else rows.push({ system: 'torch-official', stage: 'total', medianS: null, note });
  if (values.json) console.log(JSON.stringify(rows, null, 1));
  else {
    console.log(`${c.task} pipeline, ${fx.dir}: ${c.frame_num} frames, ${c.sampling_steps} steps, median of ${runs} runs`);
    for (const r of rows) {
      const ratio = r.ratio === undefined ? '' : `   wan / torch ${r.ratio.toFixed(2)}`;
      console.log(`  ${r.system.padEnd(15)} ${r.stage.padEnd(8)} ${r.medianS === null ? r.note : `${r.medianS.toFixed(3)} s${ratio}`}`);
    }
    if (torch) {
      console.log(`  (PyTorch ${torch.torch}, ${torch.threads} threads, float32 CPU; its video vs the fixture's: rel L2 ${torch.video_rel_l2_vs_fixture.toExponential(2)};`);
      console.log('   its load is the pipeline constructor, once; its total = load + generate())');
    }
  }
  return 0;
}
