// Python / numpy float semantics the official preprocessing relies on.

/** Python's float floor division (also numpy's floor_divide): fmod-based, not floor(a / b). */
export function pyFloorDiv(a: number, b: number): number {
  let mod = a % b; // JS % on doubles is C fmod
  let div = (a - mod) / b;
  if (mod !== 0 && b < 0 !== mod < 0) {
    mod += b;
    div -= 1;
  }
  if (div === 0) return Math.sign(a / b) < 0 || Object.is(a / b, -0) ? -0 : 0;
  let fl = Math.floor(div);
  if (div - fl > 0.5) fl += 1;
  return fl;
}

/** Python's round(x) to an integer: round half to even. */
export function pyRound(x: number): number {
  const fl = Math.floor(x);
  const diff = x - fl;
  if (diff > 0.5) return fl + 1;
  if (diff < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}
