// Fixture kinds of the position encodings: op.rope_apply (Wan's 3-axis RoPE) and
// op.sinusoidal_embedding_1d (the timestep embedding).
import { ropeApply, type GridSize } from '../../engine/ops/rope.ts';
import { sinusoidalEmbedding, sinusoidalEmbeddingGpu } from '../../engine/ops/embedding.ts';
import { compareOutput } from './compare.ts';
import { registerKind } from './registry.ts';

registerKind({
  kind: 'op.rope_apply',
  description: "rope_apply: 3-axis RoPE (frame/height/width split of the head dim), padded rows unrotated",
  async run(e, fx) {
    const x = fx.input('x');
    const g = fx.input('grid_sizes').int();
    const grids: GridSize[] = [];
    for (let i = 0; i < g.length; i += 3) grids.push([g[i], g[i + 1], g[i + 2]]);
    // Uploaded as token rows so that a tiny forced buffer limit can segment it.
    const [B, L, N, D] = x.shape;
    const xt = e.upload(x.f32(), [B * L, N, D]).reshape(x.shape);
    const ref = fx.output('y').f64();
    // With the fixture's own freqs table, and with the table this engine builds (ropeFreqs).
    const withFixtureFreqs = await ropeApply(e, xt, grids, fx.input('freqs').f64()).toArray();
    const withOwnTable = await ropeApply(e, xt, grids).toArray();
    return [compareOutput('y', withFixtureFreqs, ref, 1e-5), compareOutput('y (engine-built freqs)', withOwnTable, ref, 1e-5)];
  },
});

registerKind({
  kind: 'op.sinusoidal_embedding_1d',
  description: 'timestep embedding cat(cos, sin): host float64 path (1e-6) and GPU f32 path (2e-4)',
  async run(e, fx) {
    const dim = fx.config.dim ?? 256;
    const checks = [];
    for (const [pos, name] of [
      [fx.input('pos_int').int(), 'int'],
      [fx.input('pos_float').f32(), 'float'],
    ] as const) {
      const host = await sinusoidalEmbedding(e, pos, dim).toArray();
      const gpu = await sinusoidalEmbeddingGpu(e, e.upload(Float32Array.from(pos), [pos.length]), dim).toArray();
      for (const out of [`emb_${name}_f64`, `emb_${name}`]) {
        const ref = fx.output(out).f64();
        checks.push(compareOutput(out, host, ref, 1e-6));
        checks.push(compareOutput(`${out} (GPU f32 path)`, gpu, ref, 2e-4));
      }
    }
    return checks;
  },
});
