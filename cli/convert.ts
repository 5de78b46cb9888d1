// `wan convert --ckpt_dir SRC --out DST`: a copy of an official checkpoint folder whose diffusion
// transformer(s) store their linear weights in bfloat16 instead of float32.
//
// The engine keeps linear weights in bf16 on the device and converts float32 on the host at every
// upload; with --memory-mode stream every forward re-reads and re-converts every block. A bf16 copy
// halves the bytes read, skips the conversion and fits the page cache twice as well.
//
// What is converted: exactly the tensors the DiT loader uploads in its weight dtype (the linear and
// patch-embedding weights: F32 tensors named `*.weight` with two or more dimensions), rounded to
// nearest even by the loader's own converter (loaders/bf16-simd.ts), so a model loaded from DST with
// the default `--dtype bf16` is bit-identical on the device to one loaded from SRC. Norms, biases and
// modulation stay float32 (the loader keeps them in f32 on the device); other dtypes are copied.
// Every other file (umT5, VAE, tokenizer, ...) is hard-linked, or copied across file systems.
//
// DST is written into a temporary sibling folder, checked with locateCheckpoint and renamed at the
// end: a failed or interrupted run leaves no DST (and removes its temporary folder).
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, promises as fsp, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import { Bf16Converter } from '../loaders/bf16-simd.ts';
import { detectCheckpointTask, locateCheckpoint, type DitFiles } from '../loaders/checkpoint.ts';
import { isDiffusersFolder } from '../loaders/diffusers-checkpoint.ts';
import { openRawTensorSource } from '../loaders/open.ts';
import { DTYPE_SIZE } from '../loaders/safetensors.ts';
import { tensorBytes, writeSafetensorsStreamingAsync, type StreamTensor } from '../loaders/safetensors-stream-writer.ts';
import { shardFileName, sortedJson, splitShards } from '../loaders/shards.ts';
import type { TensorSource } from '../loaders/source.ts';
import { TASK_NAMES, taskSpec, type TaskSpec } from '../model/pipelines/tasks.ts';

const usage = `usage: wan convert --ckpt_dir SRC --out DST [--task T] [--dtype bf16] [--force]

Writes DST, a complete checkpoint folder of the same task whose diffusion transformer(s) store the
linear weights in bf16 (half the bytes; loads bit-identically with the default --dtype bf16). Other
files are hard-linked (copied across file systems). Official layout only.

  --ckpt_dir SRC   official checkpoint folder (ti2v-5B, t2v-A14B or i2v-A14B)
  --out DST        the new folder (must not exist unless --force)
  --task T         the task; inferred from the folder's files when absent
  --dtype bf16     the stored dtype of the converted weights (only bf16)
  --force          replace an existing DST`;

/** diffusers' / huggingface_hub's default shard limit (as bench/make-checkpoint.ts). */
const DEFAULT_MAX_SHARD_BYTES = 10e9;
/** Kept free on the destination's file system. */
const DISK_MARGIN_BYTES = 1 << 30;
/** Output bytes per chunk (two buffers; the converter holds 3x this). */
const DEFAULT_CHUNK_BYTES = 32 << 20;
/** Positioned reads in flight per chunk (a cold disk wants several). */
const READS_PER_CHUNK = 4;
/** Written by bench/make-checkpoint.ts: describes its own files, so not carried over. */
const SKIP_FILES = new Set(['synthetic.json']);
const DIT_FILE = /^diffusion_pytorch_model(-\d+-of-\d+)?\.safetensors(\.index\.json)?$/;

const GB = (n: number) => `${(n / 1e9).toFixed(2)} GB`;

/** Tensors converted to bf16: what WanDiT.load uploads in its weight dtype, when stored as F32. */
export function convertsToBf16(name: string, dtype: string, shape: readonly number[]): boolean {
  return dtype === 'F32' && name.endsWith('.weight') && shape.length >= 2;
}

