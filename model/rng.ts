// A random generator bit-exact with `torch.Generator('cpu').manual_seed(seed)` (PyTorch 1.13, x86-64)
// for randn / rand / randint, so that the pipelines draw the same initial noise as the official code.
//
// What torch does (ATen CPUGeneratorImpl, MT19937RNGEngine.h, DistributionsHelper.h and the CPU
// DistributionTemplates.h normal kernels):
// - the engine is mt19937 seeded with (seed & 0xffffffff); random() is one draw, random64() is two
//   draws as (first << 32) | second;
// - a float uniform is (random() & (2^24 - 1)) * 2^-24; a double uniform (random64() & (2^53 - 1)) * 2^-53;
// - randn of a contiguous float32 tensor with numel >= 16 ("normal_fill") first fills the whole tensor
//   with float uniforms, then turns each block of 16 into normals by Box-Muller over the pairs
//   (j, j + 8); when numel % 16 != 0 the LAST 16 values are redrawn from 16 fresh uniforms and
//   transformed again. On x86 pip wheels (CPU capability AVX2) the transform uses the float32
//   Cephes polynomials of avx_mathfun.h (log256_ps / sincos256_ps) compiled by GCC with
//   -mavx2 -mfma, which contracts every multiply whose only use is an add into an FMA; with
//   ATEN_CPU_CAPABILITY=default it calls glibc's logf / cosf / sinf instead.
// - every other normal draw (numel < 16, float64) is at::normal_distribution<double>: two double
//   uniforms, r = sqrt(-2 log(1 - u2)), theta = 2 pi u1; it returns r cos(theta) and caches r sin(theta)
//   in the generator for the next such draw (the cache survives across calls; manual_seed clears it).
//   float64 tensors with numel >= 16 go through normal_fill in double with libm log / cos / sin.
//
// Reproducing the last bit needs the exact float32 operation sequence: the AVX2 path is emulated lane
// by lane with Math.fround after every operation and an exact float32 FMA at each place GCC fuses one;
// glibc's logf / sinf / cosf (not correctly rounded: ~1% of results differ from fround(Math.log(x)) etc.)
// are emulated from their published algorithm. Both were checked bit for bit against the compiled C
// (g++ 12 -O2 -mavx2 -mfma; glibc 2.36) on all 2^24 inputs the kernels can see. The double-precision
// libm calls are computed correctly rounded (double-double arithmetic); glibc's double log / sin / cos
// return that value except for ~0.1% of arguments (1 ulp), so float64 draws may rarely differ by an ulp.

/** Which float32 normal_fill kernel to reproduce: x86 AVX2 wheels (default) or ATEN_CPU_CAPABILITY=default. */
export type NormalKernel = 'avx2' | 'scalar';

export interface RandnOptions {
  kernel?: NormalKernel;
}

/** A tensor shape or an element count. */
export type ShapeOrNumel = number | readonly number[];

/** torch.Generator()'s seed when none is given (c10::detail::default_rng_seed_val). */
export const TORCH_DEFAULT_SEED = 67280421310721n;

const fround = Math.fround;

// ------------------------------------------------------------------------------------------------
// mt19937 (32-bit state, as ATen's at::mt19937)

const MT_N = 624;
const MT_M = 397;
const MT_MATRIX_A = 0x9908b0df;

/** The twisted combination of state words u (upper bit) and v (lower 31 bits). */
function twist(u: number, v: number): number {
  const y = (u & 0x80000000) | (v & 0x7fffffff);
  return (y >>> 1) ^ (v & 1 ? MT_MATRIX_A : 0);
}

class Mt19937 {
  private readonly state = new Uint32Array(MT_N);
  private left = 1;
  private next = 0;

  constructor(seed32: number) {
    const s = this.state;
    s[0] = seed32;
    for (let j = 1; j < MT_N; j++) {
      const prev = s[j - 1];
      s[j] = Math.imul(1812433253, prev ^ (prev >>> 30)) + j;
    }
  }

