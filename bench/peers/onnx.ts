// A minimal ONNX model writer: just enough protobuf to describe a small graph of standard ops whose
// operands are initializers (so the benchmark needs no runtime inputs and nothing crosses the bus per
// run). Field numbers follow onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto, ...).
// Repeated scalars are written unpacked, as proto2 expects by default.

/** ONNX TensorProto.DataType values used here. */
export const ONNX_FLOAT = 1;
export const ONNX_INT64 = 7;

type Chunk = Uint8Array;

function varint(n: number | bigint): Chunk {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n; // int64 negatives are ten-byte two's complement varints
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Uint8Array.from(out);
}

function concat(parts: Chunk[]): Chunk {
  let n = 0;
  for (const p of parts) n += p.byteLength;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

const WIRE_VARINT = 0;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

const key = (field: number, wire: number) => varint((field << 3) | wire);

/** Builds one protobuf message field by field. */
class Msg {
  private parts: Chunk[] = [];
  int(field: number, v: number | bigint): this {
    this.parts.push(key(field, WIRE_VARINT), varint(v));
    return this;
  }
  float(field: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.parts.push(key(field, WIRE_FIXED32), b);
    return this;
  }
  bytes(field: number, b: Chunk): this {
    this.parts.push(key(field, WIRE_BYTES), varint(b.byteLength), b);
    return this;
  }
  str(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  msg(field: number, m: Msg): this {
    return this.bytes(field, m.done());
  }
  done(): Chunk {
    return concat(this.parts);
  }
}

export type AttrValue = number | number[] | { float: number };

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, AttrValue>;
  /** Operator domain: '' (default ONNX) or e.g. 'com.microsoft'. */
  domain?: string;
}

export interface OnnxTensor {
  name: string;
  dims: number[];
  data: Float32Array | BigInt64Array;
}

export interface OnnxValue {
  name: string;
  dims: number[];
}

export interface OnnxGraph {
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValue[];
  outputs: OnnxValue[];
  /** Default-domain opset (17 has LayerNormalization). */
  opset?: number;
}

// AttributeProto.AttributeType
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

function attribute(name: string, v: AttrValue): Msg {
  const a = new Msg().str(1, name);
  if (typeof v === 'number') a.int(20, ATTR_INT).int(3, v);
  else if (Array.isArray(v)) {
    a.int(20, ATTR_INTS);
    for (const x of v) a.int(8, x);
  } else a.int(20, ATTR_FLOAT).float(2, v.float);
  return a;
}

function node(n: OnnxNode, i: number): Msg {
  const m = new Msg();
  for (const s of n.inputs) m.str(1, s);
  for (const s of n.outputs) m.str(2, s);
  m.str(3, `${n.op}_${i}`).str(4, n.op);
  for (const [k, v] of Object.entries(n.attrs ?? {})) m.msg(5, attribute(k, v));
  if (n.domain) m.str(7, n.domain);
  return m;
}

function tensor(t: OnnxTensor): Msg {
  const m = new Msg();
  for (const d of t.dims) m.int(1, d);
  m.int(2, t.data instanceof BigInt64Array ? ONNX_INT64 : ONNX_FLOAT).str(8, t.name);
  return m.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
}

function valueInfo(v: OnnxValue): Msg {
  const shape = new Msg();
  for (const d of v.dims) shape.msg(1, new Msg().int(1, d));
  const tensorType = new Msg().int(1, ONNX_FLOAT).msg(2, shape);
  return new Msg().str(1, v.name).msg(2, new Msg().msg(1, tensorType));
}

/** Serialises a graph (float32 values, int64 index initializers) as an ONNX ModelProto (IR version 8). */
export function encodeModel(g: OnnxGraph): Uint8Array {
  const graph = new Msg();
  g.nodes.forEach((n, i) => graph.msg(1, node(n, i)));
  graph.str(2, 'bench');
  for (const t of g.initializers) graph.msg(5, tensor(t));
  for (const v of g.inputs) graph.msg(11, valueInfo(v));
  for (const v of g.outputs) graph.msg(12, valueInfo(v));
  const model = new Msg().int(1, 8).str(2, 'wan-webgpu bench').msg(7, graph);
  model.msg(8, new Msg().str(1, '').int(2, g.opset ?? 17));
  const domains = new Set(g.nodes.map((n) => n.domain).filter((d): d is string => !!d));
  for (const d of domains) model.msg(8, new Msg().str(1, d).int(2, 1));
  return model.done();
}
