/**
 * PyTorch `.pth` state dicts in the zip format torch.save writes since 1.6:
 *
 *   <archive>/data.pkl      the pickled OrderedDict (tensors as persistent references to storages)
 *   <archive>/data/<key>    each storage's raw little-endian bytes, stored uncompressed
 *   <archive>/version       "3\n"
 *   <archive>/byteorder     "little" (torch ≥ 2.1; absent means little)
 *
 * Reading goes through the allow-listed unpickler in pickle.ts (refuses anything but a state dict).
 * Writing produces a file that `torch.load(path, weights_only=True)` opens. torch aligns storages to 64
 * bytes with padding in the local headers (for mmap); yazl cannot write those extra fields, and neither
 * torch.load nor load_state_dict needs the alignment, as they copy each record out.
 */
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import yauzl from 'yauzl';
import yazl from 'yazl';
import { DataError, replaceAtomically } from '../util/index.js';
import { decodeContiguous, decodeElements, elementSize, littleEndianBytes, readSource, sourceName, type ElementType } from './bytes.js';
import { contiguousStrides, pickleStateDict, PickleError, PyDict, TensorRef, unpickle, type PickledTensor, type PyValue, type StorageType } from './pickle.js';
import { assertFinite, assertWellFormed, numel, type StateDict, type StateTensor } from './types.js';

const storageElement: Record<StorageType, ElementType> = {
  FloatStorage: 'f32',
  DoubleStorage: 'f64',
  HalfStorage: 'f16',
  BFloat16Storage: 'bf16',
  LongStorage: 'i64',
  IntStorage: 'i32',
  ShortStorage: 'i16',
  CharStorage: 'i8',
  ByteStorage: 'u8',
  BoolStorage: 'bool',
};

/** Far above any state dict's pickle (ResNet50's is ~30 kB); refuses a decompression bomb early. */
const maxPickleBytes = 64 * 1024 * 1024;

/** The byteorder record holds "little" or "big". */
const maxByteorderBytes = 16;

interface ZipRecords {
  names: string[];
  /** A record's bytes; a compressed record that declares or inflates to more than `maxBytes` is refused. */
  read(name: string, maxBytes: number): Promise<Uint8Array>;
}

async function openZip(buffer: Buffer, file: string): Promise<ZipRecords> {
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromBufferPromise(buffer, { lazyEntries: true, decodeStrings: true, validateEntrySizes: true });
  } catch (error) {
    throw new DataError(file, `not a readable zip archive: ${(error as Error).message}`);
  }
  const entries = new Map<string, yauzl.Entry>();
  try {
    for await (const entry of zip.eachEntry()) {
      // Two records of one name would let two readers see different weights: refuse.
      if (entries.has(entry.fileName)) throw new Error(`duplicate record ${entry.fileName}`);
      entries.set(entry.fileName, entry);
    }
  } catch (error) {
    throw new DataError(file, `damaged zip archive: ${(error as Error).message}`);
  }
  return {
    names: [...entries.keys()],
    async read(name, maxBytes) {
      const entry = entries.get(name);
      if (entry === undefined) throw new DataError(file, `the archive has no record ${name}`);
      let bytes: Buffer;
      try {
        if (entry.compressionMethod === 0 && !entry.isEncrypted()) {
          // Stored, as torch writes every record: the bytes are a slice of the file, no copy.
          const { fileDataStart } = await zip.readLocalFileHeaderPromise(entry, { minimal: true });
          if (fileDataStart + entry.compressedSize > buffer.length) throw new Error('record runs past the end of the file');
          bytes = buffer.subarray(fileDataStart, fileDataStart + entry.compressedSize);
        } else {
          // Inflating costs memory the file's size does not bound (1 MB of deflate can be 1 GB), so the
          // caller's bound is checked against the size the zip declares, then again on every chunk in
          // case that declaration lies.
          const tooLarge = `it inflates to more than the ${maxBytes} bytes its contents can need: refused (a decompression bomb, or a damaged file)`;
          if (entry.uncompressedSize > maxBytes) throw new Error(tooLarge);
          const chunks: Buffer[] = [];
          let inflated = 0;
          const stream = await zip.openReadStreamPromise(entry);
          for await (const chunk of stream) {
            inflated += (chunk as Buffer).length;
            if (inflated > maxBytes) {
              stream.destroy();
              throw new Error(tooLarge);
            }
            chunks.push(chunk as Buffer);
          }
          bytes = Buffer.concat(chunks);
        }
      } catch (error) {
        if (error instanceof DataError) throw error;
        throw new DataError(file, `cannot read record ${name}: ${(error as Error).message}`);
      }
      // yauzl checks sizes but not checksums: without this a flipped bit in a weight loads silently.
      if (zlib.crc32(bytes) >>> 0 !== entry.crc32 >>> 0) {
        throw new DataError(file, `record ${name} fails its CRC-32 check (the file is damaged): download or export it again`);
      }
      return bytes;
    },
  };
}

/** Pre-1.6 torch.save wrote a bare pickle stream (or a tar); say so instead of "not a zip". */
function describeNonZip(buffer: Buffer): string {
  if (buffer[0] === 0x80) return 'a legacy (pre-1.6) torch.save file; re-save it with a current PyTorch: torch.save(torch.load(f), f)';
  return 'not a PyTorch zip checkpoint (no zip signature)';
}

