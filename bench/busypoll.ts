// `npm run bench -- busypoll`: how much Dawn's JS-thread polling costs on this adapter.
// Times one matmul-sized job (our linear, or the FMA probe with the same FLOP count if linear is not
// there) while awaiting completion with (a) Dawn's default setImmediate loop, (b) the harness's
// setTimeout shim (bench/idle.ts) at 1 ms and 4 ms, alternating the modes run by run so drift in the
// machine's load hits all equally; then repeats (a) and (b) in child processes with LP_NUM_THREADS
// (lavapipe's thread count) set to 1 and 2. Reports the median wall time, and the CPU seconds used per
// run by the main JS thread alone (the polling) and by the whole process (polling + lavapipe workers).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { deviceFlagSpec, deviceOptions } from '../cli/device-flags.ts';
import { Engine, Uniforms, type Tensor } from '../engine/index.ts';
import { gently, mainThreadCpuSeconds } from './idle.ts';
import { median } from './timing.ts';

type Mode = 'busy' | 'gentle-1ms' | 'gentle-4ms';
const MODES: Mode[] = ['busy', 'gentle-1ms', 'gentle-4ms'];

interface ModeResult {
  config: string;
  medianMs: number;
  gflops: number;
  mainCpuS: number | null;
  processCpuS: number;
  runs: number;
}

const RESULT_TAG = '@@busypoll ';

function randomValues(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = ((i * 2654435761) % 2001) / 1000 - 1;
  return a;
}

/** A job: record it (returns what to dispose) and its FLOPs. */
async function makeJob(e: Engine, M: number, K: number, N: number): Promise<{ what: string; flops: number; record: () => Tensor | null; inputs: Tensor[] }> {
  const flops = 2 * M * K * N;
  try {
    const mod = (await import(new URL('../engine/ops/matmul.ts', import.meta.url).href)) as { linear?: (...a: any[]) => Tensor };
    if (typeof mod.linear === 'function') {
      const x = e.upload(randomValues(M * K), [M, K], 'f32', 'busypoll x');
      const w = e.upload(randomValues(N * K), [N, K], 'bf16', 'busypoll w');
      const linear = mod.linear;
      return { what: `linear ${M}x${K}x${N} (bf16 W)`, flops, inputs: [x, w], record: () => linear(e, x, w) };
    }
  } catch {
    // fall through to the probe
  }
  // The FMA probe, sized to the same work (32768 invocations x 8 accumulators x 8 steps x 2 flops).
  const iters = Math.max(1, Math.round(flops / (32768 * 2 * 8 * 8)));
  const ks = [...Array(8).keys()];
  const pipeline = e.pipeline('bench_ceiling', {
    T: 'f32',
    WG: 64,
    OP: 'a * m + c',
    DECL: ks.map((k) => `  var a${k} = x0 + ${k}.0 * 0.01;`).join('\n'),
    STEP: ks.map((k) => ` a${k} = mad(a${k}, m, c);`).join(''),
    SUM: ks.map((k) => `  s += a${k};`).join('\n'),
  });
  const out = e.empty([32768], 'f32', 'busypoll out');
  return {
    what: `FMA probe with the FLOPs of a ${M}x${K}x${N} matmul (linear not available)`,
    flops: 32768 * 2 * 8 * 8 * iters,
    inputs: [out],
    record: () => {
      e.dispatch({ op: 'busypoll', pipeline, params: new Uniforms().u32(iters).f32(0.5), buffers: [{ buffer: out.storage.segments[0].buffer, offset: 0, size: 32768 * 4 }], workgroups: 512 });
      return null;
    },
  };
}

