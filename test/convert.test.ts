// `wan convert`: a bf16 copy of an official checkpoint folder loads bit-identically.
//
// The fixture checkpoints store their DiTs in bf16 already, so each is first turned into a float32
// checkpoint here (every DiT tensor widened, with random low mantissa bits and some exact ties, so
// the rounding matters); converting that must give back a folder whose weights equal the loader's own
// float32 -> bf16 conversion, and generation from both folders must give the same frames.
import sharp from 'sharp';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCheckpoint, convertsToBf16 } from '../cli/convert.ts';
import { readPngFrames } from '../cli/output/png.ts';
import { Engine } from '../engine/index.ts';
import { locateCheckpoint, type DitFiles } from '../loaders/checkpoint.ts';
import { convertChunk } from '../loaders/convert.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { openRawTensorSource } from '../loaders/open.ts';
import { DTYPE_SIZE, decodeToFloat32, serializeSafetensors, type StTensorData } from '../loaders/safetensors.ts';
import type { TensorSource } from '../loaders/source.ts';
import { WanDiT } from '../model/dit.ts';
import { taskSpec } from '../model/pipelines/tasks.ts';
import { writeSafetensorsStreaming, writeSafetensorsStreamingAsync, type StreamTensor } from '../loaders/safetensors-stream-writer.ts';
import { fixturesDir, randn, rng } from './helpers.ts';

