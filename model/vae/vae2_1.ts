// Wan2.1 VAE structure (wan/modules/vae2_1.py): the encoder's `downsamples` and the decoder's
// `upsamples` are flat lists of ResidualBlock / AttentionBlock / Resample, traced one by one
// (`encoder.downsamples.<i>`). Every width comes from the checkpoint; in the decoder the upsample
// Resample conv halves the channels and the next stage starts from that halved width.
import { AttentionBlock, Coder, Resample, ResidualBlock, type Stage, type VaeModule } from './blocks.ts';
import type { VaeWeights } from './weights.ts';

/** Indices i with some key `<prefix>.<i>.*`, in order (they must be 0..n-1). */
export function moduleIndices(W: VaeWeights, prefix: string): number[] {
  const found = new Set<number>();
  const head = `${prefix}.`;
  for (const n of W.src.names()) {
    if (!n.startsWith(head)) continue;
    const i = Number(n.slice(head.length).split('.')[0]);
    if (Number.isInteger(i) && i >= 0) found.add(i);
  }
  const list = [...found].sort((a, b) => a - b);
  list.forEach((v, k) => {
    if (v !== k) throw new Error(`${W.src.path}: "${prefix}" has module ${v} but no module ${k}`);
  });
  return list;
}

/** One entry of a flat down/up list, recognised by its keys. */
export async function loadListModule(W: VaeWeights, prefix: string, direction: 'down' | 'up'): Promise<VaeModule> {
  if (W.has(`${prefix}.residual.0.gamma`)) return ResidualBlock.load(W, prefix);
  if (W.has(`${prefix}.to_qkv.weight`)) return AttentionBlock.load(W, prefix);
  if (W.has(`${prefix}.resample.1.weight`)) return Resample.load(W, prefix, direction);
  throw new Error(`${W.src.path}: "${prefix}" is neither a residual block, an attention block nor a resample`);
}

export async function loadCoder21(W: VaeWeights, prefix: 'encoder' | 'decoder'): Promise<Coder> {
  const list = prefix === 'encoder' ? 'downsamples' : 'upsamples';
  const stages: Stage[] = [];
  for (const i of moduleIndices(W, `${prefix}.${list}`)) {
    stages.push({ name: `${list}.${i}`, module: await loadListModule(W, `${prefix}.${list}.${i}`, prefix === 'encoder' ? 'down' : 'up') });
  }
  if (stages.length === 0) throw new Error(`${W.src.path}: no ${prefix}.${list} modules (is this a Wan2.1 VAE?)`);
  const c = await Coder.loadCommon(W, prefix);
  const coder = new Coder(prefix, c.conv1, stages, c.middle, c.headGamma, c.head);
  coder.validate(W.src.path);
  return coder;
}
