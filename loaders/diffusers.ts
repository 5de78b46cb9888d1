// Diffusers checkpoints under the official Wan2.2 tensor names, so the model code only knows one
// naming. Three components are mapped (written from diffusers' scripts/convert_wan_to_diffusers.py,
// which renames official -> Diffusers, and HF transformers' UMT5EncoderModel module tree):
//
//   transformer/, transformer_2/  WanTransformer3DModel  -> WanModel (wan/modules/model.py)
//   text_encoder/                 UMT5EncoderModel (HF)   -> T5Encoder (wan/modules/t5.py)
//   vae/                          AutoencoderKLWan        -> WanVAE_ (2.1 flat lists, 2.2 nested stages)
//
// Every tensor keeps its bytes and shape: both layouts store the same tensors (scale_shift_table is
// [1, 6, dim] / [1, 2, dim] like `modulation`). Fused projections (attn.to_qkv, to_kv, to_added_kv,
// written by diffusers' fuse_projections if a fused model is saved) are split by rows: each part is a
// contiguous byte range of the fused tensor. A Diffusers name with no official counterpart is an
// error naming it, never silently dropped.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DTYPE_SIZE } from './safetensors.ts';
import type { TensorInfo, TensorSource } from './source.ts';

export type DiffusersComponent = 'transformer' | 'text_encoder' | 'vae';

/** Where an official tensor lives in the Diffusers file: a whole tensor or a row block of a fused one. */
export interface TensorAlias {
  /** Diffusers tensor name. */
  source: string;
  /** Byte offset inside the source tensor (non-zero for the later parts of a fused tensor). */
  byteOffset: number;
  shape: number[];
}

/** A TensorSource that shows another source's tensors under other names (and row blocks). */
export class RenamedSource implements TensorSource {
  readonly path: string;
  constructor(
    private inner: TensorSource,
    private aliases: ReadonlyMap<string, TensorAlias>,
    label: string,
    private nameInFile: (official: string) => string | null = () => null,
  ) {
    this.path = `${inner.path} (${label})`;
  }

  /** For "missing tensor" errors: the name the file would hold it under. */
  describeMissing(name: string): string {
    const d = this.nameInFile(name);
    return d ? `"${name}" (stored as "${d}" in the Diffusers layout)` : `"${name}"`;
  }

