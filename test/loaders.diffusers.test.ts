// Diffusers layout: the pipeline fixtures' official ckpt/ folders rewritten into the Diffusers layout
// (test/diffusers-export.ts, an independent official -> Diffusers mapping) must read back, through
// loaders/diffusers.ts, as exactly the official tensors, and generate the fixture's frames.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../engine/index.ts';
import { locateCheckpoint } from '../loaders/checkpoint.ts';
import { officialNames, RenamedSource, transformerNameFor, transformerTarget } from '../loaders/diffusers.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { openRawTensorSource, openTensorSource } from '../loaders/open.ts';
import { serializeSafetensors, SafetensorsFile, type StTensorData } from '../loaders/safetensors.ts';
import type { TensorSource } from '../loaders/source.ts';
import { uploadTensor } from '../loaders/upload.ts';
import { checkpointInfo } from '../cli/info-checkpoint.ts';
import { generate } from '../model/pipelines/generate.ts';
import { taskSpec, type TaskName } from '../model/pipelines/tasks.ts';
import { diffusersTransformerName, exportDiffusers } from './diffusers-export.ts';
import { fixturesDir, randn } from './helpers.ts';

const run = promisify(execFile);
const wan = new URL('../cli/wan.js', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'wan-diffusers-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const CASES: [string, TaskName][] = [
  ['pipeline.t2v', 't2v-A14B'],
  ['pipeline.i2v', 'i2v-A14B'],
  ['pipeline.ti2v_t2v', 'ti2v-5B'],
];

function numel(s: number[]): number {
  return s.reduce((a, b) => a * b, 1);
}
const ELEM: Record<string, number> = { F32: 4, BF16: 2, F16: 2 };

async function readWhole(src: TensorSource, name: string): Promise<Uint8Array> {
  const i = src.info(name);
  return src.readRange(name, 0, numel(i.shape) * ELEM[i.dtype]);
}

/** Every official tensor, byte for byte, under the same name, shape and dtype. */
async function expectSameTensors(officialFile: string, diffusersFile: string): Promise<number> {
  const a = await openTensorSource(officialFile);
  const b = await openTensorSource(diffusersFile);
  try {
    expect(b).toBeInstanceOf(RenamedSource);
    expect([...b.names()].sort()).toEqual([...a.names()].sort());
    for (const n of a.names()) {
      expect(b.info(n), n).toEqual(a.info(n));
      expect(Buffer.from(await readWhole(b, n)).equals(Buffer.from(await readWhole(a, n))), n).toBe(true);
    }
    return a.names().length;
  } finally {
    await a.close();
    await b.close();
  }
}

describe('Diffusers layout: tensors read back under the official names', () => {
  it.each(CASES)('%s (%s): transformer(s), text encoder, VAE', async (fixture, task) => {
    const src = join(fixturesDir, fixture, 'ckpt');
    const dst = join(tmp, `names-${fixture}`);
    await exportDiffusers(src, dst, task, { transformerShards: 2 });
    const off = locateCheckpoint(src, taskSpec(task));
    const dif = locateCheckpoint(dst, taskSpec(task));
    expect(off.layout).toBe('official');
    expect(dif.layout).toBe('diffusers');
    const pairs: [string, string][] = [[off.t5, dif.t5], [off.vae, dif.vae]];
    if (taskSpec(task).experts) pairs.push([off.high!.weights, dif.high!.weights], [off.low!.weights, dif.low!.weights]);
    else pairs.push([off.dit!.weights, dif.dit!.weights]);
    for (const [o, d] of pairs) expect(await expectSameTensors(o, d)).toBeGreaterThan(10);
    // transformer = high noise, transformer_2 = low noise (the experts differ, so a swap would show)
    if (taskSpec(task).experts) {
      expect(dif.high!.weights).toContain(join(dst, 'transformer', ''));
      expect(dif.low!.weights).toContain(join(dst, 'transformer_2', ''));
    }
    // The translated config agrees with the official one on every field the model reads.
    const offCfg = (off.high ?? off.dit)!.config!;
    const difCfg = (dif.high ?? dif.dit)!.config!;
    for (const k of ['dim', 'ffn_dim', 'freq_dim', 'in_dim', 'out_dim', 'num_layers', 'num_heads', 'eps', 'text_len']) expect(difCfg[k], k).toBe(offCfg[k]);
    expect(dif.spiece).toBe(join(dst, 'tokenizer', 'spiece.model'));
    expect(dif.pipeline).toEqual({
      pipelineClass: task === 'i2v-A14B' ? 'WanImageToVideoPipeline' : 'WanPipeline',
      boundaryRatio: taskSpec(task).experts ? taskSpec(task).boundary : null,
      expandTimesteps: task === 'ti2v-5B',
      flowShift: task === 'ti2v-5B' ? 5 : 3,
    });
  });
});

