// A minimal reader of the protocol-buffers wire format (proto2/proto3 binary encoding), enough to
// walk messages field by field without generated code: varints, fixed 32/64-bit values,
// length-delimited fields (strings, bytes, sub-messages) and the deprecated groups (skipped).
// Every read is bounds-checked and always moves forward, so corrupt or truncated input ends in a
// ProtobufError (with the byte offset), never in an out-of-range read or an endless loop.

export const WireType = {
  VARINT: 0,
  FIXED64: 1,
  LENGTH_DELIMITED: 2,
  START_GROUP: 3,
  END_GROUP: 4,
  FIXED32: 5,
} as const;
export type WireType = (typeof WireType)[keyof typeof WireType];

export class ProtobufError extends Error {
  constructor(message: string, readonly offset: number) {
    super(`${message} (at byte ${offset})`);
    this.name = 'ProtobufError';
  }
}

export interface FieldTag {
  field: number;
  wire: WireType;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(b: Uint8Array): string | null {
  try {
    return utf8.decode(b);
  } catch {
    return null;
  }
}

/**
 * Strict UTF-8 decoding of a short byte range (faster than TextDecoder for the ~256k short strings
 * of a vocabulary); null on malformed input (overlong forms, surrogates, > U+10FFFF, truncation).
 */
const scratch = new Uint16Array(128);

function decodeShortUtf8(b: Uint8Array, start: number, end: number): string | null {
  let u = 0; // UTF-16 units written to scratch (at most one per byte: end - start <= 64)
  for (let i = start; i < end; ) {
    const c = b[i];
    if (c < 0x80) {
      scratch[u++] = c;
      i++;
      continue;
    }
    // n continuation bytes, the lead byte's payload, the smallest code point of that length.
    let n: number;
    let cp: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
      min = 0x10000;
    } else return null;
    if (i + n >= end) return null;
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if ((d & 0xc0) !== 0x80) return null;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return null;
    if (cp > 0xffff) {
      scratch[u++] = 0xd800 + ((cp - 0x10000) >> 10);
      scratch[u++] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
    } else scratch[u++] = cp;
    i += n + 1;
  }
  return String.fromCharCode.apply(null, scratch.subarray(0, u) as unknown as number[]);
}

