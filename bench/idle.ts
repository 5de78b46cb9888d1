// Gentle polling while awaiting the GPU: the engine does it for every sync and readback
// (engine/poll.ts explains why); the bench re-exports it and adds a switch to compare with busy polling.
import { readFileSync } from 'node:fs';
import { gently as engineGently } from '../engine/poll.ts';

/** Whether the harness polls gently (the default; WAN_BENCH_BUSY_POLL=1 turns it off to compare). */
export function gentlePollingEnabled(): boolean {
  return process.env.WAN_BENCH_BUSY_POLL !== '1';
}

/** Runs `fn` with Dawn's tick loop slowed to one tick per `intervalMs` after the first 2 ms. */
export function gently<T>(fn: () => Promise<T>, intervalMs = 1): Promise<T> {
  return gentlePollingEnabled() ? engineGently(fn, intervalMs) : fn();
}

/**
 * CPU seconds used so far by this process's main (JS) thread alone, from /proc (Linux); null elsewhere.
 * Lavapipe's worker threads are excluded, so the difference across an await is the cost of polling.
 */
export function mainThreadCpuSeconds(): number | null {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    // Fields after the command name (which is in parentheses and may contain spaces).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return (utime + stime) / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}
