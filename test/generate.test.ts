// `wan generate` as a user runs it: bad input is refused with clear messages before any work, and a
// fixture checkpoint produces a video matching the reference frames.
import sharp from 'sharp';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { readMp4 } from '../cli/output/mp4-read.ts';
import { readPngFrames } from '../cli/output/png.ts';
import { defaultSaveFile } from '../cli/generate.ts';
import { loadFixture } from '../loaders/fixture.ts';
import { fixturesDir } from './helpers.ts';

const run = promisify(execFile);
const wan = new URL('../cli/wan.js', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'wan-gen-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function wanRun(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, [wan, ...args], { maxBuffer: 1 << 24 });
    return { code: 0, stdout, stderr };
  } catch (e: any) {
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const t2vCkpt = join(fixturesDir, 'pipeline.t2v', 'ckpt');

describe('wan generate: bad input', () => {
  it.each([
    [['--task', 'x2v'], /unknown task "x2v"/],
    [['--task', 't2v-A14B'], /--ckpt_dir is required/],
    [['--ckpt_dir', t2vCkpt, '--size', '100*100'], /multiples of 16/],
    [['--ckpt_dir', t2vCkpt, '--size', '1280x720'], /WIDTH\*HEIGHT/],
    [['--ckpt_dir', t2vCkpt, '--frame_num', '10'], /4n\+1/],
    [['--ckpt_dir', t2vCkpt, '--sample_solver', 'euler'], /unipc or dpm\+\+/],
    [['--ckpt_dir', t2vCkpt, '--sample_steps', 'x'], /--sample_steps must be an integer/],
    [['--ckpt_dir', t2vCkpt, '--image', 'a.png'], /takes no --image/],
    [['--task', 'i2v-A14B', '--ckpt_dir', t2vCkpt], /needs --image/],
    [['--ckpt_dir', t2vCkpt, '--save_file', 'out.avi'], /write \.mp4, \.webp, \.gif, or a folder/],
    [['--ckpt_dir', t2vCkpt, '--activations', 'bf16'], /--activations must be f32 or f16, got "bf16"/],
    [['--ckpt_dir', join(tmp, 'nowhere')], /is not a folder/],
    [['--ckpt_dir', t2vCkpt, '--memory-mode', 'lazy'], /--memory-mode must be auto, resident, offload, stream; got "lazy"/],
    [['--ckpt_dir', t2vCkpt, '--max-device-memory', 'lots'], /--max-device-memory: "lots" is not a size/],
  ])('%j', async (args, message) => {
    const r = await wanRun(['generate', ...args]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
  });

  it('names the missing component of a checkpoint folder', async () => {
    const ck = join(tmp, 'ckpt');
    cpSync(t2vCkpt, ck, { recursive: true });
    rmSync(join(ck, 'low_noise_model'), { recursive: true });
    const r = await wanRun(['generate', '--ckpt_dir', ck, '--size', '48*32', '--frame_num', '5', '--sample_steps', '1', '--save_file', join(tmp, 'x.mp4')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/low_noise_model is missing \(the low-noise expert, needed by t2v-A14B\)/);
    expect(existsSync(join(tmp, 'x.mp4'))).toBe(false);
  });

  it('a budget even streaming cannot meet: says what the lightest plan needs and which flags help, writes nothing', async () => {
    const out = join(tmp, 'tiny-budget.mp4');
    const r = await wanRun(['generate', '--ckpt_dir', t2vCkpt, '--size', '48*32', '--frame_num', '5', '--sample_steps', '1', '--max-device-memory', '1MiB', '--save_file', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not enough device memory: the lightest plan \(--memory-mode stream.*\) needs [\d.]+ MiB at its peak \(\w+: .*\), the budget is 1\.0 MiB/);
    expect(r.stderr).toMatch(/raise --max-device-memory/);
    expect(existsSync(out)).toBe(false);
  });

  it('uses the official default file name scheme', () => {
    const name = defaultSaveFile('t2v-A14B', '1280*720', 'a cat/dog on a mat', new Date(2026, 0, 2, 3, 4, 5));
    expect(name).toBe('t2v-A14B_1280*720_1_a_cat_dog_on_a_mat_20260102_030405.mp4');
  });
});

describe('wan generate: end to end on a fixture checkpoint', () => {
  it('ti2v-5B text-only: PNG frames match the reference, MP4 has the right count, size and fps', async () => {
    const fx = await loadFixture(join(fixturesDir, 'pipeline.ti2v_t2v'));
    const c = fx.config as any;
    const args = [
      'generate', '--task', 'ti2v-5B', '--ckpt_dir', join(fx.dir, 'ckpt'), '--size', `${c.size[0]}*${c.size[1]}`,
      '--frame_num', String(c.frame_num), '--sample_steps', String(c.sampling_steps), '--sample_shift', String(c.shift),
      '--sample_guide_scale', String(c.guide_scale), '--base_seed', String(c.seed), '--prompt', c.prompt,
    ];
    const png = join(tmp, 'frames/');
    const r = await wanRun([...args, '--save_file', png]);
    expect(r.stderr + r.stdout).toMatch(/ti2v-5B was trained on/); // 64*32 is not an official size
    expect(r.code).toBe(0);
    const frames = await readPngFrames(png);
    const ref = fx.output('frames');
    expect([frames.frames, frames.height, frames.width]).toEqual(ref.shape.slice(0, 3));
    const want = ref.f64();
    let differ = 0;
    for (let i = 0; i < want.length; i++) {
      const d = Math.abs(frames.rgb[i] - want[i]);
      expect(d).toBeLessThanOrEqual(1);
      if (d) differ++;
    }
    expect(differ / want.length).toBeLessThanOrEqual(0.005);
    const mp4 = join(tmp, 'v.mp4');
    const r2 = await wanRun([...args, '--save_file', mp4]);
    expect(r2.code).toBe(0);
    expect(r2.stdout).toMatch(/9 frames 64x32 at 24 fps/);
    const v = await readMp4(mp4);
    expect([v.frames, v.width, v.height]).toEqual([9, 64, 32]);
    expect(v.fps).toBeCloseTo(24, 1);
    // Animated WebP is lossless: the same frames as the PNG folder.
    const webp = join(tmp, 'v.webp');
    const r3 = await wanRun([...args, '--save_file', webp]);
    expect(r3.code).toBe(0);
    const anim = await sharp(webp, { pages: -1 }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([anim.info.pages, anim.info.pageHeight, anim.info.width]).toEqual([9, 32, 64]);
    expect(Buffer.compare(anim.data, Buffer.from(frames.rgb))).toBe(0);
    expect(readdirSync(tmp).filter((f) => f.includes('.partial'))).toEqual([]);
    // The summary prints the plan beside the measured peaks (exact at this size).
    expect(r2.stdout).toMatch(/^memory mode \w+: predicted peak [\d.]+ MiB/m);
    expect(r2.stdout).toMatch(/^  denoising +predicted +[\d.]+ MiB .*measured [\d.]+ MiB \([+-]\d+\.\d%\)$/m);
    // f16 activations: the same video within f16 rounding (a few levels at most, most pixels equal).
    const png16 = join(tmp, 'frames16/');
    const r4 = await wanRun([...args, '--activations', 'f16', '--save_file', png16]);
    expect(r4.code).toBe(0);
    const f16 = await readPngFrames(png16);
    let sum = 0;
    let worst = 0;
    for (let i = 0; i < want.length; i++) {
      const d = Math.abs(f16.rgb[i] - want[i]);
      sum += d;
      worst = Math.max(worst, d);
    }
    console.log(`f16 activations: frames mean |diff| ${(sum / want.length).toFixed(3)} levels, max ${worst}`);
    expect(worst).toBeLessThanOrEqual(4);
    expect(sum / want.length).toBeLessThan(0.25);
  });
});

describe('wan generate: the other fixture checkpoints through the CLI', () => {
  // Every pipeline fixture's ckpt/ folder with its prompt, seed, steps, size (the area for image tasks)
  // and image: PNG frames equal the reference within one level, the MP4 has its count, size and fps.
  it.each(['pipeline.t2v', 'pipeline.t2v_dpmpp', 'pipeline.i2v', 'pipeline.ti2v_i2v'])('%s', async (name) => {
    const fx = await loadFixture(join(fixturesDir, name));
    const c = fx.config as any;
    const [T, H, W] = fx.output('frames').shape;
    const size = c.size ?? (c.task === 'i2v-A14B' ? [48, 32] : [64, 32]); // image tasks: the area, max_area = W*H
    expect(size[0] * size[1]).toBe(c.size ? size[0] * size[1] : c.max_area);
    const g = Array.isArray(c.guide_scale) ? c.guide_scale : [c.guide_scale, c.guide_scale];
    const args = [
      'generate', '--task', c.task, '--ckpt_dir', join(fx.dir, 'ckpt'), '--size', `${size[0]}*${size[1]}`, '--frame_num', String(c.frame_num),
      '--sample_steps', String(c.sampling_steps), '--sample_shift', String(c.shift), '--sample_solver', c.sample_solver, '--base_seed', String(c.seed), '--prompt', c.prompt,
      ...(g[0] === g[1] ? ['--sample_guide_scale', String(g[0])] : []), // else the task's (3, 4) pair, which --sample_guide_scale cannot spell
    ];
    if (fx.spec.inputs.includes('image')) {
      const im = fx.input('image');
      const png = join(tmp, `${name}.png`);
      await sharp(Buffer.from(Uint8Array.from(im.f64())), { raw: { width: im.shape[1], height: im.shape[0], channels: 3 } }).png().toFile(png);
      args.push('--image', png);
    }
    const dir = join(tmp, `${name}-frames/`);
    const r = await wanRun([...args, '--save_file', dir]);
    expect(r.code, r.stderr).toBe(0);
    const frames = await readPngFrames(dir);
    expect([frames.frames, frames.height, frames.width]).toEqual([T, H, W]);
    const want = fx.output('frames').f64();
    let differ = 0;
    for (let i = 0; i < want.length; i++) {
      const d = Math.abs(frames.rgb[i] - want[i]);
      expect(d).toBeLessThanOrEqual(1);
      if (d) differ++;
    }
    expect(differ / want.length).toBeLessThanOrEqual(0.005);
    const mp4 = join(tmp, `${name}.mp4`);
    const r2 = await wanRun([...args, '--save_file', mp4]);
    expect(r2.code, r2.stderr).toBe(0);
    const v = await readMp4(mp4);
    expect([v.frames, v.width, v.height]).toEqual([T, W, H]);
    expect(v.fps).toBeCloseTo(c.sample_fps, 1);
  });
});
