// Fixture kinds of the conv and layout ops: the DiT patch embedding and unpatchify, and the Wan2.2 VAE
// patchify and shortcut resamplers (AvgDown3D, DupUp3D).
import type { Engine } from '../../engine/index.ts';
import type { Fixture } from '../../loaders/fixture.ts';
import { conv3d } from '../../engine/ops/conv3d.ts';
import { channelsToTokens, ditUnpatchify, vaePatchify, vaeUnpatchify } from '../../engine/ops/layout.ts';
import { vaeAvgDown3d, vaeDupUp3d } from '../../engine/ops/vae.ts';
import { compareOutput, type OutputCheck } from './compare.ts';
import { registerKind } from './registry.ts';

const f32In = (e: Engine, fx: Fixture, name: string) => {
  const t = fx.input(name);
  return e.upload(t.f32(), t.shape, 'f32', name);
};

registerKind({
  kind: 'op.patch_embedding',
  description: 'DiT patch embedding: Conv3d kernel = stride = patch on x (bf16 weight), then flatten to tokens',
  async run(e, fx) {
    const wb = fx.input('weight_bf16');
    if (wb.dtype !== 'BF16') throw new Error(`weight_bf16 is ${wb.dtype}, expected BF16`);
    const weight = e.uploadBytes(wb.raw, wb.shape, 'bf16', 'weight_bf16');
    const stride = fx.config.stride as [number, number, number];
    const y = conv3d(e, f32In(e, fx, 'x'), weight, { bias: f32In(e, fx, 'bias'), stride });
    const tokens = channelsToTokens(e, y);
    return [
      compareOutput('conv', await y.toArray(), fx.output('conv').f64(), 1e-5),
      compareOutput('tokens', await tokens.toArray(), fx.output('tokens').f64(), 1e-5),
    ];
  },
});

registerKind({
  kind: 'op.unpatchify',
  description: 'WanModel.unpatchify: head output [L, prod(patch)*C] -> [C, F*pt, H*ph, W*pw], channel fastest',
  async run(e, fx) {
    const grid = fx.config.grid as [number, number, number];
    const patch = fx.config.patch as [number, number, number];
    const y = ditUnpatchify(e, f32In(e, fx, 'x'), grid, patch);
    return [compareOutput('y', await y.toArray(), fx.output('y').f64(), 0, 'exact')];
  },
});

registerKind({
  kind: 'op.vae_patchify',
  description: 'Wan2.2 VAE patchify / unpatchify (space-to-depth, column offset before row offset)',
  async run(e, fx) {
    const p = fx.config.patch_size as number;
    const x4 = fx.input('x4d');
    const checks: OutputCheck[] = [];
    checks.push(compareOutput('patchify', await vaePatchify(e, f32In(e, fx, 'x'), p).toArray(), fx.output('patchify').f64(), 0, 'exact'));
    // The 4-D case is [B=1, C, H, W]: drop the batch so that it reads as one image.
    const img = e.upload(x4.f32(), x4.shape.slice(1), 'f32', 'x4d');
    checks.push(compareOutput('patchify_4d', await vaePatchify(e, img, p).toArray(), fx.output('patchify_4d').f64(), 0, 'exact'));
    checks.push(compareOutput('unpatchify', await vaeUnpatchify(e, f32In(e, fx, 'y'), p).toArray(), fx.output('unpatchify').f64(), 0, 'exact'));
    return checks;
  },
});

interface ResampleCase {
  in_channels: number;
  out_channels: number;
  factor_t: number;
  factor_s: number;
  first_chunk?: boolean;
  input: string;
  output: string;
}

registerKind({
  kind: 'op.vae_avg_down3d',
  description: 'Wan2.2 VAE AvgDown3D shortcut (front zero padding in time, grouped channel mean)',
  async run(e, fx) {
    const checks: OutputCheck[] = [];
    for (const c of fx.config.cases as ResampleCase[]) {
      const y = vaeAvgDown3d(e, f32In(e, fx, c.input), { outChannels: c.out_channels, factorT: c.factor_t, factorS: c.factor_s });
      checks.push(compareOutput(c.output, await y.toArray(), fx.output(c.output).f64(), 1e-6, 'exact'));
    }
    return checks;
  },
});

registerKind({
  kind: 'op.vae_dup_up3d',
  description: 'Wan2.2 VAE DupUp3D shortcut (channel repeat, depth-to-space, first-chunk frame drop)',
  async run(e, fx) {
    const checks: OutputCheck[] = [];
    for (const c of fx.config.cases as ResampleCase[]) {
      const y = vaeDupUp3d(e, f32In(e, fx, c.input), { outChannels: c.out_channels, factorT: c.factor_t, factorS: c.factor_s, firstChunk: c.first_chunk ?? false });
      checks.push(compareOutput(c.output, await y.toArray(), fx.output(c.output).f64(), 1e-6, 'exact'));
    }
    return checks;
  },
});
