import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { getFloat16 } from '@petamoriken/float16';
import {
  DTYPE_SIZE,
  MAX_HEADER_BYTES,
  SafetensorsFile,
  decodeToFloat32,
  decodeToFloat64,
  decodeToInt,
  parseSafetensorsHeader,
  serializeSafetensors,
  writeSafetensors,
  type StDType,
} from '../loaders/safetensors.ts';
import { loadFixture } from '../loaders/fixture.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

let tmp = '';
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'loaders-st-'));
});
afterAll(async () => {
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

/** Small deterministic PRNG (mulberry32) so failures reproduce. */
function makeRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(n: number, rnd: () => number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

/** A file from a raw header (object or JSON text) and data; the length prefix can be overridden. */
function rawFile(header: unknown, data: Uint8Array | number, headerLen?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.byteLength + d.byteLength);
  new DataView(out.buffer).setBigUint64(0, headerLen ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(d, 8 + json.byteLength);
  return out;
}

function parseBytes(bytes: Uint8Array, label = 'mem.safetensors') {
  return parseSafetensorsHeader(bytes.byteLength, (o, l) => bytes.subarray(o, o + l), label);
}

/** The same bytes at byteOffset 1 of a larger buffer (deliberately misaligned). */
function misaligned(bytes: Uint8Array): Uint8Array {
  const buf = new Uint8Array(bytes.byteLength + 1);
  buf.set(bytes, 1);
  return buf.subarray(1);
}

/** Reference IEEE half decoding written out by hand (independent of the library). */
function halfFromBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 31) return man === 0 ? sign * Infinity : NaN;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

describe('safetensors round trip', () => {
  it('writes, parses and reads back every dtype with random data', async () => {
    const rnd = makeRng(1234);
    const shapes: number[][] = [[3, 5], [7], [], [0, 4], [2, 3, 4], [1]];
    const dtypes = Object.keys(DTYPE_SIZE) as StDType[];
    const tensors: Record<string, { dtype: StDType; shape: number[]; data: Uint8Array }> = {};
    dtypes.forEach((dtype, i) => {
      const shape = shapes[i % shapes.length]!;
      const numel = shape.reduce((a, b) => a * b, 1);
      let data = randomBytes(numel * DTYPE_SIZE[dtype], rnd);
      if (dtype === 'BOOL') data = data.map((v) => v & 1);
      tensors[`t.${dtype.toLowerCase()}`] = { dtype, shape, data };
    });
    const meta = { format: 'pt', note: 'héllo ✓' };
    const file = path.join(tmp, 'roundtrip.safetensors');
    await writeSafetensors(file, tensors, meta);

    const raw = new Uint8Array(await fsp.readFile(file));
    const headerLen = Number(new DataView(raw.buffer, raw.byteOffset).getBigUint64(0, true));
    expect(headerLen % 8).toBe(0);

    const st = await SafetensorsFile.open(file);
    try {
      expect(st.metadata).toEqual(meta);
      expect(st.dataStart).toBe(8 + headerLen);
      expect([...st.entries.keys()]).toEqual(Object.keys(tensors));
      let expectedBegin = st.dataStart;
      for (const [name, t] of Object.entries(tensors)) {
        expect(st.has(name)).toBe(true);
        const e = st.entries.get(name)!;
        expect(e.dtype).toBe(t.dtype);
        expect(e.shape).toEqual(t.shape);
        expect(e.begin).toBe(expectedBegin);
        expect(e.end - e.begin).toBe(t.data.byteLength);
        expectedBegin = e.end;
        const got = await st.readRaw(name);
        expect(got).toEqual(t.data);
      }
      expect(expectedBegin).toBe(raw.byteLength);
      expect(st.has('nope')).toBe(false);
      await expect(st.readRaw('nope')).rejects.toThrow(`${file}: no tensor "nope"`);
    } finally {
      await st.close();
    }
    await expect(st.readRaw('t.f32')).rejects.toThrow(/file is closed/);
  });

  it('decodes typed data written from typed arrays', async () => {
    const rnd = makeRng(7);
    const f32 = Float32Array.from({ length: 37 }, () => (rnd() - 0.5) * 1e3);
    const f64 = Float64Array.from({ length: 11 }, () => (rnd() - 0.5) * 1e6);
    const i64 = BigInt64Array.from([-5n, 0n, 2147483647n, -2147483648n, 123456789n]);
    const i32 = Int32Array.from([-7, 0, 1 << 30, -(1 << 31)]);
    const u8 = Uint8Array.from([0, 1, 200, 255]);
    const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const file = path.join(tmp, 'typed.safetensors');
    await writeSafetensors(file, {
      a: { dtype: 'F32', shape: [37], data: bytes(f32) },
      b: { dtype: 'F64', shape: [11], data: bytes(f64) },
      c: { dtype: 'I64', shape: [5], data: bytes(i64) },
      d: { dtype: 'I32', shape: [2, 2], data: bytes(i32) },
      e: { dtype: 'U8', shape: [4], data: u8 },
    });
    const st = await SafetensorsFile.open(file);
    try {
      expect(decodeToFloat32('F32', await st.readRaw('a'))).toEqual(f32);
      expect(decodeToFloat64('F64', await st.readRaw('b'))).toEqual(f64);
      expect(decodeToFloat32('F64', await st.readRaw('b'))).toEqual(Float32Array.from(f64, Math.fround));
      expect(Array.from(decodeToInt('I64', await st.readRaw('c')))).toEqual([-5, 0, 2147483647, -2147483648, 123456789]);
      expect(Array.from(decodeToFloat64('I64', await st.readRaw('c')))).toEqual([-5, 0, 2147483647, -2147483648, 123456789]);
      expect(decodeToInt('I32', await st.readRaw('d'))).toEqual(i32);
      expect(Array.from(decodeToInt('U8', await st.readRaw('e')))).toEqual([0, 1, 200, 255]);
      expect(Array.from(decodeToFloat64('U8', await st.readRaw('e')))).toEqual([0, 1, 200, 255]);
    } finally {
      await st.close();
    }
  });

  it('refuses to serialize data whose size does not match the shape', () => {
    expect(() => serializeSafetensors({ x: { dtype: 'F32', shape: [3], data: new Uint8Array(8) } })).toThrow(
      /tensor "x" has 8 bytes, shape \[3\] x F32 needs 12/,
    );
  });
});

describe('decoding', () => {
  it('BF16 is the upper half of a float32 (misaligned input)', () => {
    const rnd = makeRng(99);
    const n = 4096;
    const halves = new Uint16Array(n);
    for (let i = 0; i < n; i++) halves[i] = Math.floor(rnd() * 65536);
    halves.set([0x3f80, 0xc040, 0x7f80, 0x8000, 0x0001, 0x7fc0], 0);
    const input = misaligned(new Uint8Array(halves.buffer));
    const got = decodeToFloat32('BF16', input);
    const gotBits = new Uint32Array(got.buffer, got.byteOffset, got.length);
    for (let i = 0; i < n; i++) {
      if (gotBits[i] !== ((halves[i]! << 16) >>> 0)) throw new Error(`BF16 mismatch at ${i}: 0x${halves[i]!.toString(16)}`);
    }
    expect(got[0]).toBe(1);
    expect(got[1]).toBe(-3);
    expect(got[2]).toBe(Infinity);
    expect(Object.is(got[3], -0)).toBe(true);
    expect(got[4]).toBe(2 ** -133); // smallest bf16 subnormal
    expect(Number.isNaN(got[5])).toBe(true);
    const f64 = decodeToFloat64('BF16', input);
    expect(Array.from(f64.subarray(0, 3))).toEqual([1, -3, Infinity]);
  });

  it('F16: all 65536 bit patterns match a hand-written decoder and @petamoriken/float16', () => {
    const bits = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) bits[i] = i;
    const input = misaligned(new Uint8Array(bits.buffer));
    const got = decodeToFloat32('F16', input);
    const got64 = decodeToFloat64('F16', input);
    const view = new DataView(bits.buffer);
    for (let i = 0; i < 65536; i++) {
      const want = halfFromBits(i);
      // Every half is exactly representable in float32, so equality is exact (Object.is: NaN, -0).
      if (!Object.is(got[i], want) || !Object.is(got64[i], want) || !Object.is(got[i], Math.fround(getFloat16(view, 2 * i, true)))) {
        throw new Error(`F16 mismatch at 0x${i.toString(16)}: got ${got[i]} want ${want}`);
      }
    }
    expect(got[0x3c00]).toBe(1);
    expect(got[0xc000]).toBe(-2);
    expect(got[0x7bff]).toBe(65504);
    expect(got[0x0001]).toBe(2 ** -24);
    expect(got[0x7c00]).toBe(Infinity);
  });

  it('misaligned F32/F64/I64 inputs decode correctly', () => {
    const f32 = Float32Array.from([1.5, -2.25, 3e-8]);
    const f64 = Float64Array.from([Math.PI, -1e300]);
    const i64 = BigInt64Array.from([-(2n ** 40n), 7n]);
    expect(decodeToFloat32('F32', misaligned(new Uint8Array(f32.buffer)))).toEqual(f32);
    expect(decodeToFloat64('F64', misaligned(new Uint8Array(f64.buffer)))).toEqual(f64);
    expect(Array.from(decodeToFloat64('I64', misaligned(new Uint8Array(i64.buffer))))).toEqual([-(2 ** 40), 7]);
  });

  it('integer range and dtype errors', () => {
    const big = new Uint8Array(BigInt64Array.from([1n, 2147483648n]).buffer);
    expect(() => decodeToInt('I64', big)).toThrow('decodeToInt: I64 value 2147483648 at index 1 does not fit in int32');
    const huge = new Uint8Array(BigInt64Array.from([2n ** 53n]).buffer);
    expect(() => decodeToFloat64('I64', huge)).toThrow(/I64 value 9007199254740992 at index 0 does not fit/);
    const u32 = new Uint8Array(Uint32Array.from([5, 0x80000000]).buffer);
    expect(() => decodeToInt('U32', u32)).toThrow(/U32 value 2147483648 at index 1 does not fit in int32/);
    expect(Array.from(decodeToFloat64('U32', u32))).toEqual([5, 0x80000000]);
    expect(() => decodeToInt('F32', new Uint8Array(4))).toThrow(/not an integer dtype/);
    expect(() => decodeToFloat32('I32', new Uint8Array(4))).toThrow(/not a float dtype/);
    expect(() => decodeToFloat32('F32', new Uint8Array(6))).toThrow(/6 bytes is not a multiple of the F32 element size \(4\)/);
    expect(Array.from(decodeToInt('BOOL', Uint8Array.from([0, 1, 2])))).toEqual([0, 1, 1]);
  });
});

describe('header validation', () => {
  const f32Entry = (shape: number[], offs: [number, number]) => ({ dtype: 'F32', shape, data_offsets: offs });

  it('accepts a valid header with metadata and zero-size tensors', () => {
    const h = parseBytes(
      rawFile(
        { __metadata__: { a: 'b' }, x: f32Entry([2], [0, 8]), e1: f32Entry([0], [8, 8]), e2: f32Entry([0, 3], [8, 8]) },
        8,
      ),
    );
    expect(h.metadata).toEqual({ a: 'b' });
    expect(h.entries.get('x')).toMatchObject({ begin: h.dataStart, end: h.dataStart + 8 });
    expect(h.entries.size).toBe(3);
  });

  it('file shorter than the length prefix', () => {
    expect(() => parseBytes(new Uint8Array(5))).toThrow(
      'mem.safetensors: file size 5 is smaller than the 8-byte header length prefix',
    );
  });

  it('header length larger than the file', () => {
    const f = rawFile({ x: f32Entry([1], [0, 4]) }, 4, 123456n);
    expect(() => parseBytes(f)).toThrow(new RegExp(`^mem\\.safetensors: header length 123456 exceeds file size ${f.byteLength}`));
    const g = rawFile({}, 0, 2n ** 63n);
    expect(() => parseBytes(g)).toThrow(/header length 9223372036854775808 exceeds file size 10/);
  });

  it('header length above the sanity cap', () => {
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(MAX_HEADER_BYTES + 1), true);
    const readAt = (o: number, l: number) => {
      if (o === 0 && l === 8) return prefix;
      throw new Error('must not read the header');
    };
    expect(() => parseSafetensorsHeader(MAX_HEADER_BYTES * 2, readAt, 'big')).toThrow(
      `big: header length ${MAX_HEADER_BYTES + 1} exceeds the limit of ${MAX_HEADER_BYTES} bytes`,
    );
  });

  it('truncated files', async () => {
    const good = serializeSafetensors({
      a: { dtype: 'F32', shape: [4], data: new Uint8Array(16) },
      b: { dtype: 'F32', shape: [4], data: new Uint8Array(16) },
    });
    // Cut inside the data: the last tensor now ends past the data section.
    const cutData = good.subarray(0, good.byteLength - 3);
    expect(() => parseBytes(cutData)).toThrow(/tensor "b" data_offsets \[16, 32\] lie outside the data section \(29 bytes\)/);
    // Cut inside the header.
    const cutHeader = good.subarray(0, 20);
    expect(() => parseBytes(cutHeader)).toThrow(/header length \d+ exceeds file size 20/);
    // Same through the file API.
    const file = path.join(tmp, 'truncated.safetensors');
    await fsp.writeFile(file, cutData);
    await expect(SafetensorsFile.open(file)).rejects.toThrow(`${file}: tensor "b" data_offsets [16, 32] lie outside the data section (29 bytes)`);
    await fsp.writeFile(file, good.subarray(0, 3));
    await expect(SafetensorsFile.open(file)).rejects.toThrow(`${file}: file size 3 is smaller than the 8-byte header length prefix`);
    await fsp.writeFile(file, cutHeader);
    await expect(SafetensorsFile.open(file)).rejects.toThrow(/header length \d+ exceeds file size 20/);
  });

  it('malformed JSON, non-object header, invalid UTF-8', () => {
    expect(() => parseBytes(rawFile('{"x": {"dtype": ', 0))).toThrow(/^mem\.safetensors: header is not valid JSON \(/);
    expect(() => parseBytes(rawFile('[1, 2]', 0))).toThrow('mem.safetensors: header is not a JSON object');
    expect(() => parseBytes(rawFile('null', 0))).toThrow('mem.safetensors: header is not a JSON object');
    const bad = rawFile('{"a":1}', 0);
    bad[9] = 0xff;
    expect(() => parseBytes(bad)).toThrow(/header is not valid UTF-8/);
  });

  it('unknown dtype', () => {
    expect(() => parseBytes(rawFile({ x: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } }, 1))).toThrow(
      'mem.safetensors: tensor "x" has unknown dtype "F8"',
    );
    expect(() => parseBytes(rawFile({ x: { shape: [1], data_offsets: [0, 1] } }, 1))).toThrow(
      'tensor "x" has unknown dtype undefined',
    );
  });

  it('bad shapes and data_offsets', () => {
    expect(() => parseBytes(rawFile({ x: f32Entry([-1], [0, 4]) }, 4))).toThrow('tensor "x" has invalid shape [-1]');
    expect(() => parseBytes(rawFile({ x: f32Entry([1.5], [0, 4]) }, 4))).toThrow('tensor "x" has invalid shape [1.5]');
    expect(() => parseBytes(rawFile({ x: { dtype: 'F32', shape: '4', data_offsets: [0, 4] } }, 4))).toThrow(
      'tensor "x" has invalid shape "4"',
    );
    expect(() => parseBytes(rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 4))).toThrow(
      'tensor "x" has invalid data_offsets [0]',
    );
    expect(() => parseBytes(rawFile({ x: f32Entry([1], [-4, 0]) }, 4))).toThrow('tensor "x" has invalid data_offsets [-4,0]');
    expect(() => parseBytes(rawFile({ x: f32Entry([0], [4, 0]) }, 4))).toThrow('tensor "x" data_offsets [4, 0] have begin > end');
    expect(() => parseBytes(rawFile({ x: 5 }, 4))).toThrow('tensor "x" header entry is not a JSON object');
  });

  it('offsets outside the data section', () => {
    expect(() => parseBytes(rawFile({ x: f32Entry([2], [0, 8]) }, 4))).toThrow(
      'mem.safetensors: tensor "x" data_offsets [0, 8] lie outside the data section (4 bytes)',
    );
  });

  it('size mismatch between data_offsets and shape x dtype', () => {
    expect(() => parseBytes(rawFile({ 'in.x': f32Entry([2, 5, 48], [0, 100]) }, 2000), 'test/fixtures/op.silu/io.safetensors')).toThrow(
      'test/fixtures/op.silu/io.safetensors: tensor "in.x" data_offsets [0, 100] do not match shape [2,5,48] x F32 (1920 bytes)',
    );
    expect(() => parseBytes(rawFile({ x: { dtype: 'BF16', shape: [3], data_offsets: [0, 4] } }, 4))).toThrow(
      'tensor "x" data_offsets [0, 4] do not match shape [3] x BF16 (6 bytes)',
    );
  });

  it('overlapping entries', () => {
    expect(() => parseBytes(rawFile({ a: f32Entry([2], [0, 8]), b: f32Entry([2], [4, 12]) }, 12))).toThrow(
      'mem.safetensors: tensors "a" [0, 8] and "b" [4, 12] overlap',
    );
    // Order in the header does not matter; identical ranges overlap too.
    expect(() => parseBytes(rawFile({ b: f32Entry([2], [8, 16]), a: f32Entry([2], [8, 16]), c: f32Entry([2], [0, 8]) }, 16))).toThrow(
      /tensors "[ab]" \[8, 16\] and "[ab]" \[8, 16\] overlap/,
    );
  });

  it('bad __metadata__', () => {
    expect(() => parseBytes(rawFile({ __metadata__: { k: 1 } }, 0))).toThrow('__metadata__ value for "k" is not a string (1)');
    expect(() => parseBytes(rawFile({ __metadata__: ['a'] }, 0))).toThrow('__metadata__ is not a JSON object');
  });
});

