// Smoke test of the benchmark harness (not a timed test): tiny shapes, tiny budgets. Checks that the
// JSON rows parse and carry the right fields, that the peers' child-process protocol works, how
// missing kernel modules are reported, and the met/missed logic of the targets.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { evaluateTargets } from '../bench/report.ts';
import type { Row } from '../bench/rows.ts';
import { NOT_IMPLEMENTED, loadOpModule } from '../bench/wan-cases.ts';
import { CaseGuard } from '../bench/peers/protocol.ts';

const run = promisify(execFile);
const bench = new URL('../cli/bench.js', import.meta.url).pathname;
const FIELDS = ['ceilingPct', 'gbps', 'gflops', 'kernel', 'medianMs', 'runs', 'shape', 'system'];
const SYSTEMS = ['wan', 'onnxruntime-webgpu', 'tfjs-webgpu', 'torch-cpu', 'ceiling'];

async function benchJson(args: string[]): Promise<Row[]> {
  // WAN_TUNE=off: no autotuning of the matmul (it would time big candidate problems).
  const { stdout } = await run(process.execPath, [bench, 'kernels', '--tiny', '--json', ...args], {
    maxBuffer: 1 << 24,
    env: { ...process.env, WAN_TUNE: 'off' },
  });
  return JSON.parse(stdout) as Row[];
}

function checkRow(r: Row): void {
  const keys = Object.keys(r).filter((k) => k !== 'note').sort();
  expect(keys).toEqual(FIELDS);
  expect(SYSTEMS).toContain(r.system);
  expect(typeof r.kernel).toBe('string');
  expect(typeof r.shape).toBe('string');
  for (const k of ['medianMs', 'gflops', 'gbps', 'ceilingPct'] as const) {
    const v = r[k];
    expect(v === null || (typeof v === 'number' && Number.isFinite(v) && v >= 0), `${r.system} ${r.kernel} ${k} = ${v}`).toBe(true);
  }
  if (r.medianMs === null) expect(r.note, `${r.system} ${r.kernel}: a row without a time must say why`).toBeTruthy();
}

describe('npm run bench -- kernels', () => {
  it('--json: one array of rows with the right fields, ceilings and every kernel', { timeout: 300_000 }, async () => {
    const rows = await benchJson(['--peers', 'none']);
    expect(Array.isArray(rows)).toBe(true);
    rows.forEach(checkRow);
    const ceiling = rows.find((r) => r.kernel === 'compute-ceiling')!;
    const stream = rows.find((r) => r.kernel === 'stream-bandwidth')!;
    expect(ceiling.system).toBe('ceiling');
    expect(ceiling.gflops).toBeGreaterThan(0);
    expect(stream.gbps).toBeGreaterThan(0);
    const wan = rows.filter((r) => r.system === 'wan');
    expect(wan.map((r) => r.kernel).sort()).toEqual(['attention', 'conv3d', 'layernorm', 'matmul']);
    for (const r of wan) {
      // Rates follow from the time and the case's work; a measured row has a ceiling percentage.
      if (r.medianMs !== null) {
        expect(r.gbps).toBeGreaterThan(0);
        expect(r.ceilingPct).not.toBeNull();
        if (r.kernel === 'matmul') expect(r.gflops).toBeCloseTo((2 * 33 * 64 * 40) / (r.medianMs * 1e6), 3);
      }
    }
  });

  it('peers run in child processes and report the same case', { timeout: 300_000 }, async () => {
    const rows = await benchJson(['--only', 'layernorm', '--peers', 'onnxruntime-webgpu,tfjs-webgpu,torch-cpu']);
    rows.forEach(checkRow);
    const ln = rows.filter((r) => r.kernel === 'layernorm');
    expect(ln.map((r) => r.system)).toEqual(['wan', 'onnxruntime-webgpu', 'tfjs-webgpu', 'torch-cpu']);
    expect(new Set(ln.map((r) => r.shape)).size).toBe(1);
    // The WebGPU peers are installed dev dependencies: they must produce a time (or say their EP is missing).
    for (const r of ln.filter((r) => r.system !== 'torch-cpu')) {
      if (r.medianMs === null) expect(r.note).toMatch(/unavailable|not supported/);
    }
  });
});

