// Gentle polling while awaiting the GPU.
//
// The `webgpu` package (Dawn for Node) resolves its promises (onSubmittedWorkDone, mapAsync, ...) by
// ticking the device from JavaScript: while any such promise is pending, its AsyncRunner schedules
// `setImmediate(tick)` again and again, looking `setImmediate` up on the global object each time.
// The JS thread therefore spins at 100% of a core for as long as the GPU works. On lavapipe the "GPU"
// is the CPU, so the spin takes one of the machine's cores away from the kernel being timed.
//
// `gently(fn)` swaps the global for a shim that defers each callback by `intervalMs` with setTimeout
// while `fn` runs: Dawn then ticks ~1000 times a second instead of continuously. Node's own internals
// keep their private reference to the real setImmediate, so only global look-ups are affected.
// The swap is reference counted, so overlapping calls are safe.
import { readFileSync } from 'node:fs';

const realSetImmediate = globalThis.setImmediate;
let depth = 0;
let interval = 1;

function shim(fn: (...args: any[]) => void, ...args: any[]): NodeJS.Immediate {
  // setTimeout returns a Timeout, not an Immediate; Dawn only calls the function and never the handle.
  return setTimeout(fn, interval, ...args) as unknown as NodeJS.Immediate;
}

/** Whether the harness polls gently (the default; WAN_BENCH_BUSY_POLL=1 turns it off to compare). */
export function gentlePollingEnabled(): boolean {
  return process.env.WAN_BENCH_BUSY_POLL !== '1';
}

/** Runs `fn` with the global setImmediate replaced by a setTimeout(fn, intervalMs) shim. */
export async function gently<T>(fn: () => Promise<T>, intervalMs = 1): Promise<T> {
  if (!gentlePollingEnabled()) return fn();
  if (depth++ === 0) {
    interval = intervalMs;
    (globalThis as any).setImmediate = Object.assign(shim, { __promisify__: (realSetImmediate as any).__promisify__ });
  }
  try {
    return await fn();
  } finally {
    if (--depth === 0) globalThis.setImmediate = realSetImmediate;
  }
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
