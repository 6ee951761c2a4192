/** The allow-listed unpickler and the pickler, byte by byte (the PyTorch round trips are in pth.test.ts). */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PickleError, PyDict, PyTuple, TensorRef, pickleStateDict, unpickle } from '../../src/weights/pickle.js';

const bytes = (...parts: (number | string)[]) =>
  Uint8Array.from(parts.flatMap((part) => (typeof part === 'number' ? [part] : [...Buffer.from(part, 'latin1')])));

function refused(data: Uint8Array, pattern: RegExp): void {
  try {
    unpickle(data);
  } catch (error) {
    assert.instance(error, PickleError);
    assert.match((error as Error).message, pattern);
    return;
  }
  assert.unreachable('the pickle was accepted');
}

test('pickleStateDict → unpickle: an OrderedDict of tensor references, in order, with contiguous strides', () => {
  const data = pickleStateDict(
    new Map([
      ['conv.weight', { storageKey: '0', storageType: 'FloatStorage' as const, shape: [64, 3, 7, 7] }],
      ['bn.num_batches_tracked', { storageKey: '1', storageType: 'LongStorage' as const, shape: [] }],
      ['fc.bias', { storageKey: '2', storageType: 'FloatStorage' as const, shape: [100000] }],
    ]),
  );
  const root = unpickle(data);
  assert.instance(root, PyDict);
  const dict = root as PyDict;
  assert.ok(dict.ordered);
  assert.equal([...dict.entries.keys()], ['conv.weight', 'bn.num_batches_tracked', 'fc.bias']);
  const conv = dict.entries.get('conv.weight') as TensorRef;
  assert.equal(conv.shape, [64, 3, 7, 7]);
  assert.equal(conv.stride, [147, 49, 7, 1]);
  assert.is(conv.storage.type, 'FloatStorage');
  assert.is(conv.storage.numel, 9408);
  const count = dict.entries.get('bn.num_batches_tracked') as TensorRef;
  assert.equal([count.storage.type, count.shape, count.storage.key], ['LongStorage', [], '1']);
  assert.is((dict.entries.get('fc.bias') as TensorRef).storage.numel, 100000, 'numel past 65535 (BININT)');
});

/** Walks a pickle's opcodes (for the ones our writer may emit) and returns their names. */
function opcodes(data: Uint8Array): string[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const names: string[] = [];
  let pos = 0;
  const fixed: Record<number, [string, number]> = {
    0x80: ['PROTO', 1], 0x71: ['BINPUT', 1], 0x72: ['LONG_BINPUT', 4], 0x68: ['BINGET', 1], 0x6a: ['LONG_BINGET', 4],
    0x29: ['EMPTY_TUPLE', 0], 0x52: ['REDUCE', 0], 0x28: ['MARK', 0], 0x4b: ['BININT1', 1], 0x4d: ['BININT2', 2],
    0x4a: ['BININT', 4], 0x74: ['TUPLE', 0], 0x85: ['TUPLE1', 0], 0x86: ['TUPLE2', 0], 0x87: ['TUPLE3', 0],
    0x51: ['BINPERSID', 0], 0x89: ['NEWFALSE', 0], 0x75: ['SETITEMS', 0], 0x2e: ['STOP', 0],
  };
  while (pos < data.length) {
    const code = data[pos++]!;
    if (code === 0x63) {
      names.push('GLOBAL');
      pos = data.indexOf(0x0a, data.indexOf(0x0a, pos) + 1) + 1;
    } else if (code === 0x58) {
      names.push('BINUNICODE');
      pos += 4 + view.getUint32(pos, true);
    } else if (code === 0x8a) {
      names.push('LONG1');
      pos += 1 + data[pos]!;
    } else {
      const known = fixed[code];
      if (known === undefined) throw new Error(`unexpected opcode 0x${code.toString(16)} at ${pos - 1}`);
      names.push(known[0]);
      pos += known[1];
    }
  }
  return names;
}

