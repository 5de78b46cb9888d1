// FlowDPMSolverMultistepScheduler (official wan/utils/fm_solvers.py) as Wan drives it for
// sample_solver="dpm++": dpmsolver++, midpoint, solver_order 2, final sigma 0, the grid starting at
// sigma = 1 exactly. At sigma 1, lambda = log(0) = -inf; IEEE inf arithmetic gives the official
// result (exp(-inf) = 0, 1/r0 = 0), as in torch.
import { dpmppSchedule, type SigmaSchedule } from './sigmas.ts';
import { f, exp32, subScaled, checkSameLength } from './f32.ts';
import type { FlowScheduler, StepRecord } from './types.ts';
import { indexForTimestep, lambdaAt } from './common.ts';

export class FlowDPMppScheduler implements FlowScheduler {
  readonly timesteps: number[];
  readonly sigmas: Float32Array;
  readonly name = 'dpm++';
  private modelOutputs: (Float32Array | null)[] = [null, null];
  private lowerOrderNums = 0;
  private stepIndex: number | null = null;
  lastStep: StepRecord | null = null;

  constructor(steps: number, shift: number, numTrain = 1000, schedule?: SigmaSchedule) {
    const s = schedule ?? dpmppSchedule(steps, shift, numTrain);
    this.timesteps = s.timesteps;
    this.sigmas = s.sigmas;
  }

  private lambda(i: number): number {
    return lambdaAt(this.sigmas, i);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    checkSameLength('dpm++ step', modelOutput, sample);
    if (this.stepIndex === null) this.stepIndex = indexForTimestep(this.timesteps, timestep, 'dpm++');
    const i = this.stepIndex;
    const n = this.timesteps.length;
    if (i >= n) throw new Error(`dpm++: step ${i + 1} beyond the ${n} scheduled steps`);
    // final_sigmas_type "zero" always forces a first-order last step.
    const lowerOrderFinal = i === n - 1;
    const x0 = subScaled(sample, this.sigmas[i], modelOutput);
    this.modelOutputs = [this.modelOutputs[1], x0];
    const sigmaT = this.sigmas[i + 1];
    const sigmaS0 = this.sigmas[i];
    const alphaT = f(1 - sigmaT);
    const lambdaS0 = this.lambda(i);
    const h = f(this.lambda(i + 1) - lambdaS0);
    const a = f(sigmaT / sigmaS0);
    const c = f(alphaT * f(exp32(f(-h)) - 1));
    const out = new Float32Array(sample.length);
    let order: number;
    if (this.lowerOrderNums < 1 || lowerOrderFinal) {
      order = 1;
      for (let k = 0; k < out.length; k++) out[k] = f(f(a * sample[k]) - f(c * x0[k]));
    } else {
      order = 2;
      const m1 = this.modelOutputs[0]!;
      const h0 = f(lambdaS0 - this.lambda(i - 1));
      const invR0 = f(1 / f(h0 / h));
      const halfC = f(0.5 * c);
      for (let k = 0; k < out.length; k++) {
        const d1 = f(invR0 * f(x0[k] - m1[k]));
        out[k] = f(f(f(a * sample[k]) - f(c * x0[k])) - f(halfC * d1));
      }
    }
    if (this.lowerOrderNums < 2) this.lowerOrderNums++;
    this.lastStep = { x0Pred: x0, order };
    this.stepIndex = i + 1;
    return out;
  }
}
