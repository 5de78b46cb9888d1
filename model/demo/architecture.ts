// Tensor lists (official state dict names, shapes and order) of the three Wan checkpoints, for any
// width: WanModel (wan/modules/model.py), the umT5 encoder (wan/modules/t5.py, shared_pos=False)
// and the Wan2.1 / Wan2.2 VAEs (wan/modules/vae2_1.py, vae2_2.py), each with the initial value
// distribution the demo checkpoint draws from. The order is the modules' registration order, as
// `model.state_dict()` yields it.
//
// Initialisation (our choice, not the official one: the official WanModel zeroes its head, which
// would make every prediction 0): weights xavier-normal, std = sqrt(2 / (fan_in + fan_out)) with
// the kernel volume counted in both fans; biases N(0, 0.02); norm weights / gammas 1 + N(0, 0.05);
// norm biases N(0, 0.02); AdaLN modulation tables N(0, 1/dim) (as official); the umT5 token
// embedding N(0, 1) and its relative position tables N(0, 0.1).
import type { Init } from './synthetic.ts';

export interface TensorSpec {
  name: string;
  shape: number[];
  init: Init;
}

const BIAS: Init = { mean: 0, std: 0.02 };
const NORM: Init = { mean: 1, std: 0.05 };

function xavier(shape: readonly number[]): Init {
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  const fanOut = shape[0]! * receptive;
  const fanIn = (shape[1] ?? 1) * receptive;
  return { mean: 0, std: Math.sqrt(2 / (fanIn + fanOut)) };
}

class SpecList {
  readonly list: TensorSpec[] = [];

  add(name: string, shape: number[], init: Init): void {
    this.list.push({ name, shape, init });
  }

  /** nn.Linear / nn.ConvNd weight [out, in, ...kernel] (xavier) and its bias. */
  layer(prefix: string, shape: number[], bias = true): void {
    this.add(`${prefix}.weight`, shape, xavier(shape));
    if (bias) this.add(`${prefix}.bias`, [shape[0]!], BIAS);
  }
}

// ---------------------------------------------------------------------------------------------
// WanModel

export interface DitArch {
  modelType: 't2v' | 'i2v' | 'ti2v';
  dim: number;
  ffnDim: number;
  freqDim: number;
  textDim: number;
  inDim: number;
  outDim: number;
  numHeads: number;
  numLayers: number;
  textLen: number;
  eps: number;
  patch: [number, number, number];
}

/** WanModel with qk_norm and cross_attn_norm (as every Wan2.2 model); norm1 / norm2 have no affine. */
export function ditTensors(a: DitArch): TensorSpec[] {
  const s = new SpecList();
  const C = a.dim;
  s.layer('patch_embedding', [C, a.inDim, ...a.patch]);
  s.layer('text_embedding.0', [C, a.textDim]);
  s.layer('text_embedding.2', [C, C]);
  s.layer('time_embedding.0', [C, a.freqDim]);
  s.layer('time_embedding.2', [C, C]);
  s.layer('time_projection.1', [6 * C, C]);
  for (let i = 0; i < a.numLayers; i++) {
    const p = `blocks.${i}`;
    for (const attn of ['self_attn', 'cross_attn']) {
      for (const x of ['q', 'k', 'v', 'o']) s.layer(`${p}.${attn}.${x}`, [C, C]);
      s.add(`${p}.${attn}.norm_q.weight`, [C], NORM);
      s.add(`${p}.${attn}.norm_k.weight`, [C], NORM);
      if (attn === 'self_attn') {
        // norm3 (the cross-attention LayerNorm) is registered between the two attentions.
        s.add(`${p}.norm3.weight`, [C], NORM);
        s.add(`${p}.norm3.bias`, [C], BIAS);
      }
    }
    s.layer(`${p}.ffn.0`, [a.ffnDim, C]);
    s.layer(`${p}.ffn.2`, [C, a.ffnDim]);
    s.add(`${p}.modulation`, [1, 6, C], { mean: 0, std: 1 / Math.sqrt(C) });
  }
  s.layer('head.head', [a.outDim * a.patch[0] * a.patch[1] * a.patch[2], C]);
  s.add('head.modulation', [1, 2, C], { mean: 0, std: 1 / Math.sqrt(C) });
  return s.list;
}