test('the writer emits only opcodes torch 1.13\'s weights_only unpickler accepts', () => {
  // The opcode list of torch/_weights_only_unpickler.py (1.13): no FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL.
  const torchAccepts = new Set(['APPEND', 'APPENDS', 'BINGET', 'BININT', 'BININT1', 'BININT2', 'BINPERSID', 'BINPUT', 'BINUNICODE',
    'BUILD', 'EMPTY_DICT', 'EMPTY_LIST', 'EMPTY_SET', 'EMPTY_TUPLE', 'GLOBAL', 'LONG1', 'LONG_BINGET', 'LONG_BINPUT', 'MARK',
    'NEWFALSE', 'NEWOBJ', 'NEWTRUE', 'NONE', 'PROTO', 'REDUCE', 'SETITEM', 'SETITEMS', 'SHORT_BINSTRING', 'STOP', 'TUPLE',
    'TUPLE1', 'TUPLE2', 'TUPLE3']);
  // Sizes that need every int width.
  const tensors = new Map(
    Array.from({ length: 300 }, (_, i) => [`layer${i}.weight`, { storageKey: String(i), storageType: 'FloatStorage' as const, shape: [i + 1, 300, 3, 3000] }]),
  );
  tensors.set('count', { storageKey: '300', storageType: 'FloatStorage' as const, shape: [] });
  tensors.set('huge', { storageKey: '301', storageType: 'FloatStorage' as const, shape: [70000, 40000] }); // numel > 2^31: LONG1
  const names = opcodes(pickleStateDict(tensors));
  for (const name of new Set(names)) assert.ok(torchAccepts.has(name), `${name} is not accepted by torch 1.13`);
  for (const needed of ['BININT1', 'BININT', 'BININT2', 'LONG1', 'BINGET']) assert.ok(names.includes(needed), `exercised ${needed}`);
  assert.is(names[names.length - 1], 'STOP');
  const back = unpickle(pickleStateDict(tensors)) as PyDict;
  assert.equal([...back.entries.keys()], [...tensors.keys()]);
  assert.is((back.entries.get('huge') as TensorRef).storage.numel, 2_800_000_000);
});

test('GLOBAL outside the allow-list is refused before anything else happens', () => {
  refused(bytes(0x80, 2, 'cposix\nsystem\n', 'X', 2, 0, 0, 0, 'ls', 0x85, 'R.'), /refused to load the global 'posix\.system'/);
  refused(bytes(0x80, 2, 'csubprocess\nPopen\n', ')R.'), /'subprocess\.Popen'/);
  refused(bytes(0x80, 2, 'ctorch\nload\n', ')R.'), /'torch\.load'/);
  // STACK_GLOBAL (protocol 4) goes through the same gate.
  refused(bytes(0x80, 4, 0x8c, 8, 'builtins', 0x8c, 4, 'eval', 0x93, '.'), /'builtins\.eval'/);
});

test('opcodes a state dict never needs are refused by name', () => {
  refused(bytes('(ios\nsystem\n.'), /INST/);
  refused(bytes(0x80, 2, 'ccollections\nOrderedDict\n', ')', 0x81, '.'), /NEWOBJ/);
  refused(bytes(0x80, 2, 0x82, 1, '.'), /EXT1/);
  refused(bytes('P0\n.'), /PERSID/);
  refused(bytes('I1\n.'), /unsupported pickle opcode 0x49 'I'/);
});

test('allowed globals are only "called" the way a state dict calls them', () => {
  // OrderedDict with arguments, rebuild with hooks, storage types as callables, BUILD on a tuple.
  refused(bytes(0x80, 2, 'ccollections\nOrderedDict\n', ']', 0x85, 'R.'), /OrderedDict is only accepted with no arguments/);
  refused(bytes(0x80, 2, 'ctorch\nFloatStorage\n', ')R.'), /refused to call 'torch\.FloatStorage'/);
  refused(bytes(0x80, 2, ')}b.'), /BUILD is only accepted/);
  refused(bytes(0x80, 2, '(X', 3, 0, 0, 0, 'abc', 'tQ.'), /not a storage reference/);
  refused(bytes(0x80, 2, ']K', 1, 'K', 2, 's.'), /SETITEM on something that is not a dict/);
});

test('malformed pickles: truncation, underflow, unknown memo, unterminated', () => {
  refused(bytes(0x80, 2, 'X', 100, 0, 0, 0, 'short'), /truncated/);
  refused(bytes(0x80, 2, 'R.'), /stack underflow/);
  refused(bytes(0x80, 2, 'h', 7, '.'), /memo entry 7/);
  refused(bytes(0x80, 2, 'K', 1), /truncated/);
  refused(bytes(0x80, 2, 't.'), /no MARK/);
});

test('plain values decode as Python would', () => {
  const value = unpickle(bytes(0x80, 2, '(K', 5, 'M', 0x34, 0x12, 'J', 0xff, 0xff, 0xff, 0xff, 0x8a, 2, 0x00, 0x80, 0x88, 0x89, 'N', 'X', 2, 0, 0, 0, 'hi', 't.'));
  assert.instance(value, PyTuple);
  assert.equal((value as PyTuple).items, [5, 0x1234, -1, -32768, true, false, null, 'hi']);
});

test.run();
