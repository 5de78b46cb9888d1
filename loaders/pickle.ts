// A RESTRICTED unpickler for the data.pkl of torch.save checkpoints: enough of pickle protocols
// 2-5 to rebuild a state dict (dicts, lists, tuples, strings, numbers, OrderedDict, tensor rebuild
// calls, storage persistent ids) and nothing else.
//
// Safety design: a pickle normally names arbitrary Python callables (GLOBAL "os system") and calls
// them (REDUCE). Here a GLOBAL resolves only through ALLOWED_GLOBALS to an inert PyGlobal whose
// `role` selects one of a few fixed builders written below (e.g. "make an empty ordered dict",
// "describe a tensor view"); nothing is looked up by name and no constructor is ever called.
// Before anything is built, a first pass walks every opcode: an opcode outside the supported set
// or a GLOBAL outside the allowlist is refused by name, so a malicious pickle fails up front.
// (STACK_GLOBAL takes its names from the stack, so it is checked when executed, same allowlist.)

import type { StDType } from './safetensors.ts';

// ---------------------------------------------------------------------------------------------
// Values

export type PyKey = string | number | bigint | boolean | null;
export type PyValue = PyKey | PyBytes | PyTuple | PyList | PyDict | PyGlobal | TorchStorage | TorchTensor;

export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

export class PyList {
  readonly items: PyValue[] = [];
}

export class PyBytes {
  constructor(readonly bytes: Uint8Array) {}
}

export class PyDict {
  readonly map = new Map<PyKey, PyValue>();
  /** State given by BUILD (for a torch state dict: {"_metadata": ...}); unused by loaders. */
  state: PyValue | undefined = undefined;
  constructor(readonly ordered: boolean) {}
}

/** What an allowed global stands for. Builders for the callable roles live in REDUCERS below. */
export type GlobalRole =
  | { kind: 'ordered-dict' }
  | { kind: 'rebuild-tensor-v2' }
  | { kind: 'rebuild-tensor-v3' }
  | { kind: 'rebuild-parameter' }
  | { kind: 'rebuild-parameter-with-state' }
  /** Legacy typed storage class (torch.FloatStorage ...); dtype null = a dtype this loader cannot read. */
  | { kind: 'storage-type'; dtype: StDType | null; torchDType: string }
  | { kind: 'untyped-storage' }
  | { kind: 'dtype'; dtype: StDType | null; torchDType: string };

/** An allowed global, inert: it can only be passed around or used by the fixed builders. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly role: GlobalRole,
  ) {}
  get fullName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A storage named by a persistent id ('storage', type, key, location, numel). */
export class TorchStorage {
  constructor(
    readonly key: string,
    /**
     * Element dtype of a typed storage; 'untyped' for torch.UntypedStorage (bytes, the tensor gives
     * the dtype); null for a typed storage of a dtype this loader cannot read (complex, quantized).
     */
    readonly dtype: StDType | 'untyped' | null,
    /** The torch dtype name for messages, e.g. "torch.bfloat16" (or "untyped"). */
    readonly torchDType: string,
    readonly location: string,
    /** Elements of `dtype` (bytes when untyped). */
    readonly numel: number,
  ) {}
}

/** A tensor view described by a rebuild call; no data is read here. */
export class TorchTensor {
  constructor(
    readonly storage: TorchStorage,
    /** In elements of the tensor dtype. */
    readonly storageOffset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
    /** null when torch's dtype is one this loader does not support (see torchDType). */
    readonly dtype: StDType | null,
    readonly torchDType: string,
    readonly requiresGrad: boolean,
  ) {}
}

/** A short description of a value's type for error messages (never recursive). */
export function describe(v: PyValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  switch (typeof v) {
    case 'string': return `str ${JSON.stringify(v.length > 60 ? v.slice(0, 60) + '...' : v)}`;
    case 'number': return `number ${v}`;
    case 'bigint': return `int ${v}`;
    case 'boolean': return v ? 'True' : 'False';
  }
  if (v instanceof PyTuple) return `tuple of ${v.items.length}`;
  if (v instanceof PyList) return `list of ${v.items.length}`;
  if (v instanceof PyDict) return `${v.ordered ? 'OrderedDict' : 'dict'} of ${v.map.size}`;
  if (v instanceof PyBytes) return `bytes of ${v.bytes.byteLength}`;
  if (v instanceof PyGlobal) return `global ${v.fullName}`;
  if (v instanceof TorchStorage) return `storage "${v.key}"`;
  return `tensor [${v.shape.join(', ')}]`;
}

