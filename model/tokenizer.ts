// The umT5 text path of the official Wan2.2 code: wan/modules/tokenizers.py HuggingfaceTokenizer with
// clean='whitespace' around the google/umt5-xxl tokenizer (a SentencePiece unigram model).
//
//   cleanPrompt:  ftfy.fix_text (identity, see below) -> html.unescape twice -> str.strip()
//                 -> regex.sub(r'\s+', ' ') -> str.strip()
//   encode:       SentencePiece normalisation (precompiled charsmap = nmt_nfkc, dummy prefix '▁',
//                 whitespace -> U+2581, extra whitespace removed) -> unigram Viterbi (best total
//                 score, float32 like SentencePiece) -> unknown characters as <unk> (consecutive ones
//                 merged) or, with byte_fallback, as the <0xXX> pieces of their UTF-8 bytes
//   tokenize:     encode, keep text_len-1 ids, append </s>, right-pad with <pad> to text_len; mask 1 on
//                 real tokens (eos included)
//
// Reference semantics: SentencePiece 0.1.97 (normalizer.cc, unigram_model.cc EncodeOptimized,
// sentencepiece_processor.cc PopulateSentencePieceText), CPython's html.unescape and the `regex`
// module's Unicode `\s`. Known differences from the official Python path, all outside what the
// fixtures exercise:
//  - ftfy.fix_text is treated as the identity, exactly as the reference fixtures were made (ftfy was
//    not installed). With ftfy's defaults the official code would also straighten curly quotes
//    (“ ” ‘ ’ -> " '), NFC-normalise, drop some control characters, unescape HTML when the text has no
//    '<'/'>', and repair mojibake; ligature and width fixes change nothing after nmt_nfkc. Prompts with
//    curly quotes or mojibake can therefore get other ids than a Wan install that has ftfy.
//  - html.unescape knows 2231 HTML5 entity names; this port knows 348 (HTML 4 + Latin-1/ASCII names +
//    every name that starts with a legacy no-semicolon name, so the "longest legacy prefix" rule never
//    misfires). An unknown `&name;` stays as it is; Python would replace the other 1883 names.
//  - Text that literally contains special tokens ("</s>", "<pad>", "<unk>") is encoded as plain text;
//    the HuggingFace tokenizer would map them to their special ids.
//  - The HF *fast* tokenizer (tokenizers' Unigram, pre-split on whitespace by Metaspace, f64 scores)
//    can break score ties differently from SentencePiece; we follow SentencePiece, as the fixtures do.
//  - Lone UTF-16 surrogates become U+FFFD (Python would raise when encoding to UTF-8).

import { promises as fsp } from 'node:fs';
import {
  PieceType,
  bytePieceValue,
  decodePrecompiledCharsmap,
  parseSentencePieceModel,
  type NormalizerSpec,
  type SentencePieceModel,
} from '../loaders/sentencepiece.ts';

// ---------------------------------------------------------------------------------------------
// Cleaning (wan/modules/tokenizers.py basic_clean + whitespace_clean)

/** Characters for which Python's str.isspace() is true: what str.strip() removes. */
function isPythonSpace(c: number): boolean {
  return (
    (c >= 0x09 && c <= 0x0d) ||
    (c >= 0x1c && c <= 0x20) ||
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

/** Python's str.strip() with no argument (JS trim() differs: it strips U+FEFF, keeps U+001C..1F/U+0085). */
export function pythonStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isPythonSpace(s.charCodeAt(a))) a++;
  while (b > a && isPythonSpace(s.charCodeAt(b - 1))) b--;
  return s.slice(a, b);
}

/** `\s` of the `regex` module on str patterns: the Unicode White_Space property (no U+001C..1F). */
const REGEX_WHITESPACE_RUN = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/g;

/** whitespace_clean: regex.sub(r'\s+', ' ', text).strip() */
export function whitespaceClean(text: string): string {
  return pythonStrip(text.replace(REGEX_WHITESPACE_RUN, ' '));
}

