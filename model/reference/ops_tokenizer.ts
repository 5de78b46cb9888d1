// Fixture kind `tokenizer`: the umT5 text path (official cleaning + SentencePiece unigram + eos +
// truncation + padding) on the fixture's strings, with the fixture's spiece.model. CPU only.
import { UmT5Tokenizer } from '../tokenizer.ts';
import { compareOutput } from './compare.ts';
import { registerKind } from './registry.ts';

registerKind({
  kind: 'tokenizer',
  description: 'umT5 tokenizer: cleaning, SentencePiece unigram (nmt_nfkc, byte fallback), eos, truncation, padding (ids/mask exact)',
  async run(_e, fx) {
    const weights = fx.weights ?? ['spiece.model'];
    const tok = await UmT5Tokenizer.fromFile(fx.weightPath(weights[0]));
    const cases = fx.config.cases as { raw: string }[] | undefined;
    const textLen = fx.config.text_len as number | undefined;
    if (!Array.isArray(cases) || typeof textLen !== 'number') throw new Error(`${fx.name}: case.json config needs cases[] and text_len`);
    const { ids, mask } = tok.tokenize(
      cases.map((c) => c.raw),
      textLen,
    );
    return [
      compareOutput('ids', ids, fx.output('ids').f64(), 0, 'exact'),
      compareOutput('mask', mask, fx.output('mask').f64(), 0, 'exact'),
    ];
  },
});