describe('bench internals', () => {
  it('a missing kernel module or function is "not implemented yet", not an error', async () => {
    const missing = await loadOpModule(new URL('../engine/ops/no_such_family.ts', import.meta.url), 'f');
    expect(missing).toEqual({ reason: expect.stringContaining(NOT_IMPLEMENTED) });
    const noFn = await loadOpModule(new URL('../bench/cases.ts', import.meta.url), 'noSuchFunction');
    expect(noFn).toEqual({ reason: expect.stringContaining(`${NOT_IMPLEMENTED} (no noSuchFunction()`) });
    const ok = await loadOpModule(new URL('../bench/cases.ts', import.meta.url), 'casesFor');
    expect('mod' in ok).toBe(true);
  });

  it('the time cap skips a case predicted from the same kernel\'s last rate, and only then', () => {
    const small = { kernel: 'matmul', M: 1000, K: 1000, N: 1000 } as const; // 2 GFLOP
    const guard = new CaseGuard(1000);
    expect(guard.check({ ...small, M: 100000 })).toBeNull(); // nothing measured yet: no prediction
    guard.record(small, 100); // 20 GFLOP/s
    expect(guard.check({ ...small, M: 10000 })).toBeNull(); // 20 GFLOP: 1000 ms, at the cap
    expect(guard.check({ ...small, M: 10001 })).toMatch(/^skipped: one run would take ~1 s at the 20.0 GFLOP\/s measured on 1000x1000x1000/);
    expect(guard.check({ kernel: 'attention', S: 100000, H: 24, D: 128 })).toBeNull(); // other kernel: no rate
    expect(guard.check({ kernel: 'layernorm', rows: 1e6, cols: 1e4 })).toBeNull(); // memory-bound: no FLOPs
    const off = new CaseGuard(null);
    off.record(small, 100);
    expect(off.check({ ...small, M: 1e7 })).toBeNull();
  });

  it('targets: met / missed / n/a from the rows', () => {
    const row = (kernel: string, system: Row['system'], medianMs: number | null, gflops: number | null, ceilingPct: number | null): Row => ({
      kernel,
      shape: 's',
      system,
      medianMs,
      gflops,
      gbps: 1,
      ceilingPct,
      runs: 3,
    });
    const t = evaluateTargets([
      row('matmul', 'wan', 10, 100, 60),
      row('matmul', 'onnxruntime-webgpu', 60, 17, 10),
      row('matmul', 'tfjs-webgpu', 40, 25, 20),
      row('attention', 'wan', 1, 49, 40),
      row('conv3d', 'wan', 1, 51, 40),
      row('layernorm', 'wan', null, null, null),
    ]);
    const verdict = Object.fromEntries(t.map((x) => [x.what.replace(/^\S+ s: /, ''), x.met]));
    // 40 / 10 = 4x the faster WebGPU peer (tfjs): missed; 60% of the ceiling: met.
    expect(verdict['>= 5x the faster WebGPU peer']).toBe(false);
    expect(t[0].value).toMatch(/^4\.0x \(vs tfjs-webgpu\)/);
    expect(verdict['>= 50% of the compute ceiling']).toBe(true);
    expect(t.find((x) => x.what.startsWith('attention'))!.met).toBe(false);
    expect(t.find((x) => x.what.startsWith('conv3d'))!.met).toBe(true);
    expect(t.find((x) => x.what.startsWith('layernorm'))!.met).toBeNull();
  });
});

describe('npm run bench -- dit (smoke, tiny width)', () => {
  it('--json: the block row, one row per kernel family with shares, and a torch row', { timeout: 120_000 }, async () => {
    const { stdout } = await run(process.execPath, [bench, 'dit', '--json', '--tokens', '32', '--dim', '64', '--heads', '2', '--ffn', '96', '--runs', '1', '--no-torch'], {
      maxBuffer: 1 << 24,
      env: { ...process.env, WAN_TUNE: 'off' },
    });
    const rows = JSON.parse(stdout) as { system: string; what: string; medianMs: number | null; gflops?: number | null; share?: number; note?: string }[];
    const block = rows.find((r) => r.system === 'wan' && r.what === 'block forward')!;
    expect(block.medianMs).toBeGreaterThan(0);
    expect(block.gflops).toBeGreaterThan(0);
    const families = rows.filter((r) => r.share !== undefined).map((r) => r.what);
    expect(families.slice(0, 3)).toEqual(['linears', 'self-attention', 'cross-attention']);
    for (const r of rows.filter((r) => r.share !== undefined)) expect(r.share).toBeGreaterThanOrEqual(0);
    const torch = rows.find((r) => r.system === 'torch-cpu')!;
    expect(torch.medianMs).toBeNull();
  });
});

describe('npm run bench -- pipeline (smoke)', () => {
  it('--json: a median per stage and a total for the tiny t2v pipeline', { timeout: 120_000 }, async () => {
    const { stdout } = await run(process.execPath, [bench, 'pipeline', '--json', '--runs', '1'], { maxBuffer: 1 << 24, env: { ...process.env, WAN_TUNE: 'off' } });
    const rows = JSON.parse(stdout) as { system: string; stage: string; medianS: number | null }[];
    const wan = rows.filter((r) => r.system === 'wan');
    expect(wan.map((r) => r.stage)).toEqual(expect.arrayContaining(['load', 'text', 'denoise', 'decode', 'total']));
    for (const r of wan) expect(r.medianS).toBeGreaterThan(0);
    const total = wan.find((r) => r.stage === 'total')!.medianS!;
    const parts = wan.filter((r) => r.stage !== 'total').reduce((a, r) => a + r.medianS!, 0);
    expect(parts).toBeLessThanOrEqual(total * 1.001);
  });
});

describe('npm run bench -- scale (smoke, tiny width)', () => {
  it('--json: a load row and a forward row per token count and mode, the measured peak equal to the prediction', { timeout: 120_000 }, async () => {
    const { stdout } = await run(process.execPath, [bench, 'scale', '--json', '--task', 't2v-A14B', '--dim', '64', '--heads', '2', '--ffn', '96', '--tokens', '32,64', '--layers', '2'], {
      maxBuffer: 1 << 24,
      env: { ...process.env, WAN_TUNE: 'off' },
    });
    const rows = JSON.parse(stdout) as Record<string, any>[];
    expect(rows.map((r) => `${r.mode} ${r.kind} ${r.tokens ?? ''}`.trim())).toEqual(['resident load', 'resident forward 32', 'resident forward 64', 'stream load', 'stream forward 32', 'stream forward 64']);
    for (const r of rows.filter((r) => r.kind === 'forward')) {
      expect(r.seconds).toBeGreaterThan(0);
      expect(r.measuredPeakBytes).toBe(r.predictedPeakBytes);
      expect(r.attentionFlopShare).toBeGreaterThan(0);
      expect(r.fullModelSecondsEstimate).toBeCloseTo((r.seconds / 2) * 40, 6); // 40 A14B layers
    }
    // Streaming holds one block instead of all: its full-model prediction is the smaller.
    const full = (mode: string) => rows.find((r) => r.mode === mode && r.tokens === 64)!.fullModelPredictedPeakBytes;
    expect(full('stream')).toBeLessThan(full('resident'));
  });
});
