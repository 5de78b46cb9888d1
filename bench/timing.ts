// Adaptive wall-clock timing shared by every system (ours in-process, the peers in their children).
// One sample = one complete execution of the op, from issuing it to the host seeing it finished.
// The first call is a warm-up (pipeline compilation, first allocations) and is not a sample. Slow
// cases get fewer samples: a first call over half the budget is followed by one warm sample only, and
// one over twice the budget is itself the only sample (the row's note says which).

export interface TimingPolicy {
  /** Wall-clock budget of one case (warm-up included), ms. */
  budgetMs: number;
  /** Samples wanted at least (kept as long as a sample fits budgetMs / minRuns). */
  minRuns: number;
  /** Samples at most. */
  maxRuns: number;
}

export interface Timed {
  medianMs: number;
  runs: number;
  /** Set when the number is not a warm median (e.g. a single cold run). */
  note?: string;
}

export const FULL_POLICY: TimingPolicy = { budgetMs: 20_000, minRuns: 3, maxRuns: 30 };
export const QUICK_POLICY: TimingPolicy = { budgetMs: 6_000, minRuns: 3, maxRuns: 15 };

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Times `run` (which must resolve only once the work is complete) under `policy`:
 * warm-up, then as many samples as the budget allows, within [minRuns, maxRuns]. A sample longer than
 * a third of the budget stops the loop early (so a very slow case costs about one budget, not three).
 */
export async function timeRuns(run: () => Promise<void>, policy: TimingPolicy): Promise<Timed> {
  const start = performance.now();
  await run();
  const cold = performance.now() - start;
  if (cold >= policy.budgetMs * 2) {
    return { medianMs: cold, runs: 1, note: 'one cold run (first call took over twice the budget)' };
  }
  if (cold >= policy.budgetMs / 2) {
    // Slow case: one warm run (the first call may have included compilation), nothing more.
    const t0 = performance.now();
    await run();
    return { medianMs: performance.now() - t0, runs: 1, note: 'one warm run (a run takes over half the budget)' };
  }
  const samples: number[] = [];
  while (samples.length < policy.maxRuns) {
    const t0 = performance.now();
    await run();
    samples.push(performance.now() - t0);
    const spent = performance.now() - start;
    const next = median(samples);
    if (samples.length >= policy.minRuns && spent + next > policy.budgetMs) break;
    if (spent + next > policy.budgetMs * 1.5) break;
  }
  const note = samples.length < policy.minRuns ? `only ${samples.length} warm run(s) fit the budget` : undefined;
  return { medianMs: median(samples), runs: samples.length, ...(note ? { note } : {}) };
}
