// Pipeline caching for kernels whose shader text is generated (unrolled code in the defines): they
// are keyed by their parameters, so the long generated text is neither rebuilt nor hashed per call,
// and compiled under a short, descriptive label (error messages repeat the label).
import type { Engine } from '../engine.ts';
import { loadShader } from '../shaders.ts';

const pipelines = new WeakMap<Engine, Map<string, GPUComputePipeline>>();

/** The pipeline cached under `key` for this engine, made once by `make`. */
export function cachedPipeline(e: Engine, key: string, make: () => GPUComputePipeline): GPUComputePipeline {
  let m = pipelines.get(e);
  if (!m) pipelines.set(e, (m = new Map()));
  let p = m.get(key);
  if (!p) m.set(key, (p = make()));
  return p;
}

/** Compiles shaders/<name>.wgsl with these defines under `label` (no caching: wrap in cachedPipeline). */
export function compileGenerated(e: Engine, name: string, defines: Record<string, string | number>, label: string): GPUComputePipeline {
  const code = loadShader(name, defines, e.gpu.hasF16);
  const module = e.device.createShaderModule({ code, label });
  e.stats.pipelinesCompiled++;
  return e.device.createComputePipeline({ layout: 'auto', label, compute: { module, entryPoint: 'main' } });
}