// HTML character references, CPython html.unescape semantics.
// Entity table: name -> code point(s) in hex ('+' joins two); '!' marks the legacy names that HTML5
// also accepts without the trailing semicolon. Values are those of Python's html.entities.html5.
const ENTITY_TABLE =
  'Tab:9 NewLine:a excl:21 QUOT!:22 quot!:22 num:23 dollar:24 percnt:25 AMP!:26 amp!:26 apos:27 lpar:28 rpar:29 ' +
  'ast:2a midast:2a plus:2b comma:2c period:2e sol:2f colon:3a semi:3b LT!:3c lt!:3c equals:3d GT!:3e gt!:3e ' +
  'quest:3f commat:40 lbrack:5b lsqb:5b bsol:5c rbrack:5d rsqb:5d Hat:5e UnderBar:5f lowbar:5f ' +
  'DiacriticalGrave:60 grave:60 lbrace:7b lcub:7b VerticalLine:7c verbar:7c vert:7c rbrace:7d rcub:7d ' +
  'NonBreakingSpace:a0 nbsp!:a0 iexcl!:a1 cent!:a2 pound!:a3 curren!:a4 yen!:a5 brvbar!:a6 sect!:a7 Dot:a8 ' +
  'DoubleDot:a8 die:a8 uml!:a8 COPY!:a9 copy!:a9 ordf!:aa laquo!:ab not!:ac shy!:ad REG!:ae circledR:ae reg!:ae ' +
  'macr!:af strns:af deg!:b0 PlusMinus:b1 plusmn!:b1 pm:b1 sup2!:b2 sup3!:b3 DiacriticalAcute:b4 acute!:b4 ' +
  'micro!:b5 para!:b6 CenterDot:b7 centerdot:b7 middot!:b7 Cedilla:b8 cedil!:b8 sup1!:b9 ordm!:ba raquo!:bb ' +
  'frac14!:bc frac12!:bd half:bd frac34!:be iquest!:bf Agrave!:c0 Aacute!:c1 Acirc!:c2 Atilde!:c3 Auml!:c4 ' +
  'Aring!:c5 angst:c5 AElig!:c6 Ccedil!:c7 Egrave!:c8 Eacute!:c9 Ecirc!:ca Euml!:cb Igrave!:cc Iacute!:cd ' +
  'Icirc!:ce Iuml!:cf ETH!:d0 Ntilde!:d1 Ograve!:d2 Oacute!:d3 Ocirc!:d4 Otilde!:d5 Ouml!:d6 times!:d7 ' +
  'Oslash!:d8 Ugrave!:d9 Uacute!:da Ucirc!:db Uuml!:dc Yacute!:dd THORN!:de szlig!:df agrave!:e0 aacute!:e1 ' +
  'acirc!:e2 atilde!:e3 auml!:e4 aring!:e5 aelig!:e6 ccedil!:e7 egrave!:e8 eacute!:e9 ecirc!:ea euml!:eb ' +
  'igrave!:ec iacute!:ed icirc!:ee iuml!:ef eth!:f0 ntilde!:f1 ograve!:f2 oacute!:f3 ocirc!:f4 otilde!:f5 ' +
  'ouml!:f6 div:f7 divide!:f7 oslash!:f8 ugrave!:f9 uacute!:fa ucirc!:fb uuml!:fc yacute!:fd thorn!:fe yuml!:ff ' +
  'OElig:152 oelig:153 Scaron:160 scaron:161 Yuml:178 fnof:192 circ:2c6 tilde:2dc Alpha:391 Beta:392 Gamma:393 ' +
  'Delta:394 Epsilon:395 Zeta:396 Eta:397 Theta:398 Iota:399 Kappa:39a Lambda:39b Mu:39c Nu:39d Xi:39e ' +
  'Omicron:39f Pi:3a0 Rho:3a1 Sigma:3a3 Tau:3a4 Upsilon:3a5 Phi:3a6 Chi:3a7 Psi:3a8 Omega:3a9 alpha:3b1 ' +
  'beta:3b2 gamma:3b3 delta:3b4 epsilon:3b5 zeta:3b6 eta:3b7 theta:3b8 iota:3b9 kappa:3ba lambda:3bb mu:3bc ' +
  'nu:3bd xi:3be omicron:3bf pi:3c0 rho:3c1 sigmaf:3c2 sigma:3c3 tau:3c4 upsilon:3c5 phi:3c6 chi:3c7 psi:3c8 ' +
  'omega:3c9 thetasym:3d1 upsih:3d2 piv:3d6 ensp:2002 emsp:2003 thinsp:2009 zwnj:200c zwj:200d lrm:200e ' +
  'rlm:200f ndash:2013 mdash:2014 lsquo:2018 rsquo:2019 sbquo:201a ldquo:201c rdquo:201d bdquo:201e dagger:2020 ' +
  'Dagger:2021 bull:2022 hellip:2026 permil:2030 prime:2032 Prime:2033 lsaquo:2039 rsaquo:203a oline:203e ' +
  'frasl:2044 euro:20ac image:2111 copysr:2117 weierp:2118 real:211c trade:2122 alefsym:2135 larr:2190 ' +
  'uarr:2191 rarr:2192 darr:2193 harr:2194 crarr:21b5 lArr:21d0 uArr:21d1 rArr:21d2 dArr:21d3 hArr:21d4 ' +
  'forall:2200 part:2202 exist:2203 empty:2205 nabla:2207 isin:2208 notin:2209 notinva:2209 ni:220b notni:220c ' +
  'notniva:220c prod:220f sum:2211 minus:2212 lowast:2217 radic:221a prop:221d infin:221e ang:2220 ' +
  'parallel:2225 and:2227 or:2228 cap:2229 cup:222a int:222b there4:2234 sim:223c cong:2245 asymp:2248 ne:2260 ' +
  'equiv:2261 le:2264 ge:2265 gtrsim:2273 gtrless:2277 sub:2282 sup:2283 nsub:2284 sube:2286 supe:2287 ' +
  'oplus:2295 otimes:2297 timesb:22a0 perp:22a5 ltrie:22b4 sdot:22c5 divideontimes:22c7 ltimes:22c9 lthree:22cb ' +
  'ltdot:22d6 gtdot:22d7 gtrdot:22d7 gtreqless:22db notindot:22f5+338 notinvc:22f6 notinvb:22f7 notinE:22f9+338 ' +
  'notnivc:22fd notnivb:22fe lceil:2308 rceil:2309 lfloor:230a rfloor:230b ltrif:25c2 ltri:25c3 loz:25ca ' +
  'spades:2660 clubs:2663 hearts:2665 diams:2666 lang:27e8 rang:27e9 ltlarr:2976 gtrarr:2978 gtlPar:2995 ' +
  'ltrPar:2996 timesd:2a30 timesbar:2a31 ltcir:2a79 gtcir:2a7a ltquest:2a7b gtquest:2a7c gtrapprox:2a86 ' +
  'gtreqqless:2a8c ltcc:2aa6 gtcc:2aa7 ';

