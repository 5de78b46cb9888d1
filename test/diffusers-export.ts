// Test helper: rewrites an official Wan2.2 checkpoint folder into the Diffusers layout, the way
// diffusers' scripts/convert_wan_to_diffusers.py + save_pretrained would (ordered substring renames for
// the transformer, hard-coded block arithmetic for the VAEs, HF UMT5 names for the text encoder).
// Written independently of loaders/diffusers.ts (which maps the other way) so the round trip tests it.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openRawTensorSource } from '../loaders/open.ts';
import { serializeSafetensors, type StTensorData } from '../loaders/safetensors.ts';
import type { TensorSource } from '../loaders/source.ts';
import { taskSpec, type TaskName } from '../model/pipelines/tasks.ts';

// Applied in order to every key, as the conversion script does (norm2/norm3 swap through a placeholder).
const TRANSFORMER_RENAMES: [string, string][] = [
  ['time_embedding.0', 'condition_embedder.time_embedder.linear_1'],
  ['time_embedding.2', 'condition_embedder.time_embedder.linear_2'],
  ['text_embedding.0', 'condition_embedder.text_embedder.linear_1'],
  ['text_embedding.2', 'condition_embedder.text_embedder.linear_2'],
  ['time_projection.1', 'condition_embedder.time_proj'],
  ['head.modulation', 'scale_shift_table'],
  ['head.head', 'proj_out'],
  ['modulation', 'scale_shift_table'],
  ['ffn.0', 'ffn.net.0.proj'],
  ['ffn.2', 'ffn.net.2'],
  ['norm2', 'norm__placeholder'],
  ['norm3', 'norm2'],
  ['norm__placeholder', 'norm3'],
  ['self_attn.q', 'attn1.to_q'],
  ['self_attn.k', 'attn1.to_k'],
  ['self_attn.v', 'attn1.to_v'],
  ['self_attn.o', 'attn1.to_out.0'],
  ['self_attn.norm_q', 'attn1.norm_q'],
  ['self_attn.norm_k', 'attn1.norm_k'],
  ['cross_attn.q', 'attn2.to_q'],
  ['cross_attn.k', 'attn2.to_k'],
  ['cross_attn.v', 'attn2.to_v'],
  ['cross_attn.o', 'attn2.to_out.0'],
  ['cross_attn.norm_q', 'attn2.norm_q'],
  ['cross_attn.norm_k', 'attn2.norm_k'],
  // image keys: cross_attn.k_img became attn2.to_k_img above
  ['attn2.to_k_img', 'attn2.add_k_proj'],
  ['attn2.to_v_img', 'attn2.add_v_proj'],
  ['attn2.norm_k_img', 'attn2.norm_added_k'],
];

export function diffusersTransformerName(k: string): string {
  for (const [a, b] of TRANSFORMER_RENAMES) k = k.split(a).join(b);
  return k;
}

export function hfUmt5Name(k: string): string {
  if (k === 'token_embedding.weight') return 'shared.weight';
  if (k === 'norm.weight') return 'encoder.final_layer_norm.weight';
  const m = k.match(/^blocks\.(\d+)\.(.+)$/);
  if (!m) throw new Error(`no HF name for ${k}`);
  const b = `encoder.block.${m[1]}.layer.`;
  const table: Record<string, string> = {
    'norm1.weight': '0.layer_norm.weight',
    'attn.q.weight': '0.SelfAttention.q.weight',
    'attn.k.weight': '0.SelfAttention.k.weight',
    'attn.v.weight': '0.SelfAttention.v.weight',
    'attn.o.weight': '0.SelfAttention.o.weight',
    'pos_embedding.embedding.weight': '0.SelfAttention.relative_attention_bias.weight',
    'norm2.weight': '1.layer_norm.weight',
    'ffn.gate.0.weight': '1.DenseReluDense.wi_0.weight',
    'ffn.fc1.weight': '1.DenseReluDense.wi_1.weight',
    'ffn.fc2.weight': '1.DenseReluDense.wo.weight',
  };
  if (!table[m[2]]) throw new Error(`no HF name for ${k}`);
  return b + table[m[2]];
}

const RES: [string, string][] = [
  ['.residual.0.gamma', '.norm1.gamma'],
  ['.residual.2.', '.conv1.'],
  ['.residual.3.gamma', '.norm2.gamma'],
  ['.residual.6.', '.conv2.'],
  ['.shortcut.', '.conv_shortcut.'],
];
const res = (k: string) => RES.reduce((s, [a, b]) => s.replace(a, b), k);

