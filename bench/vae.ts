// `npm run bench -- vae`: WanVAE decode time per video frame and peak device memory, both VAEs at
// their real widths with synthetic weights (SyntheticVaeSource), at a few small sizes; beside it the
// computed estimate (vaeDecodePeakBytes) and, given an official Wan2.2 checkout (--wan-repo DIR or
// WAN_REPO), PyTorch's time for the same decode (bench/vae_torch.py, /usr/bin/python3, float32 CPU,
// default random init) and the ratio. Each size is decoded once untimed first (pipeline compilation).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Engine } from '../engine/index.ts';
import { SyntheticVaeSource, WanVAE, vaeDecodePeakBytes, type VaeVersion } from '../model/vae/index.ts';
import { randn } from '../test/helpers.ts';

const usage = `usage: npm run bench -- vae [--sizes LIST] [--frames N] [--dtype f32|bf16] [--tile] [--wan-repo DIR] [--python PATH] [--json]
  --sizes     version:WxH list (default 2.1:32x32,2.1:64x64,2.2:32x32,2.2:64x64)
  --frames    latent frames decoded (default 2: 5 video frames)
  --dtype     weight storage (default f32, as PyTorch runs)
  --tile      decode with the default spatial tiles
  --wan-repo  official Wan2.2 checkout for the PyTorch timing (default: env WAN_REPO; none: skipped)
  --python    interpreter with torch (default /usr/bin/python3)
  --json      one JSON object instead of the text report`;

export interface VaeBenchRow {
  version: VaeVersion;
  width: number;
  height: number;
  latent: number[];
  frames: number;
  seconds: number;
  secondsPerFrame: number;
  cpuSeconds: number;
  peakBytes: number;
  estimatedPeakBytes: number;
  torchSeconds?: number;
  torchCpuSeconds?: number;
  torchThreads?: number;
  /** Our time / PyTorch's. */
  ratio?: number;
}

const cpuNow = () => {
  const r = process.resourceUsage(); // the whole process: lavapipe's threads included
  return (r.userCPUTime + r.systemCPUTime) / 1e6;
};

function parseSizes(text: string): { version: VaeVersion; width: number; height: number }[] {
  return text.split(',').map((item) => {
    const m = /^(2\.[12]):(\d+)x(\d+)$/.exec(item.trim());
    if (!m) throw new Error(`--sizes: "${item}" is not version:WxH (e.g. 2.1:64x64)`);
    return { version: m[1] as VaeVersion, width: Number(m[2]), height: Number(m[3]) };
  });
}

function torchTimes(python: string, repo: string, version: VaeVersion, latents: number[][]): { seconds: number; cpuSeconds: number; threads: number }[] | string {
  const script = fileURLToPath(new URL('./vae_torch.py', import.meta.url));
  const args = [script, '--wan-repo', repo, '--version', version, ...latents.flatMap((l) => ['--shape', `${l[1]},${l[2]},${l[3]}`])];
  const r = spawnSync(python, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) return `PyTorch run failed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-1)[0]}`;
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { seconds: number; cpuSeconds: number; threads: number });
}

