// Fixture kind of the linear layer (`op.linear`): nn.Linear with a bf16 weight, run through
// engine linear() with the weight kept in bf16 on the device (as the DiT stores its weights).
import { linear } from '../../engine/ops/matmul.ts';
import { compareOutput } from './compare.ts';
import { registerKind } from './registry.ts';

registerKind({
  kind: 'op.linear',
  description: 'nn.Linear y = x Wᵀ + b, bf16 weight stored as bf16 on the device',
  async run(e, fx) {
    const x = fx.input('x');
    const wb = fx.input('weight_bf16');
    if (wb.dtype !== 'BF16') throw new Error(`op.linear: in.weight_bf16 is ${wb.dtype}, expected BF16`);
    // safetensors BF16 is little-endian 16-bit words: exactly the engine's packed bf16 layout.
    const w = e.uploadBytes(wb.raw, wb.shape, 'bf16', 'weight');
    const bias = fx.has('in', 'bias') ? e.upload(fx.input('bias').f32(), fx.input('bias').shape, 'f32', 'bias') : undefined;
    if (fx.config.bias !== undefined && Boolean(fx.config.bias) !== (bias !== undefined)) {
      throw new Error(`op.linear: config.bias = ${fx.config.bias} but in.bias is ${bias ? 'present' : 'absent'}`);
    }
    const y = linear(e, e.upload(x.f32(), x.shape, 'f32', 'x'), w, { bias });
    return [compareOutput('y', await y.toArray(), fx.output('y').f64(), 1e-5)];
  },
});