describe('fixtures', () => {
  it('op.silu: shapes, dtypes and out.y == silu(in.x)', async () => {
    const fx = await loadFixture(path.join(FIXTURES, 'op.silu'));
    expect(fx.name).toBe('op.silu');
    expect(fx.kind).toBe('op.silu');
    expect(fx.inputNames).toEqual(['x']);
    expect(fx.outputNames).toEqual(['y']);
    expect(fx.intermediateNames).toEqual([]);
    expect(fx.weights).toBeNull();
    expect(fx.has('in', 'x')).toBe(true);
    expect(fx.has('out', 'x')).toBe(false);
    const x = fx.input('x');
    const y = fx.output('y');
    expect([x.dtype, x.shape]).toEqual(['F32', [1000]]);
    expect([y.dtype, y.shape]).toEqual(['F32', [1000]]);
    const xs = x.f64();
    const ys = y.f64();
    let maxErr = 0;
    for (let i = 0; i < xs.length; i++) {
      const ref = xs[i]! / (1 + Math.exp(-xs[i]!));
      maxErr = Math.max(maxErr, Math.abs(ys[i]! - ref) / Math.max(1, Math.abs(ref)));
    }
    expect(maxErr).toBeLessThan(1e-6);
    expect(Math.min(...xs)).toBeLessThan(-5); // the data actually spans the interesting range
    expect(() => fx.output('nope')).toThrow(/io\.safetensors has no output "nope"/);
  });

  it('op.linear.bias: BF16 weight equals its F32 upcast', async () => {
    const fx = await loadFixture(path.join(FIXTURES, 'op.linear.bias'));
    const w = fx.input('weight');
    const wb = fx.input('weight_bf16');
    expect(wb.dtype).toBe('BF16');
    expect(wb.shape).toEqual([40, 48]);
    expect(wb.f32()).toEqual(w.f32());
    expect(fx.config).toEqual({ in_features: 48, out_features: 40, bias: true });
  });

  it('op.attention.lq_ne_lk: I64 k_lens', async () => {
    const fx = await loadFixture(path.join(FIXTURES, 'op.attention.lq_ne_lk'));
    const kl = fx.input('k_lens');
    expect(kl.dtype).toBe('I64');
    expect(Array.from(kl.int())).toEqual([3, 5]);
  });

  it('every op.* fixture loads and every tensor decodes', async () => {
    const dirs = (await fsp.readdir(FIXTURES)).filter((d) => d.startsWith('op.'));
    expect(dirs.length).toBe(16);
    for (const d of dirs) {
      const fx = await loadFixture(path.join(FIXTURES, d));
      expect(fx.kind.startsWith('op.')).toBe(true);
      for (const n of fx.tensorNames) {
        const [sec, ...rest] = n.split('.');
        const t = fx.tensor(sec as 'in' | 'out' | 'mid', rest.join('.'));
        expect(fx.tensor(sec as 'in', rest.join('.')).name).toBe(n);
        const numel = t.shape.reduce((a, b) => a * b, 1);
        expect(t.f64().length).toBe(numel);
        expect(t.raw.byteLength).toBe(numel * DTYPE_SIZE[t.dtype]);
      }
    }
  });

  describe('errors', () => {
    const silu = path.join(FIXTURES, 'op.silu');
    async function fixtureDir(name: string, caseJson: string | null, io: Uint8Array | null): Promise<string> {
      const dir = path.join(tmp, name);
      await fsp.mkdir(dir, { recursive: true });
      if (caseJson !== null) await fsp.writeFile(path.join(dir, 'case.json'), caseJson);
      if (io !== null) await fsp.writeFile(path.join(dir, 'io.safetensors'), io);
      return dir;
    }
    const caseText = (over: Record<string, unknown> = {}) =>
      JSON.stringify({ kind: 'op.silu', config: {}, weights: null, inputs: ['x'], outputs: ['y'], intermediates: [], notes: '', reference: '', ...over });
    const io = async () => new Uint8Array(await fsp.readFile(path.join(silu, 'io.safetensors')));

    it('missing case.json', async () => {
      const dir = await fixtureDir('no-case', null, await io());
      await expect(loadFixture(dir)).rejects.toThrow(`fixture ${dir}: case.json not found`);
    });

    it('case.json not valid JSON / no kind', async () => {
      const dir = await fixtureDir('bad-json', '{"kind": "op.silu",', await io());
      await expect(loadFixture(dir)).rejects.toThrow(new RegExp(`^fixture ${dir.replace(/[.\\]/g, '\\$&')}: case\\.json is not valid JSON \\(`));
      const dir2 = await fixtureDir('no-kind', caseText({ kind: 3 }), await io());
      await expect(loadFixture(dir2)).rejects.toThrow(`fixture ${dir2}: case.json has no string "kind"`);
      const dir3 = await fixtureDir('bad-outputs', caseText({ outputs: 'y' }), await io());
      await expect(loadFixture(dir3)).rejects.toThrow(`fixture ${dir3}: case.json "outputs" is not a list of strings`);
    });

    it('missing or corrupt io.safetensors', async () => {
      const dir = await fixtureDir('no-io', caseText(), null);
      await expect(loadFixture(dir)).rejects.toThrow(`fixture ${dir}: io.safetensors not found`);
      const corrupt = await io();
      new DataView(corrupt.buffer, corrupt.byteOffset).setBigUint64(0, 123456n, true);
      const dir2 = await fixtureDir('corrupt-io', caseText(), corrupt);
      await expect(loadFixture(dir2)).rejects.toThrow(
        `fixture ${dir2}: io.safetensors: header length 123456 exceeds file size ${corrupt.byteLength}`,
      );
    });

    it('listed tensor missing from io.safetensors', async () => {
      const dir = await fixtureDir('missing-out', caseText({ outputs: ['y', 'z'] }), await io());
      await expect(loadFixture(dir)).rejects.toThrow(
        `fixture ${dir}: io.safetensors lacks output "z" (listed in case.json outputs)`,
      );
      const dir2 = await fixtureDir('missing-mid', caseText({ intermediates: ['h'] }), await io());
      await expect(loadFixture(dir2)).rejects.toThrow(
        `fixture ${dir2}: io.safetensors lacks intermediate "h" (listed in case.json intermediates)`,
      );
    });

    it('weights as a string and weightPath', async () => {
      const dir = await fixtureDir('weights', caseText({ weights: 'spiece.model' }), await io());
      const fx = await loadFixture(dir);
      expect(fx.weights).toEqual(['spiece.model']);
      expect(fx.weightPath('../x/w.pth')).toBe(path.join(tmp, 'x', 'w.pth'));
    });
  });
});
