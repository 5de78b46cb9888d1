// FlowUniPCMultistepScheduler (official wan/utils/fm_solvers_unipc.py) with the configuration Wan
// uses: flow prediction converted to x0 (predict_x0), solver_order 2, UniP-B(h) predictor and UniC
// corrector of type bh2, lower_order_final, final sigma 0. Operates on host float32 latents.
import { unipcSchedule, type SigmaSchedule } from './sigmas.ts';
import { f, expm1_32, axpby, subScaled, diffDiv, checkSameLength } from './f32.ts';
import type { FlowScheduler, StepRecord } from './types.ts';
import { indexForTimestep, lambdaAt } from './common.ts';

const SOLVER_ORDER = 2;

export class FlowUniPCScheduler implements FlowScheduler {
  readonly timesteps: number[];
  readonly sigmas: Float32Array;
  readonly name = 'unipc';
  /** Converted model outputs (x0 predictions), newest last. */
  private modelOutputs: (Float32Array | null)[] = [null, null];
  private lowerOrderNums = 0;
  private lastSample: Float32Array | null = null;
  private thisOrder = 1;
  private stepIndex: number | null = null;
  lastStep: StepRecord | null = null;

  constructor(steps: number, shift: number, numTrain = 1000, schedule?: SigmaSchedule) {
    const s = schedule ?? unipcSchedule(steps, shift, numTrain);
    this.timesteps = s.timesteps;
    this.sigmas = s.sigmas;
  }

  private lambda(i: number): number {
    return lambdaAt(this.sigmas, i);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    checkSameLength('unipc step', modelOutput, sample);
    if (this.stepIndex === null) this.stepIndex = indexForTimestep(this.timesteps, timestep, 'unipc');
    const i = this.stepIndex;
    if (i >= this.timesteps.length) throw new Error(`unipc: step ${i + 1} beyond the ${this.timesteps.length} scheduled steps`);
    // x0 = sample - sigma * v
    const x0 = subScaled(sample, this.sigmas[i], modelOutput);
    let current = sample;
    if (i > 0 && this.lastSample !== null) current = this.correct(x0, this.lastSample, sample, this.thisOrder);
    this.modelOutputs = [this.modelOutputs[1], x0];
    const wanted = Math.min(SOLVER_ORDER, this.timesteps.length - i); // lower_order_final
    this.thisOrder = Math.min(wanted, this.lowerOrderNums + 1); // warm-up
    this.lastSample = current;
    const prev = this.predict(current, this.thisOrder);
    if (this.lowerOrderNums < SOLVER_ORDER) this.lowerOrderNums++;
    this.lastStep = { x0Pred: x0, order: this.thisOrder, correctedSample: current };
    this.stepIndex = i + 1;
    return prev;
  }

  /** Shared B(h) coefficients of predictor and corrector (predict_x0: hh = -h; bh2: B(h) = expm1(hh)). */
  private coefficients(h: number) {
    const hh = f(-h);
    const hPhi1 = expm1_32(hh);
    const bH = expm1_32(hh);
    return { hh, hPhi1, bH };
  }

  /** UniP-B(h) predictor from sigmas[i] to sigmas[i+1]. */
  private predict(x: Float32Array, order: number): Float32Array {
    const i = this.stepIndex!;
    const m0 = this.modelOutputs[1]!;
    const sigmaT = this.sigmas[i + 1];
    const sigmaS0 = this.sigmas[i];
    const alphaT = f(1 - sigmaT);
    const lambdaS0 = this.lambda(i);
    const h = f(this.lambda(i + 1) - lambdaS0);
    const { hPhi1, bH } = this.coefficients(h);
    const xt = axpby(f(sigmaT / sigmaS0), x, f(alphaT * hPhi1), m0);
    if (order === 2) {
      const rk = f(f(this.lambda(i - 1) - lambdaS0) / h);
      const d1 = diffDiv(this.modelOutputs[0]!, m0, rk);
      // pred_res = 0.5 * D1 (rhos_p = [0.5] for order 2)
      const c = f(alphaT * bH);
      for (let k = 0; k < xt.length; k++) xt[k] = f(xt[k] - f(c * f(0.5 * d1[k])));
    } else if (order !== 1) {
      throw new Error(`unipc: predictor order ${order} is not supported (solver_order is 2)`);
    }
    return xt;
  }

  /** UniC-B(h) corrector of the sample just reached (sigmas[i-1] -> sigmas[i]) using the new x0. */
  private correct(modelT: Float32Array, last: Float32Array, thisSample: Float32Array, order: number): Float32Array {
    void thisSample;
    const i = this.stepIndex!;
    const m0 = this.modelOutputs[1]!;
    const sigmaT = this.sigmas[i];
    const sigmaS0 = this.sigmas[i - 1];
    const alphaT = f(1 - sigmaT);
    const lambdaS0 = this.lambda(i - 1);
    const h = f(this.lambda(i) - lambdaS0);
    const { hh, hPhi1, bH } = this.coefficients(h);
    // b_k = h_phi_k * k! / B(h), h_phi_1 = expm1(hh)/hh - 1, h_phi_{k+1} = h_phi_k/hh - 1/(k+1)!
    const b: number[] = [];
    let hPhiK = f(f(hPhi1 / hh) - 1);
    let factorial = 1;
    for (let k = 1; k <= order; k++) {
      b.push(f(f(hPhiK * factorial) / bH));
      factorial *= k + 1;
      hPhiK = f(f(hPhiK / hh) - f(1 / factorial));
    }
    let rhos: number[];
    let d1: Float32Array | null = null;
    if (order === 1) {
      rhos = [0.5];
    } else if (order === 2) {
      const rk = f(f(this.lambda(i - 2) - lambdaS0) / h);
      d1 = diffDiv(this.modelOutputs[0]!, m0, rk);
      // Solve [[1, 1], [rk, 1]] rho = b.
      const det = 1 - rk;
      rhos = [f((b[0] - b[1]) / det), f((b[1] - rk * b[0]) / det)];
    } else {
      throw new Error(`unipc: corrector order ${order} is not supported (solver_order is 2)`);
    }
    const xt = axpby(f(sigmaT / sigmaS0), last, f(alphaT * hPhi1), m0);
    const c = f(alphaT * bH);
    const rhoT = rhos[rhos.length - 1];
    for (let k = 0; k < xt.length; k++) {
      const dT = f(modelT[k] - m0[k]);
      const corr = d1 ? f(f(rhos[0] * d1[k]) + f(rhoT * dT)) : f(rhoT * dT);
      xt[k] = f(xt[k] - f(c * corr));
    }
    return xt;
  }
}