/** Official VAE key -> AutoencoderKLWan key (the fixture VAEs: num_res_blocks 2, like the real ones). */
export function diffusersVaeName(k: string, version: '2.1' | '2.2'): string {
  const fixed: Record<string, string> = {
    'conv1.weight': 'quant_conv.weight', 'conv1.bias': 'quant_conv.bias',
    'conv2.weight': 'post_quant_conv.weight', 'conv2.bias': 'post_quant_conv.bias',
  };
  if (fixed[k]) return fixed[k];
  let m: RegExpMatchArray | null;
  if ((m = k.match(/^(encoder|decoder)\.conv1\.(.+)$/))) return `${m[1]}.conv_in.${m[2]}`;
  if ((m = k.match(/^(encoder|decoder)\.head\.0\.gamma$/))) return `${m[1]}.norm_out.gamma`;
  if ((m = k.match(/^(encoder|decoder)\.head\.2\.(.+)$/))) return `${m[1]}.conv_out.${m[2]}`;
  if ((m = k.match(/^(encoder|decoder)\.middle\.1\.(.+)$/))) return `${m[1]}.mid_block.attentions.0.${m[2]}`;
  if ((m = k.match(/^(encoder|decoder)\.middle\.([02])(\..+)$/))) return `${m[1]}.mid_block.resnets.${m[2] === '0' ? 0 : 1}${res(m[3])}`;
  if (version === '2.1') {
    if ((m = k.match(/^encoder\.downsamples\.(\d+)(\..+)$/))) return `encoder.down_blocks.${m[1]}${res(m[2])}`;
    if ((m = k.match(/^decoder\.upsamples\.(\d+)(\..+)$/))) {
      const i = Number(m[1]);
      const block = Math.floor(i / 4);
      // Three resnets then one upsampler per block (the last block has none).
      return i % 4 === 3 ? `decoder.up_blocks.${block}.upsamplers.0${m[2]}` : `decoder.up_blocks.${block}.resnets.${i % 4}${res(m[2])}`;
    }
  } else {
    if ((m = k.match(/^encoder\.downsamples\.(\d+)\.downsamples\.(\d+)(\..+)$/))) {
      return /resample|time_conv/.test(m[3]) ? `encoder.down_blocks.${m[1]}.downsampler${m[3]}` : `encoder.down_blocks.${m[1]}.resnets.${m[2]}${res(m[3])}`;
    }
    if ((m = k.match(/^decoder\.upsamples\.(\d+)\.upsamples\.(\d+)(\..+)$/))) {
      return /resample|time_conv/.test(m[3]) ? `decoder.up_blocks.${m[1]}.upsampler${m[3]}` : `decoder.up_blocks.${m[1]}.resnets.${m[2]}${res(m[3])}`;
    }
  }
  throw new Error(`no AutoencoderKLWan name for ${k}`);
}

async function readAll(src: TensorSource, rename: (k: string) => string): Promise<Record<string, StTensorData>> {
  const out: Record<string, StTensorData> = {};
  for (const k of src.names()) {
    const i = src.info(k);
    const bytes = i.shape.reduce((a, b) => a * b, 1) * ({ F32: 4, BF16: 2, F16: 2 } as Record<string, number>)[i.dtype]!;
    const name = rename(k);
    if (out[name]) throw new Error(`two tensors renamed to ${name}`);
    out[name] = { dtype: i.dtype, shape: i.shape, data: await src.readRange(k, 0, bytes) };
  }
  return out;
}

async function convertFile(file: string, rename: (k: string) => string): Promise<Record<string, StTensorData>> {
  const src = await openRawTensorSource(file);
  try {
    return await readAll(src, rename);
  } finally {
    await src.close();
  }
}