/** "name;" for every name, and bare "name" for the legacy ones -> replacement text. */
const entities = (() => {
  const entities = new Map<string, string>();
  for (const item of ENTITY_TABLE.trim().split(/ +/)) {
    const [rawName, hex] = item.split(':');
    const legacy = rawName.endsWith('!');
    const name = legacy ? rawName.slice(0, -1) : rawName;
    const value = String.fromCodePoint(...hex.split('+').map((h) => parseInt(h, 16)));
    entities.set(name + ';', value);
    if (legacy) entities.set(name, value);
  }
  return entities;
})();

/** Numeric references HTML5 maps to other characters (CPython html._invalid_charrefs). */
const INVALID_CHARREFS = new Map<number, number>([
  [0x00, 0xfffd], [0x0d, 0x0d], [0x80, 0x20ac], [0x81, 0x81], [0x82, 0x201a], [0x83, 0x0192],
  [0x84, 0x201e], [0x85, 0x2026], [0x86, 0x2020], [0x87, 0x2021], [0x88, 0x02c6], [0x89, 0x2030],
  [0x8a, 0x0160], [0x8b, 0x2039], [0x8c, 0x0152], [0x8d, 0x8d], [0x8e, 0x017d], [0x8f, 0x8f],
  [0x90, 0x90], [0x91, 0x2018], [0x92, 0x2019], [0x93, 0x201c], [0x94, 0x201d], [0x95, 0x2022],
  [0x96, 0x2013], [0x97, 0x2014], [0x98, 0x02dc], [0x99, 0x2122], [0x9a, 0x0161], [0x9b, 0x203a],
  [0x9c, 0x0153], [0x9d, 0x9d], [0x9e, 0x017e], [0x9f, 0x0178],
]);

/** Code points a numeric reference turns into nothing (CPython html._invalid_codepoints). */
function isDroppedCodePoint(n: number): boolean {
  return (
    (n >= 0x01 && n <= 0x08) ||
    n === 0x0b ||
    (n >= 0x0e && n <= 0x1f) ||
    (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) ||
    (n & 0xfffe) === 0xfffe // U+xFFFE / U+xFFFF of every plane
  );
}