// ---------------------------------------------------------------------------------------------
// The allowlist

// Legacy storage classes as torch.save names them in persistent ids ("torch FloatStorage").
const STORAGE_TYPES: Record<string, [StDType | null, string]> = {
  DoubleStorage: ['F64', 'torch.float64'],
  FloatStorage: ['F32', 'torch.float32'],
  HalfStorage: ['F16', 'torch.float16'],
  BFloat16Storage: ['BF16', 'torch.bfloat16'],
  LongStorage: ['I64', 'torch.int64'],
  IntStorage: ['I32', 'torch.int32'],
  ShortStorage: ['I16', 'torch.int16'],
  CharStorage: ['I8', 'torch.int8'],
  ByteStorage: ['U8', 'torch.uint8'],
  BoolStorage: ['BOOL', 'torch.bool'],
  ComplexFloatStorage: [null, 'torch.complex64'],
  ComplexDoubleStorage: [null, 'torch.complex128'],
  QInt8Storage: [null, 'torch.qint8'],
  QUInt8Storage: [null, 'torch.quint8'],
  QInt32Storage: [null, 'torch.qint32'],
  QUInt4x2Storage: [null, 'torch.quint4x2'],
  QUInt2x4Storage: [null, 'torch.quint2x4'],
};

// dtype objects pickle as globals named by str(dtype), e.g. "torch bfloat16" (used by _rebuild_tensor_v3).
const DTYPES: Record<string, StDType | null> = {
  float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16',
  int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8',
  uint64: 'U64', uint32: 'U32', uint16: 'U16', uint8: 'U8', bool: 'BOOL',
  complex32: null, complex64: null, complex128: null,
  float8_e4m3fn: null, float8_e4m3fnuz: null, float8_e5m2: null, float8_e5m2fnuz: null, float8_e8m0fnu: null,
  qint8: null, quint8: null, qint32: null, quint4x2: null, quint2x4: null,
};

function buildAllowlist(): Map<string, GlobalRole> {
  const m = new Map<string, GlobalRole>([
    ['collections.OrderedDict', { kind: 'ordered-dict' }],
    ['torch._utils._rebuild_tensor_v2', { kind: 'rebuild-tensor-v2' }],
    ['torch._utils._rebuild_tensor_v3', { kind: 'rebuild-tensor-v3' }],
    ['torch._utils._rebuild_parameter', { kind: 'rebuild-parameter' }],
    ['torch._utils._rebuild_parameter_with_state', { kind: 'rebuild-parameter-with-state' }],
    ['torch.storage.UntypedStorage', { kind: 'untyped-storage' }],
    ['torch.UntypedStorage', { kind: 'untyped-storage' }],
  ]);
  for (const [name, [dtype, torchDType]] of Object.entries(STORAGE_TYPES)) {
    m.set(`torch.${name}`, { kind: 'storage-type', dtype, torchDType });
  }
  for (const [name, dtype] of Object.entries(DTYPES)) {
    m.set(`torch.${name}`, { kind: 'dtype', dtype, torchDType: `torch.${name}` });
  }
  return m;
}

/** Every global a checkpoint may name, "module.name" -> role. */
export const ALLOWED_GLOBALS: ReadonlyMap<string, GlobalRole> = buildAllowlist();

// ---------------------------------------------------------------------------------------------
// Opcodes

type ArgKind =
  | 'none' | 'u1' | 'u2' | 'i4' | 'u4' | 'f8be'
  | 'long1' | 'long4'
  | 'str4' | 'str1' | 'str8' | 'bytes4' | 'bytes1'
  | 'u8' | 'lines2';

interface OpSpec {
  name: string;
  /** Argument encoding, or null for an opcode this unpickler refuses. */
  arg: ArgKind | null;
}

