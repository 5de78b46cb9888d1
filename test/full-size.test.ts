// Opt-in (WAN_SLOW=1; minutes, ~35 GB of disk): `wan generate --task ti2v-5B` end to end on the
// synthetic full-size checkpoint (bench/make-checkpoint.ts: the official shapes, dtypes and layout;
// made on first use) at 256*256, 5 frames, 1 step, under an 8 GB device-memory budget: the real
// umT5-XXL, DiT and Wan2.2-VAE dimensions. The planner must pick a mode that fits, the run must stay
// inside the budget (the pool enforces it), and every stage's measured peak must be within 10% of
// the prediction (the image-encoding stage is not run: text-only).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { makeSyntheticCheckpoint } from '../bench/make-checkpoint.ts';
import { readMp4 } from '../cli/output/mp4-read.ts';

const run = promisify(execFile);
const wan = new URL('../cli/wan.js', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'wan-full-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const GiB = 2 ** 30;
const parseGiB = (s: string) => Number(s.split(' ')[0]) * (s.endsWith('GiB') ? GiB : 2 ** 20);

describe.skipIf(!process.env.WAN_SLOW)('full size (WAN_SLOW=1)', () => {
  it('ti2v-5B, 256*256, 5 frames, 1 step, --max-device-memory 8GB', { timeout: 3_600_000 }, async () => {
    const ck = await makeSyntheticCheckpoint({ task: 'ti2v-5B' });
    const out = join(tmp, 'full.mp4');
    const { stdout, stderr } = await run(
      process.execPath,
      [wan, 'generate', '--task', 'ti2v-5B', '--ckpt_dir', ck.dir, '--size', '256*256', '--frame_num', '5', '--sample_steps', '1', '--base_seed', '1', '--max-device-memory', '8GB', '--save_file', out],
      { maxBuffer: 1 << 26 },
    );
    console.log(stdout);
    expect(stderr).not.toMatch(/DeviceMemoryError|not enough device memory/);
    const mode = /^memory mode (\w+)/m.exec(stdout)![1];
    expect(['offload', 'stream']).toContain(mode); // resident (10 GB of DiT weights) cannot fit
    const stages = [...stdout.matchAll(/^  (\S+(?: \S+)?) +predicted +([\d.]+ [MG]iB) .*measured ([\d.]+ [MG]iB)/gm)];
    expect(stages.map((m) => m[1])).toEqual(['text encoding', 'denoising', 'VAE decoding']);
    for (const [, stage, p, m] of stages) {
      const predicted = parseGiB(p);
      const measured = parseGiB(m);
      expect(measured, stage).toBeLessThanOrEqual(8e9);
      expect(Math.abs(measured - predicted) / measured, stage).toBeLessThan(0.1);
    }
    const v = await readMp4(out);
    expect([v.frames, v.width, v.height]).toEqual([5, 256, 256]);
  });
});
