// float32 arithmetic helpers: the official schedulers compute with 0-dim float32 tensors, so scalar
// coefficients are rounded to float32 after every operation, and elementwise updates are float32.
export const f = Math.fround;

export const log32 = (x: number) => f(Math.log(x));
export const exp32 = (x: number) => f(Math.exp(x));
export const expm1_32 = (x: number) => f(Math.expm1(x));

/** out[i] = f(f(a*x[i]) - f(b*y[i])) : the `c1 * x - c2 * y` pattern of the solvers. */
export function axpby(a: number, x: Float32Array, b: number, y: Float32Array, out = new Float32Array(x.length)): Float32Array {
  for (let i = 0; i < x.length; i++) out[i] = f(f(a * x[i]) - f(b * y[i]));
  return out;
}

/** out[i] = f(x[i] - f(s * y[i])). */
export function subScaled(x: Float32Array, s: number, y: Float32Array, out = new Float32Array(x.length)): Float32Array {
  for (let i = 0; i < x.length; i++) out[i] = f(x[i] - f(s * y[i]));
  return out;
}

/** out[i] = f(f(x[i] - y[i]) / d)  or  * m when `mul`. */
export function diffDiv(x: Float32Array, y: Float32Array, d: number, out = new Float32Array(x.length)): Float32Array {
  for (let i = 0; i < x.length; i++) out[i] = f(f(x[i] - y[i]) / d);
  return out;
}

export function checkSameLength(what: string, ...arrays: Float32Array[]): void {
  const n = arrays[0].length;
  for (const a of arrays) if (a.length !== n) throw new Error(`${what}: tensors of ${n} and ${a.length} elements`);
}
