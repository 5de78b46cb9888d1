// `npm run bench -- load`: checkpoint streaming throughput. Writes a multi-GB float32 safetensors
// file (Wan-sized tensors, streamed to disk, never held in memory), then measures in one run:
//   raw     a plain sequential read of the same file (16 MiB positioned reads, nothing else)
//   loader  SafetensorsFile + uploadTensor: every tensor streamed to bf16 tensors on the device,
//           timed until the device has them (engine.sync)
// and prints loader / raw (target >= 70%). Both are measured warm (the file in the page cache, as
// right after writing it) and, where the cache can be dropped for this one file, cold.
//
// Cold reads: Node has no posix_fadvise; `dd if=FILE iflag=nocache count=0` (GNU coreutils) asks
// the kernel to drop the file's cached pages (POSIX_FADV_DONTNEED) without root. `fincore`
// (util-linux), when present, confirms how much of the file is still resident; when the drop fails
// the cold rows are skipped and say why.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Engine, type Tensor } from '../engine/index.ts';
import { SafetensorsFile } from '../loaders/safetensors.ts';
import { uploadTensor } from '../loaders/upload.ts';

const usage = `usage: npm run bench -- load [--gb N] [--dir DIR] [--repeat N] [--no-cold] [--keep] [--json]
  --gb N       file size in GB (1e9 bytes; default 4)
  --dir DIR    where to write the file (default: the OS temp folder); removed afterwards
  --repeat N   measure raw and loader N times each, alternating (default 2); the best of each is reported
  --no-cold    only warm (page-cached) reads
  --keep       keep the file (its path is printed)
  --json       one JSON object instead of the text report`;

const SHAPES: number[][] = [
  [5120, 5120], // attention projections of the A14B experts
  [13824, 5120], // ffn.0
  [5120, 13824], // ffn.2
  [5120], // biases, norms
];

/** Tensors that add up to about `bytes` of float32. */
function layout(bytes: number): { name: string; shape: number[] }[] {
  const out: { name: string; shape: number[] }[] = [];
  let total = 0;
  for (let i = 0; ; i++) {
    const shape = SHAPES[i % SHAPES.length];
    const b = shape.reduce((x, y) => x * y, 1) * 4;
    if (total + b > bytes) break;
    out.push({ name: `blocks.${Math.floor(i / SHAPES.length)}.t${i % SHAPES.length}.weight`, shape });
    total += b;
  }
  // The rest as one flat tensor, so the file is the size asked for.
  const rest = Math.floor((bytes - total) / 4);
  if (rest > 0) out.push({ name: 'rest.weight', shape: [rest] });
  return out;
}

