// Reader for the reference fixtures: a folder with case.json (kind, config, weights, tensor name
// lists, notes, reference) and io.safetensors holding `in.<name>`, `out.<name>`, `mid.<name>`.
// Fixtures are small, so io.safetensors is read whole and every tensor is kept in memory.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  decodeToFloat32,
  decodeToFloat64,
  decodeToInt,
  parseSafetensorsHeader,
  type StDType,
} from './safetensors.ts';

export type FixtureSection = 'in' | 'out' | 'mid';

export interface FixtureTensor {
  /** Full tensor name in io.safetensors, e.g. "out.y". */
  name: string;
  dtype: StDType;
  shape: number[];
  /** Each call decodes into a fresh array (callers may modify it). */
  f32(): Float32Array;
  f64(): Float64Array;
  int(): Int32Array;
  /** Little-endian bytes, in their own buffer (offset 0). */
  raw: Uint8Array;
}

/** Refuse to slurp anything this large: fixtures are a few MB at most. */
const MAX_IO_BYTES = 256 * 1024 * 1024;

const SECTION_WORDS: Record<FixtureSection, { one: string; list: 'inputs' | 'outputs' | 'intermediates' }> = {
  in: { one: 'input', list: 'inputs' },
  out: { one: 'output', list: 'outputs' },
  mid: { one: 'intermediate', list: 'intermediates' },
};

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class Fixture {
  /** Folder basename, e.g. "op.silu". */
  readonly name: string;

  constructor(
    readonly dir: string,
    readonly kind: string,
    /** case.json `config` ({} when absent); shape depends on `kind`. */
    readonly config: Record<string, any>,
    readonly notes: string,
    readonly reference: string,
    /** case.json `weights` (a single string is normalized to a one-element list). */
    readonly weights: string[] | null,
    readonly inputNames: string[],
    readonly outputNames: string[],
    readonly intermediateNames: string[],
    /** The whole parsed case.json (for extra keys such as `shapes`). */
    readonly spec: Record<string, any>,
    private readonly tensors: Map<string, FixtureTensor>,
  ) {
    this.name = path.basename(path.resolve(dir));
  }

  /** All tensor names in io.safetensors (with their in./out./mid. prefix). */
  get tensorNames(): string[] {
    return [...this.tensors.keys()];
  }

  has(section: FixtureSection, name: string): boolean {
    return this.tensors.has(`${section}.${name}`);
  }

  tensor(section: FixtureSection, name: string): FixtureTensor {
    const t = this.tensors.get(`${section}.${name}`);
    if (!t) throw new Error(`fixture ${this.dir}: io.safetensors has no ${SECTION_WORDS[section].one} "${name}"`);
    return t;
  }

  input(name: string): FixtureTensor {
    return this.tensor('in', name);
  }

  output(name: string): FixtureTensor {
    return this.tensor('out', name);
  }

  intermediate(name: string): FixtureTensor {
    return this.tensor('mid', name);
  }

  /** Path of a weight file named in case.json (relative to the fixture folder; may contain "../"). */
  weightPath(file: string): string {
    return path.join(this.dir, file);
  }
}

function makeTensor(label: string, name: string, dtype: StDType, shape: number[], raw: Uint8Array): FixtureTensor {
  // Prefix decode errors (e.g. an I64 value outside int32) with the fixture and tensor.
  const wrap = <T>(f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw new Error(`${label}: tensor "${name}": ${errorMessage(e)}`);
    }
  };
  return {
    name,
    dtype,
    shape,
    raw,
    f32: () => wrap(() => decodeToFloat32(dtype, raw)),
    f64: () => wrap(() => decodeToFloat64(dtype, raw)),
    int: () => wrap(() => decodeToInt(dtype, raw)),
  };
}

async function readFileOrFail(file: string, label: string, what: string): Promise<Buffer> {
  try {
    return await fsp.readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`${label}: ${what} not found (${file})`);
    throw new Error(`${label}: cannot read ${what} (${errorMessage(e)})`);
  }
}

export async function loadFixture(dir: string): Promise<Fixture> {
  const label = `fixture ${dir}`;
  const fail = (msg: string): never => {
    throw new Error(`${label}: ${msg}`);
  };

  // --- case.json
  const caseText = (await readFileOrFail(path.join(dir, 'case.json'), label, 'case.json')).toString('utf8');
  let spec: unknown;
  try {
    spec = JSON.parse(caseText);
  } catch (e) {
    return fail(`case.json is not valid JSON (${errorMessage(e)})`);
  }
  if (!isPlainObject(spec)) return fail(`case.json is not a JSON object`);
  if (typeof spec.kind !== 'string' || spec.kind === '') fail(`case.json has no string "kind"`);

  const nameList = (key: 'inputs' | 'outputs' | 'intermediates'): string[] => {
    const v = spec[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) {
      return fail(`case.json "${key}" is not a list of strings`);
    }
    return [...v];
  };
  const optString = (key: string): string => {
    const v = spec[key];
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') return fail(`case.json "${key}" is not a string`);
    return v;
  };
  const config = spec.config ?? {};
  if (!isPlainObject(config)) fail(`case.json "config" is not a JSON object`);
  let weights: string[] | null;
  const w = spec.weights;
  if (w === undefined || w === null) weights = null;
  else if (typeof w === 'string') weights = [w];
  else if (Array.isArray(w) && w.every((s) => typeof s === 'string')) weights = [...w];
  else return fail(`case.json "weights" is not null, a string or a list of strings`);

  const lists: Record<FixtureSection, string[]> = {
    in: nameList('inputs'),
    out: nameList('outputs'),
    mid: nameList('intermediates'),
  };

  // --- io.safetensors
  const ioPath = path.join(dir, 'io.safetensors');
  try {
    const st = await fsp.stat(ioPath);
    if (st.size > MAX_IO_BYTES) fail(`io.safetensors is ${st.size} bytes, more than the ${MAX_IO_BYTES} byte limit for fixtures`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') fail(`io.safetensors not found (${ioPath})`);
    throw e;
  }
  const bytes = await readFileOrFail(ioPath, label, 'io.safetensors');
  const header = parseSafetensorsHeader(
    bytes.byteLength,
    (offset, length) => bytes.subarray(offset, offset + length),
    `${label}: io.safetensors`,
  );
  const tensors = new Map<string, FixtureTensor>();
  for (const e of header.entries.values()) {
    // new Uint8Array(view) copies: each tensor gets its own aligned buffer (Buffer.slice would not copy).
    const raw = new Uint8Array(bytes.subarray(e.begin, e.end));
    tensors.set(e.name, makeTensor(label, e.name, e.dtype, e.shape, raw));
  }

  for (const section of ['in', 'out', 'mid'] as const) {
    const words = SECTION_WORDS[section];
    for (const n of lists[section]) {
      if (!tensors.has(`${section}.${n}`)) {
        fail(`io.safetensors lacks ${words.one} "${n}" (listed in case.json ${words.list})`);
      }
    }
  }

  return new Fixture(
    dir,
    spec.kind as string,
    config as Record<string, any>,
    optString('notes'),
    optString('reference'),
    weights,
    lists.in,
    lists.out,
    lists.mid,
    spec,
    tensors,
  );
}
