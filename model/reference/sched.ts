// Fixture kinds of the samplers (`sched.unipc`, `sched.dpmpp`): every recorded step of the official
// loop, fed the fixture's model outputs.
import { createScheduler, type SolverName } from '../schedulers/index.ts';
import type { Fixture } from '../../loaders/fixture.ts';
import { compareOutput, type OutputCheck } from './compare.ts';
import { registerKind } from './registry.ts';

/** Worst per-step relative L2 error of `steps` equally sized slices. */
function compareSteps(name: string, got: Float32Array[], ref: Float64Array, tol: number): OutputCheck {
  const n = ref.length / got.length;
  let worst: OutputCheck | null = null;
  let worstStep = 0;
  got.forEach((g, s) => {
    const c = compareOutput(name, g, ref.subarray(s * n, (s + 1) * n), tol);
    if (!worst || !(c.relL2 <= worst.relL2)) {
      worst = c;
      worstStep = s;
    }
  });
  const w = worst!;
  return { ...w, note: `worst of ${got.length} steps: step ${worstStep}` };
}

async function runSched(solver: SolverName, fx: Fixture): Promise<OutputCheck[]> {
  const cfg = fx.config as { steps: number; shift: number };
  const sched = createScheduler(solver, cfg.steps, cfg.shift);
  const outputs = fx.input('model_outputs').f32();
  let sample = fx.input('sample').f32();
  const n = sample.length;
  const prev: Float32Array[] = [];
  const x0: Float32Array[] = [];
  const corrected: Float32Array[] = [];
  const orders: number[] = [];
  for (let i = 0; i < sched.timesteps.length; i++) {
    sample = sched.step(outputs.subarray(i * n, (i + 1) * n), sched.timesteps[i], sample);
    const rec = sched.lastStep!;
    prev.push(sample);
    x0.push(rec.x0Pred);
    orders.push(rec.order);
    if (rec.correctedSample) corrected.push(rec.correctedSample);
  }
  const checks = [
    compareOutput('timesteps', sched.timesteps, fx.output('timesteps').f64(), 0, 'exact'),
    // Sigmas: float32 of the float64 computation, so exact.
    compareOutput('sigmas', sched.sigmas, fx.output('sigmas').f64(), 0, 'exact'),
    compareSteps('prev_samples', prev, fx.output('prev_samples').f64(), 1e-5),
    compareSteps('x0_pred', x0, fx.intermediate('x0_pred').f64(), 1e-5),
    compareOutput('order', orders, fx.intermediate('order').f64(), 0, 'exact'),
  ];
  if (fx.has('mid', 'corrected_sample')) checks.push(compareSteps('corrected_sample', corrected, fx.intermediate('corrected_sample').f64(), 1e-5));
  if (fx.has('in', 'sampling_sigmas')) {
    // The dpm++ grid before the scheduler appends 0 and rounds to float32.
    const ref = fx.input('sampling_sigmas').f64();
    checks.push(compareOutput('sampling_sigmas', sched.sigmas.subarray(0, ref.length), Float64Array.from(ref, Math.fround), 0, 'exact'));
  }
  return checks;
}

registerKind({ kind: 'sched.unipc', description: 'FlowUniPCMultistepScheduler, every step', run: (_e, fx) => runSched('unipc', fx) });
registerKind({ kind: 'sched.dpmpp', description: 'FlowDPMSolverMultistepScheduler (dpm++), every step', run: (_e, fx) => runSched('dpm++', fx) });