/** Writes tensors as `<stem>.safetensors`, or as `shards` shards plus `<stem>.safetensors.index.json`. */
function writeComponent(dir: string, stem: string, tensors: Record<string, StTensorData>, shards = 1): void {
  mkdirSync(dir, { recursive: true });
  if (shards === 1) {
    writeFileSync(join(dir, `${stem}.safetensors`), serializeSafetensors(tensors));
    return;
  }
  const names = Object.keys(tensors);
  const per = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = `${stem}-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = Object.fromEntries(names.slice(s * per, (s + 1) * per).map((n) => [n, tensors[n]]));
    for (const n of Object.keys(part)) weightMap[n] = file;
    writeFileSync(join(dir, file), serializeSafetensors(part));
  }
  writeFileSync(join(dir, `${stem}.safetensors.index.json`), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}

function transformerConfig(official: Record<string, number | string>): Record<string, unknown> {
  const heads = official.num_heads as number;
  return {
    _class_name: 'WanTransformer3DModel',
    _diffusers_version: '0.35.0',
    added_kv_proj_dim: null,
    attention_head_dim: (official.dim as number) / heads,
    cross_attn_norm: true,
    eps: official.eps,
    ffn_dim: official.ffn_dim,
    freq_dim: official.freq_dim,
    image_dim: null,
    in_channels: official.in_dim,
    num_attention_heads: heads,
    num_layers: official.num_layers,
    out_channels: official.out_dim,
    patch_size: [1, 2, 2],
    pos_embed_seq_len: null,
    qk_norm: 'rms_norm_across_heads',
    rope_max_seq_len: 1024,
    text_dim: 4096,
    // Not a diffusers field: the tiny fixture models keep their text_len (diffusers passes 512).
    text_len: official.text_len,
  };
}

/** Converts the official folder `src` (a pipeline fixture's ckpt/) of `task` into Diffusers layout at `dst`. */
export async function exportDiffusers(src: string, dst: string, task: TaskName, opts: { transformerShards?: number } = {}): Promise<void> {
  const spec = taskSpec(task);
  mkdirSync(dst, { recursive: true });
  const components: Record<string, unknown> = {
    scheduler: ['diffusers', 'UniPCMultistepScheduler'],
    text_encoder: ['transformers', 'UMT5EncoderModel'],
    tokenizer: ['transformers', 'T5TokenizerFast'],
    transformer: ['diffusers', 'WanTransformer3DModel'],
    transformer_2: spec.experts ? ['diffusers', 'WanTransformer3DModel'] : [null, null],
    vae: ['diffusers', 'AutoencoderKLWan'],
  };
  const index = {
    _class_name: spec.flavour === 'i2v' ? 'WanImageToVideoPipeline' : 'WanPipeline',
    _diffusers_version: '0.35.0',
    ...(spec.experts ? { boundary_ratio: spec.boundary } : {}),
    expand_timesteps: spec.flavour === 'ti2v',
    ...components,
  };
  writeFileSync(join(dst, 'model_index.json'), JSON.stringify(index, null, 1));

  const experts: [string, string][] = spec.experts ? [['high_noise_model', 'transformer'], ['low_noise_model', 'transformer_2']] : [['.', 'transformer']];
  for (const [from, to] of experts) {
    const dir = join(src, from);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    const indexPath = join(dir, 'diffusion_pytorch_model.safetensors.index.json');
    const weights = (() => {
      try {
        readFileSync(indexPath);
        return indexPath;
      } catch {
        return join(dir, 'diffusion_pytorch_model.safetensors');
      }
    })();
    const tensors = await convertFile(weights, diffusersTransformerName);
    writeComponent(join(dst, to), 'diffusion_pytorch_model', tensors, opts.transformerShards ?? 1);
    writeFileSync(join(dst, to, 'config.json'), JSON.stringify(transformerConfig(cfg), null, 1));
  }

  const t5 = await convertFile(join(src, 'models_t5_umt5-xxl-enc-bf16.pth'), hfUmt5Name);
  writeComponent(join(dst, 'text_encoder'), 'model', t5);
  const [vocab, dModel] = t5['shared.weight'].shape;
  const layers = Object.keys(t5).filter((k) => k.endsWith('SelfAttention.q.weight')).length;
  writeFileSync(join(dst, 'text_encoder', 'config.json'), JSON.stringify({
    architectures: ['UMT5EncoderModel'], model_type: 'umt5', d_model: dModel, vocab_size: vocab, num_layers: layers,
    d_ff: t5['encoder.block.0.layer.1.DenseReluDense.wi_0.weight'].shape[0],
    num_heads: t5['encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'].shape[1],
    relative_attention_num_buckets: t5['encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'].shape[0],
    feed_forward_proj: 'gated-gelu', torch_dtype: 'bfloat16',
  }, null, 1));

  mkdirSync(join(dst, 'tokenizer'), { recursive: true });
  for (const f of ['spiece.model', 'special_tokens_map.json', 'tokenizer_config.json']) copyFileSync(join(src, 'google', 'umt5-xxl', f), join(dst, 'tokenizer', f));

  const vae = await convertFile(join(src, spec.vaeFile), (k) => diffusersVaeName(k, spec.vae));
  writeComponent(join(dst, 'vae'), 'diffusion_pytorch_model', vae);
  writeFileSync(join(dst, 'vae', 'config.json'), JSON.stringify({
    _class_name: 'AutoencoderKLWan', z_dim: spec.zDim, is_residual: spec.vae === '2.2', in_channels: spec.vae === '2.2' ? 12 : 3,
  }, null, 1));

  mkdirSync(join(dst, 'scheduler'), { recursive: true });
  writeFileSync(join(dst, 'scheduler', 'scheduler_config.json'), JSON.stringify({
    _class_name: 'UniPCMultistepScheduler', flow_shift: spec.flavour === 'ti2v' ? 5.0 : 3.0, num_train_timesteps: 1000,
    prediction_type: 'flow_prediction', use_flow_sigmas: true,
  }, null, 1));
}