const OPS = new Map<number, OpSpec>();
function op(ch: string | number, name: string, arg: ArgKind | null): void {
  OPS.set(typeof ch === 'number' ? ch : ch.charCodeAt(0), { name, arg });
}
// Supported: what torch.save (protocol 2 by default, up to 5 on request) writes for a state dict.
op('(', 'MARK', 'none');
op('.', 'STOP', 'none');
op('0', 'POP', 'none');
op('1', 'POP_MARK', 'none');
op('2', 'DUP', 'none');
op('J', 'BININT', 'i4');
op('K', 'BININT1', 'u1');
op('M', 'BININT2', 'u2');
op(0x8a, 'LONG1', 'long1');
op(0x8b, 'LONG4', 'long4');
op('N', 'NONE', 'none');
op(0x88, 'NEWTRUE', 'none');
op(0x89, 'NEWFALSE', 'none');
op('G', 'BINFLOAT', 'f8be');
op('X', 'BINUNICODE', 'str4');
op(0x8c, 'SHORT_BINUNICODE', 'str1');
op(0x8d, 'BINUNICODE8', 'str8');
op('B', 'BINBYTES', 'bytes4');
op('C', 'SHORT_BINBYTES', 'bytes1');
op('Q', 'BINPERSID', 'none');
op('R', 'REDUCE', 'none');
op('b', 'BUILD', 'none');
op('c', 'GLOBAL', 'lines2');
op(0x93, 'STACK_GLOBAL', 'none');
op('}', 'EMPTY_DICT', 'none');
op(']', 'EMPTY_LIST', 'none');
op(')', 'EMPTY_TUPLE', 'none');
op('a', 'APPEND', 'none');
op('e', 'APPENDS', 'none');
op('s', 'SETITEM', 'none');
op('u', 'SETITEMS', 'none');
op('t', 'TUPLE', 'none');
op(0x85, 'TUPLE1', 'none');
op(0x86, 'TUPLE2', 'none');
op(0x87, 'TUPLE3', 'none');
op('h', 'BINGET', 'u1');
op('j', 'LONG_BINGET', 'u4');
op('q', 'BINPUT', 'u1');
op('r', 'LONG_BINPUT', 'u4');
op(0x94, 'MEMOIZE', 'none');
op(0x80, 'PROTO', 'u1');
op(0x95, 'FRAME', 'u8');
// Known but refused: text-protocol forms torch never writes, object construction, sets, extensions, buffers.
for (const [ch, name] of [
  ['I', 'INT'], ['L', 'LONG'], ['F', 'FLOAT'], ['S', 'STRING'], ['T', 'BINSTRING'], ['U', 'SHORT_BINSTRING'],
  ['V', 'UNICODE'], ['P', 'PERSID'], ['d', 'DICT'], ['l', 'LIST'], ['g', 'GET'], ['p', 'PUT'], ['i', 'INST'],
  ['o', 'OBJ'], [0x81, 'NEWOBJ'], [0x92, 'NEWOBJ_EX'], [0x82, 'EXT1'], [0x83, 'EXT2'], [0x84, 'EXT4'],
  [0x8e, 'BINBYTES8'], [0x8f, 'EMPTY_SET'], [0x90, 'ADDITEMS'], [0x91, 'FROZENSET'], [0x96, 'BYTEARRAY8'],
  [0x97, 'NEXT_BUFFER'], [0x98, 'READONLY_BUFFER'],
] as const) {
  op(ch, name, null);
}

function opLabel(code: number): string {
  const printable = code >= 0x20 && code < 0x7f ? ` '${String.fromCharCode(code)}'` : '';
  return `0x${code.toString(16).padStart(2, '0')}${printable}`;
}

type OpArg = number | bigint | string | Uint8Array | [string, string] | null;

interface DecodedOp {
  code: number;
  name: string;
  at: number;
  arg: OpArg;
  next: number;
}

export class PickleError extends Error {}

