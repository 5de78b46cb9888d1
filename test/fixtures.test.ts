// Every bundled reference fixture whose kind the engine implements, through the same registry as
// `wan verify`: on the adapter's real limits and under a tiny forced storage-binding limit.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../engine/index.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { fixtureKind, knownKinds, verifyFixture } from '../model/reference/index.ts';
import { fixturesDir } from './helpers.ts';

const all = readdirSync(fixturesDir).sort();
const kindOf = new Map<string, string>();
for (const d of all) kindOf.set(d, (await loadFixture(join(fixturesDir, d))).kind);
const runnable = all.filter((d) => fixtureKind(kindOf.get(d)!));

// The forced limit is as small as each kind allows: matmul tiles of whole models need several rows
// of up to 2 KB in one binding (and umT5's bias table is 4.3 KB), so model fixtures run at 16 KiB;
// the VAE convs window over channels and frames but need one whole frame per binding, so VAE
// fixtures run at 64 KiB (still several windows per tensor). Pipelines run once, at the real limits.
const MODEL_KINDS = new Set(['dit', 't5']);
const VAE_KINDS = new Set(['vae2_1', 'vae2_2']);
const isPipeline = (d: string) => kindOf.get(d)!.startsWith('pipeline.');
const small = runnable.filter((d) => !MODEL_KINDS.has(kindOf.get(d)!) && !VAE_KINDS.has(kindOf.get(d)!) && !isPipeline(d));
const models = runnable.filter((d) => MODEL_KINDS.has(kindOf.get(d)!));
const vaes = runnable.filter((d) => VAE_KINDS.has(kindOf.get(d)!));

describe.each([
  ['real limits', {}, runnable],
  ['4 KiB binding limit', { maxStorageBindingBytes: 4096, maxBufferBytes: 16384 }, small],
  ['16 KiB binding limit', { maxStorageBindingBytes: 16384, maxBufferBytes: 65536 }, models],
  ['64 KiB binding limit', { maxStorageBindingBytes: 65536, maxBufferBytes: 262144 }, vaes],
] as const)('fixtures (%s)', (_name, opts, dirs) => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create(opts);
  });
  afterAll(async () => {
    await e.destroy();
  });

  it.each([...dirs])('%s', async (dir) => {
    const r = await verifyFixture(e, join(fixturesDir, dir));
    expect(r.error).toBeUndefined();
    expect(r.outputs.length).toBeGreaterThan(0);
    for (const o of r.outputs) expect({ name: o.name, relL2: o.relL2, pass: o.pass }).toEqual({ name: o.name, relL2: o.relL2, pass: true });
    expect(r.pass).toBe(true);
    expect(e.liveTensors).toBe(0); // the scope freed everything the kind created
  });
});

it('the first op kinds are registered', () => {
  expect(knownKinds()).toEqual(expect.arrayContaining(['op.silu', 'op.gelu_tanh']));
  expect(runnable).toEqual(expect.arrayContaining(['op.silu', 'op.gelu_tanh']));
});