/** Streams a float32 safetensors file of the given tensors: header, then 16 MiB writes of a random pattern. */
async function writeFile(path: string, tensors: { name: string; shape: number[] }[]): Promise<number> {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((x, y) => x * y, 1) * 4;
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  const json = Buffer.from(JSON.stringify(header));
  const headerLen = Math.ceil(json.byteLength / 8) * 8;
  const head = Buffer.alloc(8 + headerLen, 0x20);
  head.writeBigUInt64LE(BigInt(headerLen), 0);
  json.copy(head, 8);
  // Weight-like values (|x| ~ 0.02, every exponent path of the conversion exercised by the noise).
  const pattern = new Float32Array(4 << 20);
  let s = 12345;
  for (let i = 0; i < pattern.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    pattern[i] = ((s / 2 ** 32) * 2 - 1) * 0.05;
  }
  const bytes = new Uint8Array(pattern.buffer);
  const fh = await open(path, 'w');
  try {
    await fh.write(head, 0, head.byteLength, 0);
    let pos = head.byteLength;
    const end = head.byteLength + offset;
    while (pos < end) {
      const n = Math.min(bytes.byteLength, end - pos);
      await fh.write(bytes, 0, n, pos);
      pos += n;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return head.byteLength + offset;
}

interface Measure {
  seconds: number;
  gbps: number;
  /** Whole-process CPU seconds (user + system: lavapipe's threads and libuv's readers included). */
  cpuSeconds: number;
}

function cpuNow(): number {
  const r = process.resourceUsage();
  return (r.userCPUTime + r.systemCPUTime) / 1e6;
}

async function timed(bytes: number, fn: () => Promise<void>): Promise<Measure> {
  const c0 = cpuNow();
  const t0 = performance.now();
  await fn();
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, gbps: bytes / seconds / 1e9, cpuSeconds: cpuNow() - c0 };
}

async function rawRead(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const buf = new Uint8Array(16 << 20);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.byteLength, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

/**
 * Every tensor to bf16 on the device. `fresh`: device memory is returned to the system afterwards, so
 * each run allocates it anew, as a real load does; otherwise the pool keeps it for the next run.
 */
async function loaderRead(e: Engine, path: string, fresh: boolean): Promise<void> {
  const src = await SafetensorsFile.open(path);
  const tensors: Tensor[] = [];
  try {
    for (const name of src.names()) tensors.push(await uploadTensor(e, src, name, { dtype: 'bf16' }));
    await e.sync();
  } finally {
    for (const t of tensors) t.dispose();
    if (fresh) e.pool.trim();
    await src.close();
  }
}

/**
 * Host rate of first-touching fresh memory (allocate + fill, 64 MiB at a time). On lavapipe device
 * memory is host memory, so a load pays this for every device byte on top of reading and converting.
 */
function freshMemoryRate(bytes: number): number {
  const t0 = performance.now();
  for (let done = 0; done < bytes; done += 64 << 20) new Uint8Array(Math.min(64 << 20, bytes - done)).fill(1);
  return bytes / ((performance.now() - t0) / 1000) / 1e9;
}

/** Drops the file from the page cache (no root needed); returns why not when it cannot. */
function dropCache(path: string): { ok: boolean; note: string } {
  const dd = spawnSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none'], { encoding: 'utf8' });
  if (dd.error || dd.status !== 0) return { ok: false, note: `dd iflag=nocache failed: ${dd.error?.message ?? dd.stderr.trim()}` };
  const fc = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
  if (fc.error || fc.status !== 0) return { ok: true, note: 'dropped with dd iflag=nocache (not verified: no fincore)' };
  const resident = Number(fc.stdout.trim());
  return { ok: resident < 64 << 20, note: `dd iflag=nocache; ${(resident / 2 ** 20).toFixed(0)} MiB still resident (fincore)` };
}

interface Mode {
  raw: Measure;
  loader: Measure;
  ratio: number;
  note?: string;
}

export async function command(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        gb: { type: 'string', default: '4' },
        dir: { type: 'string' },
        repeat: { type: 'string', default: '2' },
        'no-cold': { type: 'boolean', default: false },
        keep: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
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
  const gb = Number(args.gb);
  const repeat = Number(args.repeat);
  if (!(gb > 0) || !Number.isInteger(repeat) || repeat < 1) {
    console.error(`--gb must be > 0 and --repeat a positive integer\n${usage}`);
    return 2;
  }
  const log = (m: string) => process.stderr.write(m + '\n');
  const dir = mkdtempSync(join(args.dir ?? tmpdir(), 'wan-bench-load-'));
  const path = join(dir, 'weights.safetensors');
  const e = await Engine.create();
  try {
    const tensors = layout(gb * 1e9);
    log(`writing ${path} (${tensors.length} float32 tensors) ...`);
    const w = await timed(0, async () => void (await writeFile(path, tensors)));
    const bytes = statSync(path).size;
    log(`  ${(bytes / 1e9).toFixed(2)} GB in ${w.seconds.toFixed(1)} s`);

    const best = (a: Measure | undefined, b: Measure) => (!a || b.seconds < a.seconds ? b : a);
    const run = async (cold: boolean): Promise<Mode> => {
      let raw: Measure | undefined;
      let loader: Measure | undefined;
      let note: string | undefined;
      for (let i = 0; i < repeat; i++) {
        for (const which of ['raw', 'loader'] as const) {
          if (cold) {
            const d = dropCache(path);
            note = d.note;
            if (!d.ok) throw new Error(`cannot drop the page cache for ${path}: ${d.note}`);
          } else {
            await rawRead(path); // make sure it is all cached
          }
          const m = await timed(bytes, () => (which === 'raw' ? rawRead(path) : loaderRead(e, path, true)));
          log(`  ${cold ? 'cold' : 'warm'} ${which.padEnd(6)} ${m.gbps.toFixed(2)} GB/s (${m.seconds.toFixed(2)} s, CPU ${m.cpuSeconds.toFixed(2)} s)`);
          if (which === 'raw') raw = best(raw, m);
          else loader = best(loader, m);
        }
      }
      return { raw: raw!, loader: loader!, ratio: loader!.gbps / raw!.gbps, ...(note ? { note } : {}) };
    };

    const result: Record<string, unknown> = { file: path, bytes, tensors: tensors.length, dtype: 'F32 -> bf16', repeat, device: e.gpu.summary.description };
    result.warm = await run(false);
    // Where the warm time goes: the same load into device memory kept from the previous run, and
    // the host's rate of touching fresh memory (the device bytes are half the file: bf16).
    await loaderRead(e, path, false);
    const pooled = await timed(bytes, () => loaderRead(e, path, false));
    e.pool.trim();
    result.warmReusedDeviceMemory = pooled;
    result.freshMemoryGBps = freshMemoryRate(bytes / 2);
    log(`  warm loader into reused device memory ${pooled.gbps.toFixed(2)} GB/s; touching fresh host memory ${(result.freshMemoryGBps as number).toFixed(2)} GB/s`);
    if (!args['no-cold']) {
      try {
        result.cold = await run(true);
      } catch (err) {
        result.cold = { skipped: (err as Error).message };
      }
    }
    if (args.json) {
      console.log(JSON.stringify(result, null, 1));
    } else {
      console.log(`bench load: ${(bytes / 1e9).toFixed(2)} GB float32 safetensors (${tensors.length} tensors) -> bf16 on the device; best of ${repeat}`);
      for (const mode of ['warm', 'cold'] as const) {
        const m = result[mode] as Mode | { skipped: string } | undefined;
        if (!m) continue;
        if ('skipped' in m) {
          console.log(`  ${mode}: skipped (${m.skipped})`);
          continue;
        }
        const ok = m.ratio >= 0.7 ? 'meets' : 'BELOW';
        console.log(`  ${mode}: raw read ${m.raw.gbps.toFixed(2)} GB/s (CPU ${m.raw.cpuSeconds.toFixed(1)} s), loader ${m.loader.gbps.toFixed(2)} GB/s (CPU ${m.loader.cpuSeconds.toFixed(1)} s): ${(m.ratio * 100).toFixed(0)}% of raw, ${ok} the 70% target${m.note ? ` [${m.note}]` : ''}`);
        if (mode === 'warm') {
          const reused = result.warmReusedDeviceMemory as Measure;
          const touch = result.freshMemoryGBps as number;
          console.log(`        into reused device memory ${reused.gbps.toFixed(2)} GB/s (${((reused.gbps / m.raw.gbps) * 100).toFixed(0)}% of raw); first-touching fresh memory runs at ${touch.toFixed(2)} GB/s here, i.e. ${(touch * 2).toFixed(2)} GB/s of float32 file bytes at most for a load into new bf16 device memory`);
        }
      }
    }
    return 0;
  } finally {
    await e.destroy();
    if (args.keep) log(`kept ${path}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}
