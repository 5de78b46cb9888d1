// `wan info <ckpt_dir>`: what a checkpoint folder holds: task, architecture, parameter counts,
// stored dtypes, bytes on disk, and the device memory each component needs at each storage dtype.
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { detectCheckpointTask, locateCheckpoint } from '../loaders/checkpoint.ts';
import type { DiffusersPipelineInfo } from '../loaders/diffusers-checkpoint.ts';
import { openTensorSource } from '../loaders/open.ts';
import type { TensorSource } from '../loaders/source.ts';
import { inferDitConfig } from '../model/dit-config.ts';
import { TASK_NAMES, taskSpec, type TaskSpec } from '../model/pipelines/tasks.ts';
import { inferT5Config } from '../model/t5-config.ts';
import { fmtBytes } from './progress.ts';

interface Component {
  name: string;
  file: string;
  architecture: string;
  params: number;
  dtypes: Record<string, number>;
  diskBytes: number;
  /** Device bytes with 2-D weights in bf16/f16 (norms, biases in f32), and everything in f32. */
  device: { bf16: number; f32: number };
}

/** Bytes on disk, counting every shard of a sharded checkpoint. */
function diskBytes(file: string): number {
  if (!file.endsWith('.index.json')) return statSync(file).size;
  const map: Record<string, string> = JSON.parse(readFileSync(file, 'utf8')).weight_map;
  return [...new Set(Object.values(map))].reduce((a, f) => a + statSync(join(dirname(file), f)).size, statSync(file).size);
}

function summarize(src: TensorSource, skipOnDevice = new Set<string>()) {
  let params = 0;
  let half = 0;
  const dtypes: Record<string, number> = {};
  for (const n of src.names()) {
    const i = src.info(n);
    const k = i.shape.reduce((a, b) => a * b, 1);
    params += k;
    dtypes[i.dtype] = (dtypes[i.dtype] ?? 0) + k;
    if (!skipOnDevice.has(n)) half += i.shape.length >= 2 ? k * 2 : k * 4;
  }
  let f32 = 0;
  for (const n of src.names()) if (!skipOnDevice.has(n)) f32 += src.info(n).shape.reduce((a, b) => a * b, 1) * 4;
  return { params, dtypes, device: { bf16: half, f32 } };
}


export interface CheckpointInfo {
  task: string;
  layout: 'official' | 'diffusers';
  /** Diffusers layout: pipeline class, boundary_ratio, expand_timesteps, scheduler flow_shift. */
  pipeline?: DiffusersPipelineInfo;
  components: Component[];
}

export async function checkpointInfo(dir: string): Promise<CheckpointInfo> {
  let task = detectCheckpointTask(dir);
  const files = locateCheckpoint(dir, task);
  const components: Component[] = [];
  const add = async (name: string, file: string, arch: (src: TensorSource) => string, skip?: Set<string>) => {
    const src = await openTensorSource(file);
    try {
      const s = summarize(src, skip);
      components.push({ name, file, architecture: arch(src), ...s, diskBytes: diskBytes(file) });
    } finally {
      await src.close();
    }
  };
  for (const [name, d] of [['high-noise expert', files.high], ['low-noise expert', files.low], ['diffusion model', files.dit]] as const) {
    if (!d) continue;
    await add(name, d.weights, (src) => {
      const c = inferDitConfig(src, d.config);
      if (task.experts && c.modelType === 'i2v') task = taskSpec('i2v-A14B');
      return `WanModel ${c.modelType}: dim ${c.dim}, ${c.numLayers} layers, ${c.numHeads} heads, ffn ${c.ffnDim}, in ${c.inDim}, out ${c.outDim}, text ${c.textDim} x ${c.textLen}`;
    });
  }
  await add('text encoder', files.t5, (src) => {
    const c = inferT5Config(src);
    return `umT5: vocab ${c.vocab}, dim ${c.dim}, ${c.numLayers} layers, ${c.numHeads} heads, ffn ${c.dimFfn} (token embedding read row by row from the file, not uploaded)`;
  }, new Set(['token_embedding.weight']));
  await add('VAE', files.vae, (src) => `Wan${task.vae} VAE: base width ${src.info('encoder.conv1.weight').shape[0]}, z ${task.zDim}`);
  return { task: task.name, layout: files.layout, ...(files.pipeline ? { pipeline: files.pipeline } : {}), components };
}

export async function printCheckpointInfo(dir: string, json: boolean): Promise<void> {
  const info = await checkpointInfo(dir);
  if (json) {
    console.log(JSON.stringify(info, null, 1));
    return;
  }
  console.log(`${dir}: ${info.task} (layout "${info.layout}")`);
  if (info.pipeline) {
    const p = info.pipeline;
    const spec = taskSpec(info.task);
    const boundary = p.boundaryRatio === null ? 'none' : `${p.boundaryRatio}${spec.experts && p.boundaryRatio !== spec.boundary ? ` (wan generate uses the official ${spec.boundary})` : ''}`;
    const shift = p.flowShift === null ? '?' : `${p.flowShift} (wan generate defaults to the official sample_shift ${spec.sampleShift}; --sample_shift overrides)`;
    console.log(`  pipeline: ${p.pipelineClass}; boundary_ratio ${boundary}; expand_timesteps ${p.expandTimesteps}; scheduler flow_shift ${shift}`);
    if (spec.experts) console.log('  transformer/ is the high-noise expert (t >= boundary), transformer_2/ the low-noise expert');
  }
  for (const c of info.components) {
    const dt = Object.entries(c.dtypes).map(([k, v]) => `${k} ${(v / 1e6).toFixed(1)}M`).join(', ');
    console.log(`  ${c.name}: ${c.architecture}`);
    const p = c.params >= 1e9 ? `${(c.params / 1e9).toFixed(2)} B` : `${(c.params / 1e6).toFixed(2)} M`;
    console.log(`    ${p} parameters (${dt}); ${fmtBytes(c.diskBytes)} on disk`);
    console.log(`    device memory: ${fmtBytes(c.device.bf16)} with bf16/f16 weights, ${fmtBytes(c.device.f32)} with f32`);
  }
}
