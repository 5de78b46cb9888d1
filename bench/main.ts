// `npm run bench -- kernels [--json] [--quick] [--only <kernel>]`: our kernels against this adapter's
// compute ceiling / stream bandwidth and against peers (onnxruntime WebGPU, tfjs WebGPU, torch CPU),
// all measured in the same run. `npm run bench -- busypoll`: the Dawn polling experiment.
// See bench/README.md for what each column means and how every system is timed.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { deviceFlagHelp, deviceFlagSpec, deviceOptions } from '../cli/device-flags.ts';
import { Engine } from '../engine/index.ts';
import { busyPollCommand } from './busypoll.ts';
import { type BenchCase, type Kernel, KERNELS, type SizeSet, casesFor, shapeOf } from './cases.ts';
import { type CeilingOptions, measureComputeCeiling, measureStream } from './ceiling.ts';
import { gentlePollingEnabled } from './idle.ts';
import { runPeer } from './peer-runner.ts';
import { CaseGuard } from './peers/protocol.ts';
import { formatText } from './report.ts';
import { type Ceilings, type Measurement, PEERS, type Peer, type Row, makeRow } from './rows.ts';
import { FULL_POLICY, QUICK_POLICY, type TimingPolicy } from './timing.ts';
import { timeWanCase } from './wan-cases.ts';

const usage = `usage: npm run bench -- kernels [--json] [--quick] [--only <kernel>] [options]
       npm run bench -- busypoll [--json] [--size M,K,N]
       npm run bench -- report <rows.json>

kernels   time our kernels (${KERNELS.join(', ')}) at the Wan shapes,
          the adapter's compute ceiling and stream bandwidth, and the same work in the peers, each in
          its own process, one after another: ${PEERS.join(', ')}
  --json            print one JSON array of rows {kernel, shape, system, medianMs, gflops, gbps,
                    ceilingPct, runs, note?} instead of the table
  --quick           reduced shapes (matmul 1024x3072x3072, attention seq 1024, ...), shorter budgets
  --only KERNEL     one kernel family
  --peers LIST      comma-separated subset of the peers, or "none"
  --budget-ms N     wall-clock budget per case and system (default 20000, quick 6000)
  --max-case-s N    skip a case whose one run is predicted (from the system's GFLOP/s on the
                    previous case of the same kernel) to exceed N s; default 60 for full shapes,
                    none otherwise; 0 = no cap
  --no-tune         do not run the matmul autotuner first (use its cached or default choice);
                    tuning happens once per adapter and shape class, then it is cached on disk
  --tiny            tiny shapes and budgets (the smoke test; env WAN_BENCH_TINY=1)
busypoll  time a matmul-sized job with Dawn's default busy polling and with the harness's gentle
          polling (and lavapipe thread counts), reporting wall time and main-thread CPU time
report    print the table and targets of a saved \`kernels --json\` output
load      checkpoint streaming throughput (float32 on disk -> bf16 on the device) vs a raw read
dit       one DiT block at the TI2V-5B width: time, GFLOP/s, share per kernel, PyTorch beside it
vae       VAE decode time per frame and peak device memory at a few sizes, PyTorch beside it
pipeline  the tiny t2v pipeline end to end per stage, beside the official PyTorch code
scale     synthetic full-size checkpoints: load time, peak memory per mode, DiT forward vs tokens
make-checkpoint  write a synthetic full-size checkpoint (official names, shapes, dtypes, layout)
(each of these takes --help)
env: WAN_BENCH_BUSY_POLL=1 (no polling shim), WAN_BENCH_PYTHON (python with torch, default
     /usr/bin/python3), WAN_BENCH_VERBOSE=1 (show the peers' own output)
${deviceFlagHelp}`;

function log(msg: string): void {
  process.stderr.write(msg + '\n');
}

function fmtMs(m: Measurement): string {
  if (m.medianMs === null) return m.note ?? 'no result';
  return m.medianMs >= 1000 ? `${(m.medianMs / 1000).toFixed(2)} s` : `${m.medianMs.toFixed(1)} ms`;
}