/** config.json of a WanModel folder, with the keys the official (diffusers ModelMixin) file has. */
export function ditConfigJson(a: DitArch): Record<string, unknown> {
  return {
    _class_name: 'WanModel',
    _diffusers_version: '0.33.0',
    dim: a.dim,
    eps: a.eps,
    ffn_dim: a.ffnDim,
    freq_dim: a.freqDim,
    in_dim: a.inDim,
    model_type: a.modelType,
    num_heads: a.numHeads,
    num_layers: a.numLayers,
    out_dim: a.outDim,
    text_len: a.textLen,
  };
}

// ---------------------------------------------------------------------------------------------
// umT5 encoder

export interface T5Arch {
  vocab: number;
  dim: number;
  dimAttn: number;
  dimFfn: number;
  numHeads: number;
  numLayers: number;
  numBuckets: number;
}

export function t5Tensors(a: T5Arch): TensorSpec[] {
  const s = new SpecList();
  s.add('token_embedding.weight', [a.vocab, a.dim], { mean: 0, std: 1 });
  for (let i = 0; i < a.numLayers; i++) {
    const p = `blocks.${i}`;
    s.add(`${p}.norm1.weight`, [a.dim], NORM);
    s.layer(`${p}.attn.q`, [a.dimAttn, a.dim], false);
    s.layer(`${p}.attn.k`, [a.dimAttn, a.dim], false);
    s.layer(`${p}.attn.v`, [a.dimAttn, a.dim], false);
    s.layer(`${p}.attn.o`, [a.dim, a.dimAttn], false);
    s.add(`${p}.norm2.weight`, [a.dim], NORM);
    s.layer(`${p}.ffn.gate.0`, [a.dimFfn, a.dim], false);
    s.layer(`${p}.ffn.fc1`, [a.dimFfn, a.dim], false);
    s.layer(`${p}.ffn.fc2`, [a.dim, a.dimFfn], false);
    s.add(`${p}.pos_embedding.embedding.weight`, [a.numBuckets, a.numHeads], { mean: 0, std: 0.1 });
  }
  s.add('norm.weight', [a.dim], NORM);
  return s.list;
}

// ---------------------------------------------------------------------------------------------
// VAEs (shared pieces: RMS_norm gammas have no bias; CausalConv3d / Conv2d have biases)

export interface VaeArch {
  version: '2.1' | '2.2';
  /** Encoder base width (official 96 for 2.1, 160 for 2.2). */
  dim: number;
  /** Decoder base width (2.2 only, official 256; 2.1 uses dim). */
  decDim?: number;
  zDim: number;
  dimMult: number[];
  numResBlocks: number;
  temperalDownsample: boolean[];
}

function residual(s: SpecList, p: string, cin: number, cout: number): void {
  s.add(`${p}.residual.0.gamma`, [cin, 1, 1, 1], NORM);
  s.layer(`${p}.residual.2`, [cout, cin, 3, 3, 3]);
  s.add(`${p}.residual.3.gamma`, [cout, 1, 1, 1], NORM);
  s.layer(`${p}.residual.6`, [cout, cout, 3, 3, 3]);
  if (cin !== cout) s.layer(`${p}.shortcut`, [cout, cin, 1, 1, 1]);
}

function attention(s: SpecList, p: string, c: number): void {
  s.add(`${p}.norm.gamma`, [c, 1, 1], NORM);
  s.layer(`${p}.to_qkv`, [3 * c, c, 1, 1]);
  s.layer(`${p}.proj`, [c, c, 1, 1]);
}

function middle(s: SpecList, p: string, c: number): void {
  residual(s, `${p}.middle.0`, c, c);
  attention(s, `${p}.middle.1`, c);
  residual(s, `${p}.middle.2`, c, c);
}

