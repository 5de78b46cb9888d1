// The registry of fixture kinds: each kind knows how to run a reference fixture through the engine
// and which outputs to compare at which tolerance. `wan verify` and the test suite both use it.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Engine } from '../../engine/index.ts';
import { loadFixture, type Fixture } from '../../loaders/fixture.ts';
import type { OutputCheck } from './compare.ts';

export interface FixtureKind {
  kind: string;
  /** One line: what the kind checks. */
  description: string;
  run(e: Engine, fx: Fixture): Promise<OutputCheck[]>;
}

export interface VerifyResult {
  fixture: string;
  kind: string;
  pass: boolean;
  outputs: OutputCheck[];
  error?: string;
}

const kinds = new Map<string, FixtureKind>();

export function registerKind(k: FixtureKind): void {
  if (kinds.has(k.kind)) throw new Error(`fixture kind "${k.kind}" registered twice`);
  kinds.set(k.kind, k);
}

export function knownKinds(): string[] {
  return [...kinds.keys()].sort();
}

export function fixtureKind(kind: string): FixtureKind | undefined {
  return kinds.get(kind);
}

/** Runs one fixture folder; never throws: problems become a failed result with `error`. */
export async function verifyFixture(e: Engine, dir: string): Promise<VerifyResult> {
  let fx: Fixture;
  try {
    fx = await loadFixture(dir);
  } catch (err) {
    return { fixture: basename(dir), kind: '?', pass: false, outputs: [], error: (err as Error).message };
  }
  const k = kinds.get(fx.kind);
  if (!k) {
    return {
      fixture: fx.name,
      kind: fx.kind,
      pass: false,
      outputs: [],
      error: `unknown fixture kind "${fx.kind}" (this engine knows: ${knownKinds().join(', ')})`,
    };
  }
  try {
    const outputs = applyTolerances(await e.scope(() => k.run(e, fx)), fx.spec.tolerances);
    return { fixture: fx.name, kind: fx.kind, pass: outputs.length > 0 && outputs.every((o) => o.pass), outputs };
  } catch (err) {
    return { fixture: fx.name, kind: fx.kind, pass: false, outputs: [], error: `${fx.name}: ${(err as Error).message}` };
  }
}

/**
 * case.json `tolerances` ({"<check>": bound, "*": bound}) re-judges the checks at the fixture's own
 * bounds: fixtures dumped at full size by tools/reference/ carry looser ones than the kinds' built-in
 * bounds, which are set for the tiny bundled fixtures. A check matches by name, or by its name without a
 * " (...)" tag; "*" covers the rel-L2 checks without an entry. A rel-L2 check passes at relL2 <= bound,
 * any other (exact, frames) at maxAbs <= bound; a missing output or non-finite value still fails.
 */
export function applyTolerances(checks: OutputCheck[], tolerances: unknown): OutputCheck[] {
  if (tolerances === undefined || tolerances === null) return checks;
  const bad = (why: string): OutputCheck[] => [{ name: 'tolerances', relL2: NaN, maxAbs: NaN, tol: NaN, metric: 'exact', pass: false, note: `case.json "tolerances" ${why}` }];
  if (typeof tolerances !== 'object' || Array.isArray(tolerances)) return bad('is not an object');
  const bounds = tolerances as Record<string, unknown>;
  for (const [k, v] of Object.entries(bounds)) if (typeof v !== 'number' || !(v >= 0)) return bad(`"${k}" is not a number >= 0`);
  return checks.map((c) => {
    const base = c.name.replace(/ \(.*\)$/, '');
    const own = bounds[c.name] ?? bounds[base];
    const tol = (own ?? (c.metric === 'relL2' ? bounds['*'] : undefined)) as number | undefined;
    if (tol === undefined) return c;
    const value = c.metric === 'relL2' ? c.relL2 : c.maxAbs;
    const finite = Number.isFinite(c.relL2) && Number.isFinite(c.maxAbs) && !c.note?.includes('non-finite');
    return { ...c, tol, metric: c.metric === 'relL2' ? 'relL2' : 'exact', pass: finite && value <= tol, note: [c.note, 'case.json tolerance'].filter(Boolean).join('; ') };
  });
}

/** Expands arguments: a fixture folder (has case.json) or a folder of fixture folders. */
export function expandFixtureDirs(paths: string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    if (existsSync(join(p, 'case.json')) || !existsSync(p) || !statSync(p).isDirectory()) {
      out.push(p);
      continue;
    }
    const subs = readdirSync(p)
      .filter((d) => existsSync(join(p, d, 'case.json')))
      .sort();
    if (subs.length === 0) out.push(p);
    else out.push(...subs.map((d) => join(p, d)));
  }
  return out;
}