  names(): string[] {
    return [...this.aliases.keys()];
  }
  has(name: string): boolean {
    return this.aliases.has(name);
  }
  private alias(name: string): TensorAlias {
    const a = this.aliases.get(name);
    if (!a) throw new Error(`${this.path}: no tensor "${name}"`);
    return a;
  }
  info(name: string): TensorInfo {
    const a = this.alias(name);
    return { name, dtype: this.inner.info(a.source).dtype, shape: [...a.shape] };
  }
  /** The Diffusers name (and offset) an official name reads from, for error messages and tests. */
  sourceOf(name: string): TensorAlias {
    return this.alias(name);
  }
  async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    const a = this.alias(name);
    const bytes = a.shape.reduce((x, y) => x * y, 1) * DTYPE_SIZE[this.inner.info(a.source).dtype];
    if (offset < 0 || length < 0 || offset + length > bytes) {
      throw new Error(`${this.path}: range [${offset}, ${offset + length}) outside tensor "${name}" (${bytes} bytes)`);
    }
    return this.inner.readRange(a.source, a.byteOffset + offset, length);
  }
  async readInto(name: string, offset: number, dst: Uint8Array): Promise<void> {
    const a = this.alias(name);
    const bytes = a.shape.reduce((x, y) => x * y, 1) * DTYPE_SIZE[this.inner.info(a.source).dtype];
    if (offset < 0 || offset + dst.byteLength > bytes) {
      throw new Error(`${this.path}: range [${offset}, ${offset + dst.byteLength}) outside tensor "${name}" (${bytes} bytes)`);
    }
    if (this.inner.readInto) await this.inner.readInto(a.source, a.byteOffset + offset, dst);
    else dst.set(await this.inner.readRange(a.source, a.byteOffset + offset, dst.byteLength));
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** One mapped name: a whole tensor, or an n-way split of a fused tensor along its first axis. */
type Target = string | { split: string[] };

class AliasBuilder {
  readonly map = new Map<string, TensorAlias>();
  readonly unknown: string[] = [];
  constructor(private src: TensorSource) {}

  add(diffusersName: string, target: Target | null): void {
    if (target === null) {
      this.unknown.push(diffusersName);
      return;
    }
    const info = this.src.info(diffusersName);
    const parts = typeof target === 'string' ? [target] : target.split;
    const rows = info.shape[0] ?? 1;
    if (parts.length > 1 && (info.shape.length === 0 || rows % parts.length !== 0)) {
      throw new Error(`${this.src.path}: fused tensor "${diffusersName}" [${info.shape}] does not split into ${parts.length} equal row blocks`);
    }
    const partRows = rows / parts.length;
    const partBytes = (info.shape.reduce((x, y) => x * y, 1) / parts.length) * DTYPE_SIZE[info.dtype];
    parts.forEach((official, i) => {
      const prev = this.map.get(official);
      if (prev) throw new Error(`${this.src.path}: "${diffusersName}" and "${prev.source}" both map to "${official}"`);
      const shape = parts.length > 1 ? [partRows, ...info.shape.slice(1)] : [...info.shape];
      this.map.set(official, { source: diffusersName, byteOffset: i * partBytes, shape });
    });
  }

  finish(what: string): Map<string, TensorAlias> {
    if (this.unknown.length) {
      const shown = this.unknown.slice(0, 5).map((n) => `"${n}"`).join(', ');
      const more = this.unknown.length > 5 ? ` and ${this.unknown.length - 5} more` : '';
      throw new Error(`${this.src.path}: ${this.unknown.length} tensor(s) with no official ${what} name: ${shown}${more}`);
    }
    return this.map;
  }
}

// ---------------------------------------------------------------------------------------------
// WanTransformer3DModel -> WanModel

const ATTN = { attn1: 'self_attn', attn2: 'cross_attn' } as const;

function transformerBlockTarget(rest: string): Target | null {
  let m: RegExpMatchArray | null;
  if (rest === 'scale_shift_table') return 'modulation';
  // Diffusers orders the block norms self-attn, cross-attn, ffn (norm1, norm2, norm3); the official
  // model calls the cross-attention norm norm3. Only that one has parameters (the others are affine-free).
  if ((m = rest.match(/^norm2\.(weight|bias)$/))) return `norm3.${m[1]}`;
  if ((m = rest.match(/^ffn\.net\.0\.proj\.(weight|bias)$/))) return `ffn.0.${m[1]}`;
  if ((m = rest.match(/^ffn\.net\.2\.(weight|bias)$/))) return `ffn.2.${m[1]}`;
  if ((m = rest.match(/^(attn1|attn2)\.(.+)$/))) {
    const a = ATTN[m[1] as keyof typeof ATTN];
    const p = m[2];
    let n: RegExpMatchArray | null;
    if ((n = p.match(/^to_([qkv])\.(weight|bias)$/))) return `${a}.${n[1]}.${n[2]}`;
    if ((n = p.match(/^to_out\.0\.(weight|bias)$/))) return `${a}.o.${n[1]}`;
    if ((n = p.match(/^norm_([qk])\.weight$/))) return `${a}.norm_${n[1]}.weight`;
    if ((n = p.match(/^add_([kv])_proj\.(weight|bias)$/))) return `${a}.${n[1]}_img.${n[2]}`;
    if (p === 'norm_added_k.weight') return `${a}.norm_k_img.weight`;
    // Fused projections (diffusers' fuse_projections): rows are [q; k; v], [k; v], [k_img; v_img].
    if ((n = p.match(/^to_qkv\.(weight|bias)$/))) return { split: ['q', 'k', 'v'].map((x) => `${a}.${x}.${n![1]}`) };
    if ((n = p.match(/^to_kv\.(weight|bias)$/))) return { split: ['k', 'v'].map((x) => `${a}.${x}.${n![1]}`) };
    if ((n = p.match(/^to_added_kv\.(weight|bias)$/))) return { split: ['k_img', 'v_img'].map((x) => `${a}.${x}.${n![1]}`) };
  }
  return null;
}

export function transformerTarget(name: string): Target | null | 'ignore' {
  let m: RegExpMatchArray | null;
  if ((m = name.match(/^blocks\.(\d+)\.(.+)$/))) {
    // diffusers itself ignores a stray norm_added_q on load (_keys_to_ignore_on_load_unexpected).
    if (/^attn2\.norm_added_q\./.test(m[2])) return 'ignore';
    const t = transformerBlockTarget(m[2]);
    if (t === null) return null;
    const prefix = `blocks.${m[1]}.`;
    return typeof t === 'string' ? prefix + t : { split: t.split.map((s) => prefix + s) };
  }
  if ((m = name.match(/^patch_embedding\.(weight|bias)$/))) return name;
  if ((m = name.match(/^condition_embedder\.(time|text)_embedder\.linear_([12])\.(weight|bias)$/))) {
    return `${m[1]}_embedding.${m[2] === '1' ? 0 : 2}.${m[3]}`;
  }
  if ((m = name.match(/^condition_embedder\.time_proj\.(weight|bias)$/))) return `time_projection.1.${m[1]}`;
  if ((m = name.match(/^condition_embedder\.image_embedder\.(norm1|ff\.net\.0\.proj|ff\.net\.2|norm2)\.(weight|bias)$/))) {
    const idx = { norm1: 0, 'ff.net.0.proj': 1, 'ff.net.2': 3, norm2: 4 }[m[1]]!;
    return `img_emb.proj.${idx}.${m[2]}`;
  }
  if (name === 'condition_embedder.image_embedder.pos_embed') return 'img_emb.emb_pos';
  if (name === 'scale_shift_table') return 'head.modulation';
  if ((m = name.match(/^proj_out\.(weight|bias)$/))) return `head.head.${m[1]}`;
  return null;
}

/** Official WanModel name -> Diffusers name (whole tensors only; for error messages). */
export function transformerNameFor(official: string): string | null {
  let m: RegExpMatchArray | null;
  if ((m = official.match(/^blocks\.(\d+)\.(.+)$/))) {
    const p = m[2];
    let n: RegExpMatchArray | null;
    let d: string | null = null;
    if (p === 'modulation') d = 'scale_shift_table';
    else if ((n = p.match(/^norm3\.(weight|bias)$/))) d = `norm2.${n[1]}`;
    else if ((n = p.match(/^ffn\.0\.(weight|bias)$/))) d = `ffn.net.0.proj.${n[1]}`;
    else if ((n = p.match(/^ffn\.2\.(weight|bias)$/))) d = `ffn.net.2.${n[1]}`;
    else if ((n = p.match(/^(self_attn|cross_attn)\.(.+)$/))) {
      const a = n[1] === 'self_attn' ? 'attn1' : 'attn2';
      const q = n[2];
      let r: RegExpMatchArray | null;
      if ((r = q.match(/^([qkv])\.(weight|bias)$/))) d = `${a}.to_${r[1]}.${r[2]}`;
      else if ((r = q.match(/^o\.(weight|bias)$/))) d = `${a}.to_out.0.${r[1]}`;
      else if ((r = q.match(/^norm_([qk])\.weight$/))) d = `${a}.norm_${r[1]}.weight`;
      else if ((r = q.match(/^([kv])_img\.(weight|bias)$/))) d = `${a}.add_${r[1]}_proj.${r[2]}`;
      else if (q === 'norm_k_img.weight') d = `${a}.norm_added_k.weight`;
    }
    return d ? `blocks.${m[1]}.${d}` : null;
  }
  if ((m = official.match(/^(time|text)_embedding\.([02])\.(weight|bias)$/))) return `condition_embedder.${m[1]}_embedder.linear_${m[2] === '0' ? 1 : 2}.${m[3]}`;
  if ((m = official.match(/^time_projection\.1\.(weight|bias)$/))) return `condition_embedder.time_proj.${m[1]}`;
  if (official === 'head.modulation') return 'scale_shift_table';
  if ((m = official.match(/^head\.head\.(weight|bias)$/))) return `proj_out.${m[1]}`;
  if (/^patch_embedding\./.test(official)) return official;
  return null;
}

// ---------------------------------------------------------------------------------------------
// HF UMT5EncoderModel -> T5Encoder

export function textEncoderTarget(name: string): Target | null | 'ignore' {
  let m: RegExpMatchArray | null;
  if (name === 'shared.weight') return 'token_embedding.weight';
  // Tied to shared.weight: HF usually drops the copy on save; when both are present, shared wins.
  if (name === 'encoder.embed_tokens.weight') return 'ignore';
  if (name === 'encoder.final_layer_norm.weight') return 'norm.weight';
  if ((m = name.match(/^encoder\.block\.(\d+)\.layer\.([01])\.(.+)$/))) {
    const b = `blocks.${m[1]}.`;
    const p = m[3];
    let n: RegExpMatchArray | null;
    if (m[2] === '0') {
      if ((n = p.match(/^SelfAttention\.([qkvo])\.weight$/))) return `${b}attn.${n[1]}.weight`;
      // umT5: every layer has its own relative position bias (Wan: shared_pos=False).
      if (p === 'SelfAttention.relative_attention_bias.weight') return `${b}pos_embedding.embedding.weight`;
      if (p === 'layer_norm.weight') return `${b}norm1.weight`;
    } else {
      // T5DenseGatedActDense: act(wi_0(x)) * wi_1(x) -> wo; Wan's T5FeedForward: fc1(x) * gate(x) -> fc2.
      if (p === 'DenseReluDense.wi_0.weight') return `${b}ffn.gate.0.weight`;
      if (p === 'DenseReluDense.wi_1.weight') return `${b}ffn.fc1.weight`;
      if (p === 'DenseReluDense.wo.weight') return `${b}ffn.fc2.weight`;
      if (p === 'layer_norm.weight') return `${b}norm2.weight`;
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// AutoencoderKLWan -> WanVAE_

const RESNET_SUFFIX: [RegExp, string][] = [
  [/^norm1\.gamma$/, 'residual.0.gamma'],
  [/^conv1\.(weight|bias)$/, 'residual.2.$1'],
  [/^norm2\.gamma$/, 'residual.3.gamma'],
  [/^conv2\.(weight|bias)$/, 'residual.6.$1'],
  [/^conv_shortcut\.(weight|bias)$/, 'shortcut.$1'],
];

function resnetSuffix(s: string): string | null {
  for (const [re, out] of RESNET_SUFFIX) if (re.test(s)) return s.replace(re, out);
  return null;
}

/** Resample (up/down) parameters keep their official suffixes. */
function resampleSuffix(s: string): string | null {
  return /^(resample\.1|time_conv)\.(weight|bias)$/.test(s) ? s : null;
}

/**
 * The mapping depends on the block structure (how many resnets each stage has), so it is built over
 * the whole name list. Wan2.2's VAE (nested stages: down_blocks.X.resnets.Y) and Wan2.1's (flat
 * encoder list, decoder up_blocks.B.resnets.R + upsamplers.0 flattened in order) are told apart by name.
 */
export function vaeTargets(names: readonly string[]): Map<string, string | null> {
  const nested = names.some((n) => /^encoder\.down_blocks\.\d+\.resnets\./.test(n));
  // Resnets per stage, to place each stage's resample after them.
  const resnets = new Map<string, number>();
  for (const n of names) {
    const m = n.match(/^(encoder\.down_blocks|decoder\.up_blocks)\.(\d+)\.resnets\.(\d+)\./);
    if (m) {
      const k = `${m[1]}.${m[2]}`;
      resnets.set(k, Math.max(resnets.get(k) ?? 0, Number(m[3]) + 1));
    }
  }
  // Wan2.1 decoder: flat official index of each up block's first module.
  const upStart = new Map<number, number>();
  if (!nested) {
    const blocks = [...new Set(names.map((n) => n.match(/^decoder\.up_blocks\.(\d+)\./)?.[1]).filter((x) => x !== undefined).map(Number))].sort((a, b) => a - b);
    let at = 0;
    for (const b of blocks) {
      if (b !== upStart.size) throw new Error(`decoder.up_blocks.${upStart.size} is missing (found up_blocks.${b})`);
      upStart.set(b, at);
      at += (resnets.get(`decoder.up_blocks.${b}`) ?? 0) + (names.some((n) => n.startsWith(`decoder.up_blocks.${b}.upsamplers.0.`)) ? 1 : 0);
    }
  }
  const out = new Map<string, string | null>();
  for (const name of names) out.set(name, vaeTarget(name, nested, resnets, upStart));
  return out;
}

function vaeTarget(name: string, nested: boolean, resnets: Map<string, number>, upStart: Map<number, number>): string | null {
  let m: RegExpMatchArray | null;
  const suffixOr = (s: string | null, prefix: string) => (s === null ? null : prefix + s);
  if ((m = name.match(/^(post_quant_conv|quant_conv)\.(weight|bias)$/))) return `${m[1] === 'quant_conv' ? 'conv1' : 'conv2'}.${m[2]}`;
  if ((m = name.match(/^(encoder|decoder)\.(.+)$/))) {
    const c = m[1];
    const p = m[2];
    let n: RegExpMatchArray | null;
    if ((n = p.match(/^conv_in\.(weight|bias)$/))) return `${c}.conv1.${n[1]}`;
    if (p === 'norm_out.gamma') return `${c}.head.0.gamma`;
    if ((n = p.match(/^conv_out\.(weight|bias)$/))) return `${c}.head.2.${n[1]}`;
    if ((n = p.match(/^mid_block\.resnets\.([01])\.(.+)$/))) return suffixOr(resnetSuffix(n[2]), `${c}.middle.${n[1] === '0' ? 0 : 2}.`);
    if ((n = p.match(/^mid_block\.attentions\.0\.(norm\.gamma|to_qkv\.weight|to_qkv\.bias|proj\.weight|proj\.bias)$/))) return `${c}.middle.1.${n[1]}`;
    if (c === 'encoder' && (n = p.match(/^down_blocks\.(\d+)\.(.+)$/))) {
      const [x, rest] = [n[1], n[2]];
      if (!nested) return resnetSuffix(rest) !== null ? `encoder.downsamples.${x}.${resnetSuffix(rest)}` : suffixOr(resampleSuffix(rest), `encoder.downsamples.${x}.`);
      let r: RegExpMatchArray | null;
      if ((r = rest.match(/^resnets\.(\d+)\.(.+)$/))) return suffixOr(resnetSuffix(r[2]), `encoder.downsamples.${x}.downsamples.${r[1]}.`);
      if ((r = rest.match(/^downsampler\.(.+)$/))) return suffixOr(resampleSuffix(r[1]), `encoder.downsamples.${x}.downsamples.${resnets.get(`encoder.down_blocks.${x}`) ?? 0}.`);
      return null;
    }
    if (c === 'decoder' && (n = p.match(/^up_blocks\.(\d+)\.(.+)$/))) {
      const x = Number(n[1]);
      const rest = n[2];
      const count = resnets.get(`decoder.up_blocks.${x}`) ?? 0;
      let r: RegExpMatchArray | null;
      if (nested) {
        if ((r = rest.match(/^resnets\.(\d+)\.(.+)$/))) return suffixOr(resnetSuffix(r[2]), `decoder.upsamples.${x}.upsamples.${r[1]}.`);
        if ((r = rest.match(/^upsampler\.(.+)$/))) return suffixOr(resampleSuffix(r[1]), `decoder.upsamples.${x}.upsamples.${count}.`);
        return null;
      }
      const start = upStart.get(x)!;
      if ((r = rest.match(/^resnets\.(\d+)\.(.+)$/))) return suffixOr(resnetSuffix(r[2]), `decoder.upsamples.${start + Number(r[1])}.`);
      if ((r = rest.match(/^upsamplers\.0\.(.+)$/))) return suffixOr(resampleSuffix(r[1]), `decoder.upsamples.${start + count}.`);
      return null;
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------

const WHAT: Record<DiffusersComponent, string> = { transformer: 'WanModel', text_encoder: 'umT5 encoder', vae: 'Wan VAE' };

/** Wraps a Diffusers component's tensors under the official names. */
export function officialNames(src: TensorSource, component: DiffusersComponent): RenamedSource {
  const b = new AliasBuilder(src);
  const names = src.names();
  let vae: Map<string, string | null> | null = null;
  try {
    if (component === 'vae') vae = vaeTargets(names);
  } catch (e) {
    throw new Error(`${src.path}: ${(e as Error).message}`);
  }
  for (const n of names) {
    const t = component === 'transformer' ? transformerTarget(n) : component === 'text_encoder' ? textEncoderTarget(n) : vae!.get(n)!;
    if (t === 'ignore') continue;
    b.add(n, t);
  }
  // HF may keep only the tied copy of the embedding.
  if (component === 'text_encoder' && !b.map.has('token_embedding.weight') && src.has('encoder.embed_tokens.weight')) {
    b.add('encoder.embed_tokens.weight', 'token_embedding.weight');
  }
  const nameFor = component === 'transformer' ? transformerNameFor : () => null;
  return new RenamedSource(src, b.finish(WHAT[component]), `Diffusers ${component}, official names`, nameFor);
}

/**
 * Which Diffusers component a weights file belongs to, from the config.json beside it
 * (`_class_name` for diffusers models, `architectures` for the HF text encoder); null otherwise.
 */
export function diffusersComponentOf(weightsPath: string): DiffusersComponent | null {
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(readFileSync(join(dirname(weightsPath), 'config.json'), 'utf8'));
  } catch {
    return null;
  }
  if (cfg._class_name === 'WanTransformer3DModel') return 'transformer';
  if (cfg._class_name === 'AutoencoderKLWan') return 'vae';
  if (Array.isArray(cfg.architectures) && cfg.architectures.includes('UMT5EncoderModel')) return 'text_encoder';
  return null;
}
