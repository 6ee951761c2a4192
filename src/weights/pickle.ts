/**
 * The pickle subset a PyTorch state dict uses, read and written by hand.
 *
 * Why no npm library: the maintained JavaScript unpicklers either construct arbitrary globals (they map
 * class names to JS factories supplied by the caller, or build generic "objects" for anything) or are
 * unmaintained; none restricts globals the way `torch.load(weights_only=True)` does. A `.pth` is
 * untrusted input — a pickle's GLOBAL + REDUCE can name `os.system` — so this reader is an allow-list
 * interpreter: it knows exactly the globals a state dict needs (OrderedDict, the tensor rebuild
 * function, the storage classes), refuses every other global by name the moment the GLOBAL opcode
 * appears, and never executes anything: "calling" an allowed global just builds a plain JS record.
 *
 * The writer emits the protocol-2 opcodes torch.save itself emits, and only opcodes that torch's own
 * weights_only unpickler (1.13 and later) accepts.
 */

/** A refusal or malformation; readPth turns it into a DataError naming the file. */
export class PickleError extends Error {
  override name = 'PickleError';
}

export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

export type PyKey = string | number | bigint | boolean | null;

export class PyDict {
  readonly entries = new Map<PyKey, PyValue>();
  /** Attributes set by BUILD (torch stores the state dict's `_metadata` there). */
  attributes: PyDict | null = null;
  constructor(readonly ordered: boolean) {}
}

/** One of the allowed globals; nothing else can ever be on the stack as a callable. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

export type StorageType = (typeof storageTypes)[number];
export const storageTypes = [
  'FloatStorage',
  'DoubleStorage',
  'HalfStorage',
  'BFloat16Storage',
  'LongStorage',
  'IntStorage',
  'ShortStorage',
  'CharStorage',
  'ByteStorage',
  'BoolStorage',
] as const;

/** A persistent reference to `<archive>/data/<key>`: numel elements of the storage type. */
export class StorageRef {
  constructor(
    readonly type: StorageType,
    readonly key: string,
    readonly location: string,
    readonly numel: number,
  ) {}
}

/** The result of torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks). */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

export type PyValue = null | boolean | number | bigint | string | Uint8Array | PyTuple | PyValue[] | PyDict | PyGlobal | StorageRef | TensorRef;

const allowedGlobals = new Set<string>([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  ...storageTypes.map((type) => `torch.${type}`),
]);

const op = {
  PROTO: 0x80,
  FRAME: 0x95,
  STOP: 0x2e, // .
  MARK: 0x28, // (
  POP: 0x30, // 0
  POP_MARK: 0x31, // 1
  DUP: 0x32, // 2
  TUPLE: 0x74, // t
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  EMPTY_TUPLE: 0x29, // )
  EMPTY_LIST: 0x5d, // ]
  EMPTY_DICT: 0x7d, // }
  LIST: 0x6c, // l
  DICT: 0x64, // d
  APPEND: 0x61, // a
  APPENDS: 0x65, // e
  SETITEM: 0x73, // s
  SETITEMS: 0x75, // u
  NONE: 0x4e, // N
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  BININT2: 0x4d, // M
  LONG1: 0x8a,
  BINFLOAT: 0x47, // G
  BINUNICODE: 0x58, // X
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  SHORT_BINSTRING: 0x55, // U
  BINSTRING: 0x54, // T
  SHORT_BINBYTES: 0x43, // C
  BINBYTES: 0x42, // B
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  MEMOIZE: 0x94,
  BINGET: 0x68, // h
  LONG_BINGET: 0x6a, // j
  GLOBAL: 0x63, // c
  STACK_GLOBAL: 0x93,
  REDUCE: 0x52, // R
  BUILD: 0x62, // b
  BINPERSID: 0x51, // Q
} as const;