  nextU32(): number {
    if (--this.left === 0) this.regenerate();
    let y = this.state[this.next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** out[from .. to) = float uniforms (random() & (2^24 - 1)) * 2^-24, without per-call overhead. */
  fillFloats(out: Float32Array, from: number, to: number): void {
    const s = this.state;
    let next = this.next;
    let left = this.left;
    for (let i = from; i < to; i++) {
      if (--left === 0) {
        this.regenerate();
        next = 0;
        left = MT_N;
      }
      let y = s[next++];
      y ^= y >>> 11;
      y ^= (y << 7) & 0x9d2c5680;
      y ^= (y << 15) & 0xefc60000;
      y ^= y >>> 18;
      out[i] = (y & 0xffffff) * 2 ** -24;
    }
    this.next = next;
    this.left = left;
  }

  private regenerate(): void {
    const s = this.state;
    this.left = MT_N;
    this.next = 0;
    let k = 0;
    for (; k < MT_N - MT_M; k++) s[k] = s[k + MT_M] ^ twist(s[k], s[k + 1]);
    for (; k < MT_N - 1; k++) s[k] = s[k + MT_M - MT_N] ^ twist(s[k], s[k + 1]);
    s[MT_N - 1] = s[MT_M - 1] ^ twist(s[MT_N - 1], s[0]);
  }
}

// ------------------------------------------------------------------------------------------------
// Exact fused multiply-adds and bit access

const bitsF32 = new Float32Array(1);
const bitsU32 = new Uint32Array(bitsF32.buffer);
const bitsF64 = new Float64Array(1);
const bitsF64Words = new Uint32Array(bitsF64.buffer); // [low word, high word] (little endian)

function f32ToBits(x: number): number {
  bitsF32[0] = x;
  return bitsU32[0];
}

function bitsToF32(b: number): number {
  bitsU32[0] = b;
  return bitsF32[0];
}

/**
 * float32 fma(a, b, c) rounded once. a*b of two floats is exact in a double; the double sum can
 * only mislead fround when it lands exactly on a float32 midpoint, then the sum's error decides.
 */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = fround(s);
  const other = r + 2 * (s - r); // the float on the far side of s when s is a midpoint
  // Kept tiny so that V8 inlines it; the rare exact-midpoint case is out of line.
  return fround(other) !== other || r === s ? r : fma32Midpoint(p, c, s, r, other);
}

/** s = p + c rounded to double fell on the midpoint of floats r and other: the sum's error decides. */
function fma32Midpoint(p: number, c: number, s: number, r: number, other: number): number {
  const t = s - p;
  const err = p - (s - t) + (c - t);
  if (err === 0) return r; // a true tie: fround(s) already rounded it to even
  return err > 0 ? Math.max(r, other) : Math.min(r, other);
}

const SPLIT = 134217729; // 2^27 + 1 (Veltkamp)

/**
 * double fma(a, b, c) rounded once (no overflow/underflow handling: the callers stay in range).
 * Exact product a*b = ph + pl, exact sum c + ph = sh + sl, the small terms added with rounding to
 * odd, then one rounding (Boldo & Melquiond's emulation).
 */
export function fma64(a: number, b: number, c: number): number {
  const ph = a * b;
  const ca = SPLIT * a;
  const ah = ca - (ca - a);
  const al = a - ah;
  const cb = SPLIT * b;
  const bh = cb - (cb - b);
  const bl = b - bh;
  const pl = ah * bh - ph + ah * bl + al * bh + al * bl;
  const sh = c + ph;
  const t = sh - c;
  const sl = c - (sh - t) + (ph - t);
  if (sl === 0 && pl === 0) return sh;
  const v = sl + pl;
  const tv = v - sl;
  const verr = sl - (v - tv) + (pl - tv);
  return sh + (verr === 0 ? v : roundToOddNeighbour(v, verr));
}

/** v when its last significand bit is odd, else its neighbour towards v + err (err != 0). */
function roundToOddNeighbour(v: number, err: number): number {
  bitsF64[0] = v;
  let lo = bitsF64Words[0];
  if (lo & 1) return v;
  let hi = bitsF64Words[1];
  if (v > 0 === err > 0) {
    lo = (lo + 1) >>> 0;
    if (lo === 0) hi++;
  } else {
    if (lo === 0) hi--;
    lo = (lo - 1) >>> 0;
  }
  bitsF64Words[0] = lo;
  bitsF64Words[1] = hi;
  return bitsF64[0];
}

/** Parses a C hexadecimal float literal ("-0x1.8p-3") exactly (at most 53 significant bits). */
export function hexFloat(literal: string): number {
  const m = /^(-?)0x([0-9a-f]+)(?:\.([0-9a-f]*))?p([+-]?\d+)$/i.exec(literal);
  if (!m) throw new Error(`hexFloat: bad literal "${literal}"`);
  const frac = m[3] ?? '';
  const mant = parseInt(m[2] + frac, 16);
  if (mant >= 2 ** 53) throw new Error(`hexFloat: "${literal}" has more than 53 bits`);
  const v = mant * 2 ** (parseInt(m[4], 10) - 4 * frac.length);
  return m[1] ? -v : v;
}

// ------------------------------------------------------------------------------------------------
// The AVX2 kernel: avx_mathfun.h log256_ps / sincos256_ps, one lane, as GCC -O2 -mavx2 -mfma compiles
// them (checked against the compiled code for every 24-bit uniform input). Every float32 constant is
// the float nearest its decimal literal.

const AVX_SQRTHF = fround(0.707106781186547524);
const AVX_LOG_P0 = fround(7.0376836292e-2);
const AVX_LOG_P1 = fround(-1.151461031e-1);
const AVX_LOG_P2 = fround(1.167699874e-1);
const AVX_LOG_P3 = fround(-1.2420140846e-1);
const AVX_LOG_P4 = fround(1.4249322787e-1);
const AVX_LOG_P5 = fround(-1.6668057665e-1);
const AVX_LOG_P6 = fround(2.0000714765e-1);
const AVX_LOG_P7 = fround(-2.4999993993e-1);
const AVX_LOG_P8 = fround(3.3333331174e-1);
const AVX_LOG_Q1 = fround(-2.12194440e-4);
const AVX_LOG_Q2 = fround(0.693359375);

const AVX_MINUS_DP1 = fround(-0.78515625);
const AVX_MINUS_DP2 = fround(-2.4187564849853515625e-4);
const AVX_MINUS_DP3 = fround(-3.77489497744594108e-8);
const AVX_SIN_P0 = fround(-1.9515295891e-4);
const AVX_SIN_P1 = fround(8.3321608736e-3);
const AVX_SIN_P2 = fround(-1.6666654611e-1);
const AVX_COS_P0 = fround(2.443315711809948e-5);
const AVX_COS_P1 = fround(-1.388731625493765e-3);
const AVX_COS_P2 = fround(4.166664568298827e-2);
const AVX_FOPI = fround(1.27323954473516); // 4 / pi
/** normal_fill_AVX2's _mm256_set1_ps(2.0f * c10::pi<double>). */
const AVX_TWO_PI = fround(2 * Math.PI);

/** log256_ps for one lane with x > 0 (normal or subnormal; x <= 0 gives NaN as the vector code). */
export function avx2Log(xIn: number): number {
  if (!(xIn > 0)) return NaN;
  // Cut off denormals, split x = m * 2^e with m in [0.5, 1).
  const bits = f32ToBits(Math.max(xIn, 1.1754943508222875e-38));
  let e = fround((bits >>> 23) - 127 + 1);
  let x = bitsToF32((bits & 0x807fffff) | 0x3f000000);
  // m < sqrt(1/2): e -= 1, x = 2m - 1; else x = m - 1 (both exact).
  const small = x < AVX_SQRTHF;
  const tmp = small ? x : 0;
  x = fround(x - 1);
  if (small) e = fround(e - 1);
  x = fround(x + tmp);
  const z = fround(x * x);
  // The Horner steps y = y * x + p fuse into FMAs.
  let y = fma32(AVX_LOG_P0, x, AVX_LOG_P1);
  y = fma32(y, x, AVX_LOG_P2);
  y = fma32(y, x, AVX_LOG_P3);
  y = fma32(y, x, AVX_LOG_P4);
  y = fma32(y, x, AVX_LOG_P5);
  y = fma32(y, x, AVX_LOG_P6);
  y = fma32(y, x, AVX_LOG_P7);
  y = fma32(y, x, AVX_LOG_P8);
  y = fround(y * x);
  // y * z fuses with the add of the (rounded) e * q1; z * 0.5 is exact, so y - z * 0.5 is one rounding.
  y = fma32(y, z, fround(e * AVX_LOG_Q1));
  y = fround(y - z * 0.5);
  // e * q2 is exact (q2 has 9 bits): fma(e, q2, x + y) is one rounding of the sum.
  return fma32(e, AVX_LOG_Q2, fround(x + y));
}

/** sincos256_ps results of the last avx2SinCos call. */
let avxSin = 0;
let avxCos = 0;

/** sincos256_ps for one lane (|x| < 2^31); results in avxSin / avxCos. */
function avx2SinCos(xIn: number): void {
  let signSin = xIn < 0 || Object.is(xIn, -0);
  let x = Math.abs(xIn);
  // Octant j = (trunc(x * 4/pi) + 1) & ~1; the reduction below subtracts j * pi/4 in three parts.
  let j = Math.trunc(fround(x * AVX_FOPI));
  j = (j + 1) & ~1;
  x = fma32(j, AVX_MINUS_DP1, x);
  x = fma32(j, AVX_MINUS_DP2, x);
  x = fma32(j, AVX_MINUS_DP3, x);
  if (j & 4) signSin = !signSin;
  const negCos = ((j - 2) & 4) === 0;
  const useSinPoly = (j & 2) === 0;
  const z = fround(x * x);
  let yc = fma32(AVX_COS_P0, z, AVX_COS_P1);
  yc = fma32(yc, z, AVX_COS_P2);
  yc = fround(yc * z);
  yc = fma32(yc, z, -(z * 0.5)); // y * z - z * 0.5 fuses as fmsub (z * 0.5 exact)
  yc = fround(yc + 1);
  let ys = fma32(AVX_SIN_P0, z, AVX_SIN_P1);
  ys = fma32(ys, z, AVX_SIN_P2);
  ys = fround(ys * z);
  ys = fma32(ys, x, x);
  const s = useSinPoly ? ys : yc;
  const c = useSinPoly ? yc : ys;
  avxSin = signSin ? -s : s;
  avxCos = negCos ? -c : c;
}

/** sin and cos of sincos256_ps (for tests). */
export function avx2SinCosPair(x: number): [number, number] {
  avx2SinCos(x);
  return [avxSin, avxCos];
}

/** normal_fill_16_AVX2 on d[o .. o + 16) (mean 0, std 1). */
function normalFill16Avx2(d: Float32Array, o: number): void {
  for (let j = o; j < o + 8; j++) {
    const u1 = fround(1 - d[j]);
    const radius = fround(Math.sqrt(fround(-2 * avx2Log(u1))));
    avx2SinCos(fround(AVX_TWO_PI * d[j + 8]));
    // fmadd(n, std = 1, mean = 0) turns -0 into +0.
    d[j] = fround(radius * avxCos) + 0;
    d[j + 8] = fround(radius * avxSin) + 0;
  }
}

// ------------------------------------------------------------------------------------------------
// The scalar kernel: glibc's logf / sinf / cosf (sysdeps/ieee754/flt-32, glibc >= 2.28), which compute in
// double. On x86-64 machines with FMA, glibc selects the copies compiled with -mfma, where GCC fuses
// every multiply-add of the source; these functions reproduce those (exact fma64). On the 24-bit
// uniform grid the unfused copies give the same floats (checked exhaustively), so either glibc matches.

/** __logf_data: 16 (1/c, log c) pairs, ln2 and the log1p polynomial. */
const LOGF_TABLE: readonly (readonly [number, number])[] = [
  ['0x1.661ec79f8f3bep+0', '-0x1.57bf7808caadep-2'],
  ['0x1.571ed4aaf883dp+0', '-0x1.2bef0a7c06ddbp-2'],
  ['0x1.49539f0f010bp+0', '-0x1.01eae7f513a67p-2'],
  ['0x1.3c995b0b80385p+0', '-0x1.b31d8a68224e9p-3'],
  ['0x1.30d190c8864a5p+0', '-0x1.6574f0ac07758p-3'],
  ['0x1.25e227b0b8eap+0', '-0x1.1aa2bc79c81p-3'],
  ['0x1.1bb4a4a1a343fp+0', '-0x1.a4e76ce8c0e5ep-4'],
  ['0x1.12358f08ae5bap+0', '-0x1.1973c5a611cccp-4'],
  ['0x1.0953f419900a7p+0', '-0x1.252f438e10c1ep-5'],
  ['0x1p+0', '0x0p+0'],
  ['0x1.e608cfd9a47acp-1', '0x1.aa5aa5df25984p-5'],
  ['0x1.ca4b31f026aap-1', '0x1.c5e53aa362eb4p-4'],
  ['0x1.b2036576afce6p-1', '0x1.526e57720db08p-3'],
  ['0x1.9c2d163a1aa2dp-1', '0x1.bc2860d22477p-3'],
  ['0x1.886e6037841edp-1', '0x1.1058bc8a07ee1p-2'],
  ['0x1.767dcf5534862p-1', '0x1.4043057b6ee09p-2'],
].map(([invc, logc]) => [hexFloat(invc), hexFloat(logc)] as const);
const LOGF_LN2 = hexFloat('0x1.62e42fefa39efp-1');
const LOGF_A0 = hexFloat('-0x1.00ea348b88334p-2');
const LOGF_A1 = hexFloat('0x1.5575b0be00b6ap-2');
const LOGF_A2 = hexFloat('-0x1.ffffef20a4123p-2');
const LOGF_OFF = 0x3f330000;

/** glibc logf (float in, float out). */
export function glibcLogf(xIn: number): number {
  let ix = f32ToBits(xIn);
  if (ix === 0x3f800000) return 0;
  if (((ix - 0x00800000) >>> 0) >= 0x7f800000 - 0x00800000) {
    if ((ix & 0x7fffffff) === 0) return -Infinity;
    if (ix === 0x7f800000) return xIn;
    if (ix & 0x80000000 || (ix & 0x7fffffff) > 0x7f800000) return NaN;
    ix = (f32ToBits(fround(xIn * 2 ** 23)) - (23 << 23)) >>> 0; // subnormal: normalise
  }
  // x = 2^k z with z in [OFF, 2 OFF); table entry i brackets z.
  const tmp = (ix - LOGF_OFF) >>> 0;
  const i = (tmp >>> 19) & 15;
  const k = (tmp | 0) >> 23;
  const z = bitsToF32((ix - (tmp & (0x1ff << 23))) >>> 0);
  const [invc, logc] = LOGF_TABLE[i];
  const r = fma64(z, invc, -1);
  const y0 = fma64(k, LOGF_LN2, logc);
  const r2 = r * r;
  let y = fma64(LOGF_A1, r, LOGF_A2);
  y = fma64(LOGF_A0, r2, y);
  y = fma64(y, r2, y0 + r);
  return fround(y);
}

/** One __sincosf_table entry; the second negates the cosine polynomial. */
interface SinCosfTable {
  c0: number;
  c1: number;
  c2: number;
  c3: number;
  c4: number;
  s1: number;
  s2: number;
  s3: number;
}
const SINCOSF_COS = ['0x1p0', '-0x1.ffffffd0c621cp-2', '0x1.55553e1068f19p-5', '-0x1.6c087e89a359dp-10', '0x1.99343027bf8c3p-16'].map(hexFloat);
const SINCOSF_SIN = ['-0x1.555545995a603p-3', '0x1.1107605230bc4p-7', '-0x1.994eb3774cf24p-13'].map(hexFloat);
function sincosfTable(cosSign: number): SinCosfTable {
  const [c0, c1, c2, c3, c4] = SINCOSF_COS.map((c) => cosSign * c);
  const [s1, s2, s3] = SINCOSF_SIN;
  return { c0, c1, c2, c3, c4, s1, s2, s3 };
}
const SINCOSF_T0 = sincosfTable(1);
const SINCOSF_T1 = sincosfTable(-1);
const SINCOSF_SIGN = [1, -1, -1, 1];
/** 2/pi * 2^24 (x86-64 has no TOINT_INTRINSICS: the quadrant is taken from bits 24..31). */
const SINCOSF_HPI_INV = hexFloat('0x1.45F306DC9C883p+23');
const SINCOSF_HPI = hexFloat('0x1.921FB54442D18p0');
/** abstop12 thresholds: float(pi/4), 2^-12, 120. */
const TOP12_PIO4 = (f32ToBits(fround(hexFloat('0x1.921FB54442D18p-1'))) >>> 20) & 0x7ff;
const TOP12_TINY = (f32ToBits(2 ** -12) >>> 20) & 0x7ff;
const TOP12_120 = (f32ToBits(120) >>> 20) & 0x7ff;

/** sinf_poly: the sine polynomial for even n, the cosine one for odd n; rounded to float. */
function sinfPoly(x: number, x2: number, p: SinCosfTable, n: number): number {
  if ((n & 1) === 0) {
    const x3 = x * x2;
    const s1 = fma64(x2, p.s3, p.s2);
    const x7 = x3 * x2;
    const s = fma64(x3, p.s1, x);
    return fround(fma64(x7, s1, s));
  }
  const x4 = x2 * x2;
  const c2 = fma64(x2, p.c4, p.c3);
  const c1 = fma64(x2, p.c1, p.c0);
  const x6 = x4 * x2;
  const c = fma64(x4, p.c2, c1);
  return fround(fma64(x6, c2, c));
}

/** glibc sinf (cos = false) or cosf (cos = true) of a float with |y| < 120. */
function glibcSinCosf(y: number, cos: boolean): number {
  const top = (f32ToBits(y) >>> 20) & 0x7ff;
  if (top < TOP12_PIO4) {
    if (top < TOP12_TINY) return cos ? 1 : y;
    return sinfPoly(y, y * y, SINCOSF_T0, cos ? 1 : 0);
  }
  if (top >= TOP12_120) throw new RangeError(`glibc sinf/cosf emulation: |${y}| >= 120 is not supported`);
  // reduce_fast: n = round(x * 2/pi) from the scaled product, x - n * pi/2 in one fused step.
  const n = (((y * SINCOSF_HPI_INV) | 0) + 0x800000) >> 24;
  const x = fma64(-n, SINCOSF_HPI, y);
  const p = n & 2 ? SINCOSF_T1 : SINCOSF_T0;
  return sinfPoly(x * SINCOSF_SIGN[n & 3], x * x, p, cos ? n ^ 1 : n);
}

export function glibcSinf(y: number): number {
  return glibcSinCosf(y, false);
}

export function glibcCosf(y: number): number {
  return glibcSinCosf(y, true);
}

/** normal_fill_16<float> on d[o .. o + 16) (mean 0, std 1), glibc libm. */
function normalFill16Scalar(d: Float32Array, o: number): void {
  for (let j = o; j < o + 8; j++) {
    const u1 = fround(1 - d[j]);
    const radius = fround(Math.sqrt(fround(-2 * glibcLogf(u1))));
    // theta = 2.0f * pi<double> * u2 is computed in double and stored as float.
    const theta = fround(2 * Math.PI * d[j + 8]);
    d[j] = fround(radius * glibcCosf(theta)) + 0;
    d[j + 8] = fround(radius * glibcSinf(theta)) + 0;
  }
}

// ------------------------------------------------------------------------------------------------
// Correctly rounded double log / sin / cos via double-double arithmetic (glibc's double log, sin and
// cos are accurate to ~0.52 ulp, i.e. they return the correctly rounded value except in rare ties).

type DD = [number, number];

function twoSum(a: number, b: number): DD {
  const s = a + b;
  const t = s - a;
  return [s, a - (s - t) + (b - t)];
}

function twoProd(a: number, b: number): DD {
  const p = a * b;
  const ca = SPLIT * a;
  const ah = ca - (ca - a);
  const al = a - ah;
  const cb = SPLIT * b;
  const bh = cb - (cb - b);
  const bl = b - bh;
  return [p, ah * bh - p + ah * bl + al * bh + al * bl];
}

function ddAdd(a: DD, b: DD): DD {
  const [s, e] = twoSum(a[0], b[0]);
  return twoSum(s, e + a[1] + b[1]);
}

function ddMul(a: DD, b: DD): DD {
  const [p, e] = twoProd(a[0], b[0]);
  return twoSum(p, e + a[0] * b[1] + a[1] * b[0]);
}

function ddDiv(a: DD, b: DD): DD {
  const q1 = a[0] / b[0];
  const r1 = ddAdd(a, ddMul(b, [-q1, 0]));
  const q2 = r1[0] / b[0];
  const r2 = ddAdd(r1, ddMul(b, [-q2, 0]));
  const q3 = r2[0] / b[0];
  return ddAdd(twoSum(q1, q2), [q3, 0]);
}

const DD_LN2: DD = [hexFloat('0x1.62e42fefa39efp-1'), hexFloat('0x1.abc9e3b39803fp-56')];
/** pi/2 in three parts (~160 bits). */
const PIO2_1 = hexFloat('0x1.921fb54442d18p+0');
const PIO2_2 = hexFloat('0x1.1a62633145c07p-54');
const PIO2_3 = hexFloat('-0x1.f1976b7ed8fbcp-110');
/** 1 / (2k + 1) for the atanh series of log. */
const ATANH_COEFS: DD[] = Array.from({ length: 24 }, (_, k) => ddDiv([1, 0], [2 * k + 1, 0]));
/** 1 / n! for the sin / cos series. */
const INV_FACTORIALS: DD[] = [[1, 0]];
for (let n = 1; n <= 31; n++) INV_FACTORIALS.push(ddDiv(INV_FACTORIALS[n - 1], [n, 0]));

/** Natural log of a positive normal double, correctly rounded (barring ~2^-100-close ties). */
export function logCorrect(x: number): number {
  if (x === 1) return 0;
  if (!(x > 0) || !Number.isFinite(x)) return x === 0 ? -Infinity : x === Infinity ? x : NaN;
  // x = m 2^k with m in [sqrt(1/2), sqrt(2)).
  let k = Math.floor(Math.log2(x));
  let m = x * 2 ** -k;
  // Math.log2 may be off by one next to powers of two; scaling by 2 is exact.
  while (m >= 2) {
    m /= 2;
    k++;
  }
  while (m < 1) {
    m *= 2;
    k--;
  }
  if (m > Math.SQRT2) {
    m /= 2;
    k++;
  }
  // log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.1716.
  const s = ddDiv([m - 1, 0], twoSum(m, 1));
  const s2 = ddMul(s, s);
  let p = ATANH_COEFS[ATANH_COEFS.length - 1];
  for (let i = ATANH_COEFS.length - 2; i >= 0; i--) p = ddAdd(ddMul(p, s2), ATANH_COEFS[i]);
  const logm = ddMul(ddMul(s, p), [2, 0]);
  const r = ddAdd(ddMul(DD_LN2, [k, 0]), logm);
  return r[0] + r[1];
}

/** sin and cos of a double with |x| < 2^20, each correctly rounded (barring ~2^-100-close ties). */
export function sinCosCorrect(x: number): [number, number] {
  if (Math.abs(x) >= 2 ** 20) throw new RangeError(`sinCosCorrect: |${x}| >= 2^20 is not supported`);
  const q = Math.round(x / PIO2_1);
  // r = x - q pi/2, exactly enough for the nearest multiple.
  let r = ddAdd([x, 0], ddMul([-q, 0], [PIO2_1, 0]));
  r = ddAdd(r, ddMul([-q, 0], [PIO2_2, 0]));
  r = ddAdd(r, [-q * PIO2_3, 0]);
  const r2 = ddMul(r, r);
  // Horner in r^2: sin r = r (1/1! - r^2/3! + ...), cos r = 1/0! - r^2/2! + ... (|r| <= pi/4: 16 terms).
  let sp: DD = [0, 0];
  let cp: DD = [0, 0];
  for (let k = 15; k >= 0; k--) {
    const sign = k % 2 === 0 ? 1 : -1;
    const sc = INV_FACTORIALS[2 * k + 1];
    const cc = INV_FACTORIALS[2 * k];
    sp = ddAdd(ddMul(sp, r2), [sign * sc[0], sign * sc[1]]);
    cp = ddAdd(ddMul(cp, r2), [sign * cc[0], sign * cc[1]]);
  }
  const sr = ddMul(sp, r);
  const sinR = sr[0] + sr[1];
  const cosR = cp[0] + cp[1];
  switch (((q % 4) + 4) % 4) {
    case 0:
      return [sinR, cosR];
    case 1:
      return [cosR, -sinR];
    case 2:
      return [-sinR, -cosR];
    default:
      return [-cosR, sinR];
  }
}

/** normal_fill_16<double> on d[o .. o + 16) (mean 0, std 1). */
function normalFill16Double(d: Float64Array, o: number): void {
  for (let j = o; j < o + 8; j++) {
    const radius = Math.sqrt(-2 * logCorrect(1 - d[j]));
    const [s, c] = sinCosCorrect(2 * Math.PI * d[j + 8]);
    d[j] = radius * c + 0;
    d[j + 8] = radius * s + 0;
  }
}

// ------------------------------------------------------------------------------------------------
// The generator

function numelOf(shape: ShapeOrNumel): number {
  const dims = typeof shape === 'number' ? [shape] : shape;
  let n = 1;
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`bad shape [${dims.join(', ')}]`);
    n *= d;
  }
  return n;
}

