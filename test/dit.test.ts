// The diffusion transformer beyond its fixtures: classifier-free guidance as one batch.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../engine/index.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { SafetensorsFile } from '../loaders/safetensors.ts';
import { WanDiT, timestepRuns } from '../model/dit.ts';
import { ditConfigJson, ditTensors } from '../model/demo/architecture.ts';
import { demoDit } from '../model/demo/checkpoint.ts';
import { SyntheticTensorSource } from '../model/demo/source.ts';
import { fixturesDir, randn, relL2, untilNoLiveTensors } from './helpers.ts';

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

describe('f16 activation mode', () => {
  // Measured on lavapipe: rel L2 to PyTorch's float32 output 3.7e-4 to 4.3e-4 in f16 mode, 6e-7 in
  // f32 (bench/dit_f16.ts prints both). 3e-3 leaves room for another adapter's f16 rounding.
  it.each(['dit.t2v', 'dit.i2v', 'dit.ti2v'])('%s: within 3e-3 of the float32 reference, and really computed in f16', async (name) => {
    if (!e.gpu.hasF16) return;
    const { dit, fx } = await loadDit(name);
    const x = fx.input('x');
    const t = fx.input('t');
    const input = {
      x: x.f32(),
      shape: x.shape as [number, number, number, number],
      y: fx.has('in', 'y') ? fx.input('y').f32() : undefined,
      t: t.shape.length === 2 ? Float32Array.from(t.f64()) : t.f64()[0],
      contexts: [fx.input('context').f32(), randn(5 * dit.config.textDim, 6, 0.5)],
      seqLen: fx.input('seq_len').f64()[0],
    };
    const ref = fx.output('out').f64();
    const [f32] = await dit.forward(input);
    dit.activations = 'f16';
    const [f16, f16u] = await dit.forward(input);
    const [f16single] = await dit.forward({ ...input, contexts: [input.contexts[0]] });
    dit.dispose();
    expect(relL2(f32, ref)).toBeLessThan(1e-5);
    const err = relL2(f16, ref);
    console.log(`${name}: f16 activations rel L2 ${err.toExponential(2)} (f32 ${relL2(f32, ref).toExponential(2)})`);
    expect(err).toBeLessThan(3e-3);
    expect(err).toBeGreaterThan(2e-5); // f16 rounding is visible: the mode is not silently f32
    expect(relL2(f16single, f16)).toBeLessThan(1e-6); // the CFG batch holds in f16 too
    expect(relL2(f16u, f16)).toBeGreaterThan(1e-3);
    expect(e.liveTensors).toBe(0);
  });
});

describe('block streaming', () => {
  it('dit.ti2v fixture: a streamed model gives bit-identical outputs, one upload per block per forward', async () => {
    const dir = join(fixturesDir, 'dit.ti2v');
    const json = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const fx = await loadFixture(dir);
    const x = fx.input('x');
    const t = fx.input('t');
    const input = {
      x: x.f32(),
      shape: x.shape as [number, number, number, number],
      t: Float32Array.from(t.f64()),
      contexts: [fx.input('context').f32(), randn(7 * json.text_dim, 8, 0.5)],
      seqLen: fx.input('seq_len').f64()[0],
    };
    const { dit: resident } = await loadDit('dit.ti2v');
    const want = await resident.forward(input);
    resident.dispose();
    const src = await SafetensorsFile.open(join(dir, 'diffusion_pytorch_model.safetensors'));
    const dit = await WanDiT.load(e, src, json, { stream: true }); // owns src from here
    expect(dit.streamed).toBe(true);
    const n = dit.config.numLayers;
    for (let pass = 1; pass <= 2; pass++) {
      const got = await dit.forward(input);
      expect(Buffer.from(got[0].buffer).equals(Buffer.from(want[0].buffer))).toBe(true);
      expect(Buffer.from(got[1].buffer).equals(Buffer.from(want[1].buffer))).toBe(true);
      expect(dit.blockUploads).toBeGreaterThanOrEqual(pass * n);
      expect(dit.blockUploads).toBeLessThanOrEqual(pass * n + 1); // + block 0 of the next forward, prefetched
    }
    dit.dispose();
    await untilNoLiveTensors(e); // a landing prefetch is freed when it lands
    expect(e.liveTensors).toBe(0);
  });

  it('holds one block on the device: peak device memory of a 12-layer model is its non-block weights + 1 block + activations', async () => {
    const arch = { ...demoDit('ti2v-5B'), dim: 256, ffnDim: 1024, numHeads: 4, numLayers: 12 };
    const specs = ditTensors(arch);
    const blockBytes = (i: number) => specs.filter((s) => s.name.startsWith(`blocks.${i}.`)).reduce((a, s) => a + s.shape.reduce((p, d) => p * d, 1) * (s.shape.length >= 2 && !s.name.endsWith('modulation') ? 2 : 4), 0);
    const input = { x: randn(48 * 2 * 8 * 8, 1, 1), shape: [48, 2, 8, 8] as [number, number, number, number], t: 700, contexts: [randn(10 * arch.textDim, 2, 0.5), randn(4 * arch.textDim, 3, 0.5)], seqLen: 32 };
    const peaks: Record<string, number> = {};
    const outs: Record<string, Float32Array[]> = {};
    for (const stream of [false, true]) {
      e.pool.trim();
      const base = e.memory().liveBytes;
      e.pool.resetPeaks();
      const dit = await WanDiT.load(e, new SyntheticTensorSource(specs), ditConfigJson(arch), { stream });
      outs[String(stream)] = await dit.forward(input);
      await dit.forward(input);
      peaks[String(stream)] = e.memory().peakLiveBytes - base;
      dit.dispose();
      await untilNoLiveTensors(e);
    }
    expect(relL2(outs.true[0], outs.false[0])).toBe(0);
    const saved = peaks.false - peaks.true;
    console.log(`12 layers: resident peak ${peaks.false} B, streamed ${peaks.true} B, one block ${blockBytes(0)} B`);
    // Streaming keeps 1 of the 12 blocks (and the next one's first tensor): it saves about 11 blocks
    // (pool size classes round each tensor up).
    expect(saved).toBeGreaterThan(10.5 * blockBytes(0));
    expect(saved).toBeLessThan(11 * blockBytes(0) * 1.34);
    expect(e.liveTensors).toBe(0);
  });
});

describe('timestepRuns', () => {
  it('one value, two runs (split at the first change), or every token its own', () => {
    expect(timestepRuns(Float32Array.of(7, 7, 7))).toEqual({ values: Float32Array.of(7), split: 0 });
    expect(timestepRuns(Float32Array.of(0, 0, 750, 750, 750))).toEqual({ values: Float32Array.of(0, 750), split: 2 });
    expect(timestepRuns(Float32Array.of(3, 1))).toEqual({ values: Float32Array.of(3, 1), split: 1 });
    const three = Float32Array.of(0, 750, 750, 500);
    expect(timestepRuns(three)).toEqual({ values: three, split: 0 });
  });
});
