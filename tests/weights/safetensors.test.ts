/** .safetensors: round trip, the byte layout the spec prescribes, and refusal of malformed files. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejection } from '../helpers/refusal.js';
import { DataError } from '../../src/util/index.js';
import { readSafetensors, readSafetensorsMetadata, readStateDict, writeSafetensors, type StateDict } from '../../src/weights/index.js';
import { temporaryDirectory } from '../fixtures/torch/python.js';

const dir = temporaryDirectory('safetensors');
test.after(() => dir.remove());

const dict: StateDict = new Map([
  ['layer1.0.conv1.weight', { dtype: 'float32', shape: [2, 1, 1, 3], data: Float32Array.from([1.5, -2, 3e-7, 3.4028234663852886e38, -0, 7]) }],
  ['layer1.0.bn1.num_batches_tracked', { dtype: 'int64', shape: [], data: BigInt64Array.of(-9007199254740993n) }],
  ['a.bias', { dtype: 'float32', shape: [1], data: Float32Array.of(0.25) }],
  ['empty', { dtype: 'float32', shape: [0], data: new Float32Array(0) }],
]);

/** A safetensors file from a header object and raw data, as any writer could produce it. */
function file(header: unknown, data: Buffer = Buffer.alloc(0)): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

/** readSafetensors must refuse `buffer` with a DataError matching `pattern`. */
const malformed = (buffer: Buffer, pattern: RegExp) => rejection(() => readSafetensors(buffer), DataError, pattern);

test('round trip keeps keys, order, dtypes, shapes, exact values and metadata', async () => {
  const path = join(dir.path, 'model.safetensors');
  await writeSafetensors(path, dict, { format: 'pt', model: 'resnet18' });
  const back = await readSafetensors(path);
  assert.equal([...back], [...dict]);
  assert.equal(await readSafetensorsMetadata(path), { format: 'pt', model: 'resnet18' });
  assert.equal([...(await readStateDict(path)).keys()], [...dict.keys()]);
});

test('layout: u64 header length, JSON header padded to 8 bytes, little-endian data at the offsets', async () => {
  const path = join(dir.path, 'layout.safetensors');
  await writeSafetensors(path, dict);
  const bytes = readFileSync(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  assert.is((8 + headerLength) % 8, 0, 'data starts 8-byte aligned');
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  assert.equal(header['layer1.0.conv1.weight'], { dtype: 'F32', shape: [2, 1, 1, 3], data_offsets: [0, 24] });
  assert.equal(header['layer1.0.bn1.num_batches_tracked'], { dtype: 'I64', shape: [], data_offsets: [24, 32] });
  assert.is(bytes.readFloatLE(8 + headerLength + 0), 1.5);
  assert.is(bytes.readBigInt64LE(8 + headerLength + 24), -9007199254740993n);
  assert.is(bytes.length, 8 + headerLength + 36);
});

test('other dtypes decode to float32 / int64 (F16, BF16, F64, I32, U8, BOOL)', async () => {
  const data = Buffer.alloc(2 + 2 + 8 + 4 + 1 + 1);
  data.writeUInt16LE(0x3c00, 0); // f16 1.0
  data.writeUInt16LE(0xc040, 2); // bf16 -3.0
  data.writeDoubleLE(0.1, 4);
  data.writeInt32LE(-7, 12);
  data.writeUInt8(200, 16);
  data.writeUInt8(1, 17);
  const header = {
    h: { dtype: 'F16', shape: [1], data_offsets: [0, 2] },
    b: { dtype: 'BF16', shape: [1], data_offsets: [2, 4] },
    d: { dtype: 'F64', shape: [1], data_offsets: [4, 12] },
    i: { dtype: 'I32', shape: [1], data_offsets: [12, 16] },
    u: { dtype: 'U8', shape: [1], data_offsets: [16, 17] },
    t: { dtype: 'BOOL', shape: [1], data_offsets: [17, 18] },
  };
  const back = await readSafetensors(file(header, data));
  assert.equal(back.get('h'), { dtype: 'float32', shape: [1], data: Float32Array.of(1) });
  assert.equal(back.get('b')!.data, Float32Array.of(-3));
  assert.equal(back.get('d')!.data, Float32Array.of(0.1));
  assert.equal(back.get('i'), { dtype: 'int64', shape: [1], data: BigInt64Array.of(-7n) });
  assert.equal(back.get('u')!.data, BigInt64Array.of(200n));
  assert.equal(back.get('t')!.data, BigInt64Array.of(1n));
});

test('malformed files are DataErrors that say what is wrong', async () => {
  const four = Buffer.alloc(8);
  await malformed(Buffer.alloc(3), /too short/);
  await malformed(Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), four]), /header length is larger than the file/);
  await malformed(Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{x')]), /not JSON/);
  await malformed(file({ w: { dtype: 'Q8', shape: [1], data_offsets: [0, 1] } }, four), /unsupported dtype/);
  await malformed(file({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, four), /needs 12/);
  await malformed(file({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, four), /past the end/);
  await malformed(file({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, four), /gap/);
  await malformed(
    file({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, four),
    /overlaps/,
  );
  await malformed(file({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, four), /bad shape/);
  await malformed(file([1, 2]), /not a JSON object/);
});

test('NaN, Infinity and an F64 beyond float32 are refused, naming the key', async () => {
  for (const [value, shown] of [[NaN, 'NaN'], [Infinity, 'Infinity']] as const) {
    const data = Buffer.alloc(8);
    data.writeFloatLE(0.5, 0);
    data.writeFloatLE(value, 4);
    await malformed(file({ 'fc.weight': { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, data), new RegExp(`fc\\.weight: element 1 is ${shown}`));
  }
  const half = Buffer.alloc(2);
  half.writeUInt16LE(0x7e00); // f16 NaN
  await malformed(file({ h: { dtype: 'F16', shape: [1], data_offsets: [0, 2] } }, half), /h: element 0 is NaN/);
  const double = Buffer.alloc(8);
  double.writeDoubleLE(1e300);
  await malformed(file({ 'bn.running_var': { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, double), /bn\.running_var: element 0 is Infinity.*float64/);
  const path = join(dir.path, 'nan.safetensors');
  await writeSafetensors(path, new Map([['w', { dtype: 'float32', shape: [1], data: Float32Array.of(NaN) }]]));
  try {
    await readSafetensors(path);
    assert.unreachable('read a NaN');
  } catch (error) {
    assert.instance(error, DataError);
    assert.is((error as DataError).file, path, 'the error names the file');
  }
});

test.run();