function toSeed(seed: number | bigint): bigint {
  const s = typeof seed === 'bigint' ? seed : Number.isSafeInteger(seed) ? BigInt(seed) : NaN;
  if (typeof s !== 'bigint' || s < 0n || s >= 1n << 64n) {
    throw new RangeError(`seed must be an integer in [0, 2^64), got ${String(seed)}`);
  }
  return s;
}

export class TorchCpuGenerator {
  private engine!: Mt19937;
  private seed = 0n;
  /** normal_distribution<double>'s cached r sin(theta). */
  private nextDoubleNormal: number | null = null;

  constructor(seed: number | bigint = TORCH_DEFAULT_SEED) {
    this.manualSeed(seed);
  }

  /** Generator.manual_seed: reseeds the engine with (seed & 0xffffffff) and drops the cached normal. */
  manualSeed(seed: number | bigint): this {
    this.seed = toSeed(seed);
    this.engine = new Mt19937(Number(this.seed & 0xffffffffn));
    this.nextDoubleNormal = null;
    return this;
  }

  /** Generator.initial_seed (the full 64-bit value, although only its low 32 bits seed the engine). */
  initialSeed(): bigint {
    return this.seed;
  }

  /** random(): one mt19937 output. */
  nextU32(): number {
    return this.engine.nextU32();
  }

