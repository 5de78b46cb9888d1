// umT5 tokenizer: protobuf reader, spiece.model loader, SentencePiece normaliser + unigram Viterbi,
// the official Wan cleaning, eos/truncation/padding, and the `tokenizer` reference fixtures.
// Expected values of the synthetic-model and normalisation tests were produced with the SentencePiece
// Python package (same encoder as 0.1.97) and CPython 3.11's html.unescape / the `regex` module.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadFixture } from '../loaders/fixture.ts';
import { ProtoReader, ProtobufError, WireType } from '../loaders/protobuf.ts';
import { PieceType, parseSentencePieceModel } from '../loaders/sentencepiece.ts';
import '../model/reference/ops_tokenizer.ts';
import { fixtureKind } from '../model/reference/registry.ts';
import type { Engine } from '../engine/index.ts';
import {
  UmT5Tokenizer,
  basicClean,
  cleanPrompt,
  htmlUnescape,
  pythonStrip,
  whitespaceClean,
} from '../model/tokenizer.ts';
import { fixturesDir, rng } from './helpers.ts';

// ---------------------------------------------------------------------------------------------
// A protobuf writer, to build messages and synthetic SentencePiece models

const enc = new TextEncoder();

class ProtoWriter {
  private buf = new Uint8Array(256);
  length = 0;
  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    grown.set(this.buf.subarray(0, this.length));
    this.buf = grown;
  }
  raw(...bytes: number[]): this {
    this.room(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
    return this;
  }
  varint(v: number): this {
    this.room(10);
    while (v >= 0x80) {
      this.buf[this.length++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.length++] = v;
    return this;
  }
  tag(field: number, wire: number): this {
    return this.varint(field * 8 + wire);
  }
  /** int32 field; negative values as 10-byte sign-extended varints like protoc writes them. */
  int(field: number, v: number): this {
    this.tag(field, 0);
    if (v >= 0) return this.varint(v);
    const lo = v >>> 0;
    for (let i = 0; i < 4; i++) this.raw(((lo >>> (7 * i)) & 0x7f) | 0x80);
    return this.raw(0x80 | 0x70 | ((lo >>> 28) & 0x0f), 0xff, 0xff, 0xff, 0xff, 0x01);
  }
  float(field: number, v: number): this {
    this.tag(field, 5);
    this.room(4);
    new DataView(this.buf.buffer).setFloat32(this.length, v, true);
    this.length += 4;
    return this;
  }
  bytes(field: number, v: Uint8Array | number[]): this {
    this.tag(field, 2).varint(v.length);
    this.room(v.length);
    this.buf.set(v, this.length);
    this.length += v.length;
    return this;
  }
  str(field: number, s: string): this {
    return this.bytes(field, enc.encode(s));
  }
  msg(field: number, m: ProtoWriter): this {
    return this.bytes(field, m.done());
  }
  done(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

type PieceSpec = [piece: string, score: number, type: number];

interface SynthOptions {
  byteFallback?: boolean;
  modelType?: number;
  addDummyPrefix?: boolean;
  removeExtra?: boolean;
  escape?: boolean;
  suffix?: boolean;
  charsmap?: Uint8Array;
}

function synthModel(pieces: PieceSpec[], o: SynthOptions = {}): Uint8Array {
  const w = new ProtoWriter();
  for (const [p, s, t] of pieces) {
    // ModelProto.pieces { piece = 1; score = 2; type = 3 }, written in place (256k of them in one test).
    const text = enc.encode(p);
    const textLen = text.length < 128 ? 1 : 2;
    w.tag(1, 2).varint(1 + textLen + text.length + 5 + (t < 0 ? 11 : 2));
    w.bytes(1, text).float(2, s).int(3, t);
  }
  const trainer = new ProtoWriter()
    .int(3, o.modelType ?? 1)
    .int(4, pieces.length)
    .int(35, o.byteFallback ? 1 : 0)
    .int(40, 2)
    .int(41, -1)
    .int(42, 1)
    .int(43, 0);
  if (o.suffix) trainer.int(24, 1);
  w.msg(2, trainer);
  const norm = new ProtoWriter().str(1, o.charsmap ? 'nmt_nfkc' : 'identity');
  if (o.charsmap) norm.bytes(2, o.charsmap);
  norm.int(3, o.addDummyPrefix === false ? 0 : 1).int(4, o.removeExtra === false ? 0 : 1).int(5, o.escape === false ? 0 : 1);
  w.msg(3, norm);
  return w.done();
}

const SPECIALS: PieceSpec[] = [
  ['<pad>', 0, PieceType.CONTROL],
  ['</s>', 0, PieceType.CONTROL],
  ['<unk>', 0, PieceType.UNKNOWN],
];
const BYTE_PIECES: PieceSpec[] = Array.from({ length: 256 }, (_, i) => [`<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`, 0, PieceType.BYTE]);
// Scores chosen so that float32 path sums tie where float64 sums would not: a + b rounds to
// exactly score(ab) in float32 (SentencePiece keeps the first candidate on ties).
const SMALL_VOCAB: PieceSpec[] = [
  ['a', -1, 1], // 3
  ['b', -7 * 2 ** -26, 1],
  ['ab', Math.fround(-1 - 2 ** -23), 1],
  ['c', -3, 1],
  ['cd', -2, 1],
  ['d', -1, 1],
  ['XY', -5, PieceType.USER_DEFINED], // 9
  ['X', -0.25, 1],
  ['e', -0.5, PieceType.UNUSED], // 11: never produced
  ['p', -1, 1],
  ['q', -1, 1],
  ['pq', -2, 1],
  ['qr', -2, 1],
  ['r', -1, 1],
  ['▁', -1.5, 1], // 17
  ['▁a', -1.25, 1],
  ['€', -2, 1],
];

const fixtureModelPath = join(fixturesDir, 'tokenizer', 'spiece.model');
const fixtureTokenizer = () => UmT5Tokenizer.fromFile(fixtureModelPath);

// ---------------------------------------------------------------------------------------------

describe('protobuf reader', () => {
  it('reads varints, negative int32, floats, strings, nested messages, and skips unknown fields', () => {
    const inner = new ProtoWriter().str(1, 'héllo ▁ 😀').float(2, -1.5);
    const w = new ProtoWriter().tag(1, 0).varint(300).int(2, -1).int(3, -123456);
    w.tag(4, WireType.FIXED64).raw(1, 2, 3, 4, 5, 6, 7, 8); // skipped
    w.bytes(99, []); // skipped
    w.msg(5, inner);
    w.tag(6, WireType.START_GROUP).tag(7, 0).varint(5).tag(6, WireType.END_GROUP); // skipped
    w.float(8, 1);
    const r = new ProtoReader(w.done());
    const seen: string[] = [];
    while (!r.done) {
      const t = r.tag();
      if (t.field === 1) seen.push(`1=${r.varint()}`);
      else if (t.field === 2 || t.field === 3) seen.push(`${t.field}=${r.int32()}`);
      else if (t.field === 5) {
        const m = r.message();
        const parts: string[] = [];
        while (!m.done) {
          const u = m.tag();
          if (u.field === 1) parts.push(m.string());
          else parts.push(String(m.float()));
        }
        seen.push(`5=${parts.join('|')}`);
      } else if (t.field === 8) {
        r.expect(t, WireType.FIXED32, 'f');
        seen.push(`8=${r.float()}`);
      } else {
        r.skip(t);
        seen.push(`skip${t.field}/${t.wire}`);
      }
    }
    expect(seen).toEqual(['1=300', '2=-1', '3=-123456', 'skip4/1', 'skip99/2', '5=héllo ▁ 😀|-1.5', 'skip6/3', '8=1']);
  });

  it('reports truncated and malformed input with the byte offset', () => {
    const bad: [string, number[], RegExp][] = [
      ['truncated varint', [0x08, 0x80], /truncated varint/],
      ['length past the end', [0x0a, 0x05, 0x61], /truncated string field/],
      ['overlong varint', [0x08, ...Array(11).fill(0x80)], /longer than 10 bytes/],
      ['field number 0', [0x00, 0x01], /invalid field number 0/],
      ['wire type 6', [0x0e], /invalid wire type 6/],
      ['truncated float', [0x15, 0x00, 0x00], /truncated float/],
      ['unterminated group', [0x0b, 0x08, 0x01], /unterminated group/],
      ['stray end group', [0x0c], /unexpected end of group/],
      ['bad UTF-8 (lone continuation)', [0x0a, 0x01, 0x80], /not valid UTF-8/],
      ['bad UTF-8 (overlong)', [0x0a, 0x02, 0xc0, 0x80], /not valid UTF-8/],
      ['bad UTF-8 (surrogate)', [0x0a, 0x03, 0xed, 0xa0, 0x80], /not valid UTF-8/],
      ['bad UTF-8 (cut sequence)', [0x0a, 0x02, 0xe4, 0xb8], /not valid UTF-8/],
      ['bad UTF-8 (> U+10FFFF)', [0x0a, 0x04, 0xf4, 0x90, 0x80, 0x80], /not valid UTF-8/],
    ];
    for (const [what, bytes, msg] of bad) {
      const readAll = () => {
        const r = new ProtoReader(Uint8Array.from(bytes));
        while (!r.done) {
          const t = r.tag();
          if (t.field === 1 && t.wire === WireType.LENGTH_DELIMITED) r.string();
          else if (t.field === 2 && t.wire === WireType.FIXED32) r.float();
          else r.skip(t);
        }
      };
      expect(readAll, what).toThrow(ProtobufError);
      expect(readAll, what).toThrow(msg);
    }
  });
});

describe('spiece.model loader', () => {
  it('reads the fixture model: pieces, trainer spec, normalizer spec', () => {
    const m = parseSentencePieceModel(readFileSync(fixtureModelPath), 'fixture');
    expect(m.pieces.length).toBe(946);
    expect(m.pieces.slice(0, 4)).toEqual(['<pad>', '</s>', '<unk>', '<0x00>']);
    expect([...m.types.slice(0, 4)]).toEqual([PieceType.CONTROL, PieceType.CONTROL, PieceType.UNKNOWN, PieceType.BYTE]);
    expect(m.pieces[259]).toBe('▁');
    expect(m.scores[259]).toBe(Math.fround(m.scores[259]));
    expect(m.scores[259]).toBeLessThan(0);
    expect(m.trainer).toMatchObject({ modelType: 1, byteFallback: true, unkId: 2, eosId: 1, padId: 0, bosId: -1 });
    expect(m.normalizer).toMatchObject({ name: 'nmt_nfkc', addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true });
    expect(m.normalizer.precompiledCharsmap!.length).toBeGreaterThan(1000);
  });

  it('rejects truncated files with an error naming the file', async () => {
    const bytes = readFileSync(fixtureModelPath);
    const dir = mkdtempSync(join(tmpdir(), 'spm-'));
    // Cut points: empty, inside the first piece, exactly after piece 100 (a valid prefix message),
    // inside the pieces, inside the charsmap, one byte short.
    const r = new ProtoReader(bytes);
    for (let i = 0; i < 100; i++) r.skip(r.tag());
    const cuts = [0, 1, 3, r.pos, 5000, bytes.length >> 1, bytes.length - 1000, bytes.length - 1];
    for (const cut of cuts) {
      const file = join(dir, `cut${cut}.model`);
      writeFileSync(file, bytes.subarray(0, cut));
      const err = await UmT5Tokenizer.fromFile(file).then(
        () => null,
        (e: Error) => e,
      );
      expect(err, `cut at ${cut}`).toBeInstanceOf(Error);
      expect(err!.message).toContain(file);
      expect(err!.message).toContain('not a valid SentencePiece model');
    }
    await expect(UmT5Tokenizer.fromFile(join(dir, 'missing.model'))).rejects.toThrow(/missing\.model: cannot read/);
  });

  it('never crashes or hangs on corrupted bytes: a clear error or a working tokenizer', () => {
    const good = readFileSync(fixtureModelPath);
    const r = rng(1234);
    let errors = 0;
    for (let k = 0; k < 40; k++) {
      const bytes = Uint8Array.from(good);
      const flips = 1 + Math.floor(r() * 8);
      for (let f = 0; f < flips; f++) bytes[Math.floor(r() * bytes.length)] = Math.floor(r() * 256);
      try {
        const tok = UmT5Tokenizer.fromBytes(bytes, 'corrupt.model');
        tok.tokenize(['A cat walking on the grass. 一只猫在草地上行走。 ＡＢＣ'], 16);
      } catch (e) {
        errors++;
        expect((e as Error).message).toContain('corrupt.model');
      }
    }
    expect(errors).toBeGreaterThan(0);
  });

  it('validates the model like SentencePiece does', () => {
    const cases: [string, Uint8Array, RegExp][] = [
      ['duplicate piece', synthModel([...SPECIALS, ['a', -1, 1], ['a', -2, 1]]), /"a" \(id 4\) is defined twice/],
      ['no unk', synthModel([['<pad>', 0, 3], ['a', -1, 1]]), /no unknown piece/],
      ['byte piece without byte_fallback', synthModel([...SPECIALS, ['<0x41>', 0, PieceType.BYTE]]), /byte_fallback is false/],
      ['byte_fallback without 256 bytes', synthModel([...SPECIALS, ...BYTE_PIECES.slice(0, 255)], { byteFallback: true }), /256 byte pieces/],
      ['BPE model', synthModel([...SPECIALS, ['a', -1, 1]], { modelType: 2 }), /model_type 2 is not supported/],
      ['empty piece', synthModel([...SPECIALS, ['', -1, 1]]), /piece 3 is empty/],
      ['broken charsmap', synthModel([...SPECIALS, ['a', -1, 1]], { charsmap: Uint8Array.from([9, 0, 0, 0, 1]) }), /charsmap is broken/],
    ];
    for (const [what, bytes, msg] of cases) {
      expect(() => parseSentencePieceModel(bytes, 'synthetic.model'), what).toThrow(/^synthetic\.model: not a valid SentencePiece model: /);
      expect(() => parseSentencePieceModel(bytes, 'synthetic.model'), what).toThrow(msg);
    }
  });
});

describe('SentencePiece normaliser', () => {
  it('applies the nmt_nfkc charsmap (fullwidth, compatibility characters) and whitespace rules', async () => {
    const tok = await fixtureTokenizer();
    const cases: [string, string, number[]][] = [
      ['ＡＢＣ１２３', '▁ABC123', [265, 815, 934, 543, 537, 540]],
      ['ﬁne', '▁fine', [827, 860]],
      ['①②', '▁12', [793, 537]],
      ['㎏', '▁kg', [259, 478, 471]],
      ['Ⅻ', '▁XII', [259, 91, 816, 816]],
      ['…', '▁...', [282, 262, 262]],
      ['ｶﾞ', '▁ガ', [259, 230, 133, 175]],
      ['  a   b  ', '▁a▁b', [261, 296]],
      ['x\u3000y', '▁x▁y', [259, 499, 259, 273]],
      ['e\u0301', '▁é', [259, 198, 172]],
      ['½', '▁1⁄2', [793, 229, 132, 135, 537]],
      ['™', '▁TM', [280, 80]],
      ['ｈｅｌｌｏ，ｗｏｒｌｄ！', '▁hello,world!', [259, 287, 304, 347, 260, 370, 340, 520, 330]],
      ['\t\ta\n', '▁a', [261]],
      ['\u200bz', '▁z', [259, 397]],
      ['a\u00adb', '▁a\u00adb', [261, 197, 176, 289]],
      ['𝐀𝐁', '▁AB', [265, 815]],
      ['', '', []],
      ['   ', '', []],
    ];
    for (const [text, norm, ids] of cases) {
      expect(tok.sp.normalizer.normalize(text), JSON.stringify(text)).toBe(norm);
      expect(tok.encode(text), JSON.stringify(text)).toEqual(ids);
    }
  });

  it('honours add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces, treat_whitespace_as_suffix', () => {
    const variants: [SynthOptions, [string, string, number[]][]][] = [
      [{ addDummyPrefix: false }, [[' a  b ', 'a▁b', [3, 17, 4]], ['  ', '', []], ['a e', 'a▁e', [3, 17, 2]]]],
      [{}, [['ab', '▁ab', [18, 4]], [' a  b ', '▁a▁b', [18, 17, 4]], ['XXY', '▁XXY', [17, 10, 9]]]],
      [{ addDummyPrefix: false, removeExtra: false }, [[' a  b ', '▁a▁▁b▁', [18, 17, 17, 4, 17]], ['  ', '▁▁', [17, 17]]]],
      [{ suffix: true }, [['ab', 'ab▁', [5, 17]], [' a  b ', 'a▁b▁', [3, 17, 4, 17]], ['  ', '', []]]],
      [{ escape: false }, [['ab', ' ab', [2, 5]], [' a  b ', ' a b', [2, 3, 2, 4]], ['a e', ' a e', [2, 3, 2]]]],
    ];
    for (const [opts, cases] of variants) {
      const tok = UmT5Tokenizer.fromBytes(synthModel([...SPECIALS, ...SMALL_VOCAB], opts));
      for (const [text, norm, ids] of cases) {
        const what = `${JSON.stringify(opts)} ${JSON.stringify(text)}`;
        expect(tok.sp.normalizer.normalize(text), what).toBe(norm);
        expect(tok.encode(text), what).toEqual(ids);
      }
    }
  });
});

describe('unigram Viterbi', () => {
  const plain = UmT5Tokenizer.fromBytes(synthModel([...SPECIALS, ...SMALL_VOCAB], { addDummyPrefix: false }));
  const bytes = UmT5Tokenizer.fromBytes(synthModel([...SPECIALS, ...BYTE_PIECES, ...SMALL_VOCAB.map(([p, s, t]) => [p, s, t] as PieceSpec)], { byteFallback: true, addDummyPrefix: false }));

  it('sums scores in float32 and keeps the first candidate on ties (as SentencePiece)', () => {
    expect(plain.encode('ab')).toEqual([5]); // float64 sums would pick a + b
    expect(plain.encode('abab')).toEqual([5, 3, 4]);
    expect(plain.encode('ababab')).toEqual([5, 3, 4, 5]);
    expect(plain.encode('pq')).toEqual([14]);
    expect(plain.encode('pqr')).toEqual([12, 15]);
    expect(plain.encode('pqrpqr')).toEqual([12, 15, 12, 15]);
    expect(plain.encode('cd')).toEqual([7]);
  });

  it('prefers user-defined symbols, never emits unused pieces, merges unknown runs', () => {
    expect(plain.encode('XY')).toEqual([9]);
    expect(plain.encode('XYa')).toEqual([9, 3]);
    expect(plain.encode('XXY')).toEqual([10, 9]);
    expect(plain.encode('XYXY')).toEqual([9, 9]);
    expect(plain.encode('e')).toEqual([2]);
    expect(plain.encode('zz')).toEqual([2]);
    expect(plain.encode('azzb')).toEqual([3, 2, 4]);
    expect(plain.encode('a€zz')).toEqual([3, 19, 2]);
    expect(plain.encode('aéb')).toEqual([3, 2, 4]);
  });

  it('turns unknown characters into their UTF-8 byte pieces with byte_fallback', () => {
    const b = (x: number) => 3 + x;
    expect(bytes.encode('ab')).toEqual([261]);
    expect(bytes.encode('zz')).toEqual([b(0x7a), b(0x7a)]);
    expect(bytes.encode('e')).toEqual([b(0x65)]); // unused piece -> unknown -> byte
    expect(bytes.encode('aéb')).toEqual([259, b(0xc3), b(0xa9), 260]);
    expect(bytes.encode('a€zz')).toEqual([259, 275, b(0x7a), b(0x7a)]);
    expect(bytes.sp.encodePieces('😀').map((p) => p.piece)).toEqual(['<0xF0>', '<0x9F>', '<0x98>', '<0x80>']);
  });
});

describe('cleaning (wan/modules/tokenizers.py)', () => {
  it('html.unescape like CPython: named (with/without ;), numeric, invalid code points', () => {
    const cases: [string, string][] = [
      ['&amp;', '&'], ['&amp;amp;', '&amp;'], ['&lt;b&gt;', '<b>'], ['&ampfoo', '&foo'], ['&notit;', '¬it;'],
      ['&notin;', '∉'], ['&copy2023', '©2023'], ['&#39;', "'"], ['&#x27;', "'"], ['&#X4E2D;', '中'], ['&#0;', '\ufffd'],
      ['&#128;', '€'], ['&#x80;', '€'], ['&#xD800;', '\ufffd'], ['&#1114112;', '\ufffd'], ['&#11;', ''], ['&#x1F600;', '😀'],
      ['&#65', 'A'], ['&#;', '&#;'], ['&#x;', '&#x;'], ['&unknownentity;', '&unknownentity;'], ['&', '&'], ['&amp', '&'],
      ['&AMP;', '&'], ['&Amp;', '&Amp;'], ['&#x110000;', '\ufffd'], ['&#99999999999999999999;', '\ufffd'], ['&#13;', '\r'],
      ['&#x9f;', 'Ÿ'], ['&#xFFFE;', ''], ['&#x10FFFF;', ''], ['a &nbsp; b', 'a \u00a0 b'], ['&hellip;&mdash;&euro;', '…—€'],
      ['&gtfoo;', '>foo;'], ['&LTx', '<x'], ['&#0065;', 'A'], ['AT&T', 'AT&T'], ['&lang;&rang;', '⟨⟩'], ['&notindot;', '⋵̸'],
    ];
    for (const [s, want] of cases) expect(htmlUnescape(s), s).toBe(want);
  });

  it('basic_clean unescapes twice and strips', () => {
    expect(basicClean('&amp;amp;')).toBe('&');
    expect(basicClean('&amp;lt;')).toBe('<');
    expect(basicClean(' &amp;nbsp; ')).toBe('');
    expect(basicClean('&#38;#38;')).toBe('&');
    expect(basicClean('&amp;amp;amp;')).toBe('&amp;');
  });

  it('whitespace_clean uses Unicode White_Space; strip uses str.isspace', () => {
    expect(whitespaceClean('a\u00a0\u2002\u3000b\u200bc\u1680d\u205fe\x1cf\x85g')).toBe('a b\u200bc d e\x1cf g');
    expect(whitespaceClean('\x1c a \x1f')).toBe('a');
    expect(whitespaceClean('\ufeffa\ufeff')).toBe('\ufeffa\ufeff');
    expect(whitespaceClean(' \t\n a \r\n b \u3000')).toBe('a b');
    expect(whitespaceClean('\u2028x\u2029y\u202f')).toBe('x y');
    expect(whitespaceClean('a\x0b\x0cb')).toBe('a b');
    expect(pythonStrip('\x85\x1c x \u3000')).toBe('x');
    expect(cleanPrompt('  Tom &amp;amp;\u2003Jerry\n')).toBe('Tom & Jerry');
  });
});

describe('tokenize: eos, truncation, padding, mask', () => {
  it('keeps text_len-1 tokens, appends eos, pads with 0, masks real tokens', async () => {
    const tok = await fixtureTokenizer();
    const L = 8;
    const texts = ['', 'a', 'the cat video dog sky', 'the cat video dog sky a', 'the cat  video dog sky a dog ', 'the cat video dog sky a on in'];
    const full = texts.map((t) => tok.encode(cleanPrompt(t)));
    expect(full.map((f) => f.length)).toEqual([0, 1, 7, 8, 9, 11]); // empty, short, L-1, L, L+1, above
    const out = tok.tokenize(texts, L);
    expect(out.ids.length).toBe(texts.length * L);
    expect(out.mask.length).toBe(texts.length * L);
    for (let b = 0; b < texts.length; b++) {
      const real = [...full[b].slice(0, L - 1), 1];
      const row = [...real, ...Array(L - real.length).fill(0)];
      expect([...out.ids.subarray(b * L, (b + 1) * L)], texts[b]).toEqual(row);
      expect([...out.mask.subarray(b * L, (b + 1) * L)]).toEqual(row.map((_, i) => (i < real.length ? 1 : 0)));
      expect(out.lens[b]).toBe(real.length);
    }
  });

  it('text_len 1 gives only eos; text_len must be a positive integer', async () => {
    const tok = await fixtureTokenizer();
    const out = tok.tokenize(['a long prompt with many words', ''], 1);
    expect([...out.ids]).toEqual([1, 1]);
    expect([...out.mask]).toEqual([1, 1]);
    expect(() => tok.tokenize(['x'], 0)).toThrow(/text_len/);
    expect(() => tok.tokenize(['x'], 2.5)).toThrow(/text_len/);
    expect(tok.tokenize([], 4).ids.length).toBe(0);
  });
});

describe('reference fixtures (kind "tokenizer")', () => {
  for (const name of ['tokenizer', 'tokenizer.no_byte_fallback']) {
    it(`${name}: ids and mask exact`, async () => {
      const fx = await loadFixture(join(fixturesDir, name));
      expect(fx.kind).toBe('tokenizer');
      const checks = await fixtureKind('tokenizer')!.run(undefined as unknown as Engine, fx);
      expect(checks.map((c) => [c.name, c.pass, c.maxAbs])).toEqual([
        ['ids', true, 0],
        ['mask', true, 0],
      ]);
    });

    it(`${name}: every case's cleaning, pieces and untruncated ids`, async () => {
      const fx = await loadFixture(join(fixturesDir, name));
      const tok = await UmT5Tokenizer.fromFile(fx.weightPath('spiece.model'));
      const cases = fx.config.cases as { raw: string; cleaned: string; pieces: string[]; ids_untruncated: number[] }[];
      expect(cases.length).toBe(63);
      for (const c of cases) {
        expect(cleanPrompt(c.raw), JSON.stringify(c.raw)).toBe(c.cleaned);
        const pieces = tok.sp.encodePieces(c.cleaned);
        expect(pieces.map((p) => p.piece), c.cleaned).toEqual(c.pieces);
        expect(pieces.map((p) => p.id), c.cleaned).toEqual(c.ids_untruncated);
      }
    });
  }
});

describe('scale', () => {
  it('builds a 256k-piece vocabulary (umT5 size) in under 2 s of CPU time and encodes 512 tokens', () => {
    const charsmap = parseSentencePieceModel(readFileSync(fixtureModelPath)).normalizer.precompiledCharsmap!;
    const r = rng(7);
    const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
    const pieces: PieceSpec[] = [...SPECIALS, ...BYTE_PIECES, ['▁', -3, 1]];
    // Unique by construction: the index in base 52, then a CJK character, then random letters.
    for (let i = 0; pieces.length < 256384; i++) {
      let p = i % 2 ? '▁' : '';
      for (let k = i; k > 0; k = Math.floor(k / 52)) p += letters[k % 52];
      p += String.fromCodePoint(0x4e00 + Math.floor(r() * 20000));
      const tail = Math.floor(r() * 8);
      for (let k = 0; k < tail; k++) p += letters[Math.floor(r() * 52)];
      pieces.push([p, -Math.fround(1 + r() * 20), 1]);
    }
    const bytes = synthModel(pieces, { byteFallback: true, charsmap });
    const cpu = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    };
    const t0 = cpu();
    const w0 = performance.now();
    const tok = UmT5Tokenizer.fromBytes(bytes, 'big.model');
    const seconds = cpu() - t0;
    console.log(`256k-piece tokenizer: ${(seconds * 1e3).toFixed(0)} ms CPU, ${(performance.now() - w0).toFixed(0)} ms wall`);
    expect(tok.vocabSize).toBe(256384);
    expect(seconds).toBeLessThan(2);
    const text = 'The boat drifts slowly on the lake at sunset, 色调艳丽，过曝，静态. '.repeat(30);
    const out = tok.tokenize([text], 512);
    expect(out.lens).toEqual([512]);
    expect(out.ids[511]).toBe(1);
    // Every id is a real piece; byte pieces only stand for characters without a piece.
    for (const id of out.ids) expect(id).toBeLessThan(256384);
  });
});