export async function command(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        sizes: { type: 'string', default: '2.1:32x32,2.1:64x64,2.2:32x32,2.2:64x64' },
        frames: { type: 'string', default: '2' },
        dtype: { type: 'string', default: 'f32' },
        tile: { type: 'boolean', default: false },
        'wan-repo': { type: 'string' },
        python: { type: 'string', default: '/usr/bin/python3' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n${usage}`);
    return 2;
  }
  if (args.help) {
    console.log(usage);
    return 0;
  }
  const frames = Number(args.frames);
  const dtype = args.dtype as 'f32' | 'bf16';
  if (!Number.isInteger(frames) || frames < 1 || !['f32', 'bf16'].includes(dtype)) {
    console.error(`--frames must be a positive integer and --dtype f32 or bf16\n${usage}`);
    return 2;
  }
  let sizes;
  try {
    sizes = parseSizes(args.sizes);
  } catch (err) {
    console.error(`${(err as Error).message}\n${usage}`);
    return 2;
  }
  const repo = args['wan-repo'] ?? process.env.WAN_REPO;
  const log = (s: string) => {
    if (!args.json) console.log(s);
  };
  let torchNote: string | undefined = repo ? undefined : 'no --wan-repo / WAN_REPO: PyTorch not timed';
  if (repo && !existsSync(`${repo}/wan/modules/vae2_1.py`)) torchNote = `${repo}: no wan/modules/vae2_1.py (not an official Wan2.2 checkout): PyTorch not timed`;

  const e = await Engine.create();
  const rows: VaeBenchRow[] = [];
  try {
    for (const version of ['2.1', '2.2'] as const) {
      const mine = sizes.filter((s) => s.version === version);
      if (mine.length === 0) continue;
      const vae = await WanVAE.load(e, new SyntheticVaeSource(version), version, { dtype });
      try {
        const s = vae.config.stride[1];
        for (const { width, height } of mine) {
          if (width % s || height % s) throw new Error(`--sizes: ${width}x${height} is not divisible by the Wan${version} stride ${s}`);
          const latent = [vae.config.zDim, frames, height / s, width / s];
          const z = randn(latent.reduce((a, b) => a * b, 1), 7);
          await vae.decode(z.subarray(0, latent[0] * latent[2] * latent[3]), [latent[0], 1, latent[2], latent[3]], { tile: args.tile }); // warm-up
          e.pool.resetPeaks();
          const c0 = cpuNow();
          const t0 = performance.now();
          const out = await vae.decode(z, latent, { tile: args.tile });
          const seconds = (performance.now() - t0) / 1000;
          const row: VaeBenchRow = {
            version,
            width,
            height,
            latent,
            frames: out.shape[1],
            seconds,
            secondsPerFrame: seconds / out.shape[1],
            cpuSeconds: cpuNow() - c0,
            peakBytes: e.memory().peakLiveBytes,
            estimatedPeakBytes: vaeDecodePeakBytes(version, width, height, { dtype, tile: args.tile, maxBufferBytes: e.gpu.maxBufferBytes }).peakBytes,
          };
          rows.push(row);
          log(`Wan${version} ${width}x${height} x ${row.frames} frames: ${row.seconds.toFixed(2)} s (${row.secondsPerFrame.toFixed(2)} s/frame, CPU ${row.cpuSeconds.toFixed(1)} s), peak ${(row.peakBytes / 2 ** 20).toFixed(0)} MiB (estimate ${(row.estimatedPeakBytes / 2 ** 20).toFixed(0)} MiB)`);
        }
      } finally {
        vae.dispose();
        e.pool.trim();
      }
    }
  } finally {
    await e.destroy();
  }

  if (repo && !torchNote) {
    for (const version of ['2.1', '2.2'] as const) {
      const mine = rows.filter((r) => r.version === version);
      if (mine.length === 0) continue;
      const got = torchTimes(args.python, repo, version, mine.map((r) => r.latent));
      if (typeof got === 'string') {
        torchNote = got;
        break;
      }
      mine.forEach((r, i) => {
        r.torchSeconds = got[i].seconds;
        r.torchCpuSeconds = got[i].cpuSeconds;
        r.torchThreads = got[i].threads;
        r.ratio = r.seconds / got[i].seconds;
        log(`Wan${version} ${r.width}x${r.height}: PyTorch ${got[i].seconds.toFixed(2)} s (CPU ${got[i].cpuSeconds.toFixed(1)} s, ${got[i].threads} threads): ours / PyTorch = ${r.ratio.toFixed(2)}`);
      });
    }
  }
  if (torchNote) log(`note: ${torchNote}`);
  if (args.json) console.log(JSON.stringify({ bench: 'vae', dtype, tile: args.tile, latentFrames: frames, rows, ...(torchNote ? { note: torchNote } : {}) }, null, 1));
  return 0;
}
