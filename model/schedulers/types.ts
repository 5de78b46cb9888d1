// The interface the pipelines drive: one step per denoising step on host float32 latents.
export interface StepRecord {
  /** x0 prediction of this step (sample - sigma * model output). */
  x0Pred: Float32Array;
  /** Order of the update that ran. */
  order: number;
  /** UniPC only: the sample after the corrector (the input sample at step 0). */
  correctedSample?: Float32Array;
}

export interface FlowScheduler {
  readonly name: string;
  readonly timesteps: number[];
  readonly sigmas: Float32Array;
  /** Advances one step; `timestep` is the integer timestep of this step (the DiT's input). */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array;
  /** What the last step computed, for verification against the reference. */
  readonly lastStep: StepRecord | null;
}
