// Sigma and timestep grids of the flow-matching schedulers, bit-exact with the official numpy code:
// float64 linspace and shift, integer timesteps by truncation of sigma*1000, float32 sigmas.

/** numpy.linspace(start, stop, num) with endpoint: start + i*step, the last element exactly stop. */
export function linspace(start: number, stop: number, num: number): number[] {
  const out: number[] = [];
  const div = num - 1;
  const step = (stop - start) / div;
  for (let i = 0; i < num; i++) out.push(i * step + start);
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** The flow shift s*sigma / (1 + (s-1)*sigma), in float64 as numpy evaluates it. */
export function shiftSigma(sigma: number, shift: number): number {
  return (shift * sigma) / (1 + (shift - 1) * sigma);
}

export interface SigmaSchedule {
  /** Integer timesteps the DiT sees (sigma*1000 truncated), one per step. */
  timesteps: number[];
  /** float32 sigmas the solver uses, steps + 1 values ending in 0. */
  sigmas: Float32Array;
}

function finish(sigmas64: number[], numTrain: number): SigmaSchedule {
  const timesteps = sigmas64.map((s) => Math.trunc(s * numTrain));
  const sigmas = new Float32Array(sigmas64.length + 1);
  sigmas.set(sigmas64);
  return { timesteps, sigmas };
}

/**
 * FlowUniPCMultistepScheduler.set_timesteps(steps, shift): linspace(sigma_max, sigma_min) over the
 * float32 training schedule ends (sigma_max = float32(0.999), not 1), shifted.
 */
export function unipcSchedule(steps: number, shift: number, numTrain = 1000): SigmaSchedule {
  // Training sigmas: 1 - linspace(1, 1/numTrain, numTrain) reversed, stored as float32.
  const alphas = linspace(1, 1 / numTrain, numTrain).reverse();
  const sigmaMax = Math.fround(1 - alphas[0]);
  const sigmaMin = Math.fround(1 - alphas[numTrain - 1]);
  const grid = linspace(sigmaMax, sigmaMin, steps + 1).slice(0, steps);
  return finish(
    grid.map((s) => shiftSigma(s, shift)),
    numTrain,
  );
}

/**
 * get_sampling_sigmas(steps, shift) + retrieve_timesteps(sigmas=...) as the official dpm++ path:
 * linspace(1, 0) (starting at exactly 1.0), shifted; the scheduler's own shift (1) is the identity.
 */
export function dpmppSchedule(steps: number, shift: number, numTrain = 1000): SigmaSchedule {
  const grid = linspace(1, 0, steps + 1).slice(0, steps);
  return finish(
    grid.map((s) => shiftSigma(s, shift)),
    numTrain,
  );
}
