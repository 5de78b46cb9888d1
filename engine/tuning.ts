// Kernel autotuner: for (adapter, variant family, shape class) it times the candidate variants once,
// keeps the fastest, and remembers it on disk so later processes skip the timing.
//   cache file: ~/.cache/wan-webgpu/tuning.json, or env WAN_TUNING_CACHE
//   env WAN_TUNE=off        no timing, no cache: every op uses its built-in default
//   env WAN_TUNE=<variant>  force that variant wherever a family knows the name (tests, benchmarks)
// Families (e.g. ops/matmul.ts) own their variants and the timing; this module only decides and remembers.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export interface TuningEntry {
  variant: string;
  /** Median seconds per run of every candidate (Infinity: failed its correctness check). */
  seconds: Record<string, number | null>;
  measuredAt: string;
}

interface TuningFile {
  version: 1;
  entries: Record<string, TuningEntry>;
}

export function tuningCachePath(): string {
  return process.env.WAN_TUNING_CACHE || join(homedir(), '.cache', 'wan-webgpu', 'tuning.json');
}

/** 'off', a forced variant name, or null (tune normally). Read on every call so tests can switch it. */
function tuneEnv(): string | null {
  const v = (process.env.WAN_TUNE ?? '').trim();
  return v === '' || v === 'on' || v === 'auto' ? null : v;
}

export function tuningDisabled(): boolean {
  return tuneEnv() === 'off';
}

/** The variant name forced by WAN_TUNE, if any. */
export function forcedVariant(): string | null {
  const v = tuneEnv();
  return v && v !== 'off' ? v : null;
}

export function tuningKey(adapter: string, family: string, shapeClass: string): string {
  return `${adapter}|${family}|${shapeClass}`;
}

let memory: { path: string; file: TuningFile } | null = null;

function readFile(path: string): TuningFile {
  try {
    const f = JSON.parse(readFileSync(path, 'utf8'));
    if (f && f.version === 1 && typeof f.entries === 'object' && f.entries) return f as TuningFile;
  } catch {
    // missing or unreadable: start empty (a corrupt file is replaced at the next write)
  }
  return { version: 1, entries: {} };
}

function loaded(): TuningFile {
  const path = tuningCachePath();
  if (!memory || memory.path !== path) memory = { path, file: readFile(path) };
  return memory.file;
}

/** The remembered winner for this key, or undefined (also when tuning is off). */
export function cachedVariant(adapter: string, family: string, shapeClass: string): string | undefined {
  if (tuneEnv() !== null) return undefined;
  return loaded().entries[tuningKey(adapter, family, shapeClass)]?.variant;
}

/** Remembers a winner: merged into the file as it is on disk now (other processes may have written). */
export function storeVariant(adapter: string, family: string, shapeClass: string, entry: TuningEntry): void {
  const path = tuningCachePath();
  const file = readFile(path);
  file.entries[tuningKey(adapter, family, shapeClass)] = entry;
  memory = { path, file };
  try {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(file, null, 1) + '\n');
    renameSync(tmp, path);
  } catch (err) {
    // A read-only home must not break inference: keep the choice in memory only.
    process.emitWarning(`wan-webgpu: could not write the tuning cache ${path}: ${(err as Error).message}`);
  }
}

/**
 * The variant to use for (adapter, family, shapeClass): forced by WAN_TUNE, remembered, or measured
 * now by `measure(runs)` (median seconds per candidate; Infinity for a candidate that failed) and
 * remembered. A remembered choice is timed again when the candidate list gained a variant since.
 * With WAN_TUNE=off returns the first candidate without measuring.
 */
export async function tuneVariant(
  adapter: string,
  family: string,
  shapeClass: string,
  candidates: string[],
  measure: (runs: number) => Promise<Record<string, number>>,
  log?: (line: string) => void,
): Promise<string> {
  if (candidates.length === 0) throw new Error(`tuning ${family}/${shapeClass}: no candidate variants`);
  const env = tuneEnv();
  if (env === 'off') return candidates[0];
  if (env !== null) return env;
  // A remembered choice stands while it is still a candidate and was timed against every current
  // candidate (a variant added since then gets its chance: the class is timed again).
  const known = loaded().entries[tuningKey(adapter, family, shapeClass)];
  if (known && candidates.includes(known.variant) && candidates.every((c) => c in known.seconds)) return known.variant;
  const seconds = await measure(3);
  let best = '';
  for (const c of candidates) if (Number.isFinite(seconds[c]) && (best === '' || seconds[c] < seconds[best])) best = c;
  if (best === '') throw new Error(`tuning ${family}/${shapeClass}: every candidate failed its correctness check (${candidates.join(', ')})`);
  const shown: Record<string, number | null> = {};
  for (const c of candidates) shown[c] = Number.isFinite(seconds[c]) ? seconds[c] : null;
  storeVariant(adapter, family, shapeClass, { variant: best, seconds: shown, measuredAt: new Date().toISOString() });
  log?.(`tuned ${family}/${shapeClass}: ${best} (${candidates.map((c) => `${c} ${Number.isFinite(seconds[c]) ? (seconds[c] * 1e3).toFixed(1) + 'ms' : 'failed'}`).join(', ')})`);
  return best;
}
