// How the harness talks to a peer process: the job goes in as JSON (argv[2]); the child prints one
// line per case, `@@bench {"index", "medianMs", "runs", "note"?}`, as soon as that case is done, and
// may print `@@bench-info {"version", "note"}` once. Anything else it prints is passed through to
// stderr (Dawn and runtime warnings), so stdout noise cannot corrupt results.
import { type BenchCase, flopsOf, shapeOf } from '../cases.ts';
import type { TimingPolicy } from '../timing.ts';

export interface PeerJob {
  cases: BenchCase[];
  policy: TimingPolicy;
  /** Index of cases[0] in the harness's list (so restarted children report the right index). */
  firstIndex: number;
  /** shapeOf() of each case (for notes written by non-TypeScript peers). */
  shapes: string[];
  /** Skip a case predicted to take longer than this per run (see CaseGuard); null: no cap. */
  maxCaseMs: number | null;
}

export interface PeerResult {
  index: number;
  medianMs: number | null;
  runs: number;
  note?: string;
}

export interface PeerInfo {
  version?: string;
  note?: string;
}

export const RESULT_TAG = '@@bench ';
export const INFO_TAG = '@@bench-info ';

export function readJob(): PeerJob {
  const arg = process.argv[2];
  if (!arg) throw new Error('peer: expected the job as JSON in argv[2]');
  return JSON.parse(arg) as PeerJob;
}

export function report(r: PeerResult): void {
  process.stdout.write(RESULT_TAG + JSON.stringify(r) + '\n');
}

export function reportInfo(i: PeerInfo): void {
  process.stdout.write(INFO_TAG + JSON.stringify(i) + '\n');
}

/** Fills an array with uniform values in [-1, 1) from a fixed seed (values do not affect timing). */
export function randomFill(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 2147483648) - 1;
  }
  return out;
}

/**
 * Keeps a system's slowest cases within the run's time: after a case of a kernel family has been
 * measured, a later, bigger case of the same family is predicted from that GFLOP/s and skipped (with
 * a note giving the prediction) when one run would exceed maxCaseMs. Every system applies the same
 * rule (torch_cpu.py mirrors it).
 */
export class CaseGuard {
  private rates = new Map<string, { gflops: number; shape: string }>();
  constructor(private maxCaseMs: number | null) {}

  /** A skip note when the case is predicted to be too slow, else null. */
  check(c: BenchCase): string | null {
    const flops = flopsOf(c);
    const r = this.rates.get(c.kernel);
    if (this.maxCaseMs === null || flops === null || !r) return null;
    const predictedMs = flops / (r.gflops * 1e6);
    if (predictedMs <= this.maxCaseMs) return null;
    return `skipped: one run would take ~${(predictedMs / 1000).toFixed(0)} s at the ${r.gflops.toPrecision(3)} GFLOP/s measured on ${r.shape} (cap ${this.maxCaseMs / 1000} s per run; --max-case-s to change)`;
  }

  record(c: BenchCase, medianMs: number | null): void {
    const flops = flopsOf(c);
    if (flops !== null && medianMs) this.rates.set(c.kernel, { gflops: flops / (medianMs * 1e6), shape: shapeOf(c) });
  }
}

/** Runs every case of the job through `one`, reporting each result (errors become a note). */
export async function runJob(job: PeerJob, one: (c: BenchCase) => Promise<Omit<PeerResult, 'index'>>): Promise<void> {
  const guard = new CaseGuard(job.maxCaseMs);
  for (let i = 0; i < job.cases.length; i++) {
    const index = job.firstIndex + i;
    const c = job.cases[i];
    const skip = guard.check(c);
    if (skip) {
      report({ index, medianMs: null, runs: 0, note: skip });
      continue;
    }
    try {
      const r = await one(c);
      guard.record(c, r.medianMs);
      report({ index, ...r });
    } catch (e) {
      report({ index, medianMs: null, runs: 0, note: `failed: ${firstLine(e)}` });
    }
  }
}

export function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0].slice(0, 200);
}