/** Resample: 2-D conv, then (3-D modes) the time conv. Wan2.1's upsample conv halves the width. */
function resample(s: SpecList, p: string, c: number, mode: 'down2d' | 'down3d' | 'up2d' | 'up3d', version: '2.1' | '2.2'): void {
  const up = mode.startsWith('up');
  const out = up && version === '2.1' ? c / 2 : c;
  s.layer(`${p}.resample.1`, [out, c, 3, 3]);
  if (mode === 'down3d') s.layer(`${p}.time_conv`, [c, c, 3, 1, 1]);
  if (mode === 'up3d') s.layer(`${p}.time_conv`, [2 * c, c, 3, 1, 1]);
}

export function vaeTensors(a: VaeArch): TensorSpec[] {
  const s = new SpecList();
  const v = a.version;
  const inCh = v === '2.2' ? 12 : 3; // 2.2 patchifies 2x2 around the network
  const stages = a.dimMult.length;
  const tDown = (i: number) => a.temperalDownsample[i] ?? false;

  // encoder
  const enc = [1, ...a.dimMult].map((u) => a.dim * u);
  s.layer('encoder.conv1', [enc[0]!, inCh, 3, 3, 3]);
  let k = 0;
  for (let i = 0; i < stages; i++) {
    let cin = enc[i]!;
    const cout = enc[i + 1]!;
    const last = i === stages - 1;
    for (let r = 0; r < a.numResBlocks; r++) {
      residual(s, v === '2.1' ? `encoder.downsamples.${k++}` : `encoder.downsamples.${i}.downsamples.${r}`, cin, cout);
      cin = cout;
    }
    if (!last) resample(s, v === '2.1' ? `encoder.downsamples.${k++}` : `encoder.downsamples.${i}.downsamples.${a.numResBlocks}`, cout, tDown(i) ? 'down3d' : 'down2d', v);
  }
  const top = enc[stages]!;
  middle(s, 'encoder', top);
  s.add('encoder.head.0.gamma', [top, 1, 1, 1], NORM);
  s.layer('encoder.head.2', [2 * a.zDim, top, 3, 3, 3]);

  // latent 1x1x1 convs
  s.layer('conv1', [2 * a.zDim, 2 * a.zDim, 1, 1, 1]);
  s.layer('conv2', [a.zDim, a.zDim, 1, 1, 1]);

  // decoder (temporal upsampling mirrors the encoder's downsampling)
  const base = v === '2.2' ? (a.decDim ?? a.dim) : a.dim;
  const rev = [...a.dimMult].reverse();
  const dec = [a.dimMult[stages - 1]!, ...rev].map((u) => base * u);
  const tUp = [...a.temperalDownsample].reverse();
  s.layer('decoder.conv1', [dec[0]!, a.zDim, 3, 3, 3]);
  middle(s, 'decoder', dec[0]!);
  k = 0;
  for (let i = 0; i < stages; i++) {
    // Wan2.1: the previous stage's upsample conv halved the width.
    let cin = v === '2.1' && i > 0 ? dec[i]! / 2 : dec[i]!;
    const cout = dec[i + 1]!;
    const last = i === stages - 1;
    for (let r = 0; r <= a.numResBlocks; r++) {
      residual(s, v === '2.1' ? `decoder.upsamples.${k++}` : `decoder.upsamples.${i}.upsamples.${r}`, cin, cout);
      cin = cout;
    }
    if (!last) resample(s, v === '2.1' ? `decoder.upsamples.${k++}` : `decoder.upsamples.${i}.upsamples.${a.numResBlocks + 1}`, cout, tUp[i] ? 'up3d' : 'up2d', v);
  }
  const bottom = dec[stages]!;
  s.add('decoder.head.0.gamma', [bottom, 1, 1, 1], NORM);
  s.layer('decoder.head.2', [inCh, bottom, 3, 3, 3]);
  return s.list;
}
