// Wan2.2 VAE structure (wan/modules/vae2_2.py): each encoder stage is a Down_ResidualBlock (residual
// blocks, an optional Resample, plus an AvgDown3D shortcut of the stage input), each decoder stage an
// Up_ResidualBlock (residual blocks, an optional Resample, plus a DupUp3D shortcut only when the
// stage upsamples). Stages are traced as `encoder.downsamples.<s>` / `decoder.upsamples.<s>`.
// Widths come from the checkpoint (the decoder is wider than the encoder); Resample keeps the width.
import { Tensor } from '../../engine/index.ts';
import { vaeAvgDown3d, vaeDupUp3d } from '../../engine/ops/vae.ts';
import { Coder, Resample, type Pass, type Stage, type VaeModule } from './blocks.ts';
import { loadListModule, moduleIndices } from './vae2_1.ts';
import type { VaeWeights } from './weights.ts';

/** Runs modules in order; intermediates are freed, x is not. */
function chain(p: Pass, modules: VaeModule[], x: Tensor): Tensor {
  let y = x;
  for (const m of modules) {
    const next = m.forward(p, y);
    if (y !== x) y.dispose();
    y = next;
  }
  return y;
}

interface Factors {
  factorT: number;
  factorS: number;
}

/** Time / space factors of a stage from its Resample (none: 1, 1). */
function stageFactors(modules: VaeModule[]): Factors {
  const r = modules.find((m): m is Resample => m instanceof Resample);
  return { factorT: r?.timeConv ? 2 : 1, factorS: r ? 2 : 1 };
}

/** Down_ResidualBlock: chain(x) + AvgDown3D(x). */
export class DownBlock implements VaeModule {
  readonly factors: Factors;

  constructor(readonly modules: VaeModule[]) {
    this.factors = stageFactors(modules);
  }

  get inChannels(): number {
    return this.modules[0].inChannels;
  }

  get outChannels(): number {
    return this.modules[this.modules.length - 1].outChannels;
  }

  forward(p: Pass, x: Tensor): Tensor {
    const y = chain(p, this.modules, x);
    return vaeAvgDown3d(p.e, x, { outChannels: this.outChannels, ...this.factors, addTo: y });
  }
}

/** Up_ResidualBlock: chain(x) (+ DupUp3D(x) when the stage upsamples; latent frame 0 drops frames). */
export class UpBlock implements VaeModule {
  readonly factors: Factors;

  constructor(readonly modules: VaeModule[]) {
    this.factors = stageFactors(modules);
  }

  get inChannels(): number {
    return this.modules[0].inChannels;
  }

  get outChannels(): number {
    return this.modules[this.modules.length - 1].outChannels;
  }

  forward(p: Pass, x: Tensor): Tensor {
    const y = chain(p, this.modules, x);
    if (this.factors.factorS === 1) return y;
    return vaeDupUp3d(p.e, x, { outChannels: this.outChannels, ...this.factors, firstChunk: p.firstChunk, addTo: y });
  }
}

export async function loadCoder22(W: VaeWeights, prefix: 'encoder' | 'decoder'): Promise<Coder> {
  const list = prefix === 'encoder' ? 'downsamples' : 'upsamples';
  const direction = prefix === 'encoder' ? 'down' : 'up';
  const stages: Stage[] = [];
  for (const s of moduleIndices(W, `${prefix}.${list}`)) {
    const base = `${prefix}.${list}.${s}.${list}`;
    const modules: VaeModule[] = [];
    for (const j of moduleIndices(W, base)) modules.push(await loadListModule(W, `${base}.${j}`, direction));
    if (modules.length === 0) throw new Error(`${W.src.path}: "${prefix}.${list}.${s}" has no ${list} (is this a Wan2.2 VAE?)`);
    stages.push({ name: `${list}.${s}`, module: prefix === 'encoder' ? new DownBlock(modules) : new UpBlock(modules) });
  }
  if (stages.length === 0) throw new Error(`${W.src.path}: no ${prefix}.${list} stages (is this a Wan2.2 VAE?)`);
  const c = await Coder.loadCommon(W, prefix);
  const coder = new Coder(prefix, c.conv1, stages, c.middle, c.headGamma, c.head);
  coder.validate(W.src.path);
  return coder;
}
