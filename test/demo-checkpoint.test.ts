// The built-in demo checkpoint (model/demo/) and the torch.save writer it uses (loaders/pth-writer.ts):
// the writer round-trips through the project's reader byte for byte; the demo folder has the
// official layout (tensor names, shapes, order and dtypes identical to the reference fixtures of
// the same widths), opens with every loader, is deterministic, cached, and never left half-written.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync, readdirSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { locateCheckpoint } from '../loaders/checkpoint.ts';
import { openTensorSource } from '../loaders/open.ts';
import { PthFile } from '../loaders/pth.ts';
import { pthFolderFor, serializePth, writePth, type PthTensorData } from '../loaders/pth-writer.ts';
import { DTYPE_SIZE, type StDType } from '../loaders/safetensors.ts';
import { loadSentencePieceModel } from '../loaders/sentencepiece.ts';
import type { TensorSource } from '../loaders/source.ts';
import { ZipArchive, memorySource } from '../loaders/zip.ts';
import { inferDitConfig } from '../model/dit-config.ts';
import { inferT5Config } from '../model/t5-config.ts';
import { UmT5Tokenizer } from '../model/tokenizer.ts';
import { TASKS } from '../model/pipelines/tasks.ts';
import { DEMO_RUN, DEMO_T5, DEMO_VERSION, DEMO_SPIECE, defaultCacheDir, demoCheckpointDir, demoDit, demoVae, ensureDemoCheckpoint, isCompleteDemoCheckpoint, type DemoTask } from '../model/demo/checkpoint.ts';
import { vaeTensors, type TensorSpec, type VaeArch } from '../model/demo/architecture.ts';
import { bf16Bits, bf16Value, syntheticBf16 } from '../model/demo/synthetic.ts';
import { fixturesDir, rng } from './helpers.ts';

let tmp = '';
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'demo-ckpt-'));
});
afterAll(async () => {
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

/** Random bytes of a tensor. */
function tensor(dtype: StDType, shape: number[], seed: number): PthTensorData {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Uint8Array(n * DTYPE_SIZE[dtype]);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(r() * 256);
  if (dtype === 'BOOL') for (let i = 0; i < data.length; i++) data[i] &= 1;
  return { dtype, shape, data };
}

function sha256(file: string): Promise<string> {
  return fsp.readFile(file).then((b) => createHash('sha256').update(b).digest('hex'));
}

function listFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(dir, p));
    else out.push(p);
  }
  return out.sort();
}

/** name -> [dtype, shape], in the file's order. */
async function layout(file: string): Promise<[string, string, number[]][]> {
  const src = await openTensorSource(file);
  try {
    return src.names().map((n) => [n, src.info(n).dtype, src.info(n).shape]);
  } finally {
    await src.close();
  }
}

// ---------------------------------------------------------------------------------------------

