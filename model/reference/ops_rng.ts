// Fixture kind `rng.torch_cpu`: torch.Generator('cpu').manual_seed(seed) then randn / rand / randint,
// every case of config.cases compared bit for bit with TorchCpuGenerator. The same kind holds two
// recordings: the x86 AVX2 kernel and ATEN_CPU_CAPABILITY=default (scalar libm), told apart by
// config.capability (or, failing that, the fixture's name).
import type { Fixture } from '../../loaders/fixture.ts';
import { TorchCpuGenerator, type NormalKernel } from '../rng.ts';
import { compareOutput, type OutputCheck } from './compare.ts';
import { registerKind } from './registry.ts';

interface DrawSpec {
  op: 'randn' | 'rand' | 'randint';
  shape: number[];
  dtype?: 'float32' | 'float64' | 'int64';
  low?: number;
  high?: number;
}

interface RngCase extends Partial<Omit<DrawSpec, 'op'>> {
  name: string;
  op: DrawSpec['op'] | 'sequence';
  seed: number;
  calls?: (DrawSpec & { output: string })[];
}

/** The normal_fill kernel a recording was made with. */
export function rngFixtureKernel(fx: Fixture): NormalKernel {
  const capability = String(fx.config.capability ?? '');
  if (/^default/i.test(capability)) return 'scalar';
  if (/avx/i.test(capability)) return 'avx2';
  return /scalar/i.test(fx.name) ? 'scalar' : 'avx2';
}

/** One draw from g, as the fixture records it (float32, float64 or int64 values as doubles). */
function draw(g: TorchCpuGenerator, spec: DrawSpec, kernel: NormalKernel): ArrayLike<number> {
  const f64 = spec.dtype === 'float64';
  switch (spec.op) {
    case 'randn':
      return f64 ? g.randnF64(spec.shape) : g.randn(spec.shape, { kernel });
    case 'rand':
      return f64 ? g.randF64(spec.shape) : g.rand(spec.shape);
    case 'randint':
      if (spec.low === undefined || spec.high === undefined) throw new Error('randint case without low/high');
      return g.randint(spec.low, spec.high, spec.shape);
    default:
      throw new Error(`unknown rng op "${String(spec.op)}"`);
  }
}

/** Runs every case of an rng.torch_cpu fixture; one exact check per recorded output. */
export function runRngFixture(fx: Fixture): OutputCheck[] {
  const kernel = rngFixtureKernel(fx);
  const cases = fx.config.cases as RngCase[];
  if (!Array.isArray(cases) || cases.length === 0) throw new Error('rng fixture without config.cases');
  const checks: OutputCheck[] = [];
  const check = (name: string, got: ArrayLike<number>) => {
    const c = compareOutput(name, got, fx.output(name).f64(), 0, 'exact');
    checks.push({ ...c, note: [c.note, `kernel ${kernel}`].filter(Boolean).join('; ') });
  };
  for (const c of cases) {
    // Every case starts from a fresh generator; a sequence draws its calls from one generator.
    const g = new TorchCpuGenerator(c.seed);
    if (c.op === 'sequence') {
      for (const call of c.calls ?? []) check(call.output, draw(g, call, kernel));
    } else {
      check(c.name, draw(g, c as DrawSpec, kernel));
    }
  }
  const unchecked = fx.outputNames.filter((n) => !checks.some((c) => c.name === n));
  if (unchecked.length) throw new Error(`outputs without a case: ${unchecked.join(', ')}`);
  return checks;
}

registerKind({
  kind: 'rng.torch_cpu',
  description: 'torch CPU generator (mt19937) randn / rand / randint, bit exact',
  async run(_e, fx) {
    return runRngFixture(fx);
  },
});
