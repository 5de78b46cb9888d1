// Sampler details beyond the fixtures: the schedule arithmetic, duplicate timesteps, bad input.
import { describe, expect, it } from 'vitest';
import { createScheduler, dpmppSchedule, linspace, unipcSchedule } from '../model/schedulers/index.ts';
import { randn } from './helpers.ts';

describe('schedules', () => {
  it('linspace matches numpy (start + i*step, exact endpoint)', () => {
    const v = linspace(0.999, 0, 11);
    expect(v[0]).toBe(0.999);
    expect(v[10]).toBe(0);
    expect(v[3]).toBe(3 * (-0.999 / 10) + 0.999);
  });

  it('unipc starts at float32(0.999) -> timestep 999, dpm++ at exactly 1 -> 1000', () => {
    const u = unipcSchedule(50, 5);
    expect(u.timesteps[0]).toBe(999);
    // the shifted float32 0.999 end of the training schedule
    expect(u.sigmas[0]).toBe(Math.fround((5 * Math.fround(0.999)) / (1 + 4 * Math.fround(0.999))));
    expect(u.sigmas.length).toBe(51);
    expect(u.sigmas[50]).toBe(0);
    const d = dpmppSchedule(50, 5);
    expect(d.timesteps[0]).toBe(1000);
    expect(d.sigmas[0]).toBe(1);
    // strictly decreasing sigmas; timesteps non-increasing
    for (let i = 1; i < 51; i++) expect(d.sigmas[i]).toBeLessThan(d.sigmas[i - 1]);
  });

  it('a duplicated first timestep starts at its second occurrence, like index_for_timestep', () => {
    const s = createScheduler('unipc', 100, 12);
    expect(s.timesteps[0]).toBe(s.timesteps[1]); // 100 steps at shift 12 duplicates timestep 999
    const x = randn(12, 1);
    s.step(randn(12, 2), s.timesteps[0], x);
    // The step went from sigma[1] to sigma[2]: the x0 prediction used sigma[1].
    const v = randn(12, 2);
    const rec = s.lastStep!;
    for (let i = 0; i < 12; i++) expect(rec.x0Pred[i]).toBe(Math.fround(x[i] - Math.fround(s.sigmas[1] * v[i])));
  });
});

describe('samplers', () => {
  it.each(['unipc', 'dpm++'] as const)('%s lands on the x0 prediction at the last step', (solver) => {
    const s = createScheduler(solver, 6, 5);
    let x = randn(40, 3);
    for (let i = 0; i < 6; i++) x = s.step(randn(40, 10 + i), s.timesteps[i], x);
    expect(Array.from(x)).toEqual(Array.from(s.lastStep!.x0Pred));
    expect(s.lastStep!.order).toBe(1);
  });

  it('rejects bad input with clear errors', () => {
    expect(() => createScheduler('unipc', 0, 5)).toThrow(/positive integer/);
    expect(() => createScheduler('dpm++', 4, -1)).toThrow(/shift must be positive/);
    expect(() => createScheduler('euler' as never, 4, 5)).toThrow(/unknown sample solver "euler"/);
    const s = createScheduler('unipc', 2, 5);
    expect(() => s.step(new Float32Array(3), s.timesteps[0], new Float32Array(4))).toThrow(/3 and 4 elements|4 and 3 elements/);
    expect(() => s.step(new Float32Array(3), 12345, new Float32Array(3))).toThrow(/timestep 12345 is not in the schedule/);
    s.step(new Float32Array(3), s.timesteps[0], new Float32Array(3));
    s.step(new Float32Array(3), s.timesteps[1], new Float32Array(3));
    expect(() => s.step(new Float32Array(3), s.timesteps[1], new Float32Array(3))).toThrow(/beyond the 2 scheduled steps/);
  });
});
