// Fixture kind `t5`: the umT5 encoder on the fixture's tokenized prompts, from every weight file the
// fixture lists (.pth as the official release, and .safetensors), with every recorded intermediate.
import { openTensorSource } from '../../loaders/open.ts';
import type { Fixture } from '../../loaders/fixture.ts';
import type { Engine } from '../../engine/index.ts';
import { UmT5Encoder } from '../t5.ts';
import { compareOutput, type OutputCheck } from './compare.ts';
import { registerKind } from './registry.ts';

const TOL = 1e-4;

async function runWeights(e: Engine, fx: Fixture, file: string): Promise<OutputCheck[]> {
  const src = await openTensorSource(fx.weightPath(file));
  try {
    const enc = await UmT5Encoder.load(e, src);
    try {
      const ids = fx.input('ids');
      const [batch, textLen] = ids.shape;
      const got = new Map<string, Float32Array | Int32Array>();
      const contexts = await enc.encode(ids.int(), fx.input('mask').int(), batch, textLen, async (name, value) => {
        got.set(name, value instanceof Float32Array || value instanceof Int32Array ? value.slice() : ((await value.toArray()) as Float32Array));
      });
      const tag = (name: string) => `${name} (${file.slice(file.lastIndexOf('.') + 1)})`;
      const checks: OutputCheck[] = [];
      const missing = (name: string): OutputCheck => ({ name: tag(name), relL2: Infinity, maxAbs: Infinity, tol: TOL, metric: 'relL2', pass: false, note: 'not produced' });
      for (const name of fx.outputNames) {
        const ctx = /^context\.(\d+)$/.exec(name);
        const g = ctx ? contexts[Number(ctx[1])] : got.get(name);
        checks.push(g ? compareOutput(tag(name), g, fx.output(name).f64(), TOL) : missing(name));
      }
      for (const name of fx.intermediateNames) {
        const g = got.get(name);
        const exact = name === 'rel_bucket';
        checks.push(g ? compareOutput(tag(name), g, fx.intermediate(name).f64(), exact ? 0 : TOL, exact ? 'exact' : 'relL2') : missing(name));
      }
      return checks;
    } finally {
      enc.dispose();
    }
  } finally {
    await src.close();
  }
}

registerKind({
  kind: 't5',
  description: 'umT5 encoder (relative position buckets, float32-min key mask, gated GELU, trimming) from .pth and .safetensors weights',
  async run(e, fx) {
    const files = fx.weights ?? [];
    if (files.length === 0) throw new Error(`${fx.name}: case.json lists no weight files`);
    const checks: OutputCheck[] = [];
    for (const file of files) checks.push(...(await runWeights(e, fx, file)));
    // The ids the prompts tokenized to (the tokenizer has its own fixture; here they are inputs).
    return checks;
  },
});
