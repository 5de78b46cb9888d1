// Layout ops against host references (exact: they only move values), every dtype the ops take,
// poisoned outputs, and windows under a tiny binding limit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, type DType, type Tensor } from '../engine/index.ts';
import {
  channelsToTokens,
  concat,
  ditPatchify,
  ditUnpatchify,
  pad,
  permute,
  pixelShuffle,
  pixelUnshuffle,
  slice,
  vaePatchify,
  vaeUnpatchify,
} from '../engine/ops/layout.ts';
import { vaeAvgDown3d, vaeDupUp3d, vaeUpsampleNearest2x } from '../engine/ops/vae.ts';
import { randn } from './helpers.ts';

// ------------------------------------------------------------------ host references

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function strides(s: readonly number[]): number[] {
  const r = new Array(s.length).fill(1);
  for (let d = s.length - 2; d >= 0; d--) r[d] = r[d + 1] * s[d + 1];
  return r;
}

/** Calls fn(multi-index, flat index) for every element of shape, row-major. */
function forEachIndex(shape: readonly number[], fn: (idx: number[], flat: number) => void): void {
  const n = numel(shape);
  const idx = new Array(shape.length).fill(0);
  for (let f = 0; f < n; f++) {
    fn(idx, f);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

const at = (data: ArrayLike<number>, shape: readonly number[], idx: readonly number[]) => {
  const s = strides(shape);
  return data[idx.reduce((a, v, d) => a + v * s[d], 0)];
};

function refPermute(x: ArrayLike<number>, shape: number[], perm: number[]): { y: number[]; shape: number[] } {
  const ys = perm.map((p) => shape[p]);
  const y: number[] = [];
  forEachIndex(ys, (idx) => {
    const src = new Array(shape.length);
    perm.forEach((p, d) => (src[p] = idx[d]));
    y.push(at(x, shape, src));
  });
  return { y, shape: ys };
}

function refPad(x: ArrayLike<number>, shape: number[], pads: [number, number][], value: number): number[] {
  const ys = shape.map((v, d) => v + pads[d][0] + pads[d][1]);
  const y: number[] = [];
  forEachIndex(ys, (idx) => {
    const src = idx.map((v, d) => v - pads[d][0]);
    y.push(src.every((v, d) => v >= 0 && v < shape[d]) ? at(x, shape, src) : value);
  });
  return y;
}

/** The values a tensor of `dtype` holds for `data` (halves round). */
async function stored(e: Engine, data: Float32Array, shape: number[], dtype: DType): Promise<Float32Array | Int32Array> {
  if (dtype === 'i32') return Int32Array.from(data, (v) => Math.round(v * 1000));
  return e.scope(async () => (await e.upload(data, shape, dtype).toArray()) as Float32Array);
}

function poisoned(e: Engine, shape: number[], dtype: DType): Tensor {
  const n = numel(shape);
  if (dtype === 'i32') return e.upload(new Int32Array(n).fill(-7777777), shape, 'i32');
  return e.upload(new Float32Array(n).fill(NaN), shape, dtype);
}

function expectExact(got: ArrayLike<number>, ref: ArrayLike<number>, what: string): void {
  expect(got.length, what).toBe(ref.length);
  let bad = -1;
  for (let i = 0; i < ref.length; i++) {
    if (!Object.is(got[i], ref[i]) && got[i] !== ref[i]) {
      bad = i;
      break;
    }
  }
  expect(bad === -1 ? 'exact' : `${what}: element ${bad} is ${got[bad]}, expected ${ref[bad]}`).toBe('exact');
}

// ------------------------------------------------------------------ tests

describe.each([
  ['real limits', {}],
  ['4 KiB binding limit', { maxStorageBindingBytes: 4096, maxBufferBytes: 16384 }],
])('layout ops (%s)', (_name, opts) => {
  let e: Engine;
  beforeAll(async () => {
    e = await Engine.create(opts);
  });
  afterAll(async () => {
    await e.destroy();
  });

  const dtypes: DType[] = ['f32', 'bf16', 'f16', 'i32'];
  let seed = 1;
  const input = async (shape: number[], dtype: DType) => {
    const data = randn(numel(shape), seed++, 3);
    const vals = await stored(e, data, shape, dtype);
    return { t: e.upload(vals, shape, dtype, 'x'), vals };
  };

  it('permute: 2-D to 6-D, odd sizes, every dtype, into a poisoned output', async () => {
    const cases: [number[], number[]][] = [
      [[37, 29], [1, 0]],
      [[3, 5, 7, 11], [3, 1, 0, 2]],
      [[2, 3, 1, 5, 4, 3], [5, 0, 3, 1, 4, 2]],
      [[4, 6, 10], [0, 2, 1]], // last dim changes, even sizes
      [[4, 6, 10], [1, 0, 2]], // last dim kept, even: halves copied in words
      [[33, 40], [0, 1]], // identity
    ];
    for (const dtype of dtypes) {
      for (const [shape, perm] of cases) {
        await e.scope(async () => {
          const { t, vals } = await input(shape, dtype);
          const ref = refPermute(vals, shape, perm);
          const out = poisoned(e, ref.shape, dtype);
          const y = permute(e, t, perm, out);
          expect(y.shape).toEqual(ref.shape);
          expectExact(await y.toArray(), ref.y, `permute ${dtype} [${shape}] by [${perm}]`);
        });
      }
    }
  });

  it('slice, concat and pad (with a fill value) for every dtype', async () => {
    for (const dtype of dtypes) {
      await e.scope(async () => {
        const shape = [5, 7, 13];
        const { t, vals } = await input(shape, dtype);
        // slice with a negative end
        const s = slice(e, t, [1, 2, 3], [4, -1, 13]);
        const sref: number[] = [];
        forEachIndex([3, 4, 10], (idx) => sref.push(at(vals, shape, [idx[0] + 1, idx[1] + 2, idx[2] + 3])));
        expect(s.shape).toEqual([3, 4, 10]);
        expectExact(await s.toArray(), sref, `slice ${dtype}`);
        // concat of three tensors along each axis
        for (const axis of [0, 1, 2]) {
          const parts: Awaited<ReturnType<typeof input>>[] = [];
          for (const k of [1, 2, 3]) parts.push(await input(shape.map((v, d) => (d === axis ? v + k : v)), dtype)); // sequential: async scopes must not interleave
          const y = concat(e, parts.map((p) => p.t), axis);
          const ys = shape.map((v, d) => (d === axis ? 3 * v + 6 : v));
          const ref: number[] = [];
          forEachIndex(ys, (idx) => {
            let i = idx[axis];
            for (const [k, p] of parts.entries()) {
              const len = shape[axis] + k + 1;
              if (i < len) {
                const src = [...idx];
                src[axis] = i;
                ref.push(at(p.vals, p.t.shape, src));
                return;
              }
              i -= len;
            }
          });
          expect(y.shape).toEqual(ys);
          expectExact(await y.toArray(), ref, `concat ${dtype} axis ${axis}`);
        }
        // pad with a value
        const pads: [number, number][] = [[0, 1], [2, 0], [1, 3]];
        const fill = dtype === 'i32' ? 5 : -1.5;
        const p = pad(e, t, pads, fill);
        expectExact(await p.toArray(), refPad(vals, shape, pads, fill), `pad ${dtype}`);
      });
    }
  });

  it('nearest 2x upsampling, pixel shuffle and the Wan2.2 VAE patchify', async () => {
    for (const dtype of ['f32', 'bf16'] as DType[]) {
      await e.scope(async () => {
        const shape = [3, 2, 5, 7];
        const { t, vals } = await input(shape, dtype);
        if (dtype === 'f32') {
          poisoned(e, [3, 2, 10, 14], dtype).dispose(); // the pool hands the NaN buffer to the op
          const up = vaeUpsampleNearest2x(e, t);
          const uref: number[] = [];
          forEachIndex([3, 2, 10, 14], ([c, f, h, w]) => uref.push(at(vals, shape, [c, f, h >> 1, w >> 1])));
          expectExact(await up.toArray(), uref, `upsample ${dtype}`);
        }

        // PixelShuffle: y[c, t, h*r + i, w*r + j] = x[c*r*r + i*r + j, t, h, w]
        const ps = [8, 3, 3, 5];
        const { t: xs, vals: xv } = await input(ps, dtype);
        const y = pixelShuffle(e, xs, 2);
        expect(y.shape).toEqual([2, 3, 6, 10]);
        const pref: number[] = [];
        forEachIndex([2, 3, 6, 10], ([c, f, h, w]) => pref.push(at(xv, ps, [c * 4 + (h % 2) * 2 + (w % 2), f, h >> 1, w >> 1])));
        expectExact(await y.toArray(), pref, `pixelShuffle ${dtype}`);
        expectExact(await pixelUnshuffle(e, y, 2).toArray(), Array.from(xv), `pixelUnshuffle ${dtype}`);

        // Wan2.2: "c f (h q) (w r) -> (c r q) f h w" (r: column offset, q: row offset), p = 2
        const vs = [3, 2, 6, 8];
        const { t: xv2, vals: v2 } = await input(vs, dtype);
        const pt = vaePatchify(e, xv2, 2);
        expect(pt.shape).toEqual([12, 2, 3, 4]);
        const vref: number[] = [];
        forEachIndex([12, 2, 3, 4], ([ch, f, h, w]) => {
          const [c, r, q] = [ch >> 2, (ch >> 1) & 1, ch & 1];
          vref.push(at(v2, vs, [c, f, 2 * h + q, 2 * w + r]));
        });
        expectExact(await pt.toArray(), vref, `vaePatchify ${dtype}`);
        expectExact(await vaeUnpatchify(e, pt, 2).toArray(), Array.from(v2), `vaeUnpatchify ${dtype}`);
      });
    }
  });

  it('DiT patchify / unpatchify and tokens from channels', async () => {
    await e.scope(async () => {
      const [C, F, H, W] = [5, 3, 6, 4];
      const { t, vals } = await input([C, F, H, W], 'f32');
      const p = ditPatchify(e, t, [1, 2, 2]);
      expect(p.shape).toEqual([F * 3 * 2, C * 4]);
      const pref: number[] = [];
      forEachIndex([F, 3, 2, C, 2, 2], ([f, h, w, c, i, j]) => pref.push(at(vals, [C, F, H, W], [c, f, 2 * h + i, 2 * w + j])));
      expectExact(await p.toArray(), pref, 'ditPatchify');

      // unpatchify: u [L, 2*2*c] (4 padding rows) -> [c, F, 2H, 2W], u channel ((p*2 + q)*2 + r)*c + ch
      const [c, g] = [3, [2, 3, 2]];
      const L = g[0] * g[1] * g[2] + 4;
      const { t: u, vals: uv } = await input([L, 4 * c], 'f32');
      const y = ditUnpatchify(e, u, g as [number, number, number], [1, 2, 2], poisoned(e, [c, 2, 6, 4], 'f32'));
      const uref: number[] = [];
      forEachIndex([c, 2, 6, 4], ([ch, f, hh, ww]) => {
        const row = (f * g[1] + (hh >> 1)) * g[2] + (ww >> 1);
        uref.push(at(uv, [L, 4 * c], [row, ((hh & 1) * 2 + (ww & 1)) * c + ch]));
      });
      expectExact(await y.toArray(), uref, 'ditUnpatchify');

      const tok = channelsToTokens(e, t);
      expect(tok.shape).toEqual([F * H * W, C]);
      expectExact(await tok.toArray(), refPermute(vals, [C, F * H * W], [1, 0]).y, 'channelsToTokens');
    });
  });

  it('AvgDown3D / DupUp3D follow the torch view-permute definitions', async () => {
    // Reference: wan/modules/vae2_2.py, written as pad -> view -> permute -> view -> mean (or repeat).
    const avgRef = (x: ArrayLike<number>, [C, T, H, W]: number[], out: number, ft: number, fs: number) => {
      const padT = (ft - (T % ft)) % ft;
      const xp = refPad(x, [C, T, H, W], [[0, 0], [padT, 0], [0, 0], [0, 0]], 0);
      const Tp = T + padT;
      const perm = refPermute(xp, [C, Tp / ft, ft, H / fs, fs, W / fs, fs], [0, 2, 4, 6, 1, 3, 5]);
      const G = (C * ft * fs * fs) / out;
      const plane = (Tp / ft) * (H / fs) * (W / fs);
      const y = new Array(out * plane).fill(0);
      for (let o = 0; o < out; o++) for (let g = 0; g < G; g++) for (let s = 0; s < plane; s++) y[o * plane + s] += perm.y[(o * G + g) * plane + s];
      return { y: y.map((v) => v / G), shape: [out, Tp / ft, H / fs, W / fs] };
    };
    const dupRef = (x: ArrayLike<number>, [C, T, H, W]: number[], out: number, ft: number, fs: number, first: boolean) => {
      const R = (out * ft * fs * fs) / C;
      const plane = T * H * W;
      const rep: number[] = [];
      for (let c = 0; c < C * R; c++) for (let s = 0; s < plane; s++) rep.push(x[Math.floor(c / R) * plane + s]);
      const perm = refPermute(rep, [out, ft, fs, fs, T, H, W], [0, 4, 1, 5, 2, 6, 3]);
      const full = [out, T * ft, H * fs, W * fs];
      const skip = first ? ft - 1 : 0;
      const y: number[] = [];
      forEachIndex([out, T * ft - skip, H * fs, W * fs], ([o, t, h, w]) => y.push(at(perm.y, full, [o, t + skip, h, w])));
      return { y, shape: [out, T * ft - skip, H * fs, W * fs] };
    };
    await e.scope(async () => {
      const cases: [number[], number, number, number][] = [
        [[4, 1, 4, 6], 8, 2, 2],
        [[4, 3, 6, 10], 8, 2, 2],
        [[6, 2, 4, 6], 6, 1, 2],
        [[8, 4, 4, 2], 16, 2, 2],
        [[3, 5, 6, 6], 12, 1, 2],
      ];
      for (const [shape, out, ft, fs] of cases) {
        const { t, vals } = await input(shape, 'f32');
        const ref = avgRef(vals, shape, out, ft, fs);
        const y = vaeAvgDown3d(e, t, { outChannels: out, factorT: ft, factorS: fs });
        expect(y.shape).toEqual(ref.shape);
        const got = await y.toArray();
        for (let i = 0; i < ref.y.length; i++) expect(Math.abs(got[i] - ref.y[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(ref.y[i])));
      }
      const pool = vaeAvgDown3d(e, (await input([3, 4, 6, 8], 'f32')).t, { outChannels: 3, factorT: 2, factorS: 2 }); // plain 2x2x2 average pooling
      expect(pool.shape).toEqual([3, 2, 3, 4]);
      const dcases: [number[], number, number, number, boolean][] = [
        [[8, 1, 2, 3], 8, 2, 2, true],
        [[8, 2, 2, 3], 8, 2, 2, false],
        [[8, 2, 3, 3], 4, 1, 2, false],
        [[16, 3, 2, 3], 8, 2, 2, false],
        [[6, 2, 3, 2], 12, 2, 2, true],
      ];
      for (const [shape, out, ft, fs, first] of dcases) {
        const { t, vals } = await input(shape, 'f32');
        const ref = dupRef(vals, shape, out, ft, fs, first);
        const y = vaeDupUp3d(e, t, { outChannels: out, factorT: ft, factorS: fs, firstChunk: first });
        expect(y.shape).toEqual(ref.shape);
        expectExact(await y.toArray(), ref.y, `dupUp3d [${shape}] -> ${out}`);
      }
    });
    expect(e.liveTensors).toBe(0);
  });

  it('windows large copies (several bindings per side under the tiny limit)', async () => {
    await e.scope(async () => {
      const shape = [6, 5, 17, 19]; // 9690 elements: 38 KB as f32, several buffer segments under the tiny limit
      const { t, vals } = await input(shape, 'f32');
      const before = e.stats.dispatches;
      const y = permute(e, t, [2, 0, 3, 1]);
      const dispatched = e.stats.dispatches - before;
      expectExact(await y.toArray(), refPermute(vals, shape, [2, 0, 3, 1]).y, 'big permute');
      if (e.gpu.maxBindingBytes <= 4096) expect(dispatched).toBeGreaterThan(8);
      // The VAE upsample windows whole output planes and reads whole input channels (each must fit a
      // binding: a 30x30 plane and a 3x15x15 channel in f32 are under 4 KiB); 32 KB: several segments.
      const us = [12, 3, 15, 15];
      const { t: ut, vals: uv } = await input(us, 'f32');
      const up = vaeUpsampleNearest2x(e, ut);
      const uref: number[] = [];
      forEachIndex([12, 3, 30, 30], ([c, f, h, w]) => uref.push(at(uv, us, [c, f, h >> 1, w >> 1])));
      expectExact(await up.toArray(), uref, 'big upsample');
    });
  });
});
