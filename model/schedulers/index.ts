// Flow-matching samplers of Wan2.2: UniPC (default) and DPM++.
import { FlowDPMppScheduler } from './flow-dpmpp.ts';
import { FlowUniPCScheduler } from './flow-unipc.ts';
import type { FlowScheduler } from './types.ts';

export type SolverName = 'unipc' | 'dpm++';
export const SOLVERS: readonly SolverName[] = ['unipc', 'dpm++'];

export function createScheduler(solver: SolverName, steps: number, shift: number, numTrain = 1000): FlowScheduler {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`sample steps must be a positive integer, got ${steps}`);
  if (!(shift > 0)) throw new Error(`sample shift must be positive, got ${shift}`);
  if (solver === 'unipc') return new FlowUniPCScheduler(steps, shift, numTrain);
  if (solver === 'dpm++') return new FlowDPMppScheduler(steps, shift, numTrain);
  throw new Error(`unknown sample solver "${solver}" (choose ${SOLVERS.join(' or ')})`);
}

export { FlowUniPCScheduler, FlowDPMppScheduler };
export type { FlowScheduler, StepRecord } from './types.ts';
export { unipcSchedule, dpmppSchedule, linspace, shiftSigma } from './sigmas.ts';
