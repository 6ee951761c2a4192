/**
 * `.safetensors`: an 8-byte little-endian header length N, N bytes of JSON
 * ({"__metadata__": {str: str}, key: {"dtype", "shape", "data_offsets": [begin, end]}}), then the raw
 * little-endian tensor bytes, offsets relative to the end of the header.
 *
 * Written by hand because the format is that small: the npm packages for it either wrap the Rust
 * library natively (a build step per platform for ~100 lines of logic) or are unmaintained readers.
 * The reader validates what the spec requires: offsets inside the buffer, lengths matching
 * dtype × shape, no overlaps, no gaps.
 */
import { DataError } from '../util/index.js';
import { decodeContiguous, elementSize, littleEndianBytes, readSource, sourceName, writeBufferAtomic, type ElementType } from './bytes.js';
import { assertFinite, assertWellFormed, numel, type StateDict, type StateTensor } from './types.js';

const dtypes: Record<string, ElementType> = {
  F32: 'f32',
  F64: 'f64',
  F16: 'f16',
  BF16: 'bf16',
  I64: 'i64',
  I32: 'i32',
  I16: 'i16',
  I8: 'i8',
  U8: 'u8',
  BOOL: 'bool',
};

/** The reference implementation refuses headers above 100 MB; so does this reader. */
const maxHeaderBytes = 100_000_000;

interface HeaderEntry {
  key: string;
  type: ElementType;
  shape: number[];
  begin: number;
  end: number;
}

export async function readSafetensors(source: string | Buffer): Promise<StateDict> {
  const file = sourceName(source);
  const buffer = await readSource(source);
  const fail = (reason: string): never => {
    throw new DataError(file, reason);
  };
  if (buffer.length < 8) fail('too short to be a safetensors file');
  const headerLength = buffer.readBigUInt64LE(0);
  if (headerLength > BigInt(Math.min(maxHeaderBytes, buffer.length - 8))) fail('the header length is larger than the file: not a safetensors file');
  const dataStart = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(buffer.subarray(8, dataStart).toString('utf8'));
  } catch (error) {
    fail(`the header is not JSON: ${(error as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('the header is not a JSON object');
  const entries: HeaderEntry[] = [];
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') continue;
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const type = typeof info?.dtype === 'string' ? dtypes[info.dtype] : undefined;
    if (type === undefined) fail(`${key}: unsupported dtype ${JSON.stringify(info?.dtype)}`);
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`${key}: bad shape`);
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0)) fail(`${key}: bad data_offsets`);
    const [begin, end] = offsets as [number, number];
    if (end - begin !== numel(shape as number[]) * elementSize[type!]) fail(`${key}: data_offsets span ${end - begin} bytes, dtype × shape needs ${numel(shape as number[]) * elementSize[type!]}`);
    if (dataStart + end > buffer.length) fail(`${key}: data runs past the end of the file`);
    entries.push({ key, type: type!, shape: shape as number[], begin, end });
  }
  // The spec: the tensors tile the data section exactly, in some order.
  entries.sort((a, b) => a.begin - b.begin);
  let cursor = 0;
  for (const entry of entries) {
    if (entry.begin !== cursor) fail(`${entry.key}: its data ${entry.begin < cursor ? 'overlaps the previous tensor' : 'leaves a gap'}`);
    cursor = entry.end;
  }
  const dict: StateDict = new Map();
  for (const entry of entries) {
    const data = decodeContiguous(buffer.subarray(dataStart + entry.begin, dataStart + entry.end), entry.type, numel(entry.shape));
    const tensor: StateTensor = data instanceof Float32Array ? { dtype: 'float32', shape: entry.shape, data } : { dtype: 'int64', shape: entry.shape, data };
    assertFinite(entry.key, tensor, file);
    dict.set(entry.key, tensor);
  }
  return dict;
}

/** Reads only the `__metadata__` strings of a safetensors header. */
export async function readSafetensorsMetadata(source: string | Buffer): Promise<Record<string, string>> {
  const file = sourceName(source);
  const buffer = await readSource(source);
  if (buffer.length < 8) throw new DataError(file, 'too short to be a safetensors file');
  const headerLength = buffer.readBigUInt64LE(0);
  if (headerLength > BigInt(Math.min(maxHeaderBytes, buffer.length - 8))) throw new DataError(file, 'not a safetensors file');
  let header: { __metadata__?: Record<string, unknown> };
  try {
    header = JSON.parse(buffer.subarray(8, 8 + Number(headerLength)).toString('utf8'));
  } catch {
    throw new DataError(file, 'the header is not JSON');
  }
  const metadata = header.__metadata__ ?? {};
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') throw new DataError(file, `metadata '${key}' is not a string`);
    out[key] = value;
  }
  return out;
}

/** Writes tensors in the dict's order (so the file keeps torchvision's key order), atomically. */
export async function writeSafetensors(path: string, dict: StateDict, metadata?: Record<string, string>): Promise<void> {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) if (typeof value !== 'string') throw new Error(`metadata '${key}' must be a string`);
    header['__metadata__'] = metadata;
  }
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [key, tensor] of dict) {
    if (key === '__metadata__') throw new Error('a tensor cannot be named __metadata__');
    assertWellFormed(key, tensor);
    const bytes = littleEndianBytes(tensor.data);
    header[key] = { dtype: tensor.dtype === 'float32' ? 'F32' : 'I64', shape: tensor.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(jsonBytes.length));
  await writeBufferAtomic(path, [length, jsonBytes, ...chunks]);
}