describe('Diffusers layout: errors', () => {
  let dst: string;
  beforeAll(async () => {
    dst = join(tmp, 'errors-base');
    await exportDiffusers(join(fixturesDir, 'pipeline.t2v', 'ckpt'), dst, 't2v-A14B');
  });
  const copy = (name: string) => {
    const d = join(tmp, name);
    cpSync(dst, d, { recursive: true });
    return d;
  };

  it('names a missing component and the task that needs it', () => {
    const d = copy('no-t2');
    rmSync(join(d, 'transformer_2'), { recursive: true });
    expect(() => locateCheckpoint(d, taskSpec('t2v-A14B'))).toThrow(/transformer_2 is missing \(the low-noise expert, needed by t2v-A14B; Diffusers layout\)/);
    expect(() => locateCheckpoint(d, taskSpec('ti2v-5B'))).toThrow(/holds the Wan2\.1 VAE, ti2v-5B needs the Wan2\.2 VAE/);
    rmSync(join(d, 'tokenizer', 'spiece.model'));
    expect(() => locateCheckpoint(d, taskSpec('i2v-A14B'))).toThrow(/tokenizer\/spiece\.model is missing/);
    const e = copy('no-te');
    rmSync(join(e, 'text_encoder', 'model.safetensors'));
    expect(() => locateCheckpoint(e, taskSpec('t2v-A14B'))).toThrow(/text_encoder has neither model\.safetensors nor model\.safetensors\.index\.json \(the umT5 text encoder, needed by t2v-A14B\)/);
    const f = copy('bad-class');
    writeFileSync(join(f, 'vae', 'config.json'), JSON.stringify({ _class_name: 'AutoencoderKL' }));
    expect(() => locateCheckpoint(f, taskSpec('t2v-A14B'))).toThrow(/vae\/config\.json: expected AutoencoderKLWan .*found "AutoencoderKL"/);
  });

  it('names a missing tensor under both names, and refuses tensors it cannot map', async () => {
    const d = copy('missing-key');
    const file = join(d, 'transformer_2', 'diffusion_pytorch_model.safetensors');
    const raw = await SafetensorsFile.open(file);
    const kept: Record<string, StTensorData> = {};
    for (const n of raw.names()) if (n !== 'blocks.1.attn2.to_k.weight') kept[n] = { ...raw.info(n), data: await raw.readRaw(n) };
    await raw.close();
    writeFileSync(file, serializeSafetensors(kept));
    const e = await Engine.create();
    try {
      const src = await openTensorSource(file);
      await expect(uploadTensor(e, src, 'blocks.1.cross_attn.k.weight')).rejects.toThrow(
        /transformer_2\/diffusion_pytorch_model\.safetensors \(Diffusers transformer, official names\): missing tensor "blocks\.1\.cross_attn\.k\.weight" \(stored as "blocks\.1\.attn2\.to_k\.weight" in the Diffusers layout\)/,
      );
      await src.close();
    } finally {
      await e.destroy();
    }
    kept['blocks.0.attn1.to_gate.weight'] = kept['blocks.0.attn1.to_q.weight'];
    writeFileSync(file, serializeSafetensors(kept));
    await expect(openTensorSource(file)).rejects.toThrow(/1 tensor\(s\) with no official WanModel name: "blocks\.0\.attn1\.to_gate\.weight"/);
  });
});