const run = promisify(execFile);
const wan = new URL('../cli/wan.js', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'wan-convert-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function wanRun(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [wan, ...args], { maxBuffer: 1 << 24 });
    return { code: 0, stdout, stderr };
  } catch (e: any) {
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function readAll(src: TensorSource, name: string): Promise<Uint8Array> {
  const i = src.info(name);
  return src.readRange(name, 0, i.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[i.dtype]);
}

/** A DiT weights file (single or sharded) rewritten with every tensor in float32 plus random low bits. */
async function widenDit(files: DitFiles, outDir: string, seed: number): Promise<void> {
  const src = await openRawTensorSource(files.weights);
  const r = rng(seed);
  const widened = new Map<string, StTensorData>();
  for (const name of src.names()) {
    const i = src.info(name);
    const v = decodeToFloat32(i.dtype, await readAll(src, name));
    const bits = new Uint32Array(v.buffer, v.byteOffset, v.length);
    // Low 16 bits: random, or exactly half way (ties to even) for every 5th value.
    for (let k = 0; k < bits.length; k++) bits[k] = (bits[k]! & 0xffff0000) | (k % 5 === 0 ? 0x8000 : Math.floor(r() * 0x10000));
    widened.set(name, { dtype: 'F32', shape: i.shape, data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) });
  }
  await src.close();
  mkdirSync(outDir, { recursive: true });
  if (files.weights.endsWith('.index.json')) {
    const index = JSON.parse(readFileSync(files.weights, 'utf8'));
    const byShard = new Map<string, Record<string, StTensorData>>();
    for (const [name, shard] of Object.entries(index.weight_map as Record<string, string>)) {
      const m = byShard.get(shard) ?? {};
      m[name] = widened.get(name)!;
      byShard.set(shard, m);
    }
    for (const [shard, tensors] of byShard) writeFileSync(join(outDir, shard), serializeSafetensors(tensors, { format: 'pt' }));
    index.metadata.total_size = [...widened.values()].reduce((a, t) => a + t.data.byteLength, 0);
    writeFileSync(join(outDir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify(index, null, 1));
  } else {
    writeFileSync(join(outDir, 'diffusion_pytorch_model.safetensors'), serializeSafetensors(Object.fromEntries(widened), { format: 'pt' }));
  }
  cpSync(join(files.dir, 'config.json'), join(outDir, 'config.json'));
}

/** The fixture's ckpt/ folder with float32 DiT weights. */
async function widenCheckpoint(fixture: string, task: string, out: string): Promise<void> {
  const from = join(fixturesDir, fixture, 'ckpt');
  const f = locateCheckpoint(from, taskSpec(task));
  cpSync(from, out, { recursive: true, filter: (p) => !/diffusion_pytorch_model/.test(p) });
  for (const [d, seed] of [[f.dit, 1], [f.high, 2], [f.low, 3]] as const) if (d) await widenDit(d, join(out, d.dir.slice(from.length)), seed);
}

const ti2vSrc = join(tmp, 'ti2v-f32');
const ti2vDst = join(tmp, 'ti2v-bf16');
const i2vSrc = join(tmp, 'i2v-f32');
const i2vDst = join(tmp, 'i2v-bf16');

beforeAll(async () => {
  await widenCheckpoint('pipeline.ti2v_t2v', 'ti2v-5B', ti2vSrc);
  await widenCheckpoint('pipeline.i2v', 'i2v-A14B', i2vSrc);
  const quiet = () => {};
  const a = await convertCheckpoint({ src: ti2vSrc, out: ti2vDst, log: quiet });
  expect(a.task).toBe('ti2v-5B');
  // A shard limit the tiny experts overflow: sharded the way diffusers does.
  const b = await convertCheckpoint({ src: i2vSrc, out: i2vDst, maxShardBytes: 100_000, log: quiet });
  expect(b.task).toBe('i2v-A14B');
  expect(b.ditBytesAfter).toBeLessThan(b.ditBytesBefore * 0.6);
}, 120_000);

function dits(dir: string, task: string): [string, DitFiles][] {
  const f = locateCheckpoint(dir, taskSpec(task));
  return (task === 'ti2v-5B' ? [['dit', f.dit!]] : [['high', f.high!], ['low', f.low!]]) as [string, DitFiles][];
}

describe('writeSafetensorsStreamingAsync', () => {
  it('writes the same bytes as the synchronous writer, chunk by chunk with a fill that awaits', async () => {
    const tensors: StreamTensor[] = [
      { name: 'a', dtype: 'F32', shape: [37, 5] },
      { name: 'b', dtype: 'BF16', shape: [3] },
      { name: 'c', dtype: 'F16', shape: [0, 4] },
      { name: 'd', dtype: 'I64', shape: [11] },
    ];
    const byte = (t: StreamTensor, at: number) => (t.name.charCodeAt(0) * 131 + at * 7) & 0xff;
    const fill = (t: StreamTensor, dst: Uint8Array, off: number) => dst.forEach((_, i) => (dst[i] = byte(t, off + i)));
    const sync = join(tmp, 'sync.safetensors');
    const async_ = join(tmp, 'async.safetensors');
    const opts = { chunkBytes: 64, metadata: { format: 'pt' } };
    const n1 = await writeSafetensorsStreaming(sync, tensors, fill, opts);
    const n2 = await writeSafetensorsStreamingAsync(async_, tensors, async (t, dst, off) => {
      await new Promise((r) => setTimeout(r, 1));
      fill(t, dst, off);
    }, opts);
    expect(n2).toBe(n1);
    expect(Buffer.compare(readFileSync(sync), readFileSync(async_))).toBe(0);
    await expect(writeSafetensorsStreamingAsync(join(tmp, 'bad.safetensors'), tensors, async () => {
      throw new Error('fill failed');
    }, opts)).rejects.toThrow(/fill failed/);
  });
});

describe('wan convert: the converted folder', () => {
  it.each([
    ['ti2v-5B', ti2vSrc, ti2vDst],
    ['i2v-A14B', i2vSrc, i2vDst],
  ])('%s: same tensors, linear weights as the loader\'s bf16 rounding, the rest as stored', async (task, srcDir, dstDir) => {
    const srcDits = dits(srcDir, task);
    const dstDits = dits(dstDir, task);
    let converted = 0;
    let kept = 0;
    for (let k = 0; k < srcDits.length; k++) {
      const src = await openRawTensorSource(srcDits[k]![1].weights);
      const dst = await openRawTensorSource(dstDits[k]![1].weights);
      expect([...dst.names()].sort()).toEqual([...src.names()].sort());
      for (const name of src.names()) {
        const si = src.info(name);
        const di = dst.info(name);
        expect(di.shape).toEqual(si.shape);
        const raw = await readAll(src, name);
        const got = await readAll(dst, name);
        if (convertsToBf16(name, si.dtype, si.shape)) {
          expect(di.dtype, name).toBe('BF16');
          expect(Buffer.compare(got, convertChunk('F32', raw, 'bf16').bytes), name).toBe(0);
          converted++;
        } else {
          expect(di.dtype, name).toBe(si.dtype);
          expect(Buffer.compare(got, raw), name).toBe(0);
          kept++;
        }
      }
      await src.close();
      await dst.close();
      expect(readFileSync(join(dstDits[k]![1].dir, 'config.json'), 'utf8')).toBe(readFileSync(join(srcDits[k]![1].dir, 'config.json'), 'utf8'));
    }
    expect(converted).toBeGreaterThan(20);
    expect(kept).toBeGreaterThan(20); // norms, biases, modulation stay float32
  });

  it('shards an A14B expert as diffusers does: numbered shards and an index with total_size', () => {
    for (const expert of ['high_noise_model', 'low_noise_model']) {
      const dir = join(i2vDst, expert);
      const shards = readdirSync(dir).filter((f) => /^diffusion_pytorch_model-\d{5}-of-\d{5}\.safetensors$/.test(f)).sort();
      expect(shards.length).toBeGreaterThan(1);
      const n = String(shards.length).padStart(5, '0');
      shards.forEach((s, i) => expect(s).toBe(`diffusion_pytorch_model-${String(i + 1).padStart(5, '0')}-of-${n}.safetensors`));
      const index = JSON.parse(readFileSync(join(dir, 'diffusion_pytorch_model.safetensors.index.json'), 'utf8'));
      expect(new Set(Object.values(index.weight_map))).toEqual(new Set(shards));
      const sizes = shards.reduce((a, s) => a + statSync(join(dir, s)).size, 0);
      expect(index.metadata.total_size).toBeLessThan(sizes); // the data, without the shards' headers
      expect(existsSync(join(dir, 'diffusion_pytorch_model.safetensors'))).toBe(false);
    }
    // ti2v's small model: one file.
    expect(existsSync(join(ti2vDst, 'diffusion_pytorch_model.safetensors'))).toBe(true);
    expect(existsSync(join(ti2vDst, 'diffusion_pytorch_model.safetensors.index.json'))).toBe(false);
  });

  it('hard-links every other file', () => {
    for (const [src, dst, files] of [
      [ti2vSrc, ti2vDst, ['Wan2.2_VAE.pth', 'models_t5_umt5-xxl-enc-bf16.pth', 'google/umt5-xxl/spiece.model']],
      [i2vSrc, i2vDst, ['Wan2.1_VAE.pth', 'models_t5_umt5-xxl-enc-bf16.pth', 'google/umt5-xxl/spiece.model', 'google/umt5-xxl/tokenizer_config.json']],
    ] as const) {
      for (const f of files) expect(statSync(join(dst, f)).ino, f).toBe(statSync(join(src, f)).ino);
    }
  });
});

describe('wan convert: loads bit-identically', () => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create();
  });
  afterAll(async () => {
    await e.destroy();
  });

  it.each([
    ['ti2v-5B', false, ti2vSrc, ti2vDst],
    ['i2v-A14B', true, i2vSrc, i2vDst],
  ])('%s (streamed blocks: %s): one DiT forward from the bf16 folder equals the float32 one bit for bit', async (task, stream, srcDir, dstDir) => {
    const outs: Float32Array[] = [];
    for (const dir of [srcDir, dstDir]) {
      const [, files] = dits(dir, task)[0]!;
      const src = await openRawTensorSource(files.weights);
      const dit = await WanDiT.load(e, src, files.config, { dtype: 'bf16', stream });
      const cfg = dit.config;
      const yC = cfg.inDim - cfg.outDim;
      const shape: [number, number, number, number] = [cfg.outDim, 2, 4, 4];
      const vol = 2 * 4 * 4;
      const [out] = await dit.forward({
        x: randn(cfg.outDim * vol, 7),
        shape,
        ...(yC > 0 ? { y: randn(yC * vol, 8) } : {}),
        t: 637,
        contexts: [randn(9 * cfg.textDim, 9, 0.5)],
        seqLen: (2 * 4 * 4) / 4,
      });
      outs.push(out!);
      dit.dispose();
      await src.close();
    }
    expect(outs[0]!.length).toBeGreaterThan(0);
    expect(Buffer.compare(Buffer.from(outs[0]!.buffer, outs[0]!.byteOffset, outs[0]!.byteLength), Buffer.from(outs[1]!.buffer, outs[1]!.byteOffset, outs[1]!.byteLength))).toBe(0);
  }, 60_000);

  it.each([
    ['pipeline.ti2v_t2v', ti2vSrc, ti2vDst],
    ['pipeline.i2v', i2vSrc, i2vDst],
  ])('%s: wan generate gives the same PNG frames from both folders', async (name, srcDir, dstDir) => {
    const fx = await loadFixture(join(fixturesDir, name));
    const c = fx.config as any;
    const size = c.size ?? [48, 32];
    const g = Array.isArray(c.guide_scale) ? c.guide_scale : [c.guide_scale, c.guide_scale];
    const args = [
      'generate', '--task', c.task, '--size', `${size[0]}*${size[1]}`, '--frame_num', String(c.frame_num), '--sample_steps', String(c.sampling_steps),
      '--sample_shift', String(c.shift), '--sample_solver', c.sample_solver ?? 'unipc', '--base_seed', String(c.seed), '--prompt', c.prompt,
      ...(g[0] === g[1] ? ['--sample_guide_scale', String(g[0])] : []),
    ];
    if (fx.spec.inputs.includes('image')) {
      const im = fx.input('image');
      const png = join(tmp, `${name}.png`);
      await sharp(Buffer.from(Uint8Array.from(im.f64())), { raw: { width: im.shape[1], height: im.shape[0], channels: 3 } }).png().toFile(png);
      args.push('--image', png);
    }
    const frames = [];
    for (const [k, dir] of [srcDir, dstDir].entries()) {
      const out = join(tmp, `${name}-${k}/`);
      const r = await wanRun([...args, '--ckpt_dir', dir, '--save_file', out]);
      expect(r.code, r.stderr).toBe(0);
      frames.push(await readPngFrames(out));
    }
    expect(frames[0]!.frames).toBe(fx.output('frames').shape[0]);
    expect([frames[1]!.frames, frames[1]!.width, frames[1]!.height]).toEqual([frames[0]!.frames, frames[0]!.width, frames[0]!.height]);
    expect(Buffer.compare(Buffer.from(frames[0]!.rgb), Buffer.from(frames[1]!.rgb))).toBe(0);
  }, 180_000);
});