describe('pth writer', () => {
  const cases: [string, PthTensorData][] = [
    ['encoder.conv1.weight', tensor('F32', [5, 3, 3, 3, 3], 1)],
    ['blocks.0.attn.q.weight', tensor('BF16', [7, 13], 2)],
    ['half', tensor('F16', [1, 6, 11], 3)],
    ['scalar', tensor('F64', [], 4)],
    ['ids', tensor('I64', [2, 3, 4, 5, 7], 5)],
    ['i32', tensor('I32', [300], 6)],
    ['i16', tensor('I16', [65536], 7)],
    ['i8', tensor('I8', [3, 1, 2], 8)],
    ['u8', tensor('U8', [257], 9)],
    ['mask', tensor('BOOL', [17], 10)],
    ['empty', tensor('F32', [0, 4], 11)],
    // A dimension above 2^31 (pickled as LONG1); numel 0 keeps it small.
    ['huge_dim', tensor('BF16', [2 ** 31 + 5, 0], 12)],
    ['名前.weight', tensor('F32', [2], 13)],
  ];

  it('round-trips every dtype and shape through PthFile byte for byte', async () => {
    const file = path.join(tmp, 'Wan2.1_VAE.pth');
    await writePth(file, cases);
    const pth = await PthFile.open(file);
    try {
      expect(pth.folder).toBe('Wan2.1_VAE'); // torch 1.13 names the folder after the file
      expect(pth.keys()).toEqual(cases.map((c) => c[0]));
      for (const [name, t] of cases) {
        const e = pth.entry(name);
        expect(e.dtype, name).toBe(t.dtype);
        expect(e.shape, name).toEqual(t.shape);
        expect(e.contiguous, name).toBe(true);
        expect(e.storageOffset, name).toBe(0);
        expect(e.byteOffset % 64, `${name} data aligned`).toBe(0);
        const raw = await pth.readRaw(name);
        expect(Buffer.compare(Buffer.from(raw), Buffer.from(t.data)), name).toBe(0);
      }
      expect(pth.entry('ids').stride).toEqual([420, 140, 35, 7, 1]);
      expect(pth.entry('empty').stride).toEqual([4, 1]);
      expect(pth.entry('scalar').stride).toEqual([]);
    } finally {
      await pth.close();
    }
  });

  it('writes valid STORED zip entries (CRC-32, version record) and the same bytes every time', async () => {
    const a = serializePth(cases, { folder: 'archive' });
    const b = serializePth(cases, { folder: 'archive' });
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).toBe(0);
    const zip = await ZipArchive.fromSource(memorySource(a), 'mem');
    const names = zip.names();
    expect(names[0]).toBe('archive/data.pkl');
    expect(names[names.length - 1]).toBe('archive/version');
    // storages in key string order, as torch writes them: 0, 1, 10, 11, 12, 2, ...
    expect(names.slice(1, 6)).toEqual(['archive/data/0', 'archive/data/1', 'archive/data/10', 'archive/data/11', 'archive/data/12']);
    for (const n of names) expect(await zip.verifyCrc(zip.entry(n)), n).toBe(true);
    expect(new TextDecoder().decode(await zip.readAll(zip.entry('archive/version'), 16))).toBe('3\n');
  });

  it('batches more than 1000 state dict items', async () => {
    const many: [string, PthTensorData][] = [];
    for (let i = 0; i < 2345; i++) many.push([`t.${i}`, tensor('F32', [1 + (i % 3)], 100 + i)]);
    const pth = await PthFile.fromSource(memorySource(serializePth(many)), 'many');
    expect(pth.keys()).toEqual(many.map((m) => m[0]));
    const last = many[many.length - 1]!;
    expect(Buffer.compare(Buffer.from(await pth.readRaw(last[0])), Buffer.from(last[1].data))).toBe(0);
  });

  it('refuses what it cannot write', () => {
    expect(() => serializePth({ x: tensor('U32', [2], 1) })).toThrow(/U32 has no torch storage type/);
    expect(() => serializePth({ x: { dtype: 'F32', shape: [3], data: new Uint8Array(8) } })).toThrow(/8 bytes.*needs 12/);
    expect(() => serializePth([['x', tensor('F32', [1], 1)], ['x', tensor('F32', [1], 2)]])).toThrow(/appears twice/);
    expect(() => serializePth({ x: tensor('F32', [1], 1) }, { folder: '../evil' })).toThrow(/plain name/);
    expect(pthFolderFor('/a/b/models_t5_umt5-xxl-enc-bf16.pth')).toBe('models_t5_umt5-xxl-enc-bf16');
  });

  // The real torch.load, where this machine has it (skipped elsewhere).
  const torchPython = '/usr/bin/python3';
  let hasTorch = false;
  try {
    execFileSync(torchPython, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 });
    hasTorch = true;
  } catch {
    hasTorch = false;
  }
  it.skipIf(!hasTorch)('is read by torch.load with the same values', async () => {
    const file = path.join(tmp, 'torch_check.pth');
    const some = cases.filter(([n]) => n !== 'huge_dim');
    await writePth(file, some);
    const script = [
      'import sys, torch, hashlib, json',
      'd = torch.load(sys.argv[1])',
      'print(json.dumps({k: [str(v.dtype), list(v.shape), hashlib.sha256(v.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if v.dtype != torch.bool else v.numpy().tobytes()).hexdigest()] for k, v in d.items()}))',
    ].join('\n');
    const out = JSON.parse(execFileSync(torchPython, ['-c', script, file], { encoding: 'utf8', timeout: 120_000 }));
    const torchName: Record<string, string> = { F32: 'torch.float32', BF16: 'torch.bfloat16', F16: 'torch.float16', F64: 'torch.float64', I64: 'torch.int64', I32: 'torch.int32', I16: 'torch.int16', I8: 'torch.int8', U8: 'torch.uint8', BOOL: 'torch.bool' };
    expect(Object.keys(out)).toEqual(some.map((c) => c[0]));
    for (const [name, t] of some) {
      expect(out[name][0], name).toBe(torchName[t.dtype]);
      expect(out[name][1], name).toEqual(t.shape);
      expect(out[name][2], name).toBe(createHash('sha256').update(t.data).digest('hex'));
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('synthetic values', () => {
  it('rounds to bfloat16 to nearest, ties to even', () => {
    expect(bf16Bits(1)).toBe(0x3f80);
    expect(bf16Value(bf16Bits(1 + 2 ** -8))).toBe(1); // tie -> even (1.0)
    expect(bf16Value(bf16Bits(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6); // tie -> even (odd neighbour below)
    expect(bf16Value(bf16Bits(1 + 2 ** -8 + 2 ** -20))).toBe(1 + 2 ** -7);
    expect(bf16Value(bf16Bits(-3.14159))).toBe(-3.140625);
  });

  it('draws the requested mean and std, reproducibly', () => {
    const a = syntheticBf16(20000, 7, { mean: 1, std: 0.25 });
    const b = syntheticBf16(20000, 7, { mean: 1, std: 0.25 });
    const c = syntheticBf16(20000, 8, { mean: 1, std: 0.25 });
    expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer))).toBe(0);
    expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(c.buffer))).not.toBe(0);
    let s = 0;
    let s2 = 0;
    for (const bits of a) {
      const v = bf16Value(bits);
      s += v;
      s2 += v * v;
    }
    const mean = s / a.length;
    const std = Math.sqrt(s2 / a.length - mean * mean);
    expect(Math.abs(mean - 1)).toBeLessThan(0.01);
    expect(Math.abs(std - 0.25)).toBeLessThan(0.01);
  });
});

