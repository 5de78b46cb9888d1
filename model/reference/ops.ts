// Fixture kinds of single ops (`op.*`): each feeds the fixture's inputs to one engine op.
import { ops } from '../../engine/index.ts';
import { compareOutput } from './compare.ts';
import { registerKind } from './registry.ts';

registerKind({
  kind: 'op.silu',
  description: 'SiLU activation',
  async run(e, fx) {
    const x = fx.input('x');
    const y = ops.silu(e, e.upload(x.f32(), x.shape));
    return [compareOutput('y', await y.toArray(), fx.output('y').f64(), 1e-5)];
  },
});

registerKind({
  kind: 'op.gelu_tanh',
  description: 'GELU, tanh approximation (DiT FFN and umT5 gated FFN)',
  async run(e, fx) {
    const x = fx.input('x');
    const y = await ops.geluTanh(e, e.upload(x.f32(), x.shape)).toArray();
    // y (nn.GELU) and y_t5 (t5.GELU's explicit formula) are the same function.
    return [compareOutput('y', y, fx.output('y').f64(), 1e-5), compareOutput('y_t5', y, fx.output('y_t5').f64(), 1e-5)];
  },
});