async function kernelsCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      json: { type: 'boolean' },
      quick: { type: 'boolean' },
      tiny: { type: 'boolean' },
      only: { type: 'string' },
      peers: { type: 'string' },
      'budget-ms': { type: 'string' },
      'no-tune': { type: 'boolean' },
      'max-case-s': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      ...deviceFlagSpec,
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const only = values.only as Kernel | undefined;
  if (only !== undefined && !KERNELS.includes(only)) throw new Error(`--only: unknown kernel "${only}" (one of ${KERNELS.join(', ')})`);
  const tiny = values.tiny || process.env.WAN_BENCH_TINY === '1';
  const set: SizeSet = tiny ? 'tiny' : values.quick ? 'quick' : 'full';
  let policy: TimingPolicy = set === 'full' ? FULL_POLICY : set === 'quick' ? QUICK_POLICY : { budgetMs: 400, minRuns: 2, maxRuns: 3 };
  if (values['budget-ms'] !== undefined) {
    const b = Number(values['budget-ms']);
    if (!(b > 0)) throw new Error(`--budget-ms must be a positive number, got "${values['budget-ms']}"`);
    policy = { ...policy, budgetMs: b };
  }
  let peers: Peer[] = [...PEERS];
  if (values.peers !== undefined) {
    const list = values.peers.split(',').map((s) => s.trim()).filter(Boolean);
    peers = list.includes('none') ? [] : (list as Peer[]);
    for (const p of peers) if (!PEERS.includes(p)) throw new Error(`--peers: unknown peer "${p}" (${PEERS.join(', ')}, none)`);
  }
  const cases = casesFor(set, only);
  // Full runs cap the predicted time of one run of a case (see CaseGuard), so the run stays ~10 min.
  let maxCaseMs: number | null = set === 'full' ? 60_000 : null;
  if (values['max-case-s'] !== undefined) {
    const v = Number(values['max-case-s']);
    if (!(v >= 0)) throw new Error(`--max-case-s must be a number >= 0 (0: no cap), got "${values['max-case-s']}"`);
    maxCaseMs = v === 0 ? null : v * 1000;
  }
  const guard = new CaseGuard(maxCaseMs);
  const started = Date.now();

  // 1. Ours, in this process: the ceilings first, then each case.
  const e = await Engine.create(deviceOptions(values));
  const adapter = `${e.gpu.summary.description || e.gpu.summary.device} (${e.gpu.summary.backend} backend)`;
  const probe: CeilingOptions =
    set === 'full' ? { targetMs: 300, reps: 3, allVariants: true } : set === 'quick' ? { targetMs: 150, reps: 3, allVariants: false } : { targetMs: 5, reps: 1, allVariants: false };
  log(`bench: ${adapter}; ${cases.length} case(s), ${set} shapes, ${policy.budgetMs / 1000} s budget per case; polling ${gentlePollingEnabled() ? 'gentle' : 'busy (WAN_BENCH_BUSY_POLL=1)'}`);
  const rows: Row[] = [];
  const wanMeasurements: Measurement[] = [];
  let ceilings: Ceilings;
  const variantLines: string[] = [];
  try {
    const compute = await measureComputeCeiling(e, probe);
    log(`  compute ceiling ${compute.best.rate.toFixed(1)} GFLOP/s (${compute.best.variant})`);
    const stream = await measureStream(e, probe, set === 'tiny' ? 1 : 64);
    log(`  stream bandwidth ${stream.best.rate.toFixed(2)} GB/s (${stream.best.variant})`);
    ceilings = { computeGflops: compute.best.rate, streamGbps: stream.best.rate };
    rows.push({
      kernel: 'compute-ceiling',
      shape: compute.best.variant,
      system: 'ceiling',
      medianMs: Number(compute.best.medianMs.toPrecision(4)),
      gflops: Number(compute.best.rate.toPrecision(4)),
      gbps: null,
      ceilingPct: 100,
      runs: probe.reps,
      note: 'best FMA-chain variant (shaders/bench_ceiling.wgsl)',
    });
    rows.push({
      kernel: 'stream-bandwidth',
      shape: stream.best.variant,
      system: 'ceiling',
      medianMs: Number(stream.best.medianMs.toPrecision(4)),
      gflops: null,
      gbps: Number(stream.best.rate.toPrecision(4)),
      ceilingPct: 100,
      runs: probe.reps,
      note: 'best of the WGSL copy variants (shaders/bench_stream.wgsl) and a host memcpy; bytes read + written',
    });
    variantLines.push('probe variants (median of each):');
    for (const v of compute.all) variantLines.push(`  ${v.variant.padEnd(40)} ${v.rate.toFixed(1).padStart(8)} GFLOP/s`);
    for (const v of stream.all) variantLines.push(`  ${v.variant.padEnd(40)} ${v.rate.toFixed(2).padStart(8)} GB/s`);
    for (const c of cases) {
      const skip = guard.check(c);
      const m: Measurement = skip ? { medianMs: null, runs: 0, note: skip } : await timeWanCase(e, c, policy, { tune: !values['no-tune'] });
      guard.record(c, m.medianMs);
      log(`  wan ${c.kernel} ${shapeOf(c)}: ${fmtMs(m)}`);
      wanMeasurements.push(m);
    }
  } finally {
    await e.destroy();
  }

  // 2. The peers, each in its own process, one at a time.
  const peerMeasurements = new Map<Peer, Measurement[]>();
  const versions: string[] = [];
  for (const peer of peers) {
    const { measurements, version } = await runPeer(peer, cases, policy, maxCaseMs, (c, m) => log(`  ${peer} ${c.kernel} ${shapeOf(c)}: ${fmtMs(m)}`));
    peerMeasurements.set(peer, measurements);
    if (version) versions.push(`${peer}: ${version}`);
  }

  cases.forEach((c: BenchCase, i) => {
    rows.push(makeRow(c, 'wan', wanMeasurements[i], ceilings, c.kernel === 'matmul' ? 2 : 4));
    for (const peer of peers) rows.push(makeRow(c, peer, peerMeasurements.get(peer)![i], ceilings));
  });
  log(`bench: done in ${((Date.now() - started) / 1000).toFixed(0)} s`);

  if (values.json) {
    console.log(JSON.stringify(rows, null, 1));
  } else {
    const header = [
      `adapter: ${adapter}`,
      `shapes: ${set}; timing: median of >= ${policy.minRuns} warm runs within ${policy.budgetMs / 1000} s per case (see notes)`,
      `polling: ${gentlePollingEnabled() ? 'gentle (setImmediate -> setTimeout 1 ms while awaiting the GPU; bench/idle.ts)' : 'busy (Dawn default)'}`,
      `compute ceiling ${ceilings.computeGflops.toFixed(1)} GFLOP/s, stream bandwidth ${ceilings.streamGbps.toFixed(2)} GB/s (rows "ceiling")`,
      ...(versions.length ? [`peers: ${versions.join('; ')}`] : []),
    ];
    console.log(formatText(rows, header, variantLines));
  }
  return 0;
}