const MAX_GLOBAL_LINE = 1024;
const MAX_LONG_BYTES = 256;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decode the opcode at `pos`; refuses unknown/unsupported opcodes and arguments past the end. */
function decodeOp(data: Uint8Array, dv: DataView, pos: number, fail: (msg: string) => never): DecodedOp {
  const code = data[pos]!;
  const spec = OPS.get(code);
  if (!spec) fail(`unknown pickle opcode ${opLabel(code)} at offset ${pos}`);
  if (spec!.arg === null) fail(`unsupported pickle opcode ${opLabel(code)} (${spec!.name}) at offset ${pos}: not needed by a state dict`);
  const name = spec!.name;
  let p = pos + 1;
  const need = (n: number | bigint, what: string): number => {
    if (BigInt(p) + BigInt(n) > BigInt(data.byteLength)) {
      fail(`pickle truncated: ${name} at offset ${pos} needs ${n} bytes of ${what}, only ${data.byteLength - p} remain`);
    }
    const start = p;
    p += Number(n);
    return start;
  };
  const str = (n: number | bigint): string => {
    const s = need(n, 'string');
    try {
      return utf8.decode(data.subarray(s, p));
    } catch {
      return fail(`${name} at offset ${pos}: string is not valid UTF-8`);
    }
  };
  const line = (): string => {
    const nl = data.indexOf(0x0a, p);
    if (nl < 0 || nl - p > MAX_GLOBAL_LINE) fail(`${name} at offset ${pos}: missing or overlong name line`);
    const s = str(nl - p);
    p = nl + 1;
    return s;
  };
  let arg: OpArg = null;
  switch (spec!.arg) {
    case 'none': break;
    case 'u1': arg = data[need(1, 'argument')]!; break;
    case 'u2': arg = dv.getUint16(need(2, 'argument'), true); break;
    case 'i4': arg = dv.getInt32(need(4, 'argument'), true); break;
    case 'u4': arg = dv.getUint32(need(4, 'argument'), true); break;
    case 'u8': arg = dv.getBigUint64(need(8, 'argument'), true); break;
    case 'f8be': arg = dv.getFloat64(need(8, 'argument'), false); break;
    case 'long1':
    case 'long4': {
      const n = spec!.arg === 'long1' ? data[need(1, 'length')]! : dv.getInt32(need(4, 'length'), true);
      if (n < 0) fail(`${name} at offset ${pos}: negative length ${n}`);
      // Decoding is quadratic in the length; state dicts only hold small integers.
      if (n > MAX_LONG_BYTES) fail(`${name} at offset ${pos}: a ${n}-byte integer is larger than the ${MAX_LONG_BYTES} bytes allowed`);
      const s = need(n, 'integer');
      arg = decodeLong(data.subarray(s, p));
      break;
    }
    case 'str1': arg = str(data[need(1, 'length')]!); break;
    case 'str4': arg = str(dv.getUint32(need(4, 'length'), true)); break;
    case 'str8': arg = str(dv.getBigUint64(need(8, 'length'), true)); break;
    case 'bytes1':
    case 'bytes4': {
      const n = spec!.arg === 'bytes1' ? data[need(1, 'length')]! : dv.getUint32(need(4, 'length'), true);
      const s = need(n, 'bytes');
      arg = data.slice(s, p);
      break;
    }
    case 'lines2': arg = [line(), line()]; break;
  }
  return { code, name, at: pos, arg, next: p };
}

