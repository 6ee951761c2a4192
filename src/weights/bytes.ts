/** Byte-level helpers shared by the .pth and .safetensors readers/writers (both formats are little-endian). */
import { endianness } from 'node:os';
import { DataError, writeFileAtomic } from '../util/index.js';

export const hostIsLittleEndian = endianness() === 'LE';

export type ElementType = 'f32' | 'f64' | 'f16' | 'bf16' | 'i64' | 'i32' | 'i16' | 'i8' | 'u8' | 'bool';

export const elementSize: Record<ElementType, number> = { f32: 4, f64: 8, f16: 2, bf16: 2, i64: 8, i32: 4, i16: 2, i8: 1, u8: 1, bool: 1 };

export const isFloatElement = (type: ElementType): boolean => type === 'f32' || type === 'f64' || type === 'f16' || type === 'bf16';

function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/**
 * Reads `count` elements at element indices `index(i)` of little-endian `bytes` into float32 (float
 * types) or int64 (integer and bool types): the two dtypes a state dict holds here.
 */
export function decodeElements(
  bytes: Uint8Array,
  type: ElementType,
  count: number,
  index: (i: number) => number,
): Float32Array | BigInt64Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (isFloatElement(type)) {
    const out = new Float32Array(count);
    switch (type) {
      case 'f32':
        for (let i = 0; i < count; i++) out[i] = view.getFloat32(index(i) * 4, true);
        break;
      case 'f64':
        for (let i = 0; i < count; i++) out[i] = view.getFloat64(index(i) * 8, true);
        break;
      case 'f16':
        for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(index(i) * 2, true));
        break;
      case 'bf16': {
        const scratch = new DataView(new ArrayBuffer(4));
        for (let i = 0; i < count; i++) {
          scratch.setUint32(0, view.getUint16(index(i) * 2, true) << 16);
          out[i] = scratch.getFloat32(0);
        }
        break;
      }
    }
    return out;
  }
  const out = new BigInt64Array(count);
  for (let i = 0; i < count; i++) {
    const at = index(i);
    switch (type) {
      case 'i64':
        out[i] = view.getBigInt64(at * 8, true);
        break;
      case 'i32':
        out[i] = BigInt(view.getInt32(at * 4, true));
        break;
      case 'i16':
        out[i] = BigInt(view.getInt16(at * 2, true));
        break;
      case 'i8':
        out[i] = BigInt(view.getInt8(at));
        break;
      default: // u8, bool
        out[i] = BigInt(view.getUint8(at));
    }
  }
  return out;
}

/** Contiguous float32/int64 from little-endian bytes, with a straight copy on little-endian hosts. */
export function decodeContiguous(bytes: Uint8Array, type: ElementType, count: number): Float32Array | BigInt64Array {
  if (hostIsLittleEndian && (type === 'f32' || type === 'i64')) {
    // A fresh, aligned copy (not bytes.slice: on a Buffer that is a view into the whole file).
    const copy = new Uint8Array(count * elementSize[type]);
    copy.set(bytes.subarray(0, copy.length));
    return type === 'f32' ? new Float32Array(copy.buffer) : new BigInt64Array(copy.buffer);
  }
  return decodeElements(bytes, type, count, (i) => i);
}

/** The little-endian bytes of a float32/int64 array (a view on little-endian hosts, a copy otherwise). */
export function littleEndianBytes(data: Float32Array | BigInt64Array): Buffer {
  if (hostIsLittleEndian) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out = Buffer.alloc(data.byteLength);
  if (data instanceof Float32Array) data.forEach((value, i) => out.writeFloatLE(value, i * 4));
  else data.forEach((value, i) => out.writeBigInt64LE(value, i * 8));
  return out;
}

export async function writeBufferAtomic(path: string, data: Uint8Array | Uint8Array[]): Promise<void> {
  await writeFileAtomic(path, Array.isArray(data) ? Buffer.concat(data) : data);
}

/** The name a DataError uses for a source given as a path or as bytes. */
export function sourceName(source: string | Buffer): string {
  return typeof source === 'string' ? source : '<buffer>';
}

export async function readSource(source: string | Buffer): Promise<Buffer> {
  if (typeof source !== 'string') return source;
  const { readFile } = await import('node:fs/promises');
  try {
    return await readFile(source);
  } catch (error) {
    throw new DataError(source, `cannot read: ${(error as Error).message}`);
  }
}
