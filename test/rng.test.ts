// TorchCpuGenerator: bit-exact torch CPU randn / rand / randint (both recorded kernels), the mt19937
// stream, seeding, the cached normal, and the float emulation pieces it is built from.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadFixture } from '../loaders/fixture.ts';
import { rngFixtureKernel, runRngFixture } from '../model/reference/ops_rng.ts';
import {
  TorchCpuGenerator,
  avx2Log,
  avx2SinCosPair,
  fma32,
  fma64,
  glibcCosf,
  glibcLogf,
  glibcSinf,
  hexFloat,
  logCorrect,
  sinCosCorrect,
} from '../model/rng.ts';
import { fixturesDir } from './helpers.ts';

const f32 = Math.fround;
const bitsOf = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0];
const floatOf = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0];

describe('fixtures, bit exact', () => {
  it.each([
    ['rng.torch_cpu', 'avx2'],
    ['rng.torch_cpu_scalar', 'scalar'],
  ])('%s', async (name, kernel) => {
    const fx = await loadFixture(join(fixturesDir, name));
    expect(rngFixtureKernel(fx)).toBe(kernel);
    const checks = runRngFixture(fx);
    expect(checks.length).toBe(fx.outputNames.length);
    expect(checks.filter((c) => !c.pass).map((c) => `${c.name}: max |diff| ${c.maxAbs}`)).toEqual([]);
  });

  it('the two kernels differ slightly in the numel >= 16 float path', async () => {
    // theta = float(2 pi) * u (AVX2) vs float(2 pi * u) in double (scalar), and different log / sin / cos:
    // a few float ulps of theta times the radius (<= ~5.6).
    const avx = await loadFixture(join(fixturesDir, 'rng.torch_cpu'));
    const g = new TorchCpuGenerator(0);
    const scalarOnAvxFixture = g.randn(1000, { kernel: 'scalar' });
    const ref = avx.output('randn.s0.1000').f32();
    let differ = 0;
    for (let i = 0; i < ref.length; i++) {
      if (scalarOnAvxFixture[i] !== ref[i]) differ++;
      expect(Math.abs(scalarOnAvxFixture[i] - ref[i])).toBeLessThanOrEqual(3e-6 * Math.max(1, Math.abs(ref[i])));
    }
    // The kernel option must matter (else the AVX2 fixture could not tell them apart).
    expect(differ).toBeGreaterThan(10);
  });
});

describe('mt19937 stream and seeding', () => {
  it('seed 5489 gives the reference mt19937 outputs (and the 10000th is 4123659995)', () => {
    const g = new TorchCpuGenerator(5489);
    const first = Array.from({ length: 10 }, () => g.nextU32());
    expect(first).toEqual([
      3499211612, 581869302, 3890346734, 3586334585, 545404204, 4161255391, 3922919429, 949333985, 2715962298,
      1323567403,
    ]);
    let last = 0;
    for (let i = 10; i < 10000; i++) last = g.nextU32();
    expect(last).toBe(4123659995);
  });

  it('nextU64 is (first << 32) | second', () => {
    const a = new TorchCpuGenerator(42);
    const b = new TorchCpuGenerator(42);
    expect([b.nextU32(), b.nextU32()]).toEqual([1608637542, 3421126067]);
    expect(a.nextU64()).toBe((1608637542n << 32n) | 3421126067n);
  });

  it('seeds >= 2^32 are truncated to their low 32 bits (number or bigint)', () => {
    const base = new TorchCpuGenerator(7).rand(50);
    expect(new TorchCpuGenerator(4294967303).rand(50)).toEqual(base);
    expect(new TorchCpuGenerator((5n << 32n) + 7n).rand(50)).toEqual(base);
    expect(new TorchCpuGenerator(2n ** 64n - 1n).initialSeed()).toBe(2n ** 64n - 1n);
    expect(new TorchCpuGenerator(2n ** 64n - 1n).nextU32()).toBe(new TorchCpuGenerator(0xffffffff).nextU32());
    expect(new TorchCpuGenerator(4294967303).initialSeed()).toBe(4294967303n);
    expect(new TorchCpuGenerator(8).rand(50)).not.toEqual(base);
  });

  it('rejects seeds torch would not take as a uint64', () => {
    expect(() => new TorchCpuGenerator(-1)).toThrow(RangeError);
    expect(() => new TorchCpuGenerator(1.5)).toThrow(RangeError);
    expect(() => new TorchCpuGenerator(2n ** 64n)).toThrow(RangeError);
  });

  it('manualSeed restarts the stream', () => {
    const g = new TorchCpuGenerator(3);
    const a = g.rand(700); // crosses a 624-word regeneration
    g.rand(5);
    expect(g.manualSeed(3).rand(700)).toEqual(a);
  });

  it('rand is (u32 & 0xffffff) * 2^-24 and rand float64 the low 53 bits of random64', () => {
    const g = new TorchCpuGenerator(11);
    const raw = new TorchCpuGenerator(11);
    const r = g.rand(1000);
    for (let i = 0; i < r.length; i++) expect(r[i]).toBe((raw.nextU32() & 0xffffff) / 2 ** 24);
    const d = g.randF64(100);
    for (let i = 0; i < d.length; i++) expect(d[i]).toBe(Number(raw.nextU64() & (2n ** 53n - 1n)) / 2 ** 53);
  });

  it('randint: random() % range + low below 2^32, random64() % range + low above', () => {
    const g = new TorchCpuGenerator(5);
    const raw = new TorchCpuGenerator(5);
    const small = g.randint(-3, 10, [4, 5]);
    for (const v of small) expect(v).toBe((raw.nextU32() % 13) - 3);
    const big = g.randint(1, 2 ** 40 + 1, 7);
    for (const v of big) expect(v).toBe(Number(raw.nextU64() % 2n ** 40n) + 1);
    expect(() => g.randint(5, 5, 1)).toThrow(RangeError);
  });
});