export interface ConvertOptions {
  src: string;
  out: string;
  task?: string;
  force?: boolean;
  maxShardBytes?: number;
  chunkBytes?: number;
  log?: (s: string) => void;
  progressIntervalMs?: number;
}

export interface ConvertResult {
  dir: string;
  task: string;
  ditBytesBefore: number;
  ditBytesAfter: number;
  linkedBytes: number;
  copiedBytes: number;
  seconds: number;
}

interface DitJob {
  /** Folder relative to the checkpoint ('' for ti2v's dense model). */
  rel: string;
  files: DitFiles;
  /** Another job's rel this folder is a symbolic link to (one expert aliased to the other). */
  aliasOf?: string;
}

interface OutTensor extends StreamTensor {
  from: string;
  convert: boolean;
}

/** Free bytes for an unprivileged user on the file system holding `dir` (or its nearest existing parent). */
async function freeBytes(dir: string): Promise<number> {
  let d = resolve(dir);
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  const s = await fsp.statfs(d);
  return s.bavail * s.bsize;
}

class Progress {
  done = 0;
  private last = 0;
  private readonly start = performance.now();
  constructor(
    private total: number,
    private log: (s: string) => void,
    private intervalMs: number,
  ) {}
  add(n: number, what: string): void {
    this.done += n;
    const now = performance.now();
    if (now - this.last < this.intervalMs) return;
    this.last = now;
    const s = (now - this.start) / 1000;
    const rate = this.done / Math.max(s, 1e-3);
    this.log(`  ${GB(this.done)} / ${GB(this.total)} read (${((100 * this.done) / Math.max(this.total, 1)).toFixed(0)}%), ${(rate / 1e6).toFixed(0)} MB/s, ${((this.total - this.done) / Math.max(rate, 1)).toFixed(0)} s left: ${what}`);
  }
}

/** Reads `dst.byteLength` bytes of tensor `name` from `offset`, in up to READS_PER_CHUNK positioned reads at once. */
async function readChunk(src: TensorSource, name: string, offset: number, dst: Uint8Array): Promise<void> {
  const n = dst.byteLength;
  const piece = Math.max(4 << 20, Math.ceil(n / READS_PER_CHUNK / 8) * 8);
  const reads: Promise<void>[] = [];
  for (let at = 0; at < n; at += piece) {
    const part = dst.subarray(at, Math.min(n, at + piece));
    reads.push(src.readInto ? src.readInto(name, offset + at, part) : src.readRange(name, offset + at, part.byteLength).then((b) => part.set(b)));
  }
  const settled = await Promise.allSettled(reads);
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
}