/** Little-endian two's complement, as a number when it is a safe integer. */
function decodeLong(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
  if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function resolveGlobal(module: string, name: string, at: number, fail: (msg: string) => never): PyGlobal {
  const full = `${module}.${name}`;
  const role = ALLOWED_GLOBALS.get(full);
  if (!role) fail(`refusing pickle global "${full}" at offset ${at} (not needed by a state dict)`);
  return new PyGlobal(module, name, role!);
}

// ---------------------------------------------------------------------------------------------
// The machine

export interface UnpickleOptions {
  /** Prefix of every error message (typically "file.pth: data.pkl"). */
  label?: string;
  /** Maps a BINPERSID id to a value; the default refuses persistent ids. */
  persistentLoad?: (pid: PyValue, fail: (msg: string) => never) => PyValue;
}

/** First pass: every opcode decodes, is supported, and every GLOBAL is allowed; ends at STOP. */
export function scanPickle(data: Uint8Array, label = 'pickle'): void {
  const fail = (msg: string): never => {
    throw new PickleError(`${label}: ${msg}`);
  };
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = 0;
  while (pos < data.byteLength) {
    const o = decodeOp(data, dv, pos, fail);
    if (o.name === 'GLOBAL') {
      const [module, name] = o.arg as [string, string];
      resolveGlobal(module, name, o.at, fail);
    }
    if (o.name === 'STOP') return;
    pos = o.next;
  }
  fail(`pickle ends at offset ${data.byteLength} without a STOP opcode (truncated)`);
}

/**
 * Unpickle `data` under the restrictions above (scanPickle runs first). Returns the pickled value
 * as inert JS objects (PyDict, PyTuple, TorchTensor ...).
 */
export function unpickle(data: Uint8Array, opts: UnpickleOptions = {}): PyValue {
  const label = opts.label ?? 'pickle';
  scanPickle(data, label);
  let at = 0;
  let opName = '';
  const fail = (msg: string): never => {
    throw new PickleError(`${label}: ${opName ? `${opName} at offset ${at}: ` : ''}${msg}`);
  };
  const failPlain = (msg: string): never => {
    throw new PickleError(`${label}: ${msg}`);
  };
  const persistentLoad = opts.persistentLoad ?? ((): never => fail('persistent ids are not allowed here'));
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);

  let stack: PyValue[] = [];
  const metastack: PyValue[][] = [];
  const memo = new Map<number, PyValue>();

  const pop = (): PyValue => {
    if (stack.length === 0) fail('stack underflow (corrupt pickle)');
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (stack.length === 0) fail('stack underflow (corrupt pickle)');
    return stack[stack.length - 1]!;
  };
  const popMark = (): PyValue[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) fail('no MARK to pop to (corrupt pickle)');
    stack = prev!;
    return items;
  };
  const asKey = (k: PyValue): PyKey => {
    if (k === null || typeof k !== 'object') return k;
    return fail(`dict key of type ${describe(k)} is not supported (state dict keys are strings)`);
  };
  const dictTop = (): PyDict => {
    const d = top();
    if (!(d instanceof PyDict)) fail(`target is a ${describe(d)}, not a dict`);
    return d as PyDict;
  };
  const listTop = (): PyList => {
    const l = top();
    if (!(l instanceof PyList)) fail(`target is a ${describe(l)}, not a list`);
    return l as PyList;
  };

  let pos = 0;
  for (;;) {
    const o = decodeOp(data, dv, pos, failPlain);
    at = o.at;
    opName = o.name;
    pos = o.next;
    switch (o.name) {
      case 'PROTO': {
        const v = o.arg as number;
        if (v < 2 || v > 5) fail(`pickle protocol ${v} is not supported (expected 2..5)`);
        break;
      }
      case 'FRAME': break; // protocol 4 framing: only a length hint
      case 'MARK': metastack.push(stack); stack = []; break;
      case 'STOP': return pop();
      case 'POP': if (stack.length > 0) stack.pop(); else popMark(); break;
      case 'POP_MARK': popMark(); break;
      case 'DUP': stack.push(top()); break;
      case 'BININT': case 'BININT1': case 'BININT2': case 'LONG1': case 'LONG4': case 'BINFLOAT':
        stack.push(o.arg as number | bigint);
        break;
      case 'BINUNICODE': case 'SHORT_BINUNICODE': case 'BINUNICODE8':
        stack.push(o.arg as string);
        break;
      case 'BINBYTES': case 'SHORT_BINBYTES':
        stack.push(new PyBytes(o.arg as Uint8Array));
        break;
      case 'NONE': stack.push(null); break;
      case 'NEWTRUE': stack.push(true); break;
      case 'NEWFALSE': stack.push(false); break;
      case 'EMPTY_DICT': stack.push(new PyDict(false)); break;
      case 'EMPTY_LIST': stack.push(new PyList()); break;
      case 'EMPTY_TUPLE': stack.push(new PyTuple([])); break;
      case 'TUPLE': {
        const items = popMark(); // before touching `stack`: popMark replaces it
        stack.push(new PyTuple(items));
        break;
      }
      case 'TUPLE1': { const a = pop(); stack.push(new PyTuple([a])); break; }
      case 'TUPLE2': { const b = pop(); const a = pop(); stack.push(new PyTuple([a, b])); break; }
      case 'TUPLE3': { const c = pop(); const b = pop(); const a = pop(); stack.push(new PyTuple([a, b, c])); break; }
      case 'APPEND': { const v = pop(); listTop().items.push(v); break; }
      case 'APPENDS': {
        const items = popMark();
        const list = listTop().items;
        for (const v of items) list.push(v); // not push(...items): a huge MARK group would overflow the call stack
        break;
      }
      case 'SETITEM': {
        const v = pop();
        const k = asKey(pop());
        dictTop().map.set(k, v);
        break;
      }
      case 'SETITEMS': {
        const items = popMark();
        if (items.length % 2 !== 0) fail(`odd number of items (${items.length}) after MARK`);
        const d = dictTop();
        for (let i = 0; i < items.length; i += 2) d.map.set(asKey(items[i]!), items[i + 1]!);
        break;
      }
      case 'BINGET': case 'LONG_BINGET': {
        const idx = o.arg as number;
        if (!memo.has(idx)) fail(`memo index ${idx} was never stored (corrupt pickle)`);
        stack.push(memo.get(idx)!);
        break;
      }
      case 'BINPUT': case 'LONG_BINPUT': memo.set(o.arg as number, top()); break;
      case 'MEMOIZE': memo.set(memo.size, top()); break;
      case 'GLOBAL': {
        const [module, name] = o.arg as [string, string];
        stack.push(resolveGlobal(module, name, o.at, failPlain));
        break;
      }
      case 'STACK_GLOBAL': {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail(`module and name must be strings`);
        stack.push(resolveGlobal(module as string, name as string, o.at, failPlain));
        break;
      }
      case 'REDUCE': {
        const args = pop();
        const fn = pop();
        if (!(args instanceof PyTuple)) fail(`arguments are a ${describe(args)}, not a tuple`);
        if (!(fn instanceof PyGlobal)) fail(`cannot call a ${describe(fn)}`);
        stack.push(reduce(fn as PyGlobal, (args as PyTuple).items, fail));
        break;
      }
      case 'BUILD': {
        const state = pop();
        const target = top();
        // Only the attribute dict torch attaches to a state dict (_metadata) is accepted.
        if (!(target instanceof PyDict) || !(state instanceof PyDict)) {
          fail(`BUILD of a ${describe(target)} with a ${describe(state)} is not supported`);
        }
        (target as PyDict).state = state;
        break;
      }
      case 'BINPERSID': stack.push(persistentLoad(pop(), fail)); break;
      default:
        fail(`internal error: opcode ${o.name} has no handler`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Fixed builders for the callable globals

function isIndex(v: PyValue | undefined): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function indexTuple(v: PyValue | undefined, what: string, fail: (msg: string) => never): number[] {
  if (!(v instanceof PyTuple) || !v.items.every(isIndex)) {
    return fail(`${what} must be a tuple of non-negative integers, got ${describe(v)}`);
  }
  return v.items as number[];
}

function reduce(fn: PyGlobal, args: readonly PyValue[], fail: (msg: string) => never): PyValue {
  const role = fn.role;
  const argc = (lo: number, hi: number) => {
    if (args.length < lo || args.length > hi) {
      fail(`${fn.fullName} takes ${lo === hi ? lo : `${lo} to ${hi}`} arguments, got ${args.length}`);
    }
  };
  switch (role.kind) {
    case 'ordered-dict':
      argc(0, 0);
      return new PyDict(true);
    case 'rebuild-tensor-v2':
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      argc(6, 7);
      return rebuildTensor(fn, args, null, fail);
    case 'rebuild-tensor-v3': {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
      argc(7, 8);
      const d = args[6];
      if (!(d instanceof PyGlobal) || d.role.kind !== 'dtype') return fail(`dtype argument is a ${describe(d)}, not a torch dtype`);
      return rebuildTensor(fn, args, d.role, fail);
    }
    case 'rebuild-parameter':
    case 'rebuild-parameter-with-state': {
      // (data, requires_grad, backward_hooks[, state]): the parameter is its tensor.
      if (role.kind === 'rebuild-parameter') argc(3, 3);
      else argc(4, 4);
      if (!(args[0] instanceof TorchTensor)) return fail(`${fn.fullName} data is a ${describe(args[0])}, not a tensor`);
      return args[0];
    }
    default:
      return fail(`${fn.fullName} cannot be called`);
  }
}

function rebuildTensor(
  fn: PyGlobal,
  args: readonly PyValue[],
  dtypeArg: { dtype: StDType | null; torchDType: string } | null,
  fail: (msg: string) => never,
): TorchTensor {
  const [storage, offset, size, stride, requiresGrad, hooks] = args;
  if (!(storage instanceof TorchStorage)) return fail(`${fn.fullName} storage is a ${describe(storage)}, not a storage`);
  if (!isIndex(offset)) return fail(`${fn.fullName} storage offset is a ${describe(offset)}, not a non-negative integer`);
  const shape = indexTuple(size, `${fn.fullName} size`, fail);
  const strides = indexTuple(stride, `${fn.fullName} stride`, fail);
  if (shape.length !== strides.length) fail(`${fn.fullName}: size has ${shape.length} dims but stride has ${strides.length}`);
  if (typeof requiresGrad !== 'boolean') fail(`${fn.fullName} requires_grad is a ${describe(requiresGrad)}, not a bool`);
  if (!(hooks instanceof PyDict)) fail(`${fn.fullName} backward_hooks is a ${describe(hooks)}, not a dict`);
  let dtype: StDType | null;
  let torchDType: string;
  if (dtypeArg) {
    dtype = dtypeArg.dtype;
    torchDType = dtypeArg.torchDType;
    if (storage.dtype !== 'untyped' && storage.torchDType !== torchDType) {
      fail(`${fn.fullName}: dtype ${torchDType} does not match the ${storage.torchDType} storage "${storage.key}"`);
    }
  } else if (storage.dtype === 'untyped') {
    dtype = 'U8'; // an untyped storage viewed without a dtype is bytes
    torchDType = 'torch.uint8';
  } else {
    dtype = storage.dtype;
    torchDType = storage.torchDType;
  }
  return new TorchTensor(storage, offset, shape, strides, dtype, torchDType, requiresGrad as boolean);
}

// ---------------------------------------------------------------------------------------------
// torch.save persistent ids

/**
 * A persistentLoad for torch.save pickles: ('storage', <storage type>, key, location, numel).
 * Every id naming the same key must agree; each key maps to one TorchStorage object.
 */
export function torchPersistentLoad(): (pid: PyValue, fail: (msg: string) => never) => TorchStorage {
  const seen = new Map<string, TorchStorage>();
  return (pid, fail) => {
    if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
      return fail(`persistent id ${describe(pid)} is not a ('storage', type, key, location, numel) tuple`);
    }
    const [, type, key, location, numel] = pid.items;
    if (!(type instanceof PyGlobal) || (type.role.kind !== 'storage-type' && type.role.kind !== 'untyped-storage')) {
      return fail(`persistent id storage type is a ${describe(type)}, not a torch storage class`);
    }
    if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(key) || key === '.' || key === '..') {
      return fail(`persistent id storage key ${describe(key)} is not a plain name`);
    }
    if (typeof location !== 'string') return fail(`persistent id location is a ${describe(location)}, not a string`);
    if (!isIndex(numel)) return fail(`persistent id numel is a ${describe(numel)}, not a non-negative integer`);
    const role = type.role;
    const s =
      role.kind === 'untyped-storage'
        ? new TorchStorage(key, 'untyped', 'untyped', location, numel)
        : new TorchStorage(key, role.dtype, role.torchDType, location, numel);
    const prev = seen.get(key);
    if (prev) {
      if (prev.torchDType !== s.torchDType || prev.numel !== s.numel) {
        return fail(
          `storage "${key}" is named twice with different types/sizes (${prev.torchDType} x ${prev.numel}, ${s.torchDType} x ${s.numel})`,
        );
      }
      return prev;
    }
    seen.set(key, s);
    return s;
  };
}
