// Runs one peer in its own child process (its own Dawn instance / thread pool), never two at once.
// The child reports a line per finished case (bench/peers/protocol.ts). If it dies mid-way (a crash,
// out of memory, a timeout), the case it was on is reported as failed and a fresh child takes the rest.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type BenchCase, shapeOf } from './cases.ts';
import { INFO_TAG, RESULT_TAG, type PeerInfo, type PeerJob, type PeerResult } from './peers/protocol.ts';
import type { Measurement, Peer } from './rows.ts';
import type { TimingPolicy } from './timing.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const PEERS_DIR = fileURLToPath(new URL('./peers/', import.meta.url));

/** Python with torch for the torch-cpu peer (env WAN_BENCH_PYTHON overrides). */
export function pythonPath(): string {
  return process.env.WAN_BENCH_PYTHON || '/usr/bin/python3';
}

function command(peer: Peer): { cmd: string; args: string[] } | { missing: string } {
  switch (peer) {
    case 'onnxruntime-webgpu':
      return { cmd: process.execPath, args: ['--import', 'tsx', `${PEERS_DIR}ort.ts`] };
    case 'tfjs-webgpu':
      return { cmd: process.execPath, args: ['--import', 'tsx', `${PEERS_DIR}tfjs.ts`] };
    case 'torch-cpu': {
      const py = pythonPath();
      if (!existsSync(py)) return { missing: `${py} not found (set WAN_BENCH_PYTHON)` };
      return { cmd: py, args: [`${PEERS_DIR}torch_cpu.py`] };
    }
  }
}

interface ChildOutcome {
  results: PeerResult[];
  info: PeerInfo | null;
  exit: string | null;
  stderrTail: string;
}

function runChild(cmd: string, args: string[], job: PeerJob, timeoutMs: number, onResult: (r: PeerResult) => void): Promise<ChildOutcome> {
  return new Promise((resolve) => {
    const child = spawn(cmd, [...args, JSON.stringify(job)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    const out: ChildOutcome = { results: [], info: null, exit: null, stderrTail: '' };
    let buf = '';
    const verbose = process.env.WAN_BENCH_VERBOSE === '1';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith(RESULT_TAG)) {
          const r = JSON.parse(line.slice(RESULT_TAG.length)) as PeerResult;
          out.results.push(r);
          onResult(r);
        } else if (line.startsWith(INFO_TAG)) {
          out.info = JSON.parse(line.slice(INFO_TAG.length)) as PeerInfo;
        } else if (verbose) process.stderr.write(`  | ${line}\n`);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      out.stderrTail = (out.stderrTail + chunk).slice(-4000);
      if (verbose) process.stderr.write(chunk);
    });
    const timer = setTimeout(() => {
      out.exit = `timed out after ${Math.round(timeoutMs / 1000)} s`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      out.exit = `could not start: ${err.message}`;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (out.exit === null && (code !== 0 || signal)) out.exit = signal ? `killed by ${signal}` : `exit code ${code}`;
      resolve(out);
    });
  });
}

/** The last meaningful stderr line of a dead child (skipping Dawn's known harmless warnings). */
function lastError(tail: string): string {
  const lines = tail
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/artificially reduced|XDG_RUNTIME_DIR|^at |^Node\.js v/.test(l));
  return (lines.pop() ?? '').slice(0, 200);
}

/**
 * Measures every case with one peer. `progress` is called as each case finishes. A child gets at most
 * ~4 case budgets (plus start-up) per case before it is killed.
 */
export async function runPeer(
  peer: Peer,
  cases: BenchCase[],
  policy: TimingPolicy,
  maxCaseMs: number | null,
  progress: (c: BenchCase, m: Measurement) => void,
): Promise<{ measurements: Measurement[]; version: string | null }> {
  const measurements: (Measurement | null)[] = cases.map(() => null);
  const how = command(peer);
  if ('missing' in how) {
    return { measurements: cases.map((c) => (progress(c, { medianMs: null, runs: 0, note: how.missing }), { medianMs: null, runs: 0, note: how.missing })), version: null };
  }
  let version: string | null = null;
  let next = 0;
  while (next < cases.length) {
    const rest = cases.slice(next);
    const job: PeerJob = { cases: rest, shapes: rest.map(shapeOf), policy, firstIndex: next, maxCaseMs };
    const timeoutMs = 60_000 + job.cases.length * (policy.budgetMs * 4 + 30_000);
    const outcome = await runChild(how.cmd, how.args, job, timeoutMs, (r) => {
      const m: Measurement = { medianMs: r.medianMs, runs: r.runs, ...(r.note ? { note: r.note } : {}) };
      measurements[r.index] = m;
      progress(cases[r.index], m);
    });
    if (outcome.info?.version) version = outcome.info.version;
    while (next < cases.length && measurements[next] !== null) next++;
    if (next < cases.length) {
      // The child stopped before finishing case `next`: that case failed; the rest get a new child.
      const why = outcome.exit ?? 'exited early';
      const err = lastError(outcome.stderrTail);
      const m: Measurement = { medianMs: null, runs: 0, note: `peer process failed (${why})${err ? `: ${err}` : ''}` };
      measurements[next] = m;
      progress(cases[next], m);
      next++;
    }
  }
  return { measurements: measurements as Measurement[], version };
}
