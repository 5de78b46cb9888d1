// `npm run bench -- dit`: one Wan DiT block at the TI2V-5B width (dim 3072, 24 heads of 128, FFN 14336,
// a 512-token context) with synthetic bf16 weights, run through WanDiT.forward (one layer; patch
// embedding and head are a few % of the work). Prints the median time, the achieved GFLOP/s, each
// kernel family timed on its own at the block's shapes (with a sync around each: an estimate of the
// share, not a trace), and the same block in PyTorch on the CPU (bench/dit_torch.py) when available.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { deviceFlagSpec, deviceOptions } from '../cli/device-flags.ts';
import { Engine, ops } from '../engine/index.ts';
import { ditConfigJson, ditTensors, type DitArch } from '../model/demo/architecture.ts';
import { SyntheticTensorSource } from '../model/demo/source.ts';
import { WanDiT } from '../model/dit.ts';

const usage = `usage: npm run bench -- dit [--tokens N] [--runs N] [--dim C --heads N --ffn F] [--activations f32|f16] [--no-torch] [--json]
  --tokens N   tokens of the video latent (default 2048; rounded to 2 x (H/2) x (W/2) latent grids)
  --runs N     timed runs after one warm-up (default 3)
  --dim/--heads/--ffn  block width (default the TI2V-5B block: 3072 / 24 / 14336)
  --activations  the DiT's activation dtype (default f32; f16 needs shader-f16)
  --no-torch   skip PyTorch (bench/dit_torch.py under WAN_BENCH_PYTHON or /usr/bin/python3)`;

