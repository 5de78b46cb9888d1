// `npm run bench -- scale`: the DiT at its real sizes (TI2V-5B and one A14B expert), per memory
// mode (resident: every block on the device; stream: blocks uploaded per forward): load time,
// predicted and measured peak device memory, and one forward's time at a few token counts, so the
// growth with tokens (linear layers ~ tokens, self-attention ~ tokens^2) shows.
//
// Weights: the synthetic full-size checkpoint (`npm run bench -- make-checkpoint`) when its folder
// exists (read from disk, F32 converted to bf16 on upload, as a real checkpoint), else the same
// official shapes drawn in memory. A full model at a few thousand tokens takes many minutes per
// forward on a CPU adapter, so the measurement runs the first --layers blocks (identical blocks:
// time and block bytes scale by layers/--layers) and prints the full-model figures extrapolated that
// way beside the planner's full-size prediction.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { deviceFlagSpec, deviceOptions } from '../cli/device-flags.ts';
import { Engine } from '../engine/index.ts';
import { locateCheckpoint } from '../loaders/checkpoint.ts';
import { openTensorSource } from '../loaders/open.ts';
import type { TensorInfo, TensorSource } from '../loaders/source.ts';
import { ditTensors, ditConfigJson } from '../model/demo/architecture.ts';
import { defaultCacheDir } from '../model/demo/checkpoint.ts';
import { SyntheticTensorSource } from '../model/demo/source.ts';
import { WanDiT } from '../model/dit.ts';
import type { DitConfig } from '../model/dit-config.ts';
import { planDevice } from '../model/pipelines/generate.ts';
import { randn } from './dit.ts';
import { ditForwardPeak, ditWeightBytes, fmtGiB, residentWeightBytes } from '../model/pipelines/memory-plan.ts';
import { officialDitConfig, taskSpec, type TaskName } from '../model/pipelines/tasks.ts';

const usage = `usage: npm run bench -- scale [--task ti2v-5B|t2v-A14B|all] [--tokens N,N,...] [--layers N] [--modes resident,stream] [--json]
  --task      the model (default all: ti2v-5B and the t2v-A14B high-noise expert)
  --tokens    video tokens per forward, each run with classifier-free guidance (batch 2)
              (default 256,1024,2048 for ti2v-5B; 256,1024 for A14B)
  --layers    blocks actually run (default 2); times and bytes are extrapolated to the full depth
  --modes     resident and/or stream (default both)
  --ckpt DIR  the checkpoint folder (default <cache>/synthetic/<task> when it exists, else in-memory weights)
  --dim/--heads/--ffn   other widths (tests); --json   rows as JSON`;

/** The first `layers` blocks of a checkpoint (a model of that depth). */
class FirstBlocks implements TensorSource {
  constructor(private readonly src: TensorSource, private readonly layers: number) {}
  get path() {
    return this.src.path;
  }
  private keep(name: string): boolean {
    const m = /^blocks\.(\d+)\./.exec(name);
    return !m || Number(m[1]) < this.layers;
  }
  names(): string[] {
    return this.src.names().filter((n) => this.keep(n));
  }
  has(name: string): boolean {
    return this.keep(name) && this.src.has(name);
  }
  info(name: string): TensorInfo {
    return this.src.info(name);
  }
  readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    return this.src.readRange(name, offset, length);
  }
  close(): Promise<void> {
    return this.src.close();
  }
}

/** Multiply-add FLOPs (x2) of one forward of `layers` blocks at `tokens` tokens, batch 2: linears vs attention. */
function forwardFlops(cfg: DitConfig, tokens: number, layers: number): { linear: number; attention: number } {
  const C = cfg.dim;
  const B = 2;
  const T = cfg.textLen;
  const linear = 2 * B * layers * (6 * tokens * C * C + 2 * T * C * C + 2 * tokens * C * cfg.ffnDim);
  const attention = 4 * B * layers * (tokens * tokens * C + tokens * T * C);
  return { linear, attention };
}

