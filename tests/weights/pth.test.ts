/**
 * The .pth reader and writer against PyTorch itself: torch-written files with awkward tensors read
 * back to PyTorch's values; our files open with torch.load(weights_only=True); hostile pickles are
 * refused by name with nothing executed.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { test } from 'uvu';
import yazl from 'yazl';
import * as assert from 'uvu/assert';
import { rejection } from '../helpers/refusal.js';
import { DataError, UserError } from '../../src/util/index.js';
import { readPth, readStateDict, writePth, type StateDict } from '../../src/weights/index.js';
import { pickleStateDict } from '../../src/weights/pickle.js';
import { once, referenceTest, runPython, temporaryDirectory } from '../fixtures/torch/python.js';

const dir = temporaryDirectory('pth');
const marker = join(dir.path, 'PWNED');

/** The torch-written files (pth_cases.py write, hostile), made by the first test that reads one. */
const torchFiles = once(() => {
  runPython('pth_cases.py', ['write', dir.path]);
  runPython('pth_cases.py', ['hostile', dir.path, marker]);
  return dir.path;
});

referenceTest(test, 'reads what torch.save wrote: every dtype, views with strides and offsets, scalars, empty tensors', async () => {
  const files = torchFiles();
  const dict = await readPth(join(files, 'dtypes.pth'));
  const expected = JSON.parse(readFileSync(join(files, 'dtypes.json'), 'utf8')) as Record<string, [number[], number[]]>;
  assert.equal([...dict.keys()], Object.keys(expected), 'key order is the pickle order');
  for (const [key, [shape, values]] of Object.entries(expected)) {
    const tensor = dict.get(key)!;
    assert.equal(tensor.shape, shape, `${key} shape`);
    const isFloat = ['double', 'half', 'bfloat', 'transposed', 'view_a', 'view_b', 'scalar', 'empty'].includes(key);
    assert.is(tensor.dtype, isFloat ? 'float32' : 'int64', `${key} dtype`);
    const ours = Array.from(tensor.data as ArrayLike<number | bigint>, (v) => (typeof v === 'bigint' ? Number(v) : v));
    if (isFloat) ours.forEach((v, i) => assert.ok(Math.abs((v as number) - values[i]!) <= 1e-6 * Math.max(1, Math.abs(values[i]!)), `${key}[${i}]`));
    else assert.equal(ours, values, key);
  }
});

/** What the writer tests write: an odd key order, an int64 past 2^32, an empty tensor, one past 64 KiB. */
const ourDict: StateDict = new Map([
  ['features.0.0.weight', { dtype: 'float32', shape: [2, 3, 1, 1], data: Float32Array.from([0.5, -1.25, 3, 1e-8, -0, 65504]) }],
  ['z_last_in_alphabet_first_here', { dtype: 'float32', shape: [3], data: Float32Array.from([1, 2, 3]) }],
  ['bn.num_batches_tracked', { dtype: 'int64', shape: [], data: BigInt64Array.of(123456789012n) }],
  ['empty', { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) }],
  ['big', { dtype: 'float32', shape: [70000], data: Float32Array.from({ length: 70000 }, (_, i) => i) }],
]);

referenceTest(test, 'our .pth opens with torch.load(weights_only=True): keys, order, dtypes, shapes and values', async () => {
  const dict = ourDict;
  const path = join(dir.path, 'ours.pth');
  await writePth(path, dict);
  const torch = JSON.parse(runPython('pth_cases.py', ['read', path])) as Record<string, [string, number[], number[]]>;
  assert.equal(Object.keys(torch), [...dict.keys()]);
  for (const [key, tensor] of dict) {
    const [dtype, shape, values] = torch[key]!;
    assert.is(dtype, tensor.dtype, key);
    assert.equal(shape, tensor.shape, key);
    assert.equal(values, Array.from(tensor.data as ArrayLike<number | bigint>, Number), key);
  }
});

test('our .pth reads back identically, and the file is deterministic', async () => {
  const dict = ourDict;
  const path = join(dir.path, 'ours-again.pth');
  await writePth(path, dict);
  const back = await readPth(path);
  assert.equal([...back], [...dict]);
  const second = join(dir.path, 'ours2.pth');
  await writePth(second, dict);
  assert.ok(readFileSync(path).equals(readFileSync(second)), 'same dict, same bytes');
  assert.not.ok(existsSync(`${path}.${process.pid}.partial`), 'no temporary file left behind');
});

for (const [name, global] of [
  ['os_system', 'posix.system'],
  ['builtins_eval', 'builtins.eval'],
  ['nested', '__builtin__.exec'], // protocol 2 spells builtins the Python 2 way
] as const) {
  referenceTest(test, `a pickle that would call ${global} is refused by name, and nothing runs`, async () => {
    const path = join(torchFiles(), `${name}.pth`);
    const error = await rejection(readPth(path));
    assert.instance(error, DataError);
    assert.is((error as DataError).file, path);
    assert.match(error.message, `'${global}'`);
    assert.match(error.message, /nothing was executed/);
    assert.not.ok(existsSync(marker), 'the payload did not run');
  });
}