/** `bench report rows.json`: the text table and targets of a saved --json run. */
function reportCommand(argv: string[]): number {
  if (argv.length !== 1) {
    console.error('usage: npm run bench -- report <rows.json>   (the output of kernels --json)');
    return 2;
  }
  const rows = JSON.parse(readFileSync(argv[0], 'utf8')) as Row[];
  const ceil = rows.filter((r) => r.system === 'ceiling').map((r) => `${r.kernel} ${r.gflops ?? r.gbps} ${r.gflops !== null ? 'GFLOP/s' : 'GB/s'} (${r.shape})`);
  console.log(formatText(rows, [`from ${argv[0]}`, ...ceil], []));
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'kernels':
      return kernelsCommand(rest);
    case 'busypoll':
      return busyPollCommand(rest);
    case 'report':
      return reportCommand(rest);
    case 'load':
    case 'dit':
    case 'vae':
    case 'pipeline':
    case 'scale':
    case 'make-checkpoint': {
      // Each model-level benchmark lives in its own module (bench/<name>.ts) and is loaded on demand.
      const mod = (await import(`./${cmd}.ts`)) as { command: (argv: string[]) => Promise<number> };
      return mod.command(rest);
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(usage);
      return cmd === undefined ? 2 : 0;
    default:
      console.error(`bench: unknown command "${cmd}"\n\n${usage}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    console.error(`bench: ${err.message}`);
    if (process.env.WAN_DEBUG) console.error(err.stack);
    process.exitCode = 1;
  },
);
