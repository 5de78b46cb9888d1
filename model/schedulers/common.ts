// Pieces both flow solvers share.
import { f, log32 } from './f32.ts';

/** lambda(sigma) = log(alpha) - log(sigma) with alpha = 1 - sigma, in float32 like the official code. */
export function lambdaAt(sigmas: Float32Array, i: number): number {
  const sigma = sigmas[i];
  return f(log32(f(1 - sigma)) - log32(sigma));
}

/** The official index_for_timestep: the SECOND match when a timestep value occurs twice. */
export function indexForTimestep(timesteps: number[], t: number, solver: string): number {
  const hits: number[] = [];
  timesteps.forEach((v, i) => v === t && hits.push(i));
  if (hits.length === 0) throw new Error(`${solver}: timestep ${t} is not in the schedule`);
  return hits[hits.length > 1 ? 1 : 0];
}