/** Deterministic normal values (Box-Muller over a small hash generator): bench inputs. */
export function randn(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) + 1) / 4294967297;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function timeIt(e: Engine, runs: number, fn: () => Promise<void> | void): Promise<number> {
  await fn();
  await e.sync();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    await e.sync();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

export async function command(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      tokens: { type: 'string', default: '2048' },
      runs: { type: 'string', default: '3' },
      dim: { type: 'string', default: '3072' },
      heads: { type: 'string', default: '24' },
      ffn: { type: 'string', default: '14336' },
      activations: { type: 'string', default: 'f32' },
      'no-torch': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...deviceFlagSpec,
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const C = Number(values.dim);
  const heads = Number(values.heads);
  const ffn = Number(values.ffn);
  const runs = Math.max(1, Number(values.runs));
  const activations = values.activations as 'f32' | 'f16';
  if (activations !== 'f32' && activations !== 'f16') throw new Error(`--activations must be f32 or f16, not "${values.activations}"`);
  if (!(C > 0 && heads > 0 && C % heads === 0 && ffn > 0)) throw new Error('--dim must be a multiple of --heads, all positive');
  // Latent grid [48, 2, H, W] with patch (1, 2, 2): tokens = 2 * H/2 * W/2.
  const side = Math.max(1, Math.round(Math.sqrt(Number(values.tokens) / 2)));
  const L = 2 * side * side;
  const ctx = 512;
  const arch: DitArch = { modelType: 'ti2v', dim: C, ffnDim: ffn, freqDim: 256, textDim: 4096, inDim: 48, outDim: 48, numHeads: heads, numLayers: 1, textLen: ctx, eps: 1e-6, patch: [1, 2, 2] };
  const log = (m: string) => process.stderr.write(m + '\n');
  const e = await Engine.create(deviceOptions(values));
  const rows: Record<string, unknown>[] = [];
  try {
    const dit = await WanDiT.load(e, new SyntheticTensorSource(ditTensors(arch), 'synthetic DiT block'), ditConfigJson(arch), { dtype: 'bf16', activations });
    const shape: [number, number, number, number] = [48, 2, 2 * side, 2 * side];
    const x = randn(48 * 2 * 4 * side * side, 1);
    const context = randn(ctx * 4096, 2);
    log(`DiT block dim ${C}, ${heads} heads, ffn ${ffn}: ${L} tokens, context ${ctx}; compiling and warming up...`);
    const forwardMs = await timeIt(e, runs, async () => {
      await dit.forward({ x, shape, t: 500, contexts: [context], seqLen: L });
    });
    // Activation memory: the peak of live device bytes during one forward, above the resident weights.
    const weightBytes = e.memory().liveBytes;
    e.pool.resetPeaks();
    await dit.forward({ x, shape, t: 500, contexts: [context], seqLen: L });
    const activationBytes = e.memory().peakLiveBytes - weightBytes;
    // FLOPs of the block (2 per multiply-add): linears, self- and cross-attention (QK^T and PV).
    const linearFlops = 2 * (6 * L * C * C + 2 * ctx * C * C + 2 * L * C * ffn);
    const attnSelf = 4 * L * L * C;
    const attnCross = 4 * L * ctx * C;
    const total = linearFlops + attnSelf + attnCross;
    dit.dispose();

    // Each kernel family alone at the block's shapes.
    const D = C / heads;
    const w = (n: number, k: number) => e.upload(randn(n * k, n + k), [n, k], 'f32');
    const fam: Record<string, number> = {};
    await e.scope(async () => {
      // Activations in the forward's dtype (the context embedding stays f32 in both modes).
      const xs = e.upload(randn(L * C, 3), [L, C], activations);
      const cs = e.upload(randn(ctx * C, 4), [ctx, C], 'f32');
      const ch = e.upload(randn(ctx * C, 4), [ctx, C], activations);
      const wcc = ops.cast(e, w(C, C), 'bf16');
      const w1 = ops.cast(e, w(ffn, C), 'bf16');
      const w2 = ops.cast(e, w(C, ffn), 'bf16');
      const h = e.upload(randn(L * ffn, 5), [L, ffn], activations);
      fam.linears = await timeIt(e, runs, () =>
        e.scope(() => {
          for (let i = 0; i < 6; i++) ops.linear(e, xs, wcc);
          for (let i = 0; i < 2; i++) ops.linear(e, cs, wcc, { outDtype: activations });
          ops.linear(e, xs, w1, { activation: 'gelu_tanh' });
          ops.linear(e, h, w2, { outDtype: 'f32' });
        }),
      );
      const q = xs.reshape([L, heads, D]);
      const kc = ch.reshape([ctx, heads, D]);
      fam['self-attention'] = await timeIt(e, runs, () => e.scope(() => void ops.flashAttention(e, q, q, q)));
      fam['cross-attention'] = await timeIt(e, runs, () => e.scope(() => void ops.flashAttention(e, q, kc, kc)));
    });
    const parts = fam.linears + fam['self-attention'] + fam['cross-attention'];
    fam['norms, modulation, RoPE, embeddings, transfers (remainder)'] = Math.max(0, forwardMs - parts);

    let torchMs: number | null = null;
    let torchNote = '';
    if (!values['no-torch']) {
      const py = process.env.WAN_BENCH_PYTHON || '/usr/bin/python3';
      const script = join(dirname(fileURLToPath(import.meta.url)), 'dit_torch.py');
      log('PyTorch CPU, same block...');
      const r = spawnSync(py, [script, String(C), String(heads), String(ffn), String(L), String(ctx), String(runs)], { encoding: 'utf8' });
      if (r.status === 0) {
        const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
        torchMs = j.medianMs;
        torchNote = `float32, ${j.threads} threads, linears: ${j.linear}`;
      } else torchNote = `not available (${(r.stderr || String(r.error ?? '')).trim().split('\n').pop()})`;
    }

    rows.push({ system: 'wan', what: 'block forward', tokens: L, activations, medianMs: forwardMs, gflops: total / forwardMs / 1e6, activationBytes });
    for (const [k, v] of Object.entries(fam)) rows.push({ system: 'wan', what: k, medianMs: v, share: v / forwardMs });
    rows.push({ system: 'torch-cpu', what: 'block forward', tokens: L, medianMs: torchMs, gflops: torchMs ? total / torchMs / 1e6 : null, note: torchNote });
    if (values.json) {
      console.log(JSON.stringify(rows, null, 1));
    } else {
      console.log(`DiT block, dim ${C}, ${heads} heads x ${D}, ffn ${ffn}, ${L} tokens, context ${ctx}, bf16 weights, ${activations} activations`);
      console.log(`  FLOPs: linears ${(linearFlops / 1e9).toFixed(1)} G, self-attention ${(attnSelf / 1e9).toFixed(1)} G, cross-attention ${(attnCross / 1e9).toFixed(1)} G`);
      console.log(`  wan:   ${(forwardMs / 1000).toFixed(2)} s, ${(total / forwardMs / 1e6).toFixed(1)} GFLOP/s, peak activation memory ${(activationBytes / 2 ** 20).toFixed(0)} MiB`);
      for (const [k, v] of Object.entries(fam)) console.log(`    ${k.padEnd(58)} ${(v / 1000).toFixed(2)} s  ${((100 * v) / forwardMs).toFixed(0)}%`);
      if (torchMs) console.log(`  torch: ${(torchMs / 1000).toFixed(2)} s, ${(total / torchMs / 1e6).toFixed(1)} GFLOP/s (${torchNote}); wan / torch time ${(forwardMs / torchMs).toFixed(2)}`);
      else console.log(`  torch: ${torchNote || 'skipped'}`);
      console.log('  (family times are each kernel family run alone at the block shapes with a sync around it)');
    }
  } finally {
    await e.destroy();
  }
  return 0;
}
