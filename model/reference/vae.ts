// Fixture kinds of the Wan video VAEs: `vae2_1` / `vae2_2` (whole encode or decode through WanVAE,
// every recorded intermediate compared) and `op.vae_resample` (the Resample layer called chunk by
// chunk with the feature cache, and without it). op.vae_patchify / op.vae_avg_down3d /
// op.vae_dup_up3d are registered with the layout ops (ops_conv_layout.ts); test/vae.test.ts also
// runs those fixtures through the VAE's own shortcut kernels and host patchify.
import type { Engine, Tensor } from '../../engine/index.ts';
import { concatFrames } from '../../engine/ops/vae.ts';
import type { Fixture, FixtureTensor } from '../../loaders/fixture.ts';
import { openTensorSource } from '../../loaders/open.ts';
import type { TensorInfo, TensorSource } from '../../loaders/source.ts';
import { FeatureCache, Resample, WanVAE, type Pass, type VaeTraceValue, type VaeVersion } from '../vae/index.ts';
import { VaeWeights } from '../vae/weights.ts';
import { compareOutput, type OutputCheck } from './compare.ts';
import { registerKind } from './registry.ts';

const TOL = 1e-4;

async function valueOf(v: VaeTraceValue): Promise<Float32Array> {
  return 'data' in v ? v.data : ((await (v as Tensor).toArray()) as Float32Array);
}

/** Runs one whole-model fixture: encode or decode, output and every intermediate at rel L2 1e-4. */
async function runModel(e: Engine, fx: Fixture, version: VaeVersion): Promise<OutputCheck[]> {
  if (!fx.weights?.length) throw new Error(`${fx.name}: case.json names no weights`);
  const src = await openTensorSource(fx.weightPath(fx.weights[0]));
  let vae: WanVAE;
  try {
    vae = await WanVAE.load(e, src, version);
  } finally {
    await src.close();
  }
  try {
    const wanted = new Set(fx.intermediateNames);
    const got = new Map<string, Float32Array>();
    const trace = async (name: string, v: VaeTraceValue) => {
      if (wanted.has(name)) got.set(name, await valueOf(v));
    };
    const checks: OutputCheck[] = [];
    if (fx.config.op === 'encode') {
      const x = fx.input('video');
      const r = await vae.encode(x.f32(), x.shape, { trace });
      checks.push(compareOutput('latent', r.latent, fx.output('latent').f64(), TOL));
    } else {
      const z = fx.input('latent');
      const r = await vae.decode(z.f32(), z.shape, { trace });
      checks.push(compareOutput('video', r.video, fx.output('video').f64(), TOL));
    }
    for (const name of fx.intermediateNames) {
      const g = got.get(name);
      checks.push(g ? compareOutput(name, g, fx.intermediate(name).f64(), TOL) : { name, relL2: Infinity, maxAbs: Infinity, tol: TOL, metric: 'relL2', pass: false, note: 'not produced' });
    }
    return checks;
  } finally {
    vae.dispose();
  }
}

registerKind({ kind: 'vae2_1', description: 'Wan2.1 VAE encode / decode (chunked, feature cache), intermediates included', run: (e, fx) => runModel(e, fx, '2.1') });
registerKind({ kind: 'vae2_2', description: 'Wan2.2 VAE encode / decode (patchify, shortcuts, chunked), intermediates included', run: (e, fx) => runModel(e, fx, '2.2') });

/** A fixture's input tensors as a checkpoint (for loading a layer through the model's loaders). */
class FixtureInputs implements TensorSource {
  readonly path: string;

  constructor(private fx: Fixture) {
    this.path = `fixture ${fx.name}`;
  }

  names(): string[] {
    return this.fx.inputNames;
  }

  has(name: string): boolean {
    return this.fx.has('in', name);
  }

  info(name: string): TensorInfo {
    const t = this.fx.input(name);
    return { name, dtype: t.dtype, shape: t.shape };
  }

  async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    return this.fx.input(name).raw.subarray(offset, offset + length);
  }

  async close(): Promise<void> {}
}

const upload = (e: Engine, t: FixtureTensor) => e.upload(t.f32(), t.shape, 'f32', t.name);

registerKind({
  kind: 'op.vae_resample',
  description: 'VAE Resample (4 modes) chunk by chunk with the feature cache, and on the whole sequence without it',
  async run(e, fx) {
    const W = new VaeWeights(e, new FixtureInputs(fx), 'f32');
    const checks: OutputCheck[] = [];
    try {
      for (const c of fx.config.cases as { mode: string; chunk_frames: number[] }[]) {
        const r = await Resample.load(W, c.mode, c.mode.startsWith('up') ? 'up' : 'down');
        if (r.mode !== c.mode) throw new Error(`${fx.name}: loaded a ${r.mode} for case ${c.mode}`);
        const xs = c.chunk_frames.map((_, k) => upload(e, fx.input(`${c.mode}.x${k}`)));
        const cache = new FeatureCache();
        try {
          for (let k = 0; k < xs.length; k++) {
            cache.rewind();
            const pass: Pass = { e, cache, firstChunk: k === 0 };
            const y = r.forward(pass, xs[k]);
            checks.push(compareOutput(`${c.mode}.y${k}`, await y.toArray(), fx.output(`${c.mode}.y${k}`).f64(), 1e-5));
          }
        } finally {
          cache.clear();
        }
        const whole = r.forward({ e, cache: null, firstChunk: false }, concatFrames(e, xs));
        checks.push(compareOutput(`${c.mode}.nocache`, await whole.toArray(), fx.output(`${c.mode}.nocache`).f64(), 1e-5));
      }
    } finally {
      W.disposeAll();
    }
    return checks;
  },
});