referenceTest(test, 'legacy, wrapped and non-dict checkpoints are refused with what to do', async () => {
  const files = torchFiles();
  assert.match((await rejection(readPth(join(files, 'legacy.pth')))).message, /legacy \(pre-1\.6\)/);
  const wrapped = await rejection(readPth(join(files, 'wrapped.pth')));
  assert.instance(wrapped, DataError);
  assert.match(wrapped.message, /'epoch' holds a number/);
  const list = await rejection(readPth(join(files, 'list.pth')));
  assert.match(list.message, /holds a list, not a state dict/);
});

test('a file that is not a zip, or is missing, is refused', async () => {
  const notZip = join(dir.path, 'notzip.pth');
  writeFileSync(notZip, 'hello');
  assert.match((await rejection(readPth(notZip))).message, /not a PyTorch zip checkpoint/);
  assert.instance(await rejection(readPth(join(dir.path, 'missing.pth'))), DataError);
});

test('a storage shorter than its tensor, or a tensor past its storage, is a DataError', async () => {
  // Take a valid file and shrink one storage record by rewriting the zip with our writer's layout.
  const dict: StateDict = new Map([['w', { dtype: 'float32', shape: [4], data: Float32Array.from([1, 2, 3, 4]) }]]);
  const path = join(dir.path, 'short.pth');
  await writePth(path, dict);
  const bytes = readFileSync(path);
  // The pickle declares 4 elements; patch the stored numel BININT1 4 → 9 so the tensor claims more than is stored.
  const pickleAt = bytes.indexOf(Buffer.from('cpu'));
  assert.ok(pickleAt > 0);
  const patched = Buffer.from(bytes);
  const numelOpcode = pickleAt + 3; // after 'cpu': K <numel>
  assert.is(patched[numelOpcode], 0x4b);
  patched[numelOpcode + 1] = 9;
  // A crafted file, not a damaged one: its checksums agree, so only the storage-size check can catch it.
  refreshCrc(patched, 'archive/data.pkl');
  const error = await rejection(readPth(patched));
  assert.instance(error, DataError);
  assert.match(error.message, /storage|past/);
});

/** Rewrite the CRC-32 of record `name` in its local header and its central-directory entry. */
function refreshCrc(zip: Buffer, name: string): void {
  const nameBytes = Buffer.from(name);
  const centralSignature = Buffer.from([0x50, 0x4b, 0x01, 0x02]);
  let found = false;
  for (let at = zip.indexOf(centralSignature); at >= 0; at = zip.indexOf(centralSignature, at + 4)) {
    const nameLength = zip.readUInt16LE(at + 28);
    if (!zip.subarray(at + 46, at + 46 + nameLength).equals(nameBytes)) continue;
    const local = zip.readUInt32LE(at + 42);
    const size = zip.readUInt32LE(local + 18);
    const dataStart = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const crc = zlib.crc32(zip.subarray(dataStart, dataStart + size)) >>> 0;
    zip.writeUInt32LE(crc, local + 14);
    zip.writeUInt32LE(crc, at + 16);
    found = true;
  }
  assert.ok(found, `no record ${name}`);
}

test('a flipped byte anywhere in a record (a weight, or the pickle) fails the zip CRC-32 check, naming the record', async () => {
  const dict: StateDict = new Map([['fc.weight', { dtype: 'float32', shape: [2, 3], data: Float32Array.from([0.5, -1, 2, 3, 4.25, -6]) }]]);
  const path = join(dir.path, 'flip.pth');
  await writePth(path, dict);
  const bytes = readFileSync(path);
  assert.equal([...(await readPth(bytes))], [...dict], 'the intact file reads');
  // The weight bytes: the first float's little-endian bytes, stored uncompressed in archive/data/0.
  const weightAt = bytes.indexOf(Buffer.from(Float32Array.from([0.5, -1]).buffer));
  assert.ok(weightAt > 0);
  const flipped = Buffer.from(bytes);
  flipped[weightAt + 3] ^= 0x01;
  const weightError = await rejection(readPth(flipped));
  assert.instance(weightError, DataError);
  assert.match(weightError.message, /record archive\/data\/0 fails its CRC-32 check/);
  const pickleFlipped = Buffer.from(bytes);
  pickleFlipped[pickleFlipped.indexOf(Buffer.from('fc.weight')) + 1] ^= 0x20; // 'fc' → 'fC'
  assert.match((await rejection(readPth(pickleFlipped))).message, /record archive\/data\.pkl fails its CRC-32 check/);
});