  /** random64(): (first << 32) | second. */
  nextU64(): bigint {
    const hi = this.engine.nextU32();
    const lo = this.engine.nextU32();
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** uniform_real_distribution<float>(0, 1): 24 random bits. */
  nextFloat(): number {
    return (this.engine.nextU32() & 0xffffff) * 2 ** -24;
  }

  /** uniform_real_distribution<double>(0, 1): the low 53 bits of random64(). */
  nextDouble(): number {
    const hi = this.engine.nextU32();
    const lo = this.engine.nextU32();
    return ((hi & 0x1fffff) * 2 ** 32 + lo) * 2 ** -53;
  }

  /** normal_distribution<double>(0, 1): Box-Muller, the second value cached for the next call. */
  nextNormalDouble(): number {
    if (this.nextDoubleNormal !== null) {
      const v = this.nextDoubleNormal;
      this.nextDoubleNormal = null;
      return v + 0;
    }
    const u1 = this.nextDouble();
    const u2 = this.nextDouble();
    const r = Math.sqrt(-2 * logCorrect(1 - u2));
    const [s, c] = sinCosCorrect(2 * Math.PI * u1);
    this.nextDoubleNormal = r * s;
    return r * c + 0;
  }

  /** torch.rand(shape, generator=g) in float32. */
  rand(shape: ShapeOrNumel): Float32Array {
    const out = new Float32Array(numelOf(shape));
    this.engine.fillFloats(out, 0, out.length);
    return out;
  }

  /** torch.rand(shape, dtype=torch.float64, generator=g). */
  randF64(shape: ShapeOrNumel): Float64Array {
    const out = new Float64Array(numelOf(shape));
    for (let i = 0; i < out.length; i++) out[i] = this.nextDouble();
    return out;
  }

  /** torch.randn(shape, generator=g) in float32 (contiguous), with the AVX2 (default) or scalar kernel. */
  randn(shape: ShapeOrNumel, opts: RandnOptions = {}): Float32Array {
    const kernel = opts.kernel ?? 'avx2';
    if (kernel !== 'avx2' && kernel !== 'scalar') throw new Error(`unknown randn kernel "${String(kernel)}"`);
    const n = numelOf(shape);
    const out = new Float32Array(n);
    if (n < 16) {
      for (let i = 0; i < n; i++) out[i] = this.nextNormalDouble();
      return out;
    }
    const fill16 = kernel === 'avx2' ? normalFill16Avx2 : normalFill16Scalar;
    this.engine.fillFloats(out, 0, n);
    for (let i = 0; i + 16 <= n; i += 16) fill16(out, i);
    if (n % 16 !== 0) {
      this.engine.fillFloats(out, n - 16, n);
      fill16(out, n - 16);
    }
    return out;
  }

  /** torch.randn(shape, dtype=torch.float64, generator=g). */
  randnF64(shape: ShapeOrNumel): Float64Array {
    const n = numelOf(shape);
    const out = new Float64Array(n);
    if (n < 16) {
      for (let i = 0; i < n; i++) out[i] = this.nextNormalDouble();
      return out;
    }
    for (let i = 0; i < n; i++) out[i] = this.nextDouble();
    for (let i = 0; i + 16 <= n; i += 16) normalFill16Double(out, i);
    if (n % 16 !== 0) {
      for (let i = n - 16; i < n; i++) out[i] = this.nextDouble();
      normalFill16Double(out, n - 16);
    }
    return out;
  }

  /**
   * torch.randint(low, high, shape, generator=g) (int64): (random() % range) + low when
   * range = high - low < 2^32, else (random64() % range) + low. Values are returned as doubles,
   * so the bounds must be safe integers.
   */
  randint(low: number, high: number, shape: ShapeOrNumel): Float64Array {
    if (!Number.isSafeInteger(low) || !Number.isSafeInteger(high) || high <= low) {
      throw new RangeError(`randint: need safe integers low < high, got [${low}, ${high})`);
    }
    const range = high - low;
    const out = new Float64Array(numelOf(shape));
    if (range < 2 ** 32) {
      for (let i = 0; i < out.length; i++) out[i] = (this.engine.nextU32() % range) + low;
    } else {
      const r = BigInt(range);
      for (let i = 0; i < out.length; i++) out[i] = Number(this.nextU64() % r) + low;
    }
    return out;
  }
}
