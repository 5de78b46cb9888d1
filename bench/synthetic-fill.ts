// Fast deterministic synthetic weights for full-size checkpoints (tens of GB): the demo's generator
// (model/demo/synthetic.ts: 4 uniforms and a rounding per value) runs at tens of MB/s, far below
// the disk. Here each value costs half a hash and a table lookup:
//
//   value(tensor, i) = table_init[ half (i & 1) of lowbias32(floor(i / 2) + seed_tensor) ]
//
// table_init holds 65536 values mean + std * z_k, each rounded to bfloat16, where z_1..z_65536 is one
// fixed sample of the demo's approximate standard normal (Irwin-Hall sum of 4 uniforms, unit
// variance, |z| <= 3.46); (mean, std) is the tensor's Init from model/demo/architecture.ts (xavier
// weights, N(0, 0.02) biases, 1 + N(0, 0.05) norm gains, ...), so every tensor has the scale a
// forward pass expects and no value is infinite or NaN. seed_tensor = FNV-1a of "<model>/<name>".
// Values are bf16-exact in either storage dtype (an F32 file holds the BF16 file's values widened),
// any element can be computed alone (chunking cannot change the bytes, and tests can spot-check
// anywhere), and only integer operations touch the stream: every machine writes the same bytes.
import { endianness } from 'node:os';
import type { Init } from '../model/demo/synthetic.ts';
import { bf16Bits, bf16Value, hashName, mulberry32 } from '../model/demo/synthetic.ts';

const TABLE_SIZE = 65536;
const Z_SEED = 0x5eed5eed;

let zTable: Float64Array | null = null;

/** The fixed approximate standard normal sample behind every table. */
function zValues(): Float64Array {
  if (!zTable) {
    const r = mulberry32(Z_SEED);
    const k = Math.sqrt(3); // the sum of 4 uniforms has variance 1/3
    zTable = new Float64Array(TABLE_SIZE);
    for (let i = 0; i < TABLE_SIZE; i++) zTable[i] = (r() + r() + r() + r() - 2) * k;
  }
  return zTable;
}

/** The 65536 values of one Init as bf16 bits and as float32 bits (bf16 << 16). */
export interface ValueTable {
  bf16: Uint16Array;
  f32: Uint32Array;
}

const tables = new Map<string, ValueTable>();

export function valueTable(init: Init): ValueTable {
  const key = `${init.mean}/${init.std}`;
  let t = tables.get(key);
  if (!t) {
    const z = zValues();
    const bf16 = new Uint16Array(TABLE_SIZE);
    const f32 = new Uint32Array(TABLE_SIZE);
    for (let i = 0; i < TABLE_SIZE; i++) {
      bf16[i] = bf16Bits(init.mean + init.std * z[i]!);
      f32[i] = bf16[i]! << 16;
    }
    t = { bf16, f32 };
    tables.set(key, t);
  }
  return t;
}

/** The per-tensor seed: FNV-1a of "<model seed>/<tensor name>". */
export function tensorSeed(model: string, name: string): number {
  return hashName(`${model}/${name}`);
}

/** lowbias32 (C. Wellons' integer hash): a bijection on 32 bits with good avalanche. */
function mix(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The table index of element `i` (i < 2^33). */
function indexOf(i: number, seed: number): number {
  const h = mix((Math.floor(i / 2) + seed) >>> 0);
  return i % 2 === 0 ? h & 0xffff : h >>> 16;
}

/** Element `i` of a synthetic tensor, as a number (it is bf16-exact). */
export function syntheticValueAt(i: number, init: Init, seed: number): number {
  return bf16Value(valueTable(init).bf16[indexOf(i, seed)]!);
}

if (endianness() !== 'LE') throw new Error('synthetic-fill: a little-endian host is required (the files are little-endian and written through typed arrays)');

/**
 * Fills `dst` with bytes [byteOffset, byteOffset + dst.byteLength) of the tensor's little-endian
 * data in `dtype`. Both must be whole elements, and `dst` aligned to its element size.
 */
export function fillSynthetic(dst: Uint8Array, byteOffset: number, dtype: 'BF16' | 'F32', table: ValueTable, seed: number): void {
  const size = dtype === 'F32' ? 4 : 2;
  if (byteOffset % size !== 0 || dst.byteLength % size !== 0 || dst.byteOffset % size !== 0) {
    throw new Error(`fillSynthetic: range [${byteOffset}, +${dst.byteLength}) at memory offset ${dst.byteOffset} is not whole ${dtype} elements`);
  }
  const n = dst.byteLength / size;
  const first = byteOffset / size;
  if (first + n > 2 ** 33) throw new Error('fillSynthetic: tensors are limited to 2^33 elements');
  if (dtype === 'F32') fillWith(new Uint32Array(dst.buffer, dst.byteOffset, n), first, table.f32, seed);
  else fillWith(new Uint16Array(dst.buffer, dst.byteOffset, n), first, table.bf16, seed);
}

function fillWith(out: Uint16Array | Uint32Array, first: number, t: Uint16Array | Uint32Array, seed: number): void {
  const n = out.length;
  let i = 0;
  let e = first;
  if (e % 2 === 1 && n > 0) {
    out[0] = t[indexOf(e, seed)]!; // the second half of a pair
    i = 1;
    e++;
  }
  // Pairs (e even): one hash, two values.
  let pair = (Math.floor(e / 2) + seed) >>> 0;
  for (; i + 1 < n; i += 2) {
    let x = pair;
    x ^= x >>> 16;
    x = Math.imul(x, 0x7feb352d);
    x ^= x >>> 15;
    x = Math.imul(x, 0x846ca68b);
    x ^= x >>> 16;
    out[i] = t[x & 0xffff]!;
    out[i + 1] = t[x >>> 16]!;
    pair = (pair + 1) >>> 0;
  }
  if (i < n) out[i] = t[indexOf(first + i, seed)]!;
}
