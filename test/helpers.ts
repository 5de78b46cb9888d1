// Shared test helpers: seeded random data and float64 comparisons.
export function rng(seed: number): () => number {
  // mulberry32: small, seedable, good enough for test data.
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Normal-ish values (sum of uniforms), scaled. */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() + r() + r() + r() - 2) * scale * 1.7;
  return out;
}

export function relL2(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) throw new Error(`length ${got.length} != ${ref.length}`);
  let d = 0;
  let r = 0;
  for (let i = 0; i < ref.length; i++) {
    d += (got[i] - ref[i]) ** 2;
    r += ref[i] ** 2;
  }
  return Math.sqrt(d / (r || 1));
}

export const fixturesDir = new URL('./fixtures/', import.meta.url).pathname;

/**
 * Waits until no tensor is live (a streamed model's prefetch still landing is freed when it lands,
 * which takes longer on a loaded machine); gives up after `ms` and lets the caller's assertion fail.
 */
export async function untilNoLiveTensors(e: { liveTensors: number }, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (e.liveTensors > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}