/** Rewrites one DiT folder's weights into `outDir` (which exists); returns the bytes written. */
async function convertDit(job: DitJob, outDir: string, o: Required<Pick<ConvertOptions, 'maxShardBytes' | 'chunkBytes'>>, conv: Bf16Converter, progress: Progress): Promise<number> {
  const src = await openRawTensorSource(job.files.weights);
  try {
    const tensors: OutTensor[] = src.names().map((name) => {
      const i = src.info(name);
      const convert = convertsToBf16(name, i.dtype, i.shape);
      return { name, shape: i.shape, dtype: convert ? 'BF16' : i.dtype, from: i.dtype, convert };
    });
    const shards = splitShards(tensors, o.maxShardBytes);
    const fill = async (t: StreamTensor, dst: Uint8Array, byteOffset: number) => {
      const ot = t as OutTensor;
      if (!ot.convert) {
        await readChunk(src, ot.name, byteOffset, dst);
        progress.add(dst.byteLength, ot.name);
        return;
      }
      // bf16 byte offset k is float32 byte offset 2k; chunks hold whole elements (multiples of 8 bytes or a tensor's tail).
      const elems = dst.byteLength / 2;
      const input = conv.input(0, elems);
      await readChunk(src, ot.name, byteOffset * 2, input);
      dst.set(conv.convert(0, elems));
      progress.add(input.byteLength, ot.name);
    };
    const metadata = { format: 'pt' };
    const byName = (a: StreamTensor, b: StreamTensor) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    let written = 0;
    const names: string[] = [];
    if (shards.length === 1) {
      names.push('diffusion_pytorch_model.safetensors');
    } else {
      shards.forEach((_, i) => names.push(shardFileName(i, shards.length)));
    }
    for (let i = 0; i < shards.length; i++) {
      written += await writeSafetensorsStreamingAsync(join(outDir, names[i]!), [...shards[i]!].sort(byName), fill, { metadata, chunkBytes: o.chunkBytes });
    }
    if (shards.length > 1) {
      const weightMap: Record<string, string> = {};
      shards.forEach((s, i) => s.forEach((t) => (weightMap[t.name] = names[i]!)));
      const totalSize = tensors.reduce((a, t) => a + tensorBytes(t), 0);
      const text = sortedJson({ metadata: { total_size: totalSize }, weight_map: weightMap });
      await fsp.writeFile(join(outDir, 'diffusion_pytorch_model.safetensors.index.json'), text);
      written += Buffer.byteLength(text);
    }
    return written;
  } finally {
    await src.close();
  }
}

/** Temporary folders of earlier runs that were killed outright (their process is gone): removed. */
async function removeDeadTemps(parent: string, prefix: string): Promise<void> {
  for (const n of readdirSync(parent)) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number(/^(\d+)-/.exec(n.slice(prefix.length))?.[1]);
    if (!Number.isSafeInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue; // still running
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') continue;
    }
    await fsp.rm(join(parent, n), { recursive: true, force: true });
  }
}

/** Bytes of a DiT's weights on disk (every shard and the index). */
function ditDiskBytes(files: DitFiles): number {
  let n = 0;
  for (const f of readdirSync(files.dir)) if (DIT_FILE.test(f)) n += statSync(join(files.dir, f)).size;
  return n;
}

