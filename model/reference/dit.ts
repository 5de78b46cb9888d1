// Fixture kind `dit`: WanModel forward (t2v / i2v / ti2v) with every recorded intermediate.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openRawTensorSource } from '../../loaders/open.ts';
import { WanDiT } from '../dit.ts';
import { compareOutput, type OutputCheck } from './compare.ts';
import { registerKind } from './registry.ts';

registerKind({
  kind: 'dit',
  description: 'WanModel forward (t2v / i2v / ti2v), intermediates included',
  async run(e, fx) {
    // The weights: the .safetensors (or shard index) case.json lists; fixtures dumped by
    // tools/reference/ point into the user's checkpoint instead of holding a copy.
    const file = fx.weights?.find((w) => /\.safetensors(\.index\.json)?$/.test(w)) ?? 'diffusion_pytorch_model.safetensors';
    const src = await openRawTensorSource(fx.weightPath(file));
    const json = JSON.parse(readFileSync(join(fx.dir, 'config.json'), 'utf8'));
    const dit = await WanDiT.load(e, src, json);
    await src.close();
    try {
      const x = fx.input('x');
      const t = fx.input('t');
      const got = new Map<string, Float32Array>();
      const wanted = new Set(fx.intermediateNames);
      const out = await dit.forward(
        {
          x: x.f32(),
          shape: x.shape as [number, number, number, number],
          y: fx.has('in', 'y') ? fx.input('y').f32() : undefined,
          t: t.shape.length === 2 ? Float32Array.from(t.f64()) : t.f64()[0],
          contexts: [fx.input('context').f32()],
          seqLen: fx.input('seq_len').f64()[0],
        },
        async (name, tensor) => {
          if (wanted.has(name)) got.set(name, (await tensor.toArray()) as Float32Array);
        },
      );
      const checks: OutputCheck[] = [compareOutput('out', out[0], fx.output('out').f64(), 1e-4)];
      for (const name of fx.intermediateNames) {
        let g = got.get(name);
        const refLen = fx.intermediate(name).shape.reduce((a, b) => a * b, 1);
        // One timestep for all tokens: the engine computes the time embedding once; the reference
        // holds it expanded per token.
        if (g && g.length < refLen && refLen % g.length === 0 && ['sin_emb', 'e', 'e0'].includes(name)) {
          const tiled = new Float32Array(refLen);
          for (let o = 0; o < refLen; o += g.length) tiled.set(g, o);
          g = tiled;
        }
        checks.push(g ? compareOutput(name, g, fx.intermediate(name).f64(), 1e-4) : { name, relL2: Infinity, maxAbs: Infinity, tol: 1e-4, metric: 'relL2', pass: false, note: 'not produced' });
      }
      return checks;
    } finally {
      dit.dispose();
    }
  },
});
