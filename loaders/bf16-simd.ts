// float32 -> bfloat16 (round to nearest even, NaN kept quiet) with WebAssembly SIMD: the checkpoint
// loader's hot loop. A scalar JS loop converts ~0.5 G values/s here, well below a warm sequential
// read (~1.5 G values/s of float32), so loading would be conversion bound; 128-bit SIMD does 8 values
// per iteration. The module is a few hand-assembled instructions (no toolchain needed); its memory
// holds the read buffers themselves, so file bytes are read straight into it and never copied.
//
// Per 32-bit lane x (the same rule as engine/dtype.ts f32ToBf16Bits):
//   rne(x) = (x + 0x7fff + ((x >> 16) & 1)) >> 16        (logical shifts; carries round up to inf)
//   nan(x) = (x >> 16) | 0x0040                           (quiet NaN, sign and top payload kept)
//   out    = (x & 0x7fffffff) > 0x7f800000 ? nan(x) : rne(x)
// and i16x8.narrow_i32x4_u packs two vectors of results (all <= 0xffff) into 8 halves.

const SIMD = 0xfd;
const op = {
  v128Load: [SIMD, 0x00],
  v128Store: [SIMD, 0x0b],
  v128Const: [SIMD, 0x0c],
  i32x4GtU: [SIMD, 0x3c],
  v128And: [SIMD, 0x4e],
  v128Or: [SIMD, 0x50],
  v128Bitselect: [SIMD, 0x52],
  i16x8NarrowI32x4U: [SIMD, 0x86, 0x01],
  i32x4ShrU: [SIMD, 0xad, 0x01],
  i32x4Add: [SIMD, 0xae, 0x01],
};
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const LOCAL_TEE = 0x22;
const I32_CONST = 0x41;
const I32_EQZ = 0x45;
const I32_ADD = 0x6a;
const I32_SUB = 0x6b;
const BLOCK = 0x02;
const LOOP = 0x03;
const BR_IF = 0x0d;
const END = 0x0b;
const VOID = 0x40;
const I32 = 0x7f;
const V128 = 0x7b;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function splat(u32: number): number[] {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setUint32(0, u32, true);
  b.copyWithin(4, 0, 4);
  b.copyWithin(8, 0, 8);
  return [...op.v128Const, ...b];
}

/** The converted lane vector of local `v`. */
function convertLanes(v: number): number[] {
  const shr16 = [I32_CONST, 16, ...op.i32x4ShrU];
  return [
    // nan(x)
    LOCAL_GET, v, ...shr16, ...splat(0x40), ...op.v128Or,
    // rne(x)
    LOCAL_GET, v, ...splat(0x7fff), ...op.i32x4Add, LOCAL_GET, v, ...shr16, ...splat(1), ...op.v128And, ...op.i32x4Add, ...shr16,
    // is NaN
    LOCAL_GET, v, ...splat(0x7fffffff), ...op.v128And, ...splat(0x7f800000), ...op.i32x4GtU,
    ...op.v128Bitselect,
  ];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

/** (func (param $src i32) (param $dst i32) (param $groups i32)): `groups` x 8 values, src -> dst. */
function moduleBytes(): Uint8Array<ArrayBuffer> {
  const SRC = 0, DST = 1, N = 2, A = 3, B = 4;
  const body = [
    1, 2, V128, // locals: two v128
    BLOCK, VOID,
    LOCAL_GET, N, I32_EQZ, BR_IF, 0,
    LOOP, VOID,
    LOCAL_GET, SRC, ...op.v128Load, 4, 0, LOCAL_SET, A,
    LOCAL_GET, SRC, ...op.v128Load, 4, 16, LOCAL_SET, B,
    LOCAL_GET, DST,
    ...convertLanes(A), ...convertLanes(B), ...op.i16x8NarrowI32x4U,
    ...op.v128Store, 4, 0,
    LOCAL_GET, SRC, I32_CONST, 32, I32_ADD, LOCAL_SET, SRC,
    LOCAL_GET, DST, I32_CONST, 16, I32_ADD, LOCAL_SET, DST,
    LOCAL_GET, N, I32_CONST, 1, I32_SUB, LOCAL_TEE, N,
    BR_IF, 0,
    END,
    END,
    END,
  ];
  const name = (s: string) => [...uleb(s.length), ...new TextEncoder().encode(s)];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 3, I32, I32, I32, 0]), // type: (i32 i32 i32) -> ()
    ...section(3, [1, 0]), // one function of type 0
    ...section(5, [1, 0, 1]), // one memory, min 1 page
    ...section(7, [2, ...name('mem'), 2, 0, ...name('bf16'), 0, 0]),
    ...section(10, [1, ...uleb(body.length), ...body]),
  ]);
}

let compiled: WebAssembly.Module | null | undefined;

function wasmModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(moduleBytes());
    } catch {
      compiled = null; // no SIMD in this runtime: callers use the scalar path
    }
  }
  return compiled;
}

/** Scalar twin (tails, and runtimes without SIMD). */
export function f32BitsToBf16Scalar(src: Uint32Array, dst: Uint16Array, n: number, from = 0): void {
  for (let i = from; i < n; i++) {
    const x = src[i]!;
    dst[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
}

/**
 * A converter with its own memory of `slots` buffer pairs: slot k holds `chunkElems` float32 values
 * (read straight into `input(k)`) and their bf16 halves (`output(k)`).
 */
export class Bf16Converter {
  readonly simd: boolean;
  private mem: ArrayBuffer;
  private fn: ((src: number, dst: number, groups: number) => void) | null = null;
  private slotBytes: number;

  constructor(readonly chunkElems: number, readonly slots: number) {
    if (chunkElems % 8 !== 0) throw new Error(`Bf16Converter: chunk of ${chunkElems} values is not a multiple of 8`);
    this.slotBytes = chunkElems * 6;
    const need = this.slotBytes * slots;
    const mod = wasmModule();
    if (mod) {
      const inst = new WebAssembly.Instance(mod);
      const memory = inst.exports.mem as WebAssembly.Memory;
      const pages = Math.ceil(need / 65536);
      memory.grow(Math.max(0, pages - memory.buffer.byteLength / 65536));
      this.mem = memory.buffer; // no later growth, so views stay valid
      this.fn = inst.exports.bf16 as (a: number, b: number, c: number) => void;
    } else {
      this.mem = new ArrayBuffer(need);
    }
    this.simd = this.fn !== null;
  }

  input(slot: number, elems = this.chunkElems): Uint8Array {
    return new Uint8Array(this.mem, slot * this.slotBytes, elems * 4);
  }

  /** Converts the first `elems` values of `slot`; returns the bf16 bytes (a view into the slot). */
  convert(slot: number, elems: number): Uint8Array {
    const src = slot * this.slotBytes;
    const dst = src + this.chunkElems * 4;
    const groups = Math.floor(elems / 8);
    if (this.fn) this.fn(src, dst, groups);
    const s32 = new Uint32Array(this.mem, src, elems);
    const d16 = new Uint16Array(this.mem, dst, elems);
    f32BitsToBf16Scalar(s32, d16, elems, this.fn ? groups * 8 : 0);
    return new Uint8Array(this.mem, dst, elems * 2);
  }
}
