// Text output: the table of rows with ratios against our kernel, then the targets, met or missed.
import type { Row } from './rows.ts';

export interface Target {
  what: string;
  /** The measured value, as text; null when it could not be computed. */
  value: string | null;
  met: boolean | null;
  why?: string;
}

const fmt = (x: number | null, digits = 3): string => {
  if (x === null) return '-';
  if (x >= 10 ** digits) return x.toFixed(0);
  return x.toPrecision(digits);
};

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

/** peer time / our time for the same kernel and shape (> 1: ours is faster). */
export function ratioToWan(rows: Row[], r: Row): number | null {
  if (r.system === 'wan' || r.system === 'ceiling' || r.medianMs === null) return null;
  const wan = rows.find((w) => w.system === 'wan' && w.kernel === r.kernel && w.shape === r.shape);
  return wan?.medianMs ? r.medianMs / wan.medianMs : null;
}

/** The issue's performance targets, evaluated on this run's rows. */
export function evaluateTargets(rows: Row[]): Target[] {
  const targets: Target[] = [];
  const wanRows = rows.filter((r) => r.system === 'wan');
  const matmuls = wanRows.filter((r) => r.kernel === 'matmul' && r.gflops !== null);
  const bestMatmul = matmuls.reduce<Row | null>((a, b) => (a && a.gflops! >= b.gflops! ? a : b), null);
  for (const w of wanRows) {
    const label = `${w.kernel} ${w.shape}`;
    if (w.kernel === 'matmul') {
      const peers = rows.filter((r) => r.kernel === w.kernel && r.shape === w.shape && (r.system === 'onnxruntime-webgpu' || r.system === 'tfjs-webgpu') && r.medianMs !== null);
      const fastest = peers.reduce<Row | null>((a, b) => (a && a.medianMs! <= b.medianMs! ? a : b), null);
      const what = `${label}: >= 5x the faster WebGPU peer`;
      if (w.medianMs === null || !fastest) targets.push({ what, value: null, met: null, why: w.medianMs === null ? 'no wan number' : 'no WebGPU peer number' });
      else {
        const ratio = fastest.medianMs! / w.medianMs;
        targets.push({ what, value: `${ratio.toFixed(1)}x (vs ${fastest.system})`, met: ratio >= 5 });
      }
      const what2 = `${label}: >= 50% of the compute ceiling`;
      targets.push(w.ceilingPct === null ? { what: what2, value: null, met: null, why: 'no wan number' } : { what: what2, value: `${w.ceilingPct.toFixed(1)}%`, met: w.ceilingPct >= 50 });
    } else if (w.kernel === 'attention' || w.kernel === 'conv3d') {
      const what = `${label}: >= 50% of our matmul rate`;
      if (w.gflops === null || !bestMatmul) targets.push({ what, value: null, met: null, why: w.gflops === null ? 'no wan number' : 'no wan matmul number' });
      else {
        const pct = (w.gflops / bestMatmul.gflops!) * 100;
        targets.push({ what, value: `${pct.toFixed(0)}% (${fmt(w.gflops)} of ${fmt(bestMatmul.gflops)} GFLOP/s, matmul ${bestMatmul.shape})`, met: pct >= 50 });
      }
    } else if (w.kernel === 'layernorm') {
      const what = `${label}: >= 25% of stream bandwidth`;
      targets.push(w.ceilingPct === null ? { what, value: null, met: null, why: 'no wan number' } : { what, value: `${w.ceilingPct.toFixed(0)}% (${fmt(w.gbps)} GB/s)`, met: w.ceilingPct >= 25 });
    }
  }
  return targets;
}

/** The whole text report. */
export function formatText(rows: Row[], header: string[], extra: string[]): string {
  const lines: string[] = [...header, ''];
  const cols = ['kernel', 'shape', 'system', 'median ms', 'GFLOP/s', 'GB/s', '% ceil', 'peer/wan', 'runs', 'note'];
  const table = rows.map((r) => {
    const ratio = ratioToWan(rows, r);
    return [
      r.kernel,
      r.shape,
      r.system,
      fmt(r.medianMs, 4),
      fmt(r.gflops),
      fmt(r.gbps),
      r.ceilingPct === null ? '-' : `${r.ceilingPct.toFixed(1)}%`,
      ratio === null ? '' : `${ratio.toFixed(2)}x`,
      r.runs ? String(r.runs) : '',
      r.note ?? '',
    ];
  });
  const widths = cols.map((c, i) => Math.max(c.length, ...table.filter((t) => t[i] !== undefined).map((t) => (i === cols.length - 1 ? 0 : t[i].length))));
  const numeric = new Set([3, 4, 5, 6, 7, 8]);
  const line = (cells: string[]) => cells.map((c, i) => (i === cols.length - 1 ? c : pad(c, widths[i], numeric.has(i)))).join('  ').trimEnd();
  lines.push(line(cols));
  let prev = '';
  for (let i = 0; i < table.length; i++) {
    const key = `${rows[i].kernel}|${rows[i].shape}`;
    if (prev && key !== prev) lines.push('');
    prev = key;
    lines.push(line(table[i]));
  }
  lines.push('', 'peer/wan = the peer\'s median time / ours (above 1: ours is faster).');
  const targets = evaluateTargets(rows);
  if (targets.length) {
    lines.push('', 'targets:');
    for (const t of targets) {
      const verdict = t.met === null ? 'n/a' : t.met ? 'met' : 'MISSED';
      lines.push(`  ${pad(verdict, 6)} ${t.what}: ${t.value ?? `- (${t.why})`}`);
    }
  }
  if (extra.length) lines.push('', ...extra);
  return lines.join('\n');
}