// Same pattern as CPython's html._charref; 'u' so that {1,32} counts code points like Python.
const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function replaceCharref(_match: string, ref: string): string {
  if (ref[0] === '#') {
    const hex = ref[1] === 'x' || ref[1] === 'X';
    const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
    // parseInt of a huge reference is a huge float or Infinity: still > 0x10FFFF, as wanted.
    const num = parseInt(digits, hex ? 16 : 10);
    const mapped = INVALID_CHARREFS.get(num);
    if (mapped !== undefined) return String.fromCodePoint(mapped);
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
    if (isDroppedCodePoint(num)) return '';
    return String.fromCodePoint(num);
  }
  const exact = entities.get(ref);
  if (exact !== undefined) return exact;
  // The longest legacy name that prefixes the reference (prefixes of >= 2 code points, longest first;
  // a proper prefix has no ';', so only the bare legacy keys can match).
  const chars = Array.from(ref);
  for (let x = chars.length - 1; x > 1; x--) {
    const v = entities.get(chars.slice(0, x).join(''));
    if (v !== undefined) return v + chars.slice(x).join('');
  }
  return '&' + ref;
}

/** CPython html.unescape (entity names limited to the table above). */
export function htmlUnescape(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(CHARREF, replaceCharref);
}

/** basic_clean: ftfy.fix_text (identity here), html.unescape twice, strip. */
export function basicClean(text: string): string {
  return pythonStrip(htmlUnescape(htmlUnescape(text)));
}

/** The official cleaning for clean='whitespace': whitespace_clean(basic_clean(text)). */
export function cleanPrompt(text: string): string {
  return whitespaceClean(basicClean(text));
}

// ---------------------------------------------------------------------------------------------
// SentencePiece normaliser (normalizer.cc)

const SPACE_SYMBOL = [0xe2, 0x96, 0x81]; // U+2581 '▁' in UTF-8
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

/** Bytes of the UTF-8 sequence started by `lead` (SentencePiece OneCharLen). */
function utf8CharLen(lead: number): number {
  return lead < 0x80 ? 1 : lead < 0xc0 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}

/** A byte trie of the user-defined symbols (normalizer::PrefixMatcher): longest prefix match. */
class BytePrefixMatcher {
  private readonly children: Map<number, number>[] = [new Map()];
  private readonly terminal: boolean[] = [false];

  constructor(words: string[]) {
    for (const w of words) {
      let node = 0;
      for (const b of utf8Encoder.encode(w)) {
        let next = this.children[node].get(b);
        if (next === undefined) {
          next = this.children.length;
          this.children.push(new Map());
          this.terminal.push(false);
          this.children[node].set(b, next);
        }
        node = next;
      }
      this.terminal[node] = true;
    }
  }

  /** Length in bytes of the longest symbol at input[pos..], 0 if none. */
  longest(input: Uint8Array, pos: number): number {
    let node = 0;
    let best = 0;
    for (let i = pos; i < input.length; i++) {
      const next = this.children[node].get(input[i]);
      if (next === undefined) break;
      node = next;
      if (this.terminal[node]) best = i - pos + 1;
    }
    return best;
  }
}

export class SentencePieceNormalizer {
  private readonly trie: Uint32Array | null = null;
  private readonly replacementBlob: Uint8Array = new Uint8Array(0);
  private readonly replacements = new Map<number, Uint8Array>();
  private readonly userSymbols: BytePrefixMatcher | null;

  constructor(
    private readonly spec: NormalizerSpec,
    private readonly treatWhitespaceAsSuffix = false,
    userDefinedSymbols: string[] = [],
    private readonly source = 'spiece.model',
  ) {
    if (spec.precompiledCharsmap) {
      const cm = decodePrecompiledCharsmap(spec.precompiledCharsmap);
      this.trie = cm.trie;
      this.replacementBlob = cm.normalized;
    }
    this.userSymbols = userDefinedSymbols.length > 0 ? new BytePrefixMatcher(userDefinedSymbols) : null;
  }

