// Fixture kind op.attention: the official flash_attention(q, k, v, k_lens) contract (keys at/after
// k_lens[b] excluded, every query row computed, softmax scale from the config).
import { flashAttention } from '../../engine/ops/attention.ts';
import { compareOutput } from './compare.ts';
import { registerKind } from './registry.ts';

registerKind({
  kind: 'op.attention',
  description: 'flash attention softmax(q k^T * scale) v with k_lens key masking (padded query rows computed)',
  async run(e, fx) {
    const q = fx.input('q');
    const k = fx.input('k');
    const v = fx.input('v');
    // Uploaded as token rows [B*L, N, D] so that a tiny forced buffer limit can segment them.
    const asTokens = (t: typeof q) => {
      const [B, L, N, D] = t.shape;
      return e.upload(t.f32(), [B * L, N, D]).reshape(t.shape);
    };
    const kLens = fx.has('in', 'k_lens') ? Array.from(fx.input('k_lens').int()) : undefined;
    const scale = fx.config.softmax_scale ?? undefined;
    const o = flashAttention(e, asTokens(q), asTokens(k), asTokens(v), { kLens, scale });
    return [compareOutput('o', await o.toArray(), fx.output('o').f64(), 1e-5)];
  },
});
