// The error of the DiT's f16 activation mode (WanDiT.activations = 'f16'), measured on the dit.*
// fixtures: rel L2 of the model output against the fixture's float32 PyTorch reference, with f32
// activations and with f16 ones. Run: npx tsx bench/dit_f16.ts [fixture names]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Engine } from '../engine/index.ts';
import { loadFixture, type Fixture } from '../loaders/fixture.ts';
import { SafetensorsFile } from '../loaders/safetensors.ts';
import { WanDiT, type ActivationDType } from '../model/dit.ts';

const fixturesDir = join(import.meta.dirname, '..', 'test', 'fixtures');

function relL2(got: Float32Array, ref: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (got[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / den);
}

async function runFixture(e: Engine, fx: Fixture, activations: ActivationDType): Promise<number> {
  const src = await SafetensorsFile.open(join(fx.dir, 'diffusion_pytorch_model.safetensors'));
  const dit = await WanDiT.load(e, src, JSON.parse(readFileSync(join(fx.dir, 'config.json'), 'utf8')), { activations });
  await src.close();
  try {
    const x = fx.input('x');
    const t = fx.input('t');
    const [out] = await dit.forward({
      x: x.f32(),
      shape: x.shape as [number, number, number, number],
      y: fx.has('in', 'y') ? fx.input('y').f32() : undefined,
      t: t.shape.length === 2 ? Float32Array.from(t.f64()) : t.f64()[0],
      contexts: [fx.input('context').f32()],
      seqLen: fx.input('seq_len').f64()[0],
    });
    return relL2(out, fx.output('out').f64());
  } finally {
    dit.dispose();
  }
}

export async function command(argv: string[]): Promise<number> {
  const names = argv.length ? argv : ['dit.t2v', 'dit.i2v', 'dit.ti2v'];
  const e = await Engine.create();
  try {
    console.log(`adapter shader-f16: ${e.gpu.hasF16}`);
    for (const name of names) {
      const fx = await loadFixture(join(fixturesDir, name));
      const f32 = await runFixture(e, fx, 'f32');
      const f16 = await runFixture(e, fx, 'f16');
      console.log(`${name}: out rel L2 vs PyTorch f32: f32 activations ${f32.toExponential(2)}, f16 activations ${f16.toExponential(2)}`);
    }
    return 0;
  } finally {
    await e.destroy();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await command(process.argv.slice(2));