// ---------------------------------------------------------------------------------------------

describe('demo checkpoint', () => {
  const fixtureOf: Record<DemoTask, { dit: string; vae: string }> = {
    'ti2v-5B': { dit: 'dit.ti2v', vae: 'vae2_2_encode_video/Wan2.2_VAE.pth' },
    't2v-A14B': { dit: 'dit.t2v', vae: 'vae2_1_encode_video/Wan2.1_VAE.pth' },
  };

  for (const task of ['ti2v-5B', 't2v-A14B'] as const) {
    it(`${task}: official layout, identical to the reference fixtures' names, shapes, order and dtypes`, async () => {
      const cacheDir = path.join(tmp, `layout-${task}`);
      const dir = await ensureDemoCheckpoint(task, { cacheDir });
      expect(dir).toBe(path.join(cacheDir, `${task}-v1`));
      expect(dir).toBe(demoCheckpointDir(task, cacheDir));
      const spec = TASKS[task];
      const files = locateCheckpoint(dir, spec);
      const dits = spec.experts ? [files.high!, files.low!] : [files.dit!];
      expect(dits.every((d) => d.weights.endsWith('diffusion_pytorch_model.safetensors'))).toBe(true);

      const fx = fixtureOf[task];
      const fixtureDit = await layout(path.join(fixturesDir, fx.dit, 'diffusion_pytorch_model.safetensors'));
      for (const d of dits) {
        expect(await layout(d.weights)).toEqual(fixtureDit);
        const src = await openTensorSource(d.weights);
        try {
          const cfg = inferDitConfig(src, d.config);
          const want = demoDit(task);
          expect(cfg).toMatchObject({ modelType: want.modelType, dim: want.dim, ffnDim: want.ffnDim, numHeads: want.numHeads, numLayers: want.numLayers, textLen: want.textLen, inDim: spec.zDim, outDim: spec.zDim, textDim: DEMO_T5.dim, crossAttnNorm: true, qkNorm: true });
          // Every key the official config.json has, and nothing else.
          expect(Object.keys(d.config!).sort()).toEqual(['_class_name', '_diffusers_version', 'dim', 'eps', 'ffn_dim', 'freq_dim', 'in_dim', 'model_type', 'num_heads', 'num_layers', 'out_dim', 'text_len']);
          expect(await checkValues(src)).toBe(27); // 6 embedding / projection layers, 10 per block, the head
        } finally {
          await src.close();
        }
      }
      if (spec.experts) expect(await sha256(files.high!.weights)).not.toBe(await sha256(files.low!.weights));

      expect(await layout(files.t5)).toEqual(await layout(path.join(fixturesDir, 't5', 'models_t5_umt5-xxl-enc-bf16.pth')));
      // The VAE: the demo file holds exactly the architecture's tensors, and the architecture at the
      // fixture's widths (read from its case.json) is the official state dict.
      const vaeArch = demoVae(task);
      const asLayout = (specs: TensorSpec[]) => specs.map((t): [string, string, number[]] => [t.name, 'F32', t.shape]);
      expect(await layout(files.vae)).toEqual(asLayout(vaeTensors(vaeArch)));
      const fxModel = JSON.parse(readFileSync(path.join(fixturesDir, path.dirname(fx.vae), 'case.json'), 'utf8')).config.model;
      expect(fxModel.dim_mult).toEqual(vaeArch.dimMult);
      expect(fxModel.temperal_downsample).toEqual(vaeArch.temperalDownsample);
      expect(fxModel.z_dim).toBe(spec.zDim);
      const fxArch: VaeArch = { ...vaeArch, dim: fxModel.dim, decDim: fxModel.dec_dim, numResBlocks: fxModel.num_res_blocks };
      expect(asLayout(vaeTensors(fxArch))).toEqual(await layout(path.join(fixturesDir, fx.vae)));
      for (const f of [files.t5, files.vae]) {
        const pth = await PthFile.open(f);
        expect(pth.folder).toBe(path.basename(f, '.pth'));
        await pth.close();
        const src = await openTensorSource(f);
        try {
          // umT5: 7 matrices per block; the VAE: every conv
          expect(await checkValues(src)).toBe(f === files.t5 ? 14 : src.names().filter((n) => n.endsWith('.weight')).length);
        } finally {
          await src.close();
        }
      }
      const t5 = await openTensorSource(files.t5);
      try {
        const cfg = inferT5Config(t5);
        expect(cfg).toMatchObject({ vocab: DEMO_T5.vocab, dim: DEMO_T5.dim, numHeads: DEMO_T5.numHeads, numLayers: DEMO_T5.numLayers });
        const sp = await loadSentencePieceModel(files.spiece);
        expect(sp.pieces.length).toBeLessThanOrEqual(cfg.vocab);
      } finally {
        await t5.close();
      }
      expect(existsSync(path.join(dir, 'google/umt5-xxl/tokenizer_config.json'))).toBe(true);
      expect(existsSync(path.join(dir, 'google/umt5-xxl/special_tokens_map.json'))).toBe(true);
      expect(await sha256(files.spiece)).toBe(await sha256(DEMO_SPIECE));
      // The bundled tokenizer encodes the demo prompt (and anything else: byte fallback) within the vocabulary.
      const tok = await UmT5Tokenizer.fromFile(files.spiece);
      const { ids, mask } = tok.tokenize([DEMO_RUN[task].prompt, '色调艳丽，过曝 ✓'], demoDit(task).textLen);
      expect(Math.max(...ids)).toBeLessThan(DEMO_T5.vocab);
      expect(mask.reduce((a: number, b: number) => a + b, 0)).toBeGreaterThan(4);
    });
  }

  /** Every value bf16-exact and finite; weights spread like their init, norms near 1. */
  async function checkValues(src: TensorSource): Promise<number> {
    let checkedXavier = 0;
    for (const name of src.names()) {
      const info = src.info(name);
      const n = info.shape.reduce((a, b) => a * b, 1);
      const raw = await src.readRange(name, 0, n * DTYPE_SIZE[info.dtype]);
      const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      let s = 0;
      let s2 = 0;
      let inexact = 0;
      let nonFinite = 0;
      expect(['BF16', 'F32'], name).toContain(info.dtype);
      for (let i = 0; i < n; i++) {
        let v: number;
        if (info.dtype === 'BF16') v = bf16Value(dv.getUint16(2 * i, true));
        else {
          if (dv.getUint16(4 * i, true) !== 0) inexact++;
          v = dv.getFloat32(4 * i, true);
        }
        if (!Number.isFinite(v)) nonFinite++;
        s += v;
        s2 += v * v;
      }
      expect(inexact, `${name}: values not bf16-exact`).toBe(0);
      expect(nonFinite, `${name}: non-finite values`).toBe(0);
      const mean = s / n;
      const rms = Math.sqrt(s2 / n);
      // Linear / conv weights: xavier-normal, std = sqrt(2 / (fan_in + fan_out)), kernel volume in both fans
      // (tolerance: 4 standard errors of a std estimate from n samples).
      if (name.endsWith('.weight') && info.shape.length >= 2 && !/^token_embedding|pos_embedding|norm/.test(name)) {
        const k = info.shape.slice(2).reduce((a, b) => a * b, 1);
        const xavier = Math.sqrt(2 / ((info.shape[0]! + info.shape[1]!) * k));
        expect(Math.abs(rms / xavier - 1), `${name} rms ${rms}, xavier ${xavier}`).toBeLessThan(4 / Math.sqrt(2 * n) + 0.01);
        checkedXavier++;
      }
      if (/norm|gamma/.test(name) && !name.endsWith('.bias') && !name.startsWith('token')) {
        expect(Math.abs(mean - 1), `${name} mean ${mean}`).toBeLessThan(0.1);
      } else {
        expect(rms, `${name} rms`).toBeGreaterThan(0);
        expect(rms, `${name} rms ${rms}`).toBeLessThan(1.2);
        if (name.endsWith('.bias')) expect(rms, `${name} rms ${rms}`).toBeLessThan(0.1);
      }
    }
    return checkedXavier;
  }

  it('is deterministic: two fresh folders hold the same bytes', async () => {
    for (const task of ['ti2v-5B', 't2v-A14B'] as const) {
      const a = await ensureDemoCheckpoint(task, { cacheDir: path.join(tmp, 'det-a') });
      const b = await ensureDemoCheckpoint(task, { cacheDir: path.join(tmp, 'det-b') });
      const fa = listFiles(a);
      expect(fa).toEqual(listFiles(b));
      expect(fa).toContain('demo.json');
      for (const f of fa) expect(await sha256(path.join(a, f)), `${task}/${f}`).toBe(await sha256(path.join(b, f)));
    }
  });

  // Pinned: a change of any generated byte must come with a new DEMO_VERSION (a new cache folder),
  // or machines that cached the old files would run different weights under the same name.
  const PINNED_SHA256: Record<DemoTask, Record<string, string>> = {
    'ti2v-5B': {
      'diffusion_pytorch_model.safetensors': '9b3acfe1e866dd0d5efd28303649616fcb2ec8c946fa0575b04b96913849027c',
      'models_t5_umt5-xxl-enc-bf16.pth': '17cecf4b656d694974795db84825937dce358d7435533a5f78ee9abdc084c777',
      'Wan2.2_VAE.pth': '5efe5588686fd85dc7cbbe74633afbe02fbf7304d6f7afb71bf37b625abd319e',
      'demo.json': 'e4f9111c0f196dbee7e959ad72f9473eef167bc734d34f333cd5cba8b19ad6af',
    },
    't2v-A14B': {
      'high_noise_model/diffusion_pytorch_model.safetensors': 'ea47cefc068a2bac109e9d7681a34aa383253b23ae9b65360d6e1650440e7f15',
      'low_noise_model/diffusion_pytorch_model.safetensors': '223b91eb212677cee9fc13762f5000a3f85730e26ea8ad9f08b0a83d640414c7',
      'Wan2.1_VAE.pth': '1b12fea8fdf504b15e932dee114ea6b4ffeaaca5534cd876c10fc5db19d34a76',
      'demo.json': '024e8082cbecffe0b62a5a0a6139129290f09786c896d2cd726beb52f774de19',
    },
  };

  it(`writes the pinned bytes of ${DEMO_VERSION} (bump DEMO_VERSION and re-pin when the generator changes)`, async () => {
    expect(DEMO_VERSION).toBe('v1');
    for (const task of ['ti2v-5B', 't2v-A14B'] as const) {
      const dir = await ensureDemoCheckpoint(task, { cacheDir: path.join(tmp, 'det-a') });
      for (const [f, want] of Object.entries(PINNED_SHA256[task])) expect(await sha256(path.join(dir, f)), `${task}/${f}`).toBe(want);
    }
  });

  it('is cached: a second call rewrites nothing', async () => {
    const cacheDir = path.join(tmp, 'cached');
    let calls = 0;
    const dir = await ensureDemoCheckpoint('ti2v-5B', { cacheDir, onProgress: () => calls++ });
    expect(calls).toBe(8); // start + 7 files
    const before = listFiles(dir).map((f) => [f, statSync(path.join(dir, f)).mtimeMs, statSync(path.join(dir, f)).ino]);
    await new Promise((r) => setTimeout(r, 20));
    calls = 0;
    expect(await ensureDemoCheckpoint('ti2v-5B', { cacheDir, onProgress: () => calls++ })).toBe(dir);
    expect(calls).toBe(0);
    expect(listFiles(dir).map((f) => [f, statSync(path.join(dir, f)).mtimeMs, statSync(path.join(dir, f)).ino])).toEqual(before);
  });

  it('replaces an incomplete folder', async () => {
    const cacheDir = path.join(tmp, 'damaged');
    const dir = await ensureDemoCheckpoint('ti2v-5B', { cacheDir });
    const vae = path.join(dir, 'Wan2.2_VAE.pth');
    const good = await sha256(vae);
    await fsp.truncate(vae, 1000);
    expect(isCompleteDemoCheckpoint(dir, 'ti2v-5B')).toBe(false);
    expect(await ensureDemoCheckpoint('ti2v-5B', { cacheDir })).toBe(dir);
    expect(await sha256(vae)).toBe(good);
    await fsp.rm(path.join(dir, 'google'), { recursive: true });
    expect(isCompleteDemoCheckpoint(dir, 'ti2v-5B')).toBe(false);
    await ensureDemoCheckpoint('ti2v-5B', { cacheDir });
    expect(isCompleteDemoCheckpoint(dir, 'ti2v-5B')).toBe(true);
    expect(readdirSync(cacheDir)).toEqual(['ti2v-5B-v1']); // no temporary or old folders left
  });

  it('leaves nothing under the final name when interrupted', async () => {
    const cacheDir = path.join(tmp, 'interrupted');
    const seen: string[] = [];
    await expect(
      ensureDemoCheckpoint('t2v-A14B', {
        cacheDir,
        onProgress: (file, done) => {
          seen.push(file);
          if (done === 3) throw new Error('simulated crash');
        },
      }),
    ).rejects.toThrow('simulated crash');
    expect(seen.length).toBe(4);
    expect(existsSync(demoCheckpointDir('t2v-A14B', cacheDir))).toBe(false);
    expect(readdirSync(cacheDir)).toEqual([]); // the temporary folder is removed too
    // The next call completes it.
    const dir = await ensureDemoCheckpoint('t2v-A14B', { cacheDir });
    expect(isCompleteDemoCheckpoint(dir, 't2v-A14B')).toBe(true);
  });

  it('survives concurrent callers', async () => {
    const cacheDir = path.join(tmp, 'concurrent');
    const dirs = await Promise.all([0, 1, 2].map(() => ensureDemoCheckpoint('ti2v-5B', { cacheDir })));
    expect(new Set(dirs).size).toBe(1);
    expect(isCompleteDemoCheckpoint(dirs[0]!, 'ti2v-5B')).toBe(true);
    expect(readdirSync(cacheDir)).toEqual(['ti2v-5B-v1']);
  });

  it('finds the cache folder from the environment', async () => {
    expect(defaultCacheDir({ WAN_CACHE_DIR: '/x/w', XDG_CACHE_HOME: '/x/c' })).toBe('/x/w');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x/c' })).toBe(path.join('/x/c', 'wan-webgpu'));
    expect(defaultCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'wan-webgpu'));
    await expect(ensureDemoCheckpoint('i2v-A14B' as DemoTask, { cacheDir: path.join(tmp, 'none') })).rejects.toThrow(/no demo checkpoint/);
  });
});
