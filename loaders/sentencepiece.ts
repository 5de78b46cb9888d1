// Reader of SentencePiece model files (`spiece.model`: a serialized sentencepiece.ModelProto, see
// sentencepiece_model.proto). Keeps what encoding needs: the pieces (text, score, type), the trainer
// options that change encoding (model type, byte fallback, special ids) and the normalizer spec
// (rule name, precompiled charsmap, dummy prefix / whitespace options). The file is validated the
// way SentencePiece's ModelInterface does when it loads a model (one <unk>, no duplicate pieces,
// 256 byte pieces iff byte_fallback), so a truncated or corrupt file fails here with its name.

import { promises as fsp } from 'node:fs';
import { ProtoReader, WireType, type FieldTag } from './protobuf.ts';

/** ModelProto.SentencePiece.Type */
export const PieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;
export type PieceType = (typeof PieceType)[keyof typeof PieceType];

/** TrainerSpec.ModelType */
export const ModelType = { UNIGRAM: 1, BPE: 2, WORD: 3, CHAR: 4 } as const;

export interface TrainerSpec {
  modelType: number;
  vocabSize: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
}

export interface NormalizerSpec {
  /** Rule name, e.g. "nmt_nfkc" (informational: the rules are in `precompiledCharsmap`). */
  name: string;
  /** <u32 trie bytes><double-array trie><NUL-terminated replacement strings>; null = identity. */
  precompiledCharsmap: Uint8Array | null;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface SentencePieceModel {
  /** File name (or label) used in error messages. */
  source: string;
  /** Piece text by id. */
  pieces: string[];
  /** Piece score (log probability for unigram) by id, float32 like the file. */
  scores: Float32Array;
  /** PieceType by id. */
  types: Uint8Array;
  trainer: TrainerSpec;
  normalizer: NormalizerSpec;
}

/** The precompiled charsmap split into its double-array trie units and the replacement blob. */
export interface PrecompiledCharsmap {
  trie: Uint32Array;
  normalized: Uint8Array;
}

function defaultTrainerSpec(): TrainerSpec {
  // Defaults of sentencepiece_model.proto.
  return {
    modelType: ModelType.UNIGRAM,
    vocabSize: 8000,
    byteFallback: false,
    treatWhitespaceAsSuffix: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    unkPiece: '<unk>',
    bosPiece: '<s>',
    eosPiece: '</s>',
    padPiece: '<pad>',
  };
}

function defaultNormalizerSpec(): NormalizerSpec {
  return { name: '', precompiledCharsmap: null, addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true };
}

function readTrainerSpec(r: ProtoReader): TrainerSpec {
  const t = defaultTrainerSpec();
  const int = (tag: FieldTag, what: string) => {
    r.expect(tag, WireType.VARINT, what);
    return r.int32();
  };
  const str = (tag: FieldTag, what: string) => {
    r.expect(tag, WireType.LENGTH_DELIMITED, what);
    return r.string();
  };
  while (!r.done) {
    const tag = r.tag();
    switch (tag.field) {
      case 3: t.modelType = int(tag, 'model_type'); break;
      case 4: t.vocabSize = int(tag, 'vocab_size'); break;
      case 24: t.treatWhitespaceAsSuffix = int(tag, 'treat_whitespace_as_suffix') !== 0; break;
      case 35: t.byteFallback = int(tag, 'byte_fallback') !== 0; break;
      case 40: t.unkId = int(tag, 'unk_id'); break;
      case 41: t.bosId = int(tag, 'bos_id'); break;
      case 42: t.eosId = int(tag, 'eos_id'); break;
      case 43: t.padId = int(tag, 'pad_id'); break;
      case 45: t.unkPiece = str(tag, 'unk_piece'); break;
      case 46: t.bosPiece = str(tag, 'bos_piece'); break;
      case 47: t.eosPiece = str(tag, 'eos_piece'); break;
      case 48: t.padPiece = str(tag, 'pad_piece'); break;
      default: r.skip(tag);
    }
  }
  return t;
}

function readNormalizerSpec(r: ProtoReader): NormalizerSpec {
  const n = defaultNormalizerSpec();
  const flag = (tag: FieldTag, what: string) => {
    r.expect(tag, WireType.VARINT, what);
    return r.bool();
  };
  while (!r.done) {
    const tag = r.tag();
    switch (tag.field) {
      case 1:
        r.expect(tag, WireType.LENGTH_DELIMITED, 'name');
        n.name = r.string();
        break;
      case 2: {
        r.expect(tag, WireType.LENGTH_DELIMITED, 'precompiled_charsmap');
        const b = r.bytes();
        n.precompiledCharsmap = b.length > 0 ? b.slice() : null;
        break;
      }
      case 3: n.addDummyPrefix = flag(tag, 'add_dummy_prefix'); break;
      case 4: n.removeExtraWhitespaces = flag(tag, 'remove_extra_whitespaces'); break;
      case 5: n.escapeWhitespaces = flag(tag, 'escape_whitespaces'); break;
      default: r.skip(tag);
    }
  }
  return n;
}

/** Splits a precompiled charsmap blob (normalizer.cc DecodePrecompiledCharsMap; little endian). */
export function decodePrecompiledCharsmap(blob: Uint8Array): PrecompiledCharsmap {
  if (blob.length <= 4) throw new Error('precompiled charsmap is broken (shorter than its header)');
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const trieBytes = view.getUint32(0, true);
  if (trieBytes === 0 || trieBytes % 4 !== 0 || trieBytes > blob.length - 4) {
    throw new Error(`precompiled charsmap is broken (trie size ${trieBytes} for a ${blob.length}-byte blob)`);
  }
  const trie = new Uint32Array(trieBytes / 4);
  for (let i = 0; i < trie.length; i++) trie[i] = view.getUint32(4 + 4 * i, true);
  return { trie, normalized: blob.slice(4 + trieBytes) };
}

const BYTE_PIECE = /^<0x([0-9A-F]{2})>$/;

/** "<0x41>" -> 0x41; -1 if the text is not a byte piece (SentencePiece writes two upper-case hex digits). */
export function bytePieceValue(piece: string): number {
  const m = BYTE_PIECE.exec(piece);
  return m ? parseInt(m[1], 16) : -1;
}

function validate(m: Omit<SentencePieceModel, 'source'>): void {
  const n = m.pieces.length;
  if (n === 0) throw new Error('no pieces');
  if (m.trainer.modelType !== ModelType.UNIGRAM) {
    throw new Error(`model_type ${m.trainer.modelType} is not supported (only unigram = 1, as umT5 uses)`);
  }
  // ModelInterface keeps normal/user-defined/unused pieces and the reserved ones in two maps,
  // each of which must not hold a piece twice.
  const normal = new Set<string>();
  const reserved = new Set<string>();
  const bytesSeen = new Uint8Array(256);
  let unk = -1;
  for (let id = 0; id < n; id++) {
    const p = m.pieces[id];
    const type = m.types[id];
    if (p.length === 0) throw new Error(`piece ${id} is empty`);
    if (type < PieceType.NORMAL || type > PieceType.BYTE) throw new Error(`piece ${id} has unknown type ${type}`);
    const isNormal = type === PieceType.NORMAL || type === PieceType.USER_DEFINED || type === PieceType.UNUSED;
    const map = isNormal ? normal : reserved;
    if (map.has(p)) throw new Error(`piece ${JSON.stringify(p)} (id ${id}) is defined twice`);
    map.add(p);
    if (type === PieceType.UNKNOWN) {
      if (unk >= 0) throw new Error(`a second unknown piece at id ${id} (first at ${unk})`);
      unk = id;
    }
    if (type === PieceType.BYTE) {
      if (!m.trainer.byteFallback) throw new Error(`byte piece ${p} (id ${id}) although byte_fallback is false`);
      const b = bytePieceValue(p);
      if (b < 0) throw new Error(`invalid byte piece ${JSON.stringify(p)} (id ${id})`);
      bytesSeen[b] = 1;
    }
  }
  if (unk < 0) throw new Error('no unknown piece (<unk>)');
  if (m.trainer.byteFallback && bytesSeen.includes(0)) throw new Error('byte_fallback is on but not all 256 byte pieces exist');
  if (m.normalizer.precompiledCharsmap) decodePrecompiledCharsmap(m.normalizer.precompiledCharsmap);
}

/** Parses the bytes of a spiece.model. Throws `<source>: not a valid SentencePiece model: <why>`. */
export function parseSentencePieceModel(bytes: Uint8Array, source = 'spiece.model'): SentencePieceModel {
  try {
    const r = new ProtoReader(bytes);
    const pieces: string[] = [];
    let scores = new Float32Array(1024);
    let types = new Uint8Array(1024);
    let trainer: TrainerSpec | null = null;
    let normalizer: NormalizerSpec | null = null;
    while (!r.done) {
      const tag = r.tag();
      if (tag.field === 1) {
        r.expect(tag, WireType.LENGTH_DELIMITED, 'pieces');
        // Read in place: a real umT5 vocabulary has 256k of these.
        const outer = r.enter();
        let piece = '';
        let score = 0;
        let type: number = PieceType.NORMAL;
        while (!r.done) {
          const t = r.tag();
          if (t.field === 1) {
            r.expect(t, WireType.LENGTH_DELIMITED, 'piece');
            piece = r.string();
          } else if (t.field === 2) {
            r.expect(t, WireType.FIXED32, 'score');
            score = r.float();
          } else if (t.field === 3) {
            r.expect(t, WireType.VARINT, 'type');
            type = r.int32();
          } else r.skip(t);
        }
        r.leave(outer);
        const id = pieces.length;
        if (id === scores.length) {
          const s2 = new Float32Array(id * 2);
          s2.set(scores);
          scores = s2;
          const t2 = new Uint8Array(id * 2);
          t2.set(types);
          types = t2;
        }
        pieces.push(piece);
        scores[id] = score;
        types[id] = type >= 0 && type < 256 ? type : 255;
      } else if (tag.field === 2) {
        r.expect(tag, WireType.LENGTH_DELIMITED, 'trainer_spec');
        trainer = readTrainerSpec(r.message());
      } else if (tag.field === 3) {
        r.expect(tag, WireType.LENGTH_DELIMITED, 'normalizer_spec');
        normalizer = readNormalizerSpec(r.message());
      } else {
        r.skip(tag);
      }
    }
    // SentencePiece's trainer always writes both specs after the pieces: a file that ends without
    // them was cut short (possibly exactly between two pieces).
    if (!trainer) throw new Error(`no trainer_spec after ${pieces.length} pieces (truncated file?)`);
    if (!normalizer) throw new Error(`no normalizer_spec after ${pieces.length} pieces (truncated file?)`);
    const model = { pieces, scores: scores.slice(0, pieces.length), types: types.slice(0, pieces.length), trainer, normalizer };
    validate(model);
    return { source, ...model };
  } catch (err) {
    throw new Error(`${source}: not a valid SentencePiece model: ${(err as Error).message}`);
  }
}

/** Reads and parses a spiece.model file. */
export async function loadSentencePieceModel(file: string): Promise<SentencePieceModel> {
  let bytes: Uint8Array;
  try {
    bytes = await fsp.readFile(file);
  } catch (err) {
    throw new Error(`${file}: cannot read SentencePiece model: ${(err as Error).message}`);
  }
  return parseSentencePieceModel(bytes, file);
}