/** Reads the fields of one message held in `buf[start, end)`. */
export class ProtoReader {
  readonly buf: Uint8Array;
  private readonly view: DataView;
  pos: number;
  /** End of the message being read (moved by enter/leave). */
  end: number;

  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    if (start < 0 || end > buf.length || start > end) throw new ProtobufError(`bad message range [${start}, ${end})`, start);
    // A plain view: subarrays of a Node Buffer are slower Buffers.
    this.buf = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = start;
    this.end = end;
  }

  /** True when every field of the message has been read. */
  get done(): boolean {
    return this.pos >= this.end;
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.end) throw new ProtobufError(`truncated ${what}: needs ${n} bytes, ${this.end - this.pos} left`, this.pos);
  }

  /** The next field's number and wire type. */
  tag(): FieldTag {
    const at = this.pos;
    const key = this.varint();
    const wire = key % 8;
    const field = Math.floor(key / 8);
    if (field === 0 || field > 0x1fffffff) throw new ProtobufError(`invalid field number ${field}`, at);
    if (wire > 5) throw new ProtobufError(`invalid wire type ${wire} for field ${field}`, at);
    return { field, wire: wire as WireType };
  }

  /**
   * An unsigned varint as a Number. Values above 2^53 lose their low bits (only int32/bool/enum
   * fields are interpreted here; others are skipped). Use `int32()` for signed 32-bit fields.
   */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      this.need(1, 'varint');
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new ProtobufError('varint longer than 10 bytes', this.pos);
  }

  /** int32 / enum: negative values are sign-extended 10-byte varints; keep the low 32 bits. */
  int32(): number {
    let lo = 0; // bits 0..31, assembled with 32-bit integer arithmetic
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      this.need(1, 'varint');
      const b = this.buf[this.pos++];
      if (shift < 32) lo |= (b & 0x7f) << shift;
      shift += 7;
      if ((b & 0x80) === 0) return lo | 0;
    }
    throw new ProtobufError('varint longer than 10 bytes', this.pos);
  }

  bool(): boolean {
    return this.varint() !== 0;
  }

  fixed32(): number {
    this.need(4, 'fixed32');
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A `float` field (IEEE single, little endian), exactly representable as a Number. */
  float(): number {
    this.need(4, 'float');
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  double(): number {
    this.need(8, 'double');
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** A length-delimited payload, as a view into the buffer (no copy). */
  bytes(): Uint8Array {
    const at = this.pos;
    const len = this.varint();
    if (this.pos + len > this.end) {
      throw new ProtobufError(`truncated length-delimited field: needs ${len} bytes, ${this.end - this.pos} left`, at);
    }
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  /** A `string` field: must be valid UTF-8. */
  string(): string {
    const at = this.pos;
    const len = this.varint();
    if (this.pos + len > this.end) {
      throw new ProtobufError(`truncated string field: needs ${len} bytes, ${this.end - this.pos} left`, at);
    }
    const s = len <= 64 ? decodeShortUtf8(this.buf, this.pos, this.pos + len) : decodeUtf8(this.buf.subarray(this.pos, this.pos + len));
    if (s === null) throw new ProtobufError('string field is not valid UTF-8', at);
    this.pos += len;
    return s;
  }

  /** A reader over an embedded message (length-delimited field). */
  message(): ProtoReader {
    const b = this.bytes();
    return new ProtoReader(this.buf, b.byteOffset - this.buf.byteOffset, b.byteOffset - this.buf.byteOffset + b.length);
  }

  /**
   * Reads an embedded message in place (no new reader, for messages repeated very often): narrows
   * `end` to the embedded message and returns the outer end, to pass to `leave` once `done`.
   */
  enter(): number {
    const at = this.pos;
    const len = this.varint();
    if (this.pos + len > this.end) {
      throw new ProtobufError(`truncated embedded message: needs ${len} bytes, ${this.end - this.pos} left`, at);
    }
    const outer = this.end;
    this.end = this.pos + len;
    return outer;
  }

  leave(outerEnd: number): void {
    if (this.pos !== this.end) throw new ProtobufError('embedded message not fully read', this.pos);
    this.end = outerEnd;
  }

  /** Skips the value of a field whose tag was just read. */
  skip(tag: FieldTag, depth = 0): void {
    switch (tag.wire) {
      case WireType.VARINT:
        this.varint();
        return;
      case WireType.FIXED64:
        this.need(8, 'fixed64');
        this.pos += 8;
        return;
      case WireType.LENGTH_DELIMITED:
        this.bytes();
        return;
      case WireType.FIXED32:
        this.need(4, 'fixed32');
        this.pos += 4;
        return;
      case WireType.START_GROUP: {
        // Deprecated groups: skip nested fields up to the matching END_GROUP.
        if (depth >= 64) throw new ProtobufError('groups nested too deeply', this.pos);
        for (;;) {
          if (this.done) throw new ProtobufError(`unterminated group ${tag.field}`, this.pos);
          const inner = this.tag();
          if (inner.wire === WireType.END_GROUP) {
            if (inner.field !== tag.field) throw new ProtobufError(`group ${tag.field} closed by ${inner.field}`, this.pos);
            return;
          }
          this.skip(inner, depth + 1);
        }
      }
      case WireType.END_GROUP:
        throw new ProtobufError(`unexpected end of group ${tag.field}`, this.pos);
    }
  }

  /** Throws unless the field has the wire type its schema says. */
  expect(tag: FieldTag, wire: WireType, what: string): void {
    if (tag.wire !== wire) throw new ProtobufError(`field ${tag.field} (${what}) has wire type ${tag.wire}, expected ${wire}`, this.pos);
  }
}
