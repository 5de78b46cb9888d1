// Fixture kind `t5`: the umT5 encoder on the fixture's tokenized prompts, from every weight file the
// fixture lists (.pth as the official release, and .safetensors), with every recorded intermediate.
import { existsSync } from 'node:fs';
import { openTensorSource } from '../../loaders/open.ts';
import type { Fixture } from '../../loaders/fixture.ts';
import type { Engine } from '../../engine/index.ts';
import { UmT5Encoder } from '../t5.ts';
import { UmT5Tokenizer } from '../tokenizer.ts';
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
    // The inputs are config.prompts through the tokenizer fixture's model: when it is bundled, the
    // whole text path is checked (ids and mask exact).
    const spiece = fx.weightPath('../tokenizer/spiece.model');
    if (existsSync(spiece) && Array.isArray(fx.config.prompts)) {
      const tok = await UmT5Tokenizer.fromFile(spiece);
      const { ids, mask } = tok.tokenize(fx.config.prompts as string[], fx.input('ids').shape[1]);
      checks.push(compareOutput('ids (tokenizer)', ids, fx.input('ids').f64(), 0, 'exact'));
      checks.push(compareOutput('mask (tokenizer)', mask, fx.input('mask').f64(), 0, 'exact'));
    }
    for (const file of files) checks.push(...(await runWeights(e, fx, file)));
    return checks;
  },
});
