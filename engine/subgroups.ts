// What the adapter says about its subgroups, for kernels that pick a subgroup variant.
// Register kernels that make one workgroup exactly one subgroup (matmul_sg, conv3d broadcast) need
// the size fixed and known; kernels that only need "a workgroup of 8 is one subgroup" (attention_sg)
// need the minimum. Both come from GPUAdapterInfo's subgroupMinSize / subgroupMaxSize.
import type { Gpu } from './device.ts';

/** Smallest and largest subgroup size the adapter may use, or null without the subgroups feature. */
export function subgroupSizeRange(gpu: Gpu): { min: number; max: number } | null {
  if (!gpu.hasSubgroups) return null;
  const info = (gpu.adapter.info ?? {}) as { subgroupMinSize?: number; subgroupMaxSize?: number };
  const min = Number(info.subgroupMinSize);
  const max = Number(info.subgroupMaxSize);
  if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1 || max < min) return null;
  return { min, max };
}

/**
 * The subgroup size when it is fixed at 8 or 16 lanes and fits one workgroup, else null. The
 * unrolled register kernels are meant for SIMD-like CPU adapters (8/16 lanes); GPUs with 32 or 64
 * lanes (or a varying size) get the portable kernels.
 */
export function fixedSubgroupSize(gpu: Gpu): number | null {
  const r = subgroupSizeRange(gpu);
  if (!r || r.min !== r.max || (r.min !== 8 && r.min !== 16)) return null;
  if (r.min > gpu.summary.limits.maxComputeInvocationsPerWorkgroup) return null;
  return r.min;
}