describe('normal draws', () => {
  it('the cached Box-Muller value survives across calls and is not touched by rand or numel >= 16', () => {
    const pair = new TorchCpuGenerator(9).randn(2); // [r cos, r sin] of one Box-Muller draw
    const g = new TorchCpuGenerator(9);
    const a = g.randn(1);
    const b = g.randn(1);
    expect([a[0], b[0]]).toEqual([pair[0], pair[1]]);
    expect(a[0]).not.toBe(b[0]);

    // numel >= 16 draws uniforms only: the cache waits for the next scalar draw.
    const h = new TorchCpuGenerator(9);
    h.randn(1);
    const u = new TorchCpuGenerator(9);
    u.nextU64();
    u.nextU64(); // the two double uniforms of the first draw
    expect(h.randn(16)).toEqual(u.randn(16));
    expect(h.randn(1)[0]).toBe(pair[1]);
  });

  it('manualSeed drops the cached normal', () => {
    const g = new TorchCpuGenerator(9);
    const first = g.randn(1)[0];
    g.manualSeed(9);
    expect(g.randn(1)[0]).toBe(first); // not the cached sine value
    const f64 = new TorchCpuGenerator(9).randnF64(2);
    expect(f32(f64[0])).toBe(first);
  });

  it('float32 numel < 16 is the float64 draw rounded to float', () => {
    const a = new TorchCpuGenerator(21).randnF64(15);
    const b = new TorchCpuGenerator(21).randn([3, 5]);
    expect(Array.from(b)).toEqual(Array.from(a, f32));
  });

  it('numel >= 16: blocks of 16 from uniforms, the tail recomputed from 16 fresh uniforms', () => {
    const g = new TorchCpuGenerator(4);
    const x = g.randn(21);
    const head = new TorchCpuGenerator(4).randn(16);
    // Elements 0..4 come from the first block; 5..20 were overwritten by the recomputed tail.
    expect(Array.from(x.subarray(0, 5))).toEqual(Array.from(head.subarray(0, 5)));
    expect(Array.from(x.subarray(5, 16))).not.toEqual(Array.from(head.subarray(5, 16)));
    // The generator consumed 21 + 16 uniforms.
    const raw = new TorchCpuGenerator(4);
    raw.rand(37);
    expect(g.nextU32()).toBe(raw.nextU32());
    for (const kernel of ['avx2', 'scalar'] as const) {
      const y = new TorchCpuGenerator(4).randn([7, 13], { kernel });
      expect(y.every(Number.isFinite)).toBe(true);
    }
  });

  it('statistics of a large draw look standard normal', () => {
    const x = new TorchCpuGenerator(1).randn(200_003);
    let s = 0;
    let s2 = 0;
    for (const v of x) {
      s += v;
      s2 += v * v;
    }
    expect(Math.abs(s / x.length)).toBeLessThan(0.01);
    expect(Math.abs(s2 / x.length - 1)).toBeLessThan(0.01);
  });

  it('the AVX2 emulation draws the 720p latent noise (3.5M normals) in well under a second of CPU time', () => {
    const g = new TorchCpuGenerator(42);
    const t0 = process.cpuUsage();
    const x = g.randn([48, 21, 44, 80]);
    const ms = process.cpuUsage(t0).user / 1000;
    expect(x.length).toBe(3548160);
    expect(ms).toBeLessThan(1500); // ~0.4 s measured; generous for a loaded CI machine
  });
});

