// Comparison of an engine output with a reference tensor, in float64.
export interface OutputCheck {
  name: string;
  /** ||out - ref|| / ||ref|| (for an all-zero reference: ||out||). */
  relL2: number;
  maxAbs: number;
  tol: number;
  /** 'relL2' compares relL2 with tol; 'exact' requires maxAbs <= tol (integers, layouts). */
  metric: 'relL2' | 'exact';
  pass: boolean;
  note?: string;
}

export function compareOutput(
  name: string,
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
  tol: number,
  metric: 'relL2' | 'exact' = 'relL2',
): OutputCheck {
  if (got.length !== ref.length) {
    return { name, relL2: Infinity, maxAbs: Infinity, tol, metric, pass: false, note: `length ${got.length} != reference ${ref.length}` };
  }
  let diff2 = 0;
  let ref2 = 0;
  let maxAbs = 0;
  let nonFinite = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = got[i] - ref[i];
    if (!Number.isFinite(got[i]) && got[i] !== ref[i]) nonFinite++;
    diff2 += d * d;
    ref2 += ref[i] * ref[i];
    const a = Math.abs(d);
    if (a > maxAbs || Number.isNaN(a)) maxAbs = a;
  }
  let relL2 = ref2 > 0 ? Math.sqrt(diff2 / ref2) : Math.sqrt(diff2);
  if (nonFinite) relL2 = Number.NaN;
  const pass = nonFinite === 0 && (metric === 'exact' ? maxAbs <= tol : relL2 <= tol);
  const check: OutputCheck = { name, relL2, maxAbs, tol, metric, pass };
  if (nonFinite) check.note = `${nonFinite} non-finite values`;
  return check;
}