describe('Diffusers text encoder and VAE: names it cannot place are errors', () => {
  it('a full UMT5 (with a decoder), a VAE with a missing up block, a tied-only embedding', async () => {
    const t = (shape: number[]): StTensorData => ({ dtype: 'F32', shape, data: new Uint8Array(shape.reduce((a, b) => a * b, 1) * 4) });
    const open = async (name: string, tensors: Record<string, StTensorData>, component: 'text_encoder' | 'vae') => {
      const p = join(tmp, name);
      writeFileSync(p, serializeSafetensors(tensors));
      const raw = await openRawTensorSource(p);
      try {
        return officialNames(raw, component);
      } catch (e) {
        await raw.close();
        throw e;
      }
    };
    await expect(open('umt5-full.safetensors', { 'shared.weight': t([8, 4]), 'decoder.block.0.layer.0.SelfAttention.q.weight': t([4, 4]) }, 'text_encoder'))
      .rejects.toThrow(/umt5-full\.safetensors: 1 tensor\(s\) with no official umT5 encoder name: "decoder\.block\.0\.layer\.0\.SelfAttention\.q\.weight"/);
    const tied = await open('umt5-tied.safetensors', { 'encoder.embed_tokens.weight': t([8, 4]), 'encoder.final_layer_norm.weight': t([4]) }, 'text_encoder');
    expect(tied.names().sort()).toEqual(['norm.weight', 'token_embedding.weight']);
    expect(tied.sourceOf('token_embedding.weight').source).toBe('encoder.embed_tokens.weight');
    await tied.close();
    await expect(open('vae-gap.safetensors', { 'decoder.up_blocks.0.resnets.0.norm1.gamma': t([4, 1, 1, 1]), 'decoder.up_blocks.2.resnets.0.norm1.gamma': t([4, 1, 1, 1]) }, 'vae'))
      .rejects.toThrow(/vae-gap\.safetensors: decoder\.up_blocks\.1 is missing \(found up_blocks\.2\)/);
  });
});

describe('Diffusers transformer: fused projections and name coverage', () => {
  it('splits to_qkv / to_kv / to_added_kv by rows into the official q, k, v (, k_img, v_img)', async () => {
    const dim = 6;
    const f32 = (a: Float32Array) => new Uint8Array(a.buffer);
    const qkv = randn(3 * dim * dim, 1);
    const qkvBias = randn(3 * dim, 2);
    const kv = randn(2 * dim * 5, 3); // cross-attention keys from a 5-wide context
    const added = randn(2 * dim * 7, 4);
    const p = join(tmp, 'fused.safetensors');
    writeFileSync(p, serializeSafetensors({
      'blocks.0.attn1.to_qkv.weight': { dtype: 'F32', shape: [3 * dim, dim], data: f32(qkv) },
      'blocks.0.attn1.to_qkv.bias': { dtype: 'F32', shape: [3 * dim], data: f32(qkvBias) },
      'blocks.0.attn2.to_kv.weight': { dtype: 'F32', shape: [2 * dim, 5], data: f32(kv) },
      'blocks.0.attn2.to_added_kv.weight': { dtype: 'F32', shape: [2 * dim, 7], data: f32(added) },
    }));
    const src = officialNames(await openRawTensorSource(p), 'transformer');
    const rows = async (name: string, shape: number[]) => {
      expect(src.info(name).shape).toEqual(shape);
      return Array.from(new Float32Array((await readWhole(src, name)).slice().buffer));
    };
    const q = await rows('blocks.0.self_attn.q.weight', [dim, dim]);
    expect(await rows('blocks.0.self_attn.v.weight', [dim, dim])).toEqual(Array.from(qkv.subarray(2 * dim * dim)));
    expect(q).toEqual(Array.from(qkv.subarray(0, dim * dim)));
    expect(await rows('blocks.0.self_attn.k.bias', [dim])).toEqual(Array.from(qkvBias.subarray(dim, 2 * dim)));
    expect(await rows('blocks.0.cross_attn.v.weight', [dim, 5])).toEqual(Array.from(kv.subarray(dim * 5)));
    expect(await rows('blocks.0.cross_attn.k_img.weight', [dim, 7])).toEqual(Array.from(added.subarray(0, dim * 7)));
    // A range read inside a split part stays inside it.
    expect(Array.from(new Float32Array((await src.readRange('blocks.0.self_attn.v.weight', 8, 8)).slice().buffer))).toEqual(Array.from(qkv.subarray(2 * dim * dim + 2, 2 * dim * dim + 4)));
    await expect(src.readRange('blocks.0.self_attn.q.weight', 0, dim * dim * 4 + 4)).rejects.toThrow(/outside tensor/);
    await src.close();
  });

  it('both directions agree on every official WanModel name, incl. the image branch and qk norms', () => {
    const official = [
      'patch_embedding.weight', 'patch_embedding.bias', 'time_embedding.0.weight', 'time_embedding.2.bias', 'text_embedding.0.bias',
      'text_embedding.2.weight', 'time_projection.1.weight', 'head.head.weight', 'head.head.bias', 'head.modulation',
      'blocks.12.modulation', 'blocks.12.norm3.weight', 'blocks.12.norm3.bias', 'blocks.12.ffn.0.weight', 'blocks.12.ffn.2.bias',
      ...['self_attn', 'cross_attn'].flatMap((a) => ['q', 'k', 'v', 'o'].flatMap((x) => [`blocks.3.${a}.${x}.weight`, `blocks.3.${a}.${x}.bias`]).concat([`blocks.3.${a}.norm_q.weight`, `blocks.3.${a}.norm_k.weight`])),
      'blocks.3.cross_attn.k_img.weight', 'blocks.3.cross_attn.v_img.bias', 'blocks.3.cross_attn.norm_k_img.weight',
    ];
    for (const n of official) {
      const d = diffusersTransformerName(n);
      expect(transformerNameFor(n), n).toBe(d);
      expect(transformerTarget(d), d).toBe(n);
    }
  });
});