describe('wan convert: refusals and failures', () => {
  const leftovers = (parent: string) => readdirSync(parent).filter((n) => n.includes('.convert-tmp-'));

  it('refuses an existing --out without --force, replaces it with --force', async () => {
    const r = await wanRun(['convert', '--ckpt_dir', ti2vSrc, '--out', ti2vDst]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ti2v-bf16 exists; pass --force to replace it/);
    const out = join(tmp, 'forced');
    mkdirSync(out);
    writeFileSync(join(out, 'old.txt'), 'x');
    const r2 = await wanRun(['convert', '--ckpt_dir', ti2vSrc, '--out', out, '--force']);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr).toMatch(/convert: done in [\d.]+ s: DiT .* -> .* hard-linked/);
    expect(existsSync(join(out, 'old.txt'))).toBe(false);
    expect(() => locateCheckpoint(out, taskSpec('ti2v-5B'))).not.toThrow();
    expect(leftovers(tmp)).toEqual([]);
  }, 60_000);

  it.each([
    [['--ckpt_dir', 'x'], /--out is required/],
    [['--out', 'x'], /--ckpt_dir is required/],
    [['--ckpt_dir', '@src', '--out', '@new', '--dtype', 'f16'], /--dtype must be bf16/],
    [['--ckpt_dir', '@src', '--out', '@new', '--task', 'x2v'], /unknown task "x2v"/],
    [['--ckpt_dir', '@src', '--out', '@new', '--task', 't2v-A14B'], /Wan2.1_VAE.pth is missing \(the Wan2.1 VAE, needed by t2v-A14B\)/],
    [['--ckpt_dir', '@nowhere', '--out', '@new'], /is not a folder/],
    [['--ckpt_dir', '@plain', '--out', '@new'], /is not a complete checkpoint folder of any task/],
    [['--ckpt_dir', '@diffusers', '--out', '@new'], /Diffusers-layout folder .*official layout only/],
    [['--ckpt_dir', '@src', '--out', '@src/inside'], /is inside --ckpt_dir/],
  ])('%j', async (args, message) => {
    mkdirSync(join(tmp, 'plain'), { recursive: true });
    writeFileSync(join(tmp, 'plain', 'notes.txt'), 'not a checkpoint');
    mkdirSync(join(tmp, 'diffusers'), { recursive: true });
    writeFileSync(join(tmp, 'diffusers', 'model_index.json'), '{"_class_name": "WanPipeline"}');
    const sub = (a: string) => a.replace('@src', ti2vSrc).replace(/^@(\w+)/, (_, n) => join(tmp, n));
    const r = await wanRun(['convert', ...args.map(sub)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(existsSync(join(tmp, 'new'))).toBe(false);
    expect(leftovers(tmp)).toEqual([]);
  }, 30_000);

  it("removes a killed run's temporary folder (its process is gone), not a live one's", async () => {
    const dead = join(tmp, '.again.convert-tmp-999999999-0badf00d');
    const live = join(tmp, `.again.convert-tmp-${process.ppid}-0badf00d`);
    mkdirSync(dead);
    mkdirSync(live);
    await convertCheckpoint({ src: ti2vSrc, out: join(tmp, 'again'), log: () => {} });
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
    rmSync(live, { recursive: true });
  });

  it('a failure part way leaves neither the folder nor its temporary folder', async () => {
    const out = join(tmp, 'failed');
    const log = (s: string) => {
      if (s.includes('high_noise_model:')) throw new Error('injected failure after the first expert');
    };
    await expect(convertCheckpoint({ src: i2vSrc, out, log })).rejects.toThrow(/injected failure/);
    expect(existsSync(out)).toBe(false);
    expect(leftovers(dirname(out))).toEqual([]);
  });
});