  /** The NUL-terminated replacement string at `offset` of the charsmap blob. */
  private replacement(offset: number): Uint8Array {
    let r = this.replacements.get(offset);
    if (r) return r;
    if (offset >= this.replacementBlob.length) {
      throw new Error(`${this.source}: precompiled charsmap is corrupt (replacement offset ${offset} out of range)`);
    }
    let end = this.replacementBlob.indexOf(0, offset);
    if (end < 0) end = this.replacementBlob.length;
    r = this.replacementBlob.subarray(offset, end);
    this.replacements.set(offset, r);
    return r;
  }

  /**
   * Darts-clone commonPrefixSearch over the charsmap trie, keeping the longest match:
   * [matched bytes, replacement offset], or [0, 0] when no rule applies.
   */
  private longestRule(input: Uint8Array, pos: number): [number, number] {
    const a = this.trie!;
    const offsetOf = (unit: number) => (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
    let node = offsetOf(a[0]);
    let bestLen = 0;
    let bestValue = 0;
    for (let i = pos; i < input.length; i++) {
      const c = input[i];
      node ^= c;
      if (node >= a.length) break;
      const unit = a[node];
      if ((unit & 0x800000ff) !== c) break; // label mismatch: no key continues with this byte
      node ^= offsetOf(unit);
      if ((unit >>> 8) & 1) {
        if (node >= a.length) break;
        bestLen = i - pos + 1;
        bestValue = a[node] & 0x7fffffff;
      }
    }
    return [bestLen, bestValue];
  }

  /** Normalizer::NormalizePrefix: [replacement bytes, input bytes consumed]. */
  private normalizePrefix(input: Uint8Array, pos: number): [Uint8Array, number] {
    if (this.userSymbols) {
      const n = this.userSymbols.longest(input, pos);
      if (n > 0) return [input.subarray(pos, pos + n), n];
    }
    if (this.trie) {
      const [len, value] = this.longestRule(input, pos);
      if (len > 0) return [this.replacement(value), len];
    }
    // No rule: the character itself (input comes from TextEncoder, so it is valid UTF-8).
    const n = Math.min(utf8CharLen(input[pos]), input.length - pos);
    return [input.subarray(pos, pos + n), n];
  }

  /** Normalizer::Normalize, returning the normalised text. */
  normalize(text: string): string {
    const input = utf8Encoder.encode(text);
    const removeExtra = this.spec.removeExtraWhitespaces;
    const escape = this.spec.escapeWhitespaces;
    let pos = 0;
    // Leading whitespace (anything normalising to exactly " ").
    if (removeExtra) {
      while (pos < input.length) {
        const [rep, len] = this.normalizePrefix(input, pos);
        if (!(rep.length === 1 && rep[0] === 0x20)) break;
        pos += len;
      }
    }
    if (pos >= input.length) return '';

    const out: number[] = [];
    const addSpace = () => {
      if (escape) out.push(...SPACE_SYMBOL);
      else out.push(0x20);
    };
    if (!this.treatWhitespaceAsSuffix && this.spec.addDummyPrefix) addSpace();

    let prevSpace = removeExtra;
    while (pos < input.length) {
      const [rep, len] = this.normalizePrefix(input, pos);
      let k = 0;
      // Drop the leading spaces of this piece when the text so far ends with one.
      while (prevSpace && k < rep.length && rep[k] === 0x20) k++;
      if (k < rep.length) {
        for (let j = k; j < rep.length; j++) {
          if (escape && rep[j] === 0x20) out.push(...SPACE_SYMBOL);
          else out.push(rep[j]);
        }
        prevSpace = rep[rep.length - 1] === 0x20;
      }
      pos += len;
      if (!removeExtra) prevSpace = false;
    }

    if (removeExtra) {
      // Trailing whitespace symbols.
      if (escape) {
        while (out.length >= 3 && out[out.length - 3] === 0xe2 && out[out.length - 2] === 0x96 && out[out.length - 1] === 0x81) {
          out.length -= 3;
        }
      } else {
        while (out.length > 0 && out[out.length - 1] === 0x20) out.length--;
      }
    }
    if (this.treatWhitespaceAsSuffix && this.spec.addDummyPrefix) addSpace();
    return utf8Decoder.decode(Uint8Array.from(out));
  }
}

// ---------------------------------------------------------------------------------------------
// Unigram model (unigram_model.cc Model::EncodeOptimized) and SentencePieceProcessor::Encode

const UNK_PENALTY = 10;
const FLT_MAX = 3.4028234663852886e38;
const FLT_MIN = 1.1754943508222875e-38; // smallest normal float: SentencePiece's initial max_score_
const f32 = Math.fround;

function codePointCount(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdbff || i + 1 >= s.length) n++;
    else {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
      n++;
    }
  }
  return n;
}