function tensorFromRef(ref: TensorRef, key: string, storage: Uint8Array, file: string): StateTensor {
  const type = storageElement[ref.storage.type];
  const size = elementSize[type];
  if (storage.length < ref.storage.numel * size) {
    throw new DataError(file, `${key}: storage ${ref.storage.key} holds ${storage.length} bytes, fewer than its ${ref.storage.numel} elements need`);
  }
  const count = numel(ref.shape);
  if (count > 0) {
    const last = ref.offset + ref.shape.reduce((sum, dim, i) => sum + (dim - 1) * ref.stride[i]!, 0);
    if (last >= ref.storage.numel) throw new DataError(file, `${key}: the tensor reaches past its storage`);
  }
  const shape = [...ref.shape];
  const contiguous = ref.shape.every((dim, i) => dim === 1 || ref.stride[i] === contiguousStrides(ref.shape)[i]);
  let data: Float32Array | BigInt64Array;
  if (contiguous) {
    data = decodeContiguous(storage.subarray(ref.offset * size), type, count);
  } else {
    // A view (e.g. a transpose saved without .contiguous()): walk the strides.
    const dims = ref.shape.length;
    data = decodeElements(storage, type, count, (flat) => {
      let index = ref.offset;
      for (let d = dims - 1; d >= 0; d--) {
        const dim = ref.shape[d]!;
        index += (flat % dim) * ref.stride[d]!;
        flat = Math.floor(flat / dim);
      }
      return index;
    });
  }
  return data instanceof Float32Array ? { dtype: 'float32', shape, data } : { dtype: 'int64', shape, data };
}

function describeValue(value: PyValue): string {
  if (value === null) return 'None';
  if (value instanceof PyDict) return 'a dict';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return `a ${value.constructor.name}`;
  return `a ${typeof value}`;
}

/** Reads a torch.save'd state dict. Anything but a state dict of tensors is refused with a DataError. */
export async function readPth(source: string | Buffer): Promise<StateDict> {
  const file = sourceName(source);
  const buffer = await readSource(source);
  if (buffer.length < 4 || buffer.readUInt32LE(0) !== 0x04034b50) throw new DataError(file, describeNonZip(buffer));
  const zip = await openZip(buffer, file);
  const pickles = zip.names.filter((name) => /^[^/]+\/data\.pkl$/.test(name));
  if (pickles.length !== 1) throw new DataError(file, `expected one <archive>/data.pkl record, found ${pickles.length}: not a torch.save file`);
  const prefix = pickles[0]!.slice(0, -'data.pkl'.length);
  if (zip.names.includes(`${prefix}byteorder`)) {
    const order = Buffer.from(await zip.read(`${prefix}byteorder`, maxByteorderBytes)).toString('latin1').trim();
    if (order !== 'little') throw new DataError(file, `byte order '${order}' is not supported (only little-endian)`);
  }
  const pickle = await zip.read(pickles[0]!, maxPickleBytes);
  if (pickle.length > maxPickleBytes) throw new DataError(file, 'the pickle record is implausibly large for a state dict');
  let root: PyValue;
  try {
    root = unpickle(pickle);
  } catch (error) {
    if (error instanceof PickleError) throw new DataError(file, error.message);
    throw error;
  }
  if (!(root instanceof PyDict)) throw new DataError(file, `holds ${describeValue(root)}, not a state dict (save model.state_dict())`);
  const dict: StateDict = new Map();
  const storages = new Map<string, Uint8Array>();
  for (const [key, value] of root.entries) {
    if (typeof key !== 'string') throw new DataError(file, `a state-dict key that is not a string: ${String(key)}`);
    if (!(value instanceof TensorRef)) {
      const nested = value instanceof PyDict && [...value.entries.values()].some((v) => v instanceof TensorRef);
      const hint = nested ? `; the weights look nested under '${key}': save checkpoint['${key}'] on its own` : '';
      throw new DataError(file, `not a plain state dict: '${key}' holds ${describeValue(value)}, not a tensor${hint}`);
    }
    let storage = storages.get(value.storage.key);
    if (storage === undefined) {
      // torch writes a storage's numel × element size bytes; a record that inflates to more is no storage.
      storage = await zip.read(`${prefix}data/${value.storage.key}`, value.storage.numel * elementSize[storageElement[value.storage.type]]);
      storages.set(value.storage.key, storage);
    }
    const tensor = tensorFromRef(value, key, storage, file);
    assertFinite(key, tensor, file);
    dict.set(key, tensor);
  }
  return dict;
}

/** Writes a state dict as torch.save would (one storage per tensor, in key order), atomically. */
export async function writePth(path: string, dict: StateDict): Promise<void> {
  const tensors = new Map<string, PickledTensor>();
  const zip = new yazl.ZipFile();
  // A fixed timestamp: the same weights give the same file, byte for byte.
  const entryOptions = { compress: false, mtime: new Date(2020, 0, 1), forceDosTimestamp: true };
  let index = 0;
  const storages: Buffer[] = [];
  for (const [key, tensor] of dict) {
    assertWellFormed(key, tensor);
    tensors.set(key, { storageKey: String(index++), storageType: tensor.dtype === 'float32' ? 'FloatStorage' : 'LongStorage', shape: tensor.shape });
    storages.push(littleEndianBytes(tensor.data));
  }
  zip.addBuffer(Buffer.from(pickleStateDict(tensors)), 'archive/data.pkl', entryOptions);
  storages.forEach((bytes, i) => zip.addBuffer(bytes, `archive/data/${i}`, entryOptions));
  zip.addBuffer(Buffer.from('3\n'), 'archive/version', entryOptions);
  zip.addBuffer(Buffer.from('little'), 'archive/byteorder', entryOptions);
  zip.end();
  await replaceAtomically(path, (temporary) => pipeline(zip.outputStream, createWriteStream(temporary)));
}