export async function convertCheckpoint(opts: ConvertOptions): Promise<ConvertResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const srcDir = resolve(opts.src);
  const dst = resolve(opts.out);
  if (!existsSync(srcDir) || !statSync(srcDir).isDirectory()) throw new Error(`convert: --ckpt_dir ${srcDir} is not a folder`);
  if (isDiffusersFolder(srcDir)) throw new Error(`convert: ${srcDir} is a Diffusers-layout folder (model_index.json); wan convert takes the official layout only`);
  let task: TaskSpec;
  if (opts.task) {
    task = taskSpec(opts.task);
    try {
      locateCheckpoint(srcDir, task);
    } catch (e) {
      throw new Error(`convert: ${(e as Error).message}`);
    }
  } else {
    try {
      task = detectCheckpointTask(srcDir);
    } catch (e) {
      throw new Error(`convert: ${(e as Error).message}`);
    }
  }
  const files = locateCheckpoint(srcDir, task);
  // t2v and i2v experts share the layout: the DiT config tells them apart (for the messages only).
  if (!opts.task && task.experts && files.high?.config?.model_type === 'i2v') task = taskSpec('i2v-A14B');
  const real = (p: string) => realpathSync(p);
  if (dst === srcDir || (dst + sep).startsWith(real(srcDir) + sep) || (dst + sep).startsWith(srcDir + sep)) throw new Error(`convert: --out ${dst} is inside --ckpt_dir`);
  if (existsSync(dst) && !opts.force) throw new Error(`convert: ${dst} exists; pass --force to replace it`);

  const jobs: DitJob[] = [];
  if (task.experts) {
    for (const [rel, f] of [['high_noise_model', files.high!], ['low_noise_model', files.low!]] as const) jobs.push({ rel, files: f });
    // An expert folder that is a link to the other one (bench/make-checkpoint's one-expert checkpoints) stays a link.
    const [a, b] = jobs as [DitJob, DitJob];
    if (lstatSync(join(srcDir, b.rel)).isSymbolicLink() && real(join(srcDir, b.rel)) === real(join(srcDir, a.rel))) b.aliasOf = a.rel;
    else if (lstatSync(join(srcDir, a.rel)).isSymbolicLink() && real(join(srcDir, a.rel)) === real(join(srcDir, b.rel))) a.aliasOf = b.rel;
  } else {
    jobs.push({ rel: '', files: files.dit! });
  }
  const ditDirs = new Set(jobs.map((j) => j.rel));
  const toConvert = jobs.filter((j) => !j.aliasOf);

  // Sizes: source bytes read, output bytes written (known from the headers before any data).
  let readTotal = 0;
  let ditBytesBefore = 0;
  let outEstimate = 0;
  for (const j of toConvert) {
    ditBytesBefore += ditDiskBytes(j.files);
    const s = await openRawTensorSource(j.files.weights);
    try {
      for (const n of s.names()) {
        const i = s.info(n);
        const numel = i.shape.reduce((x, y) => x * y, 1);
        readTotal += numel * DTYPE_SIZE[i.dtype];
        outEstimate += numel * (convertsToBf16(n, i.dtype, i.shape) ? 2 : DTYPE_SIZE[i.dtype]);
      }
    } finally {
      await s.close();
    }
  }

  // Other files: hard links on the same file system, else copies (which need space too).
  const parent = dirname(dst);
  await fsp.mkdir(parent, { recursive: true });
  const sameFs = statSync(srcDir).dev === statSync(parent).dev;
  const others: { rel: string; size: number }[] = [];
  const walk = (rel: string) => {
    for (const n of readdirSync(join(srcDir, rel))) {
      const r = rel ? join(rel, n) : n;
      const st = lstatSync(join(srcDir, r));
      if (ditDirs.has(r)) continue;
      if (ditDirs.has(rel) && (DIT_FILE.test(n) || n === 'config.json')) continue;
      if (SKIP_FILES.has(n) && rel === '') continue;
      if (st.isDirectory()) walk(r);
      else others.push({ rel: r, size: st.isFile() ? st.size : 0 });
    }
  };
  walk('');
  for (const j of toConvert) if (j.rel) walk(j.rel);
  const otherBytes = others.reduce((a, f) => a + f.size, 0);
  const need = outEstimate + (sameFs ? 0 : otherBytes);
  const free = await freeBytes(parent);
  if (free < need + DISK_MARGIN_BYTES) {
    throw new Error(`convert: ${dst} needs ${GB(need)} (+ ${GB(DISK_MARGIN_BYTES)} kept free) in ${parent}, but only ${GB(free)} is free; free space or choose another --out`);
  }

  await removeDeadTemps(parent, `.${basename(dst)}.convert-tmp-`);
  const temp = join(parent, `.${basename(dst)}.convert-tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  // An interrupted run (Ctrl-C, kill) removes its temporary folder too.
  const onSignal = (sig: NodeJS.Signals) => {
    rmSync(temp, { recursive: true, force: true });
    process.stderr.write(`wan convert: interrupted (${sig}); removed ${temp}\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const started = performance.now();
  log(`convert: ${task.name} ${srcDir} -> ${dst}: DiT ${GB(ditBytesBefore)} -> ${GB(outEstimate)} (bf16 linear weights), ${others.length} other files (${GB(otherBytes)}) ${sameFs ? 'hard-linked' : 'copied'}; ${GB(free)} free`);
  const progress = new Progress(readTotal, log, opts.progressIntervalMs ?? 5000);
  let linkedBytes = 0;
  let copiedBytes = 0;
  let ditBytesAfter = 0;
  try {
    await fsp.mkdir(temp);
    for (const f of others) {
      const from = join(srcDir, f.rel);
      const to = join(temp, f.rel);
      await fsp.mkdir(dirname(to), { recursive: true });
      const st = lstatSync(from);
      if (st.isSymbolicLink()) {
        await fsp.symlink(await fsp.readlink(from), to);
        continue;
      }
      try {
        await fsp.link(from, to);
        linkedBytes += f.size;
      } catch {
        await fsp.copyFile(from, to);
        copiedBytes += f.size;
      }
    }
    // Empty folders of the source (none expected) are not recreated; every DiT folder is.
    const conv = new Bf16Converter((opts.chunkBytes ?? DEFAULT_CHUNK_BYTES) / 2, 1);
    for (const j of toConvert) {
      const outDir = join(temp, j.rel);
      await fsp.mkdir(outDir, { recursive: true });
      const t0 = performance.now();
      const before = progress.done;
      const n = await convertDit(j, outDir, { maxShardBytes: opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES, chunkBytes: opts.chunkBytes ?? DEFAULT_CHUNK_BYTES }, conv, progress);
      ditBytesAfter += n;
      if (existsSync(join(j.files.dir, 'config.json'))) await fsp.copyFile(join(j.files.dir, 'config.json'), join(outDir, 'config.json'));
      const s = (performance.now() - t0) / 1000;
      log(`  ${j.rel || 'diffusion model'}: ${GB(progress.done - before)} read, ${GB(n)} written in ${s.toFixed(1)} s (${((progress.done - before) / 1e6 / Math.max(s, 1e-3)).toFixed(0)} MB/s read)`);
    }
    for (const j of jobs) if (j.aliasOf) await fsp.symlink(j.aliasOf, join(temp, j.rel), 'dir');
    locateCheckpoint(temp, task); // the result is a complete folder of the task
    if (existsSync(dst)) {
      // --force: move the old folder aside first, so a failed rename keeps nothing half-replaced.
      const old = `${temp}.old`;
      await fsp.rename(dst, old);
      await fsp.rename(temp, dst);
      await fsp.rm(old, { recursive: true, force: true });
    } else {
      await fsp.rename(temp, dst);
    }
  } catch (e) {
    await fsp.rm(temp, { recursive: true, force: true }).catch(() => {});
    throw e;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
  const seconds = (performance.now() - started) / 1000;
  log(
    `convert: done in ${seconds.toFixed(1)} s: DiT ${GB(ditBytesBefore)} -> ${GB(ditBytesAfter)} (${(readTotal / 1e6 / Math.max(seconds, 1e-3)).toFixed(0)} MB/s read), ` +
      `${GB(linkedBytes)} hard-linked, ${GB(copiedBytes)} copied -> ${dst}`,
  );
  return { dir: dst, task: task.name, ditBytesBefore, ditBytesAfter, linkedBytes, copiedBytes, seconds };
}

export async function convertCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ckpt_dir: { type: 'string' },
      out: { type: 'string' },
      task: { type: 'string' },
      dtype: { type: 'string', default: 'bf16' },
      force: { type: 'boolean', default: false },
      'max-shard-bytes': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  if (!values.ckpt_dir) throw new Error(`convert: --ckpt_dir is required\n\n${usage}`);
  if (!values.out) throw new Error(`convert: --out is required\n\n${usage}`);
  if (values.dtype !== 'bf16') throw new Error(`convert: --dtype must be bf16, got "${values.dtype}"`);
  let maxShardBytes: number | undefined;
  if (values['max-shard-bytes'] !== undefined) {
    maxShardBytes = Number(values['max-shard-bytes']);
    if (!Number.isSafeInteger(maxShardBytes) || maxShardBytes <= 0) throw new Error(`convert: --max-shard-bytes must be a positive integer, got "${values['max-shard-bytes']}"`);
  }
  await convertCheckpoint({ src: values.ckpt_dir, out: values.out, task: values.task, force: values.force, maxShardBytes });
  return 0;
}