/** Opcodes that exist but that a state dict never needs; named in the refusal so it is clear why. */
const refusedOpcodes: Record<number, string> = {
  0x69: 'INST',
  0x6f: 'OBJ',
  0x81: 'NEWOBJ',
  0x92: 'NEWOBJ_EX',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x50: 'PERSID',
  0x8b: 'LONG4',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

const utf8 = new TextDecoder('utf-8', { fatal: true });
const latin1 = new TextDecoder('latin1');

/**
 * Interpret a pickle with the allow-list above. Throws PickleError for any global outside it, any
 * opcode a state dict does not use, and any malformation (truncation, stack underflow, bad types).
 */
export function unpickle(bytes: Uint8Array): PyValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  // MARK pushes the current stack on `marks` and starts an empty one; popMark restores it.
  let stack: PyValue[] = [];
  const marks: PyValue[][] = [];
  const memo = new Map<number, PyValue>();

  const need = (n: number) => {
    if (n < 0 || pos + n > bytes.length) throw new PickleError(`truncated pickle at byte ${pos}`);
  };
  const take = (n: number) => {
    need(n);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const u8 = () => take(1)[0]!;
  const u16 = () => (need(2), (pos += 2), view.getUint16(pos - 2, true));
  const u32 = () => (need(4), (pos += 4), view.getUint32(pos - 4, true));
  const i32 = () => (need(4), (pos += 4), view.getInt32(pos - 4, true));
  const u64 = () => {
    need(8);
    const value = view.getBigUint64(pos, true);
    pos += 8;
    if (value > BigInt(bytes.length)) throw new PickleError(`length ${value} exceeds the pickle`);
    return Number(value);
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new PickleError(`truncated pickle at byte ${pos}`);
    const text = latin1.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return text;
  };
  const text = (n: number) => {
    const raw = take(n);
    try {
      return utf8.decode(raw);
    } catch {
      throw new PickleError(`invalid UTF-8 string at byte ${pos}`);
    }
  };

  const pop = (): PyValue => {
    if (stack.length === 0) throw new PickleError(`stack underflow at byte ${pos}`);
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (stack.length === 0) throw new PickleError(`stack underflow at byte ${pos}`);
    return stack[stack.length - 1]!;
  };
  const popMark = (): PyValue[] => {
    const items = stack;
    const previous = marks.pop();
    if (previous === undefined) throw new PickleError(`no MARK before byte ${pos}`);
    stack = previous;
    return items;
  };
  const global = (module: string, name: string): PyGlobal => {
    const qualified = `${module}.${name}`;
    if (!allowedGlobals.has(qualified)) {
      throw new PickleError(
        `refused to load the global '${qualified}': a state dict only needs OrderedDict, torch._utils._rebuild_tensor_v2 and torch storages (nothing was executed)`,
      );
    }
    return new PyGlobal(module, name);
  };
  const setItem = (target: PyValue, key: PyValue, value: PyValue) => {
    if (!(target instanceof PyDict)) throw new PickleError('SETITEM on something that is not a dict');
    if (key !== null && typeof key === 'object') throw new PickleError('a dict key that is not a string or number');
    target.entries.set(key, value);
  };

  for (;;) {
    const code = u8();
    switch (code) {
      case op.PROTO: {
        const protocol = u8();
        if (protocol > 5) throw new PickleError(`unsupported pickle protocol ${protocol}`);
        break;
      }
      case op.FRAME:
        u64();
        break;
      case op.STOP: {
        const result = pop();
        return result;
      }
      case op.MARK:
        marks.push(stack);
        stack = [];
        break;
      case op.POP:
        pop();
        break;
      case op.POP_MARK:
        popMark();
        break;
      case op.DUP:
        stack.push(top());
        break;
      case op.TUPLE: {
        const items = popMark(); // before touching `stack`: popMark replaces it
        stack.push(new PyTuple(items));
        break;
      }
      case op.TUPLE1:
      case op.TUPLE2:
      case op.TUPLE3: {
        const n = code - op.TUPLE1 + 1;
        const items: PyValue[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        stack.push(new PyTuple(items));
        break;
      }
      case op.EMPTY_TUPLE:
        stack.push(new PyTuple([]));
        break;
      case op.EMPTY_LIST:
        stack.push([]);
        break;
      case op.LIST: {
        const items = popMark();
        stack.push(items);
        break;
      }
      case op.EMPTY_DICT:
        stack.push(new PyDict(false));
        break;
      case op.DICT: {
        const items = popMark();
        if (items.length % 2 !== 0) throw new PickleError('DICT with an odd number of items');
        const dict = new PyDict(false);
        for (let i = 0; i < items.length; i += 2) setItem(dict, items[i]!, items[i + 1]!);
        stack.push(dict);
        break;
      }
      case op.APPEND: {
        const value = pop();
        const list = top();
        if (!Array.isArray(list)) throw new PickleError('APPEND to something that is not a list');
        list.push(value);
        break;
      }
      case op.APPENDS: {
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) throw new PickleError('APPENDS to something that is not a list');
        list.push(...items);
        break;
      }
      case op.SETITEM: {
        const value = pop();
        const key = pop();
        setItem(top(), key, value);
        break;
      }
      case op.SETITEMS: {
        const items = popMark();
        if (items.length % 2 !== 0) throw new PickleError('SETITEMS with an odd number of items');
        const dict = top();
        for (let i = 0; i < items.length; i += 2) setItem(dict, items[i]!, items[i + 1]!);
        break;
      }
      case op.NONE:
        stack.push(null);
        break;
      case op.NEWTRUE:
        stack.push(true);
        break;
      case op.NEWFALSE:
        stack.push(false);
        break;
      case op.BININT:
        stack.push(i32());
        break;
      case op.BININT1:
        stack.push(u8());
        break;
      case op.BININT2:
        stack.push(u16());
        break;
      case op.LONG1: {
        const value = decodeLong(take(u8()));
        stack.push(value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value);
        break;
      }
      case op.BINFLOAT: {
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case op.BINUNICODE:
        stack.push(text(u32()));
        break;
      case op.SHORT_BINUNICODE:
        stack.push(text(u8()));
        break;
      case op.BINUNICODE8:
        stack.push(text(u64()));
        break;
      case op.SHORT_BINSTRING:
        stack.push(latin1.decode(take(u8())));
        break;
      case op.BINSTRING:
        stack.push(latin1.decode(take(i32())));
        break;
      case op.SHORT_BINBYTES:
        stack.push(take(u8()).slice());
        break;
      case op.BINBYTES:
        stack.push(take(u32()).slice());
        break;
      case op.BINPUT:
        memo.set(u8(), top());
        break;
      case op.LONG_BINPUT:
        memo.set(u32(), top());
        break;
      case op.MEMOIZE:
        memo.set(memo.size, top());
        break;
      case op.BINGET:
      case op.LONG_BINGET: {
        const index = code === op.BINGET ? u8() : u32();
        if (!memo.has(index)) throw new PickleError(`memo entry ${index} was never stored`);
        stack.push(memo.get(index)!);
        break;
      }
      case op.GLOBAL: {
        const module = line();
        const name = line();
        stack.push(global(module, name));
        break;
      }
      case op.STACK_GLOBAL: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw new PickleError('STACK_GLOBAL needs two strings');
        stack.push(global(module, name));
        break;
      }
      case op.REDUCE: {
        const args = pop();
        const callable = pop();
        stack.push(reduce(callable, args));
        break;
      }
      case op.BUILD: {
        const state = pop();
        const target = top();
        if (!(target instanceof PyDict && target.ordered) || !(state instanceof PyDict)) {
          throw new PickleError('BUILD is only accepted for the attributes of an OrderedDict');
        }
        target.attributes = state;
        break;
      }
      case op.BINPERSID:
        stack.push(persistentLoad(pop()));
        break;
      default: {
        const known = refusedOpcodes[code];
        const printable = code >= 0x20 && code < 0x7f ? ` '${String.fromCharCode(code)}'` : '';
        throw new PickleError(
          known
            ? `refused pickle opcode ${known}: a state dict never needs it (nothing was executed)`
            : `unsupported pickle opcode 0x${code.toString(16).padStart(2, '0')}${printable} at byte ${pos - 1}`,
        );
      }
    }
  }
}

/** Python's decode_long: little-endian two's complement. */
function decodeLong(data: Uint8Array): bigint {
  if (data.length === 0) return 0n;
  let value = 0n;
  for (let i = data.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(data[i]!);
  if (data[data.length - 1]! & 0x80) value -= 1n << BigInt(8 * data.length);
  return value;
}

function isNonNegativeInteger(value: PyValue): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

function integerTuple(value: PyValue, what: string): number[] {
  if (!(value instanceof PyTuple) || !value.items.every(isNonNegativeInteger)) throw new PickleError(`${what} must be a tuple of non-negative integers`);
  return value.items as number[];
}

/** What calling an allowed global produces; only the two callables a state dict uses are callable. */
function reduce(callable: PyValue, args: PyValue): PyValue {
  if (!(callable instanceof PyGlobal)) throw new PickleError('REDUCE on something that is not an allowed global');
  if (!(args instanceof PyTuple)) throw new PickleError('REDUCE arguments are not a tuple');
  switch (callable.qualifiedName) {
    case 'collections.OrderedDict':
      if (args.items.length !== 0) throw new PickleError('OrderedDict is only accepted with no arguments');
      return new PyDict(true);
    case 'torch._utils._rebuild_tensor_v2': {
      const [storage, offset, size, stride, requiresGrad, hooks] = args.items;
      if (args.items.length < 6 || args.items.length > 7) throw new PickleError('_rebuild_tensor_v2 takes 6 or 7 arguments');
      if (!(storage instanceof StorageRef)) throw new PickleError('_rebuild_tensor_v2: the first argument is not a storage');
      if (!isNonNegativeInteger(offset!)) throw new PickleError('_rebuild_tensor_v2: bad storage offset');
      if (typeof requiresGrad !== 'boolean') throw new PickleError('_rebuild_tensor_v2: requires_grad is not a bool');
      if (!(hooks instanceof PyDict) || hooks.entries.size > 0) throw new PickleError('_rebuild_tensor_v2: backward hooks are not accepted');
      const shape = integerTuple(size!, 'tensor size');
      const strides = integerTuple(stride!, 'tensor stride');
      if (shape.length !== strides.length) throw new PickleError('tensor size and stride differ in length');
      return new TensorRef(storage, offset, shape, strides);
    }
    default:
      throw new PickleError(`refused to call '${callable.qualifiedName}' (nothing was executed)`);
  }
}

function persistentLoad(pid: PyValue): StorageRef {
  if (!(pid instanceof PyTuple) || pid.items[0] !== 'storage' || pid.items.length !== 5) {
    throw new PickleError('a persistent id that is not a storage reference');
  }
  const [, type, key, location, numel] = pid.items;
  if (!(type instanceof PyGlobal) || type.module !== 'torch' || !(storageTypes as readonly string[]).includes(type.name)) {
    throw new PickleError('a storage reference without a storage type');
  }
  if (typeof key !== 'string' || !/^[0-9A-Za-z_]+$/.test(key)) throw new PickleError('a storage key that is not a plain name');
  if (typeof location !== 'string') throw new PickleError('a storage location that is not a string');
  if (!isNonNegativeInteger(numel!)) throw new PickleError('a storage size that is not a non-negative integer');
  return new StorageRef(type.name as StorageType, key, location, numel);
}

/** A tensor to write: its storage key in the archive, storage type, and contiguous shape. */
export interface PickledTensor {
  storageKey: string;
  storageType: 'FloatStorage' | 'LongStorage';
  shape: number[];
}

/** Writes a pickle the way torch.save lays out an OrderedDict of contiguous CPU tensors. */
export function pickleStateDict(tensors: Map<string, PickledTensor>): Uint8Array {
  const out = new ByteWriter();
  const memo = new Map<string, number>();
  const put = (id: string) => {
    const index = memo.size;
    memo.set(id, index);
    if (index < 256) out.bytes(op.BINPUT, index);
    else out.byte(op.LONG_BINPUT).uint32(index);
  };
  /** GLOBAL the first time, BINGET afterwards — as torch's pickler does. */
  const global = (module: string, name: string) => {
    const id = `global:${module}.${name}`;
    const index = memo.get(id);
    if (index !== undefined) {
      if (index < 256) out.bytes(op.BINGET, index);
      else out.byte(op.LONG_BINGET).uint32(index);
      return;
    }
    out.byte(op.GLOBAL).ascii(`${module}\n${name}\n`);
    put(id);
  };
  const emptyOrderedDict = () => {
    global('collections', 'OrderedDict');
    out.byte(op.EMPTY_TUPLE).byte(op.REDUCE);
  };

  out.bytes(op.PROTO, 2);
  emptyOrderedDict();
  out.byte(op.MARK);
  for (const [key, tensor] of tensors) {
    out.string(key);
    global('torch._utils', '_rebuild_tensor_v2');
    out.byte(op.MARK);
    out.byte(op.MARK).string('storage');
    global('torch', tensor.storageType);
    out.string(tensor.storageKey).string('cpu').int(tensor.shape.reduce((a, b) => a * b, 1));
    out.byte(op.TUPLE).byte(op.BINPERSID);
    out.int(0); // storage offset
    out.intTuple(tensor.shape);
    out.intTuple(contiguousStrides(tensor.shape));
    out.byte(op.NEWFALSE); // requires_grad
    emptyOrderedDict(); // backward hooks
    out.byte(op.TUPLE).byte(op.REDUCE);
  }
  out.byte(op.SETITEMS).byte(op.STOP);
  return out.finish();
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = stride;
    stride *= shape[i]!;
  }
  return strides;
}

class ByteWriter {
  private buffer = new Uint8Array(1 << 16);
  private length = 0;
  private readonly encoder = new TextEncoder();

  private reserve(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
  }
  byte(value: number): this {
    this.reserve(1);
    this.buffer[this.length++] = value;
    return this;
  }
  bytes(...values: number[]): this {
    for (const value of values) this.byte(value);
    return this;
  }
  uint32(value: number): this {
    this.reserve(4);
    new DataView(this.buffer.buffer).setUint32(this.length, value, true);
    this.length += 4;
    return this;
  }
  ascii(text: string): this {
    const encoded = this.encoder.encode(text);
    this.reserve(encoded.length);
    this.buffer.set(encoded, this.length);
    this.length += encoded.length;
    return this;
  }
  string(text: string): this {
    const encoded = this.encoder.encode(text);
    this.byte(op.BINUNICODE).uint32(encoded.length);
    this.reserve(encoded.length);
    this.buffer.set(encoded, this.length);
    this.length += encoded.length;
    return this;
  }
  int(value: number): this {
    if (!Number.isSafeInteger(value)) throw new Error(`cannot pickle ${value} as an int`);
    if (value >= 0 && value < 0x100) return this.bytes(op.BININT1, value);
    if (value >= 0 && value < 0x10000) return this.bytes(op.BININT2, value & 0xff, value >>> 8);
    if (value >= -0x80000000 && value < 0x80000000) {
      this.byte(op.BININT).reserve(4);
      new DataView(this.buffer.buffer).setInt32(this.length, value, true);
      this.length += 4;
      return this;
    }
    // LONG1: minimal little-endian two's complement.
    const bytes: number[] = [];
    let rest = BigInt(value);
    for (;;) {
      const low = Number(rest & 0xffn);
      bytes.push(low);
      rest >>= 8n;
      if ((rest === 0n && (low & 0x80) === 0) || (rest === -1n && (low & 0x80) !== 0)) break;
    }
    return this.bytes(op.LONG1, bytes.length, ...bytes);
  }
  intTuple(values: readonly number[]): this {
    if (values.length === 0) return this.byte(op.EMPTY_TUPLE);
    if (values.length <= 3) {
      for (const value of values) this.int(value);
      return this.byte(op.TUPLE1 + values.length - 1);
    }
    this.byte(op.MARK);
    for (const value of values) this.int(value);
    return this.byte(op.TUPLE);
  }
  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}
