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

// The forced limit is as small as each kind allows: matmul tiles of the whole DiT need 4 rows of
// 1920 bytes in one binding, so DiT fixtures run at 16 KiB (still several windows per weight).
const small = runnable.filter((d) => kindOf.get(d) !== 'dit');
const dit = runnable.filter((d) => kindOf.get(d) === 'dit');

describe.each([
  ['real limits', {}, runnable],
  ['4 KiB binding limit', { maxStorageBindingBytes: 4096, maxBufferBytes: 16384 }, small],
  ['16 KiB binding limit', { maxStorageBindingBytes: 16384, maxBufferBytes: 65536 }, dit],
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
