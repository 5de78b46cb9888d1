// Result rows: the --json output and what the text table is made from.
import { type BenchCase, bytesOf, flopsOf, isMemoryBound, shapeOf } from './cases.ts';

export type System = 'wan' | 'onnxruntime-webgpu' | 'tfjs-webgpu' | 'torch-cpu' | 'ceiling';
export const PEERS = ['onnxruntime-webgpu', 'tfjs-webgpu', 'torch-cpu'] as const;
export type Peer = (typeof PEERS)[number];

export interface Row {
  kernel: string;
  shape: string;
  system: System;
  /** Median wall time of one complete execution; null when the system could not run the case. */
  medianMs: number | null;
  gflops: number | null;
  gbps: number | null;
  /** Compute-bound kernels: % of the compute ceiling; memory-bound ones: % of stream bandwidth. */
  ceilingPct: number | null;
  /** Timed executions behind the median. */
  runs: number;
  /** How it was timed, what differs from our case, or why there is no number. */
  note?: string;
}

/** What a system measured for one case (before rates are derived). */
export interface Measurement {
  medianMs: number | null;
  runs: number;
  note?: string;
}

export interface Ceilings {
  /** GFLOP/s of the best FMA-chain variant. */
  computeGflops: number;
  /** GB/s of the best copy variant. */
  streamGbps: number;
}

const round = (x: number, digits = 3) => Number(x.toPrecision(digits + 1));

/** Turns a measurement into a row: rates from the case's work, ceiling % from the run's probes. */
export function makeRow(c: BenchCase, system: System, m: Measurement, ceil: Ceilings | null, weightBytes = 4): Row {
  const flops = flopsOf(c);
  const ms = m.medianMs;
  const gflops = ms !== null && flops !== null ? round(flops / (ms * 1e6)) : null;
  const gbps = ms !== null ? round(bytesOf(c, weightBytes) / (ms * 1e6)) : null;
  let ceilingPct: number | null = null;
  if (ceil && ms !== null) {
    ceilingPct = isMemoryBound(c) ? (gbps! / ceil.streamGbps) * 100 : gflops !== null ? (gflops / ceil.computeGflops) * 100 : null;
    if (ceilingPct !== null) ceilingPct = round(ceilingPct);
  }
  const row: Row = { kernel: c.kernel, shape: shapeOf(c), system, medianMs: ms === null ? null : round(ms, 4), gflops, gbps, ceilingPct, runs: m.runs };
  if (m.note) row.note = m.note;
  return row;
}