referenceTest(test, 'readStateDict reads a .pth', async () => {
  const dict = await readStateDict(join(torchFiles(), 'dtypes.pth'));
  assert.ok(dict.has('double'));
});

test('readStateDict refuses an extension it has no reader for', async () => {
  try {
    await readStateDict(join(dir.path, 'weights.bin'));
    assert.unreachable();
  } catch (error) {
    assert.instance(error, UserError);
    assert.match((error as Error).message, /\.pth, \.pt, \.safetensors/);
  }
});

/** A torch-layout zip of one pickle and its storages, each storage record deflated when asked. */
async function craftedPth(pickle: Uint8Array, storages: Buffer[], compress: boolean): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  zip.addBuffer(Buffer.from(pickle), 'archive/data.pkl', { compress: false });
  storages.forEach((bytes, i) => zip.addBuffer(bytes, `archive/data/${i}`, { compress }));
  zip.addBuffer(Buffer.from('3\n'), 'archive/version', { compress: false });
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

test('NaN, Infinity and a float64 beyond float32 are refused on reading, naming the key', async () => {
  for (const [value, shown] of [[NaN, 'NaN'], [-Infinity, '-Infinity']] as const) {
    const path = join(dir.path, `nonfinite-${shown}.pth`);
    await writePth(path, new Map([
      ['fc.bias', { dtype: 'float32', shape: [2], data: Float32Array.of(0.5, 1) }],
      ['fc.weight', { dtype: 'float32', shape: [3], data: Float32Array.of(1, value, 2) }],
    ]));
    const error = await rejection(readPth(path));
    assert.instance(error, DataError);
    assert.is((error as DataError).file, path);
    assert.match(error.message, `fc.weight: element 1 is ${shown}`);
  }
  // A DoubleStorage holding 1e300: finite in float64, Infinity once read as float32.
  const pickle = Buffer.from(pickleStateDict(new Map([['layer1.0.conv1.weight', { storageKey: '0', storageType: 'FloatStorage', shape: [2] }]])));
  const doubled = Buffer.from(pickle.toString('latin1').replace('FloatStorage\n', 'DoubleStorage\n'), 'latin1');
  const data = Buffer.alloc(16);
  data.writeDoubleLE(0.25, 0);
  data.writeDoubleLE(1e300, 8);
  const error = await rejection(readPth(await craftedPth(doubled, [data], false)));
  assert.instance(error, DataError);
  assert.match(error.message, /layer1\.0\.conv1\.weight: element 1 is Infinity/);
  data.writeDoubleLE(-3, 8);
  assert.equal([...(await readPth(await craftedPth(doubled, [data], false))).get('layer1.0.conv1.weight')!.data], [0.25, -3], 'the same file with a finite double reads');
});

test('a deflated storage record that inflates past its declared numel × element size is refused before it is inflated', async () => {
  const pickle = pickleStateDict(new Map([['w', { storageKey: '0', storageType: 'FloatStorage', shape: [4] }]]));
  const honest = Buffer.from(Float32Array.of(1, 2, 3, 4).buffer);
  assert.equal([...(await readPth(await craftedPth(pickle, [honest], true))).get('w')!.data], [1, 2, 3, 4], 'a deflated record of the declared size reads');
  // 16 bytes declared, 64 MiB of zeros that deflate to ~64 kB: without the bound, read whole.
  const bomb = Buffer.concat([honest, Buffer.alloc(64 * 2 ** 20)]);
  const crafted = await craftedPth(pickle, [bomb], true);
  assert.ok(crafted.length < 2 ** 20, 'the crafted file is small');
  const error = await rejection(readPth(crafted));
  assert.instance(error, DataError);
  assert.match(error.message, /record archive\/data\/0: it inflates to more than the 16 bytes/);
});

test('a deflated record whose zip header understates its size is stopped while it inflates', async () => {
  const pickle = pickleStateDict(new Map([['w', { storageKey: '0', storageType: 'FloatStorage', shape: [4] }]]));
  const crafted = await craftedPth(pickle, [Buffer.alloc(1 << 20)], true);
  // Patch the record's declared uncompressed size (local header and central directory) down to 16.
  const name = Buffer.from('archive/data/0');
  for (const [signature, sizeAt, nameAt] of [[0x04034b50, 22, 30], [0x02014b50, 24, 46]] as const) {
    const marker = Buffer.alloc(4);
    marker.writeUInt32LE(signature);
    for (let at = crafted.indexOf(marker); at >= 0; at = crafted.indexOf(marker, at + 4)) {
      if (crafted.subarray(at + nameAt, at + nameAt + name.length).equals(name)) crafted.writeUInt32LE(16, at + sizeAt);
    }
  }
  const error = await rejection(readPth(crafted));
  assert.instance(error, DataError);
  assert.match(error.message, /archive\/data\/0/);
  assert.match(error.message, /inflates to more than the 16 bytes|too many bytes/);
});

test.run();
