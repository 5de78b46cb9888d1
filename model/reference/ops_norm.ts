// Fixture kinds of the normalisations: op.layer_norm (WanLayerNorm with and without affine) and
// op.rms_norm (WanRMSNorm and T5LayerNorm).
import { layerNorm, layerNormModulate, rmsNorm } from '../../engine/ops/norm.ts';
import { compareOutput } from './compare.ts';
import { registerKind } from './registry.ts';

registerKind({
  kind: 'op.layer_norm',
  description: 'LayerNorm over the last dim (eps 1e-6, biased variance), without and with affine',
  async run(e, fx) {
    const x = fx.input('x');
    const eps = fx.config.eps ?? 1e-6;
    const xt = e.upload(x.f32(), x.shape);
    const weight = e.upload(fx.input('weight').f32(), fx.input('weight').shape);
    const bias = e.upload(fx.input('bias').f32(), fx.input('bias').shape);
    const C = x.shape[x.shape.length - 1];
    // The fused DiT path with shift = scale = 0 must reproduce the plain norm.
    const zeros = e.upload(new Float32Array(C), [1, 1, C]);
    const noAffine = fx.output('y_noaffine').f64();
    return [
      compareOutput('y_noaffine', await layerNorm(e, xt, { eps }).toArray(), noAffine, 1e-5),
      compareOutput('y_affine', await layerNorm(e, xt, { weight, bias, eps }).toArray(), fx.output('y_affine').f64(), 1e-5),
      compareOutput('y_noaffine (layerNormModulate, zero shift/scale)', await layerNormModulate(e, xt, zeros, zeros, { eps }).toArray(), noAffine, 1e-5),
    ];
  },
});

registerKind({
  kind: 'op.rms_norm',
  description: 'RMS norm over the last dim: x * rsqrt(mean(x^2) + eps) * weight (WanRMSNorm, T5LayerNorm)',
  async run(e, fx) {
    const x = fx.input('x');
    const eps = fx.config.eps ?? 1e-6;
    const weight = e.upload(fx.input('weight').f32(), fx.input('weight').shape);
    const y = await rmsNorm(e, e.upload(x.f32(), x.shape), weight, { eps }).toArray();
    // WanRMSNorm and T5LayerNorm are the same formula at the same eps.
    return [compareOutput('y', y, fx.output('y').f64(), 1e-5), compareOutput('y_t5', y, fx.output('y_t5').f64(), 1e-5)];
  },
});
