// The error an f16 activation mode would add to the DiT, measured on the dit.* fixtures.
// Run: npx tsx bench/dit_f16.ts
//
// WanDiT has no f16 mode yet, so this emulates one: every linear's input and output is rounded to
// f16 (a round trip through the engine's f32->f16 cast, the same rounding an f16 buffer would
// apply), while norms, RoPE, attention's softmax, the residual stream and the gates stay f32 (the
// official block keeps the residual and gates in float32 too). Attention therefore sees f16-rounded
// v and the f16-rounded q/k before their RMS norm; the norm's and RoPE's outputs are not re-rounded.
// Prints rel L2 of the model output against the fixture's float32 PyTorch reference, for plain f32
// activations and for the emulated f16 ones.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Engine, ops, type Tensor } from '../engine/index.ts';
import { loadFixture, type Fixture } from '../loaders/fixture.ts';
import { SafetensorsFile } from '../loaders/safetensors.ts';
import { WanDiT } from '../model/dit.ts';

const fixturesDir = join(import.meta.dirname, '..', 'test', 'fixtures');

interface LinearParams {
  w: Tensor;
  b: Tensor | null;
}

/** x rounded to f16 and back (f32). */
function roundF16(e: Engine, x: Tensor): Tensor {
  return ops.cast(e, ops.cast(e, x, 'f16'), 'f32');
}

/** Replaces WanDiT's private linear with one whose input and output pass through f16; returns the undo. */
function emulateF16Linears(): () => void {
  const proto = WanDiT.prototype as unknown as { linear: (x: Tensor, l: LinearParams, o?: ops.LinearOptions) => Tensor };
  const original = proto.linear;
  proto.linear = function (this: WanDiT, x: Tensor, l: LinearParams, o: ops.LinearOptions = {}): Tensor {
    const e = this.e;
    const { residual, ...rest } = o;
    const y = roundF16(e, ops.linear(e, roundF16(e, x), l.w, { ...rest, bias: l.b ?? undefined }));
    // The residual stream stays f32: add the rounded branch to it.
    return residual ? ops.binary(e, 'add', residual.x, y) : y;
  };
  return () => {
    proto.linear = original;
  };
}

function relL2(got: Float32Array, ref: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (got[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / den);
}

async function runFixture(e: Engine, fx: Fixture): Promise<number> {
  const src = await SafetensorsFile.open(join(fx.dir, 'diffusion_pytorch_model.safetensors'));
  const dit = await WanDiT.load(e, src, JSON.parse(readFileSync(join(fx.dir, 'config.json'), 'utf8')));
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
      const f32 = await runFixture(e, fx);
      const undo = emulateF16Linears();
      let f16: number;
      try {
        f16 = await runFixture(e, fx);
      } finally {
        undo();
      }
      console.log(`${name}: out rel L2 vs PyTorch f32: f32 activations ${f32.toExponential(2)}, f16 linear I/O ${f16.toExponential(2)}`);
    }
    return 0;
  } finally {
    await e.destroy();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await command(process.argv.slice(2));