export interface EncodedPiece {
  piece: string;
  id: number;
}

export class SentencePieceProcessor {
  readonly normalizer: SentencePieceNormalizer;
  /** Pieces the Viterbi may use (normal and user-defined) -> id. */
  private readonly pieceIds = new Map<string, number>();
  /** Longest such piece, in code points, by its first code point: bounds the lookups per position. */
  private readonly maxLenByFirst = new Map<number, number>();
  private readonly unkId: number;
  private readonly byteIds: Int32Array | null;
  private readonly minScore: number;
  private readonly maxScore: number;

  constructor(readonly model: SentencePieceModel) {
    const { pieces, types, scores } = model;
    let unk = -1;
    let minScore = FLT_MAX;
    let maxScore = FLT_MIN;
    const userDefined: string[] = [];
    const byteIds = model.trainer.byteFallback ? new Int32Array(256).fill(-1) : null;
    for (let id = 0; id < pieces.length; id++) {
      const type = types[id];
      if (type === PieceType.UNKNOWN) unk = id;
      if (type === PieceType.NORMAL) {
        minScore = Math.min(minScore, scores[id]);
        maxScore = Math.max(maxScore, scores[id]);
      }
      if (type === PieceType.BYTE && byteIds) byteIds[bytePieceValue(pieces[id])] = id;
      if (type === PieceType.USER_DEFINED) userDefined.push(pieces[id]);
      // UNUSED pieces are in SentencePiece's trie but skipped when matched: same as leaving them out.
      if (type !== PieceType.NORMAL && type !== PieceType.USER_DEFINED) continue;
      const p = pieces[id];
      this.pieceIds.set(p, id);
      const first = p.codePointAt(0)!;
      const len = codePointCount(p);
      if ((this.maxLenByFirst.get(first) ?? 0) < len) this.maxLenByFirst.set(first, len);
    }
    if (unk < 0) throw new Error(`${model.source}: no unknown piece`);
    if (this.pieceIds.size === 0) throw new Error(`${model.source}: no normal pieces`);
    this.unkId = unk;
    this.byteIds = byteIds;
    this.minScore = minScore;
    this.maxScore = maxScore;
    this.normalizer = new SentencePieceNormalizer(model.normalizer, model.trainer.treatWhitespaceAsSuffix, userDefined, model.source);
  }

  /** Best segmentation of normalised text: [piece text, id], unknown characters as unk_id. */
  viterbi(normalized: string): EncodedPiece[] {
    if (normalized.length === 0) return [];
    // Code point boundaries (UTF-16 indices) of the text.
    const bounds: number[] = [0];
    for (let i = 0; i < normalized.length; ) {
      i += normalized.codePointAt(i)! > 0xffff ? 2 : 1;
      bounds.push(i);
    }
    const n = bounds.length - 1;
    const unkScore = f32(this.minScore - UNK_PENALTY);
    const best = new Float64Array(n + 1); // float32 values: SentencePiece sums scores in float
    const from = new Int32Array(n + 1).fill(-1);
    const ids = new Int32Array(n + 1);
    for (let st = 0; st < n; st++) {
      const till = best[st];
      const maxLen = Math.min(this.maxLenByFirst.get(normalized.codePointAt(bounds[st])!) ?? 0, n - st);
      let hasSingle = false;
      // Candidates in increasing length; a later one must be strictly better to win (as in C++).
      for (let len = 1; len <= maxLen; len++) {
        const text = normalized.slice(bounds[st], bounds[st + len]);
        const id = this.pieceIds.get(text);
        if (id === undefined) continue;
        let cand: number;
        if (this.model.types[id] === PieceType.USER_DEFINED) {
          // length * max_score_ - 0.1 is a double in C++ (0.1 is a double literal); only the stored
          // path score is rounded to float.
          cand = f32(utf8Encoder.encode(text).length * this.maxScore) - 0.1 + till;
        } else {
          cand = f32(this.model.scores[id] + till);
        }
        const end = st + len;
        if (from[end] === -1 || cand > best[end]) {
          best[end] = f32(cand);
          from[end] = st;
          ids[end] = id;
        }
        if (len === 1) hasSingle = true;
      }
      if (!hasSingle) {
        const cand = f32(unkScore + till);
        const end = st + 1;
        if (from[end] === -1 || cand > best[end]) {
          best[end] = cand;
          from[end] = st;
          ids[end] = this.unkId;
        }
      }
    }
    const out: EncodedPiece[] = [];
    for (let end = n; end > 0; end = from[end]) {
      out.push({ piece: normalized.slice(bounds[from[end]], bounds[end]), id: ids[end] });
    }
    return out.reverse();
  }