async function measureModes(e: Engine, dims: [number, number, number], modes: Mode[], rounds: number, label: string): Promise<{ what: string; results: ModeResult[] }> {
  const job = await makeJob(e, ...dims);
  const samples = new Map<Mode, { ms: number[]; main: number[]; proc: number[] }>(modes.map((m) => [m, { ms: [], main: [], proc: [] }]));
  const once = async (mode: Mode) => {
    const y = job.record();
    const main0 = mainThreadCpuSeconds();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    if (mode === 'busy') await e.sync();
    else await gently(() => e.sync(), mode === 'gentle-1ms' ? 1 : 4);
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const main1 = mainThreadCpuSeconds();
    y?.dispose();
    return { ms, main: main0 === null || main1 === null ? NaN : main1 - main0, proc: (cpu.user + cpu.system) / 1e6 };
  };
  await once('busy'); // warm-up: compilation, first touch of the buffers
  for (let r = 0; r < rounds; r++) {
    for (const mode of modes) {
      const s = await once(mode);
      const acc = samples.get(mode)!;
      acc.ms.push(s.ms);
      acc.main.push(s.main);
      acc.proc.push(s.proc);
    }
  }
  for (const t of job.inputs) t.dispose();
  const results = modes.map((mode) => {
    const s = samples.get(mode)!;
    const ms = median(s.ms);
    const main = median(s.main);
    return { config: `${mode}${label}`, medianMs: ms, gflops: job.flops / (ms * 1e6), mainCpuS: Number.isNaN(main) ? null : main, processCpuS: median(s.proc), runs: rounds };
  });
  return { what: job.what, results };
}

export async function busyPollCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean' }, size: { type: 'string' }, rounds: { type: 'string' }, child: { type: 'string' }, help: { type: 'boolean', short: 'h' }, ...deviceFlagSpec },
  });
  if (values.help) {
    console.log('usage: npm run bench -- busypoll [--json] [--size M,K,N (default 1024,3072,3072)] [--rounds N (default 5)]');
    return 0;
  }
  const dims = (values.size ?? '1024,3072,3072').split(',').map(Number) as [number, number, number];
  if (dims.length !== 3 || dims.some((d) => !(Number.isInteger(d) && d > 0))) throw new Error(`--size must be M,K,N, got "${values.size}"`);
  const rounds = values.rounds ? Number(values.rounds) : 5;

  // Child mode: measure the given modes in this process (whose LP_NUM_THREADS the parent set) and report.
  if (values.child) {
    const e = await Engine.create(deviceOptions(values));
    try {
      const r = await measureModes(e, dims, values.child.split(',') as Mode[], rounds, ` LP_NUM_THREADS=${process.env.LP_NUM_THREADS ?? 'default'}`);
      process.stdout.write(RESULT_TAG + JSON.stringify(r) + '\n');
    } finally {
      await e.destroy();
    }
    return 0;
  }

  process.stderr.write(`busypoll: ${dims.join('x')}, ${rounds} rounds per configuration\n`);
  const e = await Engine.create(deviceOptions(values));
  let what: string;
  const results: ModeResult[] = [];
  try {
    const r = await measureModes(e, dims, MODES, rounds, ' (same process, alternating)');
    what = r.what;
    results.push(...r.results);
  } finally {
    await e.destroy();
  }
  const cli = fileURLToPath(new URL('../cli/bench.js', import.meta.url));
  for (const threads of ['1', '2']) {
    const args = [cli, 'busypoll', '--child', 'busy,gentle-1ms', '--size', dims.join(','), '--rounds', String(rounds)];
    const p = spawnSync(process.execPath, args, { env: { ...process.env, LP_NUM_THREADS: threads }, encoding: 'utf8', maxBuffer: 1 << 24 });
    const line = p.stdout.split('\n').find((l) => l.startsWith(RESULT_TAG));
    if (!line) {
      process.stderr.write(`busypoll: child with LP_NUM_THREADS=${threads} failed: ${p.stderr.slice(-500)}\n`);
      continue;
    }
    results.push(...(JSON.parse(line.slice(RESULT_TAG.length)) as { results: ModeResult[] }).results);
  }
  if (values.json) {
    console.log(JSON.stringify({ job: what, results }, null, 1));
    return 0;
  }
  console.log(`job: ${what}; median of ${rounds} runs per configuration`);
  console.log(`${'configuration'.padEnd(48)} ${'wall ms'.padStart(9)} ${'GFLOP/s'.padStart(8)} ${'main-thread CPU s'.padStart(18)} ${'process CPU s'.padStart(14)}`);
  for (const r of results) {
    console.log(`${r.config.padEnd(48)} ${r.medianMs.toFixed(1).padStart(9)} ${r.gflops.toFixed(1).padStart(8)} ${(r.mainCpuS === null ? '-' : r.mainCpuS.toFixed(2)).padStart(18)} ${r.processCpuS.toFixed(2).padStart(14)}`);
  }
  return 0;
}
