// `wan verify` and `wan info` as a user runs them, including a corrupted fixture.
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { fixturesDir } from './helpers.ts';

const run = promisify(execFile);
const wan = new URL('../cli/wan.js', import.meta.url).pathname;

async function wanRun(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [wan, ...args], { maxBuffer: 1 << 24 });
    return { code: 0, stdout, stderr };
  } catch (e: any) {
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const tmp = mkdtempSync(join(tmpdir(), 'wan-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('wan verify', () => {
  it('prints PASS lines and the summary, exit 0', async () => {
    const r = await wanRun(['verify', join(fixturesDir, 'op.silu'), join(fixturesDir, 'op.gelu_tanh')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^op\.silu \(op\.silu\)$/m);
    expect(r.stdout).toMatch(/^\s+y\s+relL2\s+\S+\s+maxAbs\s+\S+\s+tol 1\.00e-5\s+PASS$/m);
    expect(r.stdout).toMatch(/^\s+y_t5\s.*PASS$/m);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('2 passed, 0 failed');
  });

  it('--json parses and carries every output', async () => {
    const r = await wanRun(['verify', join(fixturesDir, 'op.gelu_tanh'), '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ fixture: 'op.gelu_tanh', kind: 'op.gelu_tanh', pass: true });
    expect(j.outputs.map((o: any) => o.name)).toEqual(['y', 'y_t5']);
    for (const o of j.outputs) {
      expect(Object.keys(o).sort()).toEqual(['maxAbs', 'name', 'pass', 'relL2', 'tol']);
      expect(o.relL2).toBeLessThan(o.tol);
    }
  });

  it('a corrupted fixture fails with a clear message and exit 1', async () => {
    const bad = join(tmp, 'op.silu');
    cpSync(join(fixturesDir, 'op.silu'), bad, { recursive: true });
    const io = join(bad, 'io.safetensors');
    writeFileSync(io, readFileSync(io).subarray(0, 3000)); // truncated data section
    const r = await wanRun(['verify', bad]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/FAIL .*io\.safetensors/);
    expect(r.stdout).toMatch(/outside|exceeds|beyond|truncat/i);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('0 passed, 1 failed');
  });

  it('a wrong reference value fails the comparison', async () => {
    const bad = join(tmp, 'op.silu.wrong');
    cpSync(join(fixturesDir, 'op.silu'), bad, { recursive: true });
    const io = join(bad, 'io.safetensors');
    const bytes = readFileSync(io);
    bytes[bytes.length - 2] ^= 0x40; // flip an exponent bit of the last reference value
    writeFileSync(io, bytes);
    const r = await wanRun(['verify', bad, '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ pass: false, outputs: [{ name: 'y', pass: false }] });
  });

  it('an unknown kind fails and names the known ones', async () => {
    const odd = join(tmp, 'odd');
    cpSync(join(fixturesDir, 'op.silu'), odd, { recursive: true });
    const cj = JSON.parse(readFileSync(join(odd, 'case.json'), 'utf8'));
    writeFileSync(join(odd, 'case.json'), JSON.stringify({ ...cj, kind: 'op.nonexistent' }));
    const r = await wanRun(['verify', odd]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/unknown fixture kind "op\.nonexistent" \(this engine knows: .*op\.silu/);
  });
});

describe('wan info --device', () => {
  it('prints the adapter, limits and features', async () => {
    const r = await wanRun(['info', '--device', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(j.effective.maxBindingBytes).toBeGreaterThan(0);
    expect(Array.isArray(j.adapterFeatures)).toBe(true);
  });

  it('unknown commands exit 2 with usage', async () => {
    const r = await wanRun(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command "frobnicate"/);
  });
});

describe('wan info <ckpt_dir>', () => {
  it('describes a checkpoint folder: task, architecture, parameters, sizes', async () => {
    const r = await wanRun(['info', join(fixturesDir, 'pipeline.i2v', 'ckpt'), '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.task).toBe('i2v-A14B');
    expect(j.components.map((c: any) => c.name)).toEqual(['high-noise expert', 'low-noise expert', 'text encoder', 'VAE']);
    const high = j.components[0];
    expect(high.architecture).toMatch(/WanModel i2v: dim 56, 2 layers, 2 heads, ffn 112, in 36/);
    expect(high.diskBytes).toBeGreaterThan(100_000); // both shards counted, not just the index
    expect(high.device.f32).toBeCloseTo(high.params * 4, -3);
  });
  it('--plan: per-mode peaks from the official architectures, and the mode a budget picks', async () => {
    const r = await wanRun(['info', '--plan', '--task', 'ti2v-5B', '--size', '1280*704', '--frame_num', '121', '--max-device-memory', '8GB', '--no-device']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ti2v-5B 1280x704, 121 frames: latent \[48,31,44,80\], 27280 tokens/m);
    for (const mode of ['resident', 'offload', 'stream']) expect(r.stdout).toMatch(new RegExp(`^memory mode ${mode}: predicted peak [\\d.]+ GiB`, 'm'));
    expect(r.stdout).toMatch(/^  denoising +predicted .*peak at DiT (self-attention|ffn)/m);
    expect(r.stdout).toMatch(/^wan generate would use: /m);
    const j = JSON.parse((await wanRun(['info', '--plan', '--task', 't2v-A14B', '--size', '832*480', '--frame_num', '81', '--json', '--no-device', '--max-device-memory', '1TB'])).stdout);
    expect(j.chosen).toBe('resident');
    expect(j.plans.map((p: any) => `${p.mode}${p.vaeTile ? '+tile' : ''}${p.cfgSequential ? '+seq' : ''}`)).toEqual(['resident', 'offload', 'stream', 'stream+tile', 'stream+tile+seq']);
    // Streaming holds far less than resident: both 14 B experts vs one block.
    expect(j.plans[2].stages.find((s: any) => s.stage === 'denoise').weightBytes).toBeLessThan(j.plans[0].stages.find((s: any) => s.stage === 'denoise').weightBytes / 20);
  });

  it('--plan reads the architectures of a checkpoint folder', async () => {
    const r = await wanRun(['info', '--plan', '--task', 't2v-A14B', '--size', '48*32', '--frame_num', '5', join(fixturesDir, 'pipeline.t2v', 'ckpt'), '--no-device']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/architectures of .*pipeline\.t2v/);
    expect(r.stdout).toMatch(/^memory mode resident: predicted peak [\d.]+ MiB/m);
  });

  it('says what is missing from an incomplete folder', async () => {
    const r = await wanRun(['info', tmp]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a complete checkpoint folder of any task/);
    expect(r.stderr).toMatch(/models_t5_umt5-xxl-enc-bf16\.pth is missing/);
  });
});