  /**
   * SentencePieceProcessor::Encode: normalise, segment, then unknown pieces become their UTF-8
   * byte pieces (byte_fallback) or are merged with a preceding unknown piece.
   */
  encodePieces(text: string): EncodedPiece[] {
    const out: EncodedPiece[] = [];
    let prevUnk = false;
    for (const p of this.viterbi(this.normalizer.normalize(text))) {
      const unk = p.id === this.unkId;
      if (unk && this.byteIds) {
        for (const b of utf8Encoder.encode(p.piece)) {
          out.push({ piece: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, id: this.byteIds[b] });
        }
      } else if (unk && prevUnk) {
        out[out.length - 1].piece += p.piece;
      } else {
        out.push(p);
      }
      prevUnk = unk;
    }
    return out;
  }

  encode(text: string): number[] {
    return this.encodePieces(text).map((p) => p.id);
  }
}

// ---------------------------------------------------------------------------------------------
// The umT5 tokenizer as T5EncoderModel drives it

export interface TokenizedBatch {
  /** [B * textLen] token ids, row-major. */
  ids: Int32Array;
  /** [B * textLen] 1 on real tokens (eos included), 0 on padding. */
  mask: Int32Array;
  /** Real tokens per text (eos included): the mask's row sums. */
  lens: number[];
}

export class UmT5Tokenizer {
  readonly sp: SentencePieceProcessor;
  readonly eosId: number;
  readonly padId: number;

  constructor(model: SentencePieceModel) {
    this.sp = new SentencePieceProcessor(model);
    const special = (id: number, piece: string, what: string) => {
      // T5 uses the pieces "</s>" / "<pad>"; the trainer spec gives their ids.
      if (id >= 0 && id < model.pieces.length) return id;
      const found = model.pieces.indexOf(piece);
      if (found < 0) throw new Error(`${model.source}: no ${what} piece (${piece})`);
      return found;
    };
    this.eosId = special(model.trainer.eosId, model.trainer.eosPiece, 'end-of-sequence');
    this.padId = special(model.trainer.padId, model.trainer.padPiece, 'padding');
  }

  static async fromFile(spiecePath: string): Promise<UmT5Tokenizer> {
    let bytes: Uint8Array;
    try {
      bytes = await fsp.readFile(spiecePath);
    } catch (err) {
      throw new Error(`${spiecePath}: cannot read SentencePiece model: ${(err as Error).message}`);
    }
    return UmT5Tokenizer.fromBytes(bytes, spiecePath);
  }

  static fromBytes(bytes: Uint8Array, source = 'spiece.model'): UmT5Tokenizer {
    return new UmT5Tokenizer(parseSentencePieceModel(bytes, source));
  }

  get vocabSize(): number {
    return this.sp.model.pieces.length;
  }

  /** SentencePiece ids of `text` as given (no cleaning, no eos). */
  encode(text: string): number[] {
    return this.sp.encode(text);
  }

  /**
   * The official text path for a batch: clean each text, encode, truncate to textLen-1 tokens,
   * append eos, right-pad to textLen.
   */
  tokenize(texts: string[], textLen: number): TokenizedBatch {
    if (!Number.isInteger(textLen) || textLen < 1) throw new Error(`tokenize: text_len must be a positive integer, got ${textLen}`);
    const ids = new Int32Array(texts.length * textLen).fill(this.padId);
    const mask = new Int32Array(texts.length * textLen);
    const lens: number[] = [];
    texts.forEach((text, b) => {
      const row = this.encode(cleanPrompt(text)).slice(0, textLen - 1);
      row.push(this.eosId);
      ids.set(row, b * textLen);
      mask.fill(1, b * textLen, b * textLen + row.length);
      lens.push(row.length);
    });
    return { ids, mask, lens };
  }
}