export async function command(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      task: { type: 'string', default: 'all' },
      tokens: { type: 'string' },
      layers: { type: 'string', default: '2' },
      modes: { type: 'string', default: 'resident,stream' },
      ckpt: { type: 'string' },
      dim: { type: 'string' },
      heads: { type: 'string' },
      ffn: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...deviceFlagSpec,
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const tasks: TaskName[] = values.task === 'all' ? ['ti2v-5B', 't2v-A14B'] : [taskSpec(values.task!).name];
  const layers = Number(values.layers);
  if (!(Number.isInteger(layers) && layers >= 1)) throw new Error(`--layers must be a positive integer, got "${values.layers}"`);
  const modes = values.modes!.split(',');
  for (const m of modes) if (m !== 'resident' && m !== 'stream') throw new Error(`--modes takes resident and/or stream, got "${m}"`);
  const log = (m: string) => process.stderr.write(m + '\n');
  const e = await Engine.create(deviceOptions(values));
  const dev = planDevice(e);
  const rows: Record<string, unknown>[] = [];
  try {
    for (const taskName of tasks) {
      const task = taskSpec(taskName);
      const official = officialDitConfig(task);
      const full: DitConfig = {
        ...official,
        dim: Number(values.dim ?? official.dim),
        numHeads: Number(values.heads ?? official.numHeads),
        ffnDim: Number(values.ffn ?? official.ffnDim),
      };
      const custom = full.dim !== official.dim || full.ffnDim !== official.ffnDim || full.numHeads !== official.numHeads;
      const tokenList = (values.tokens ?? (taskName === 'ti2v-5B' ? '256,1024,2048' : '256,1024')).split(',').map(Number);
      for (const t of tokenList) if (!(Number.isInteger(t) && t >= 16 && t % 16 === 0)) throw new Error(`--tokens: ${t} is not a positive multiple of 16`);
      const depth = Math.min(layers, full.numLayers);
      const cfg: DitConfig = { ...full, numLayers: depth };
      const folder = values.ckpt ?? join(defaultCacheDir(), 'synthetic', taskName);
      const fromDisk = values.ckpt !== undefined || (!custom && existsSync(join(folder, 'synthetic.json')));
      const openSource = async (): Promise<{ src: TensorSource; json: Record<string, unknown> | null; what: string }> => {
        if (fromDisk) {
          const files = locateCheckpoint(folder, task);
          const d = (files.dit ?? files.high)!;
          return { src: new FirstBlocks(await openTensorSource(d.weights), depth), json: d.config ? { ...d.config, num_layers: depth } : null, what: `${folder} (read from disk)` };
        }
        const arch = { ...cfg, modelType: cfg.modelType } as Parameters<typeof ditTensors>[0];
        return { src: new SyntheticTensorSource(ditTensors(arch)), json: ditConfigJson(arch), what: 'official shapes, weights drawn in memory' };
      };
      const fullW = ditWeightBytes(full, 'bf16', dev);
      log(`${taskName}: DiT dim ${full.dim}, ffn ${full.ffnDim}, ${full.numHeads} heads, ${full.numLayers} layers (${fmtGiB(fullW.total)} on the device in bf16); running ${depth} layer(s)`);
      for (const mode of modes) {
        const stream = mode === 'stream';
        const { src, json, what } = await openSource();
        e.pool.trim();
        const base = e.memory().liveBytes;
        e.pool.resetPeaks();
        const t0 = performance.now();
        const dit = await WanDiT.load(e, src, json, { stream });
        await e.sync();
        const loadS = (performance.now() - t0) / 1000;
        const w = ditWeightBytes(cfg, 'bf16', dev);
        const loadedBytes = e.memory().liveBytes - base;
        log(`  ${mode}: loaded ${fmtGiB(loadedBytes)} in ${loadS.toFixed(2)} s (${what})`);
        rows.push({
          task: taskName, mode, kind: 'load', layers: depth, seconds: loadS, deviceBytes: loadedBytes,
          // Resident: the full model's load scales with its bytes; streamed: load() uploads only the non-block weights.
          fullModelSecondsEstimate: stream ? loadS : (loadS * fullW.total) / Math.max(1, w.total),
          source: what,
        });
        try {
          for (const tokens of tokenList) {
            const h = 16;
            const wGrid = tokens / h;
            const inC = full.inDim;
            const shape: [number, number, number, number] = [inC, 1, 2 * h, 2 * wGrid];
            const x = randn(inC * 4 * tokens, tokens);
            const ctx = [randn(full.textLen * full.textDim, 1), randn(full.textLen * full.textDim, 2)];
            const input = { x, shape, t: 500, contexts: ctx, seqLen: tokens };
            if (tokens === tokenList[0]) {
              log(`    warm-up (shader compiles) at ${tokens} tokens...`);
              await dit.forward(input);
            }
            e.pool.resetPeaks();
            const f0 = performance.now();
            await dit.forward(input);
            const seconds = (performance.now() - f0) / 1000;
            const measured = e.memory().peakLiveBytes - base;
            const act = ditForwardPeak(cfg, { batch: 2, tokens, seqLen: tokens, perTokenTimesteps: false, gridMax: Math.max(h, wGrid) }, dev);
            const predicted = residentWeightBytes(w, stream) + act.peakBytes;
            const fullAct = ditForwardPeak(full, { batch: 2, tokens, seqLen: tokens, perTokenTimesteps: false, gridMax: Math.max(h, wGrid) }, dev);
            const fullPredicted = residentWeightBytes(fullW, stream) + fullAct.peakBytes;
            const fl = forwardFlops(cfg, tokens, depth);
            const perLayer = seconds / depth;
            const row = {
              task: taskName, mode, kind: 'forward', layers: depth, tokens, seconds,
              gflops: (fl.linear + fl.attention) / seconds / 1e9,
              attentionFlopShare: fl.attention / (fl.linear + fl.attention),
              fullModelSecondsEstimate: perLayer * full.numLayers,
              predictedPeakBytes: predicted, measuredPeakBytes: measured,
              fullModelPredictedPeakBytes: fullPredicted,
            };
            rows.push(row);
            log(
              `    ${String(tokens).padStart(5)} tokens: ${seconds.toFixed(2)} s for ${depth} layer(s) (${row.gflops.toFixed(1)} GFLOP/s, attention ${(row.attentionFlopShare * 100).toFixed(0)}% of the FLOPs)` +
                ` -> full model ~${row.fullModelSecondsEstimate.toFixed(0)} s/forward; peak ${fmtGiB(measured)} measured vs ${fmtGiB(predicted)} predicted; full model predicted ${fmtGiB(fullPredicted)}`,
            );
          }
        } finally {
          dit.dispose();
          if (!stream) await src.close();
          await new Promise((r) => setTimeout(r, 50));
          e.pool.trim();
        }
      }
    }
  } finally {
    await e.destroy();
  }
  if (values.json) console.log(JSON.stringify(rows, null, 1));
  return 0;
}