describe('float emulation pieces', () => {
  it('fma32 rounds once, also where double rounding of a*b + c would fail', () => {
    // 3 (1 + 2^-23) is exactly halfway between two floats; - 2^-60 puts the exact sum just below,
    // but the double sum rounds back onto the midpoint and then ties to even (upwards).
    const b = f32(1 + 2 ** -23);
    expect(fma32(3, b, -(2 ** -60))).toBe(3 + 2 ** -22);
    expect(f32(3 * b - 2 ** -60)).toBe(3 + 2 ** -21);
    expect(fma32(3, b, 2 ** -60)).toBe(3 + 2 ** -21);
    expect(fma32(3, b, 0)).toBe(3 + 2 ** -21); // a true tie: to even
    expect(fma32(3, 5, 7)).toBe(22);
  });

  it('fma64 rounds once', () => {
    expect(fma64(1 + 2 ** -52, 1 - 2 ** -52, -1)).toBe(-(2 ** -104));
    expect((1 + 2 ** -52) * (1 - 2 ** -52) - 1).toBe(0); // what separate roundings give
    expect(fma64(0.1, 10, -1)).toBe(2 ** -54);
    expect(0.1 * 10 - 1).toBe(0);
    expect(fma64(2, 3, 4)).toBe(10);
  });

  it('hexFloat parses C hex literals exactly', () => {
    expect(hexFloat('0x1.8p1')).toBe(3);
    expect(hexFloat('-0x1p-2')).toBe(-0.25);
    expect(hexFloat('0x1.921FB54442D18p0')).toBe(Math.PI / 2);
    expect(() => hexFloat('1.5')).toThrow();
  });

  // Bits of the avx_mathfun code compiled with g++ -O2 -mavx2 -mfma (GCC fuses each multiply whose only
  // use is an add), at u = k * 2^-24. Each input was picked because computing one particular fused
  // multiply-add of the emulation as a separate multiply and add changes its result; the emulation
  // matched that compile on all 2^24 inputs.
  it('avx2 log(1 - u): every fused step of the compile', () => {
    const cases = [
      [5553257, 0xbecdcf27, 'p0 x + p1'],
      [4969555, 0xbeb3da16, 'y x + p2'],
      [5595179, 0xbecfb9a1, 'y x + p3'],
      [5494265, 0xbecb200f, 'y x + p4'],
      [5265578, 0xbec0da02, 'y x + p5'],
      [5072093, 0xbeb85149, 'y x + p6'],
      [4004670, 0xbe8ba272, 'y x + p7'],
      [4325928, 0xbe98ad5f, 'y x + p8'],
      [9834269, 0xbf61de1d, 'y z + e q1'],
    ] as const;
    for (const [k, bits, step] of cases) {
      expect([step, bitsOf(avx2Log(f32(1 - k * 2 ** -24)))]).toEqual([step, bits]);
    }
    expect(avx2Log(1)).toBe(0);
    expect(Math.abs(avx2Log(0.5) + Math.LN2)).toBeLessThan(2 ** -23);
    expect(avx2Log(0)).toBeNaN();
  });

  it('avx2 sincos(2 pi u): every fused step of the compile', () => {
    const twoPi = f32(2 * Math.PI);
    const cases = [
      [12582909, 0xbf800000, 0xb57ccc87, 'x - j DP3'],
      [14569632, 0xbf3c5950, 0x3f2d6157, 'c0 z + c1 (sin side)'],
      [6521533, 0x3f24c4fb, 0xbf43ed13, 'c0 z + c1 (cos side)'],
      [1183958, 0x3edba7af, 0x3f673e89, 'y z + c2'],
      [14542532, 0xbf3e194e, 0x3f2b75ae, 'y z - z / 2'],
      [10717214, 0xbf4402d2, 0xbf24ab1c, 's0 z + s1'],
      [14494856, 0xbf412137, 0x3f2809d3, 'y z + s2'],
      [10906899, 0xbf4f3463, 0xbf165725, 'y x + x'],
    ] as const;
    for (const [k, sinBits, cosBits, step] of cases) {
      const [s, c] = avx2SinCosPair(f32(twoPi * k * 2 ** -24));
      expect([step, bitsOf(s), bitsOf(c)]).toEqual([step, sinBits, cosBits]);
    }
    expect(avx2SinCosPair(0)).toEqual([0, 1]);
    // float(pi) is a little above pi: cephes' sin gives the (correct) small negative value.
    expect(avx2SinCosPair(f32(Math.PI))).toEqual([f32(-8.742277657347586e-8), -1]);
  });

  // [k, glibc result bits] where glibc's float functions are not the correctly rounded value
  // (recorded from glibc 2.36 on an FMA machine).
  it('glibc logf / sinf / cosf match glibc where correct rounding does not', () => {
    for (const [k, bits] of [
      [190057, 0xbc3aa96e],
      [205895, 0xbc4a5036],
      [221733, 0xbc59fad3],
      [300923, 0xbc9444cf],
    ]) {
      const x = f32(1 - k * 2 ** -24);
      expect([k, bitsOf(glibcLogf(x))]).toEqual([k, bits]);
      expect(f32(Math.log(x))).not.toBe(floatOf(bits));
    }
    for (const [k, bits] of [
      [150462, 0x3d66af07],
      [308842, 0x3dec59de],
      [538493, 0x3e4d1cce],
      [601845, 0x3e64dafa],
    ]) {
      expect([k, bitsOf(glibcSinf(f32(2 * Math.PI * k * 2 ** -24)))]).toEqual([k, bits]);
    }
    for (const [k, bits] of [
      [2542000, 0x3f147ea8],
      [2597433, 0x3f10224a],
      [2819165, 0x3efc2d70],
      [2842922, 0x3ef833fc],
    ]) {
      expect([k, bitsOf(glibcCosf(f32(2 * Math.PI * k * 2 ** -24)))]).toEqual([k, bits]);
    }
    expect(glibcLogf(1)).toBe(0);
    expect(glibcLogf(0)).toBe(-Infinity);
    expect(glibcLogf(-1)).toBeNaN();
    expect(Math.abs(glibcLogf(f32(1e-40)) - Math.log(f32(1e-40)))).toBeLessThan(1e-5); // subnormal input
    expect(glibcSinf(f32(1e-5))).toBe(f32(1e-5));
    expect(glibcCosf(f32(1e-5))).toBe(1);
  });

  it('double log / sin / cos are correctly rounded where V8 Math is not (glibc values)', () => {
    for (const [x, ref] of [
      [0.39217010480372194, -0.9360595924909446],
      [0.09264223447440556, -2.3790101454741808],
      [0.2036374600010208, -1.5914140230123313],
    ]) {
      expect(logCorrect(x)).toBe(ref);
      expect(Math.log(x)).not.toBe(ref);
    }
    for (const [x, ref] of [
      [0.711727441980917, 0.653142823957388],
      [1.2972443570434111, 0.9628173966670702],
      [3.5453591168730005, -0.392884714332942],
    ]) {
      expect(sinCosCorrect(x)[0]).toBe(ref);
    }
    for (const [x, ref] of [
      [3.394393793019797, -0.9682156084054531],
      [2.6961460811355122, -0.9024183447680033],
      [3.853764386738291, -0.7569444797177364],
    ]) {
      expect(sinCosCorrect(x)[1]).toBe(ref);
    }
    expect(logCorrect(1)).toBe(0);
    expect(logCorrect(0.5)).toBe(-Math.LN2);
    expect(logCorrect(2 ** -53)).toBe(-36.7368005696771);
    expect(sinCosCorrect(0)).toEqual([0, 1]);
    // Agreement with Math within one ulp on random arguments.
    const g = new TorchCpuGenerator(77);
    for (let i = 0; i < 2000; i++) {
      const u = g.nextDouble();
      const th = 2 * Math.PI * u;
      const [s, c] = sinCosCorrect(th);
      expect(Math.abs(s - Math.sin(th))).toBeLessThanOrEqual(2 ** -52 * Math.max(Math.abs(s), 2 ** -40));
      expect(Math.abs(c - Math.cos(th))).toBeLessThanOrEqual(2 ** -52 * Math.max(Math.abs(c), 2 ** -40));
      const l = logCorrect(1 - u);
      expect(Math.abs(l - Math.log(1 - u))).toBeLessThanOrEqual(2 ** -52 * Math.max(Math.abs(l), 2 ** -60));
    }
  });
});
