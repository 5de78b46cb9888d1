// Gentle polling while awaiting the GPU.
// The `webgpu` package resolves its promises (onSubmittedWorkDone, mapAsync) by ticking the device
// from JavaScript: while one is pending, Dawn's AsyncRunner re-queues `setImmediate(tick)` without
// pause, looking `setImmediate` up on the global object each time, so the JS thread spins a core.
// On lavapipe that core is taken from the kernels themselves (measured 1.7-2.5x slower).
// `gently(fn)` swaps the global for a shim while `fn` runs: ticks stay immediate for the first 2 ms
// (short jobs keep their latency), then come once per `intervalMs` via setTimeout. Node's internals
// hold their own reference to the real setImmediate, so only global look-ups see the shim. The swap
// is reference counted, so overlapping awaits are safe; WAN_BUSY_POLL=1 disables it.
const realSetImmediate = globalThis.setImmediate;
const SPIN_MS = 2;
let depth = 0;
let interval = 1;
let startedAt = 0;

function shim(fn: (...args: any[]) => void, ...args: any[]): NodeJS.Immediate {
  if (performance.now() - startedAt < SPIN_MS) return realSetImmediate(fn, ...args);
  // Dawn only calls the function; it never uses the returned handle.
  return setTimeout(fn, interval, ...args) as unknown as NodeJS.Immediate;
}

export async function gently<T>(fn: () => Promise<T>, intervalMs = 1): Promise<T> {
  if (process.env.WAN_BUSY_POLL === '1') return fn();
  if (depth++ === 0) {
    interval = intervalMs;
    startedAt = performance.now();
    (globalThis as any).setImmediate = Object.assign(shim, { __promisify__: (realSetImmediate as any).__promisify__ });
  }
  try {
    return await fn();
  } finally {
    if (--depth === 0) globalThis.setImmediate = realSetImmediate;
  }
}
