// The diffusion transformer beyond its fixtures: classifier-free guidance as one batch.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../engine/index.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { SafetensorsFile } from '../loaders/safetensors.ts';
import { WanDiT } from '../model/dit.ts';
import { fixturesDir, randn, relL2 } from './helpers.ts';

let e: Engine;
beforeAll(async () => {
  e = await Engine.create();
});
afterAll(async () => {
  await e.destroy();
});

async function loadDit(name: string) {
  const dir = join(fixturesDir, name);
  const src = await SafetensorsFile.open(join(dir, 'diffusion_pytorch_model.safetensors'));
  const dit = await WanDiT.load(e, src, JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
  await src.close();
  return { dit, fx: await loadFixture(dir) };
}

describe('classifier-free guidance batch', () => {
  it.each(['dit.t2v', 'dit.ti2v'])('%s: a batch of (cond, uncond) equals two single passes', async (name) => {
    const { dit, fx } = await loadDit(name);
    const x = fx.input('x');
    const t = fx.input('t');
    const cond = fx.input('context').f32();
    const uncond = randn(9 * dit.config.textDim, 5, 0.5); // another length on purpose
    const base = {
      x: x.f32(),
      shape: x.shape as [number, number, number, number],
      t: t.shape.length === 2 ? Float32Array.from(t.f64()) : t.f64()[0],
      seqLen: fx.input('seq_len').f64()[0],
    };
    const [bc, bu] = await dit.forward({ ...base, contexts: [cond, uncond] });
    const [sc] = await dit.forward({ ...base, contexts: [cond] });
    const [su] = await dit.forward({ ...base, contexts: [uncond] });
    expect(relL2(bc, sc)).toBeLessThan(1e-6);
    expect(relL2(bu, su)).toBeLessThan(1e-6);
    expect(relL2(sc, su)).toBeGreaterThan(1e-3); // the contexts really differ
    expect(relL2(sc, fx.output('out').f64())).toBeLessThan(1e-4);
    dit.dispose();
    expect(e.liveTensors).toBe(0);
  });

  it('rejects inputs that do not fit the model', async () => {
    const { dit, fx } = await loadDit('dit.t2v');
    const x = fx.input('x');
    const base = { x: x.f32(), shape: x.shape as [number, number, number, number], t: 500, seqLen: 1, contexts: [fx.input('context').f32()] };
    await expect(dit.forward(base)).rejects.toThrow(/seq_len 1 < \d+ tokens/);
    await expect(dit.forward({ ...base, seqLen: 100, contexts: [new Float32Array(7)] })).rejects.toThrow(/not rows of 64/);
    await expect(dit.forward({ ...base, seqLen: 100, shape: [16, 3, 5, 6] })).rejects.toThrow(/not divisible by the patch/);
    dit.dispose();
  });
});