describe('Diffusers layout: wan info and generate', () => {
  it('wan info reports layout "diffusers", the task, and the same components as the official folder', async () => {
    const dst = join(tmp, 'info-i2v');
    await exportDiffusers(join(fixturesDir, 'pipeline.i2v', 'ckpt'), dst, 'i2v-A14B', { transformerShards: 2 });
    const a = await checkpointInfo(join(fixturesDir, 'pipeline.i2v', 'ckpt'));
    const b = await checkpointInfo(dst);
    expect([a.layout, b.layout]).toEqual(['official', 'diffusers']);
    expect(b.task).toBe('i2v-A14B');
    expect(b.pipeline?.boundaryRatio).toBe(0.9);
    const strip = (c: (typeof a.components)[number]) => ({ ...c, file: undefined, diskBytes: undefined });
    expect(b.components.map(strip)).toEqual(a.components.map(strip));
  });

  it('`wan info <dir>` prints layout "diffusers" and the pipeline settings', async () => {
    const dst = join(tmp, 'info-cli');
    await exportDiffusers(join(fixturesDir, 'pipeline.t2v', 'ckpt'), dst, 't2v-A14B');
    const { stdout } = await run(process.execPath, [wan, 'info', dst], { maxBuffer: 1 << 24 });
    expect(stdout).toMatch(/: t2v-A14B \(layout "diffusers"\)/);
    expect(stdout).toMatch(/pipeline: WanPipeline; boundary_ratio 0\.875; expand_timesteps false; scheduler flow_shift 3 \(wan generate defaults to the official sample_shift 12/);
    expect(stdout).toMatch(/high-noise expert: WanModel t2v: dim 56/);
    const j = JSON.parse((await run(process.execPath, [wan, 'info', dst, '--json'], { maxBuffer: 1 << 24 })).stdout);
    expect(j.layout).toBe('diffusers');
    expect(j.components.map((c: { name: string }) => c.name)).toEqual(['high-noise expert', 'low-noise expert', 'text encoder', 'VAE']);
  });

  it.each([
    ['pipeline.t2v', 't2v-A14B'],
    ['pipeline.i2v', 'i2v-A14B'],
    ['pipeline.ti2v_t2v', 'ti2v-5B'],
  ] as [string, TaskName][])('%s: generate() from the Diffusers folder gives the fixture frames', async (fixture, task) => {
    const fx = await loadFixture(join(fixturesDir, fixture));
    const c = fx.config as any;
    const dst = join(tmp, `gen-${fixture}`);
    await exportDiffusers(join(fx.dir, 'ckpt'), dst, task, { transformerShards: task === 'i2v-A14B' ? 3 : 1 });
    const spec = taskSpec(task);
    let image;
    if (fx.has('in', 'image')) {
      const im = fx.input('image');
      image = { width: im.shape[1], height: im.shape[0], rgb: Uint8Array.from(im.f64()) };
    }
    const e = await Engine.create({ maxStorageBindingBytes: 65536, maxBufferBytes: 262144 });
    try {
      const g = c.guide_scale;
      const res = await generate(e, {
        task: spec,
        ckptDir: dst,
        prompt: c.prompt,
        negativePrompt: c.n_prompt,
        image,
        maxArea: c.max_area,
        size: c.size ?? [c.latent_shape[3] * spec.vaeStride[2], c.latent_shape[2] * spec.vaeStride[1]],
        frameNum: c.frame_num,
        seed: c.seed,
        solver: c.sample_solver,
        steps: c.sampling_steps,
        shift: c.shift,
        guideScale: typeof g === 'number' ? [g, g] : g,
      });
      const ref = fx.output('frames').f64();
      expect(res.frames.length).toBe(ref.length);
      let differ = 0;
      let maxAbs = 0;
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(res.frames[i] - ref[i]);
        maxAbs = Math.max(maxAbs, d);
        if (d) differ++;
      }
      expect(maxAbs).toBeLessThanOrEqual(1);
      expect(differ / ref.length).toBeLessThanOrEqual(0.005);
    } finally {
      await e.destroy();
    }
  }, 120_000);
});

