/**
 * A cache of resized films, so an epoch reads small raw files instead of decoding 2,660-pixel JPEGs.
 *
 * Each image is read through the image readers (readers.ts) and resized so its shorter side is the
 * model's resize size — the eval transform's first stage (image.ts `resizeShorter`) — and stored as
 * raw pixels under DIR/.cache/resize-<size>/<sha1 of the relative path>.rgb (resize-<size>-<window> for a
 * DICOM window other than auto: the window decides the pixels) with a 32-byte header
 * (magic, width, height, the sample layout, the source's byte size and mtime). A changed source fails
 * the header check and is redone. The layout keeps what the reader gave: 8-bit RGB bytes for 8-bit
 * sources; for a deep (windowed 12/16-bit DICOM) film, float32 levels, one gray channel where the
 * three channels are equal (4 bytes a pixel against 3 for bytes, so the cache stays the same order
 * of size) and three where they are not. Floats are stored exactly, so a cached film is the film.
 * Files are written under a temporary name and renamed, so parallel loaders never read half a file.
 * A small in-memory LRU in front saves the file reads for datasets that fit (the phantom does).
 * Given the manifest's content hashes (training), every decode is checked against its row's hash, as
 * eval checks, and the hash is part of the cache file's name: a cached film is one that was checked
 * against that very hash, so a cache written before (unchecked, or for another index) is not reused.
 * Delete DIR/.cache to reclaim the space; nothing else depends on it.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DataError, writeFileAtomic } from '../util/index.js';
import { resizeShorter } from './image.js';
import { decodeRgb, dicomWindowText, type DicomWindow, type RgbImage } from './readers.js';
import { verifyContentHash, type ManifestHash } from './split.js';

const magic = 0x3152534f; // "OSR1" little-endian
const headerBytes = 32;

export interface ResizedCache {
  readonly dir: string;
  readonly shorter: number;
  /** The resized image for a path relative to the data folder. */
  get(path: string): Promise<RgbImage>;
  /** Counters since creation: memory hits, disk hits, decodes. */
  stats(): { memory: number; disk: number; decoded: number };
}

export interface CacheOptions {
  /** In-memory budget in bytes (default 256 MB; 0 disables the memory layer). */
  memoryBytes?: number;
  /** Skip the disk layer (read-only data folders). */
  disk?: boolean;
  /** Keep the cache files here instead of DIR/.cache (benchmarks, read-only data folders). */
  root?: string;
  /** The manifest's content hash of each path (manifestContentHashes) and the manifest's file: decodes are checked against them. */
  verify?: { hashes: ReadonlyMap<string, ManifestHash>; manifest: string };
  /** How DICOM files become gray levels (default auto): a run's window. */
  dicomWindow?: DicomWindow;
}

export function cacheDir(dataDir: string, shorter: number, root = join(dataDir, '.cache'), dicomWindow: DicomWindow = 'auto'): string {
  const window = dicomWindowText(dicomWindow);
  return join(root, window === 'auto' ? `resize-${shorter}` : `resize-${shorter}-${window.replace(',', 'w')}`);
}

/** The header's sample layout: bytes RGB (what every cache file held before floats), float gray, float RGB. */
const enum Layout {
  Bytes = 0,
  FloatGray = 1,
  FloatRgb = 2,
}

function isGray(data: Float32Array): boolean {
  for (let i = 0; i < data.length; i += 3) if (data[i] !== data[i + 1] || data[i] !== data[i + 2]) return false;
  return true;
}

/** The samples as stored: bytes as they are, floats as gray when the channels agree. */
function storedSamples(image: RgbImage): { layout: Layout; bytes: Uint8Array } {
  const { data } = image;
  if (data instanceof Uint8Array) return { layout: Layout.Bytes, bytes: data };
  const samples = isGray(data) ? Float32Array.from({ length: data.length / 3 }, (_, i) => data[3 * i]!) : data;
  // Little-endian on every platform Node runs on, as the header's own fields.
  return { layout: samples === data ? Layout.FloatRgb : Layout.FloatGray, bytes: new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength) };
}

function encode(image: RgbImage, sourceBytes: number, sourceMtimeMs: number): Buffer {
  const { layout, bytes } = storedSamples(image);
  const buffer = Buffer.allocUnsafe(headerBytes + bytes.length);
  buffer.writeUInt32LE(magic, 0);
  buffer.writeUInt32LE(image.width, 4);
  buffer.writeUInt32LE(image.height, 8);
  buffer.writeUInt32LE(layout, 12);
  buffer.writeDoubleLE(sourceBytes, 16);
  buffer.writeDoubleLE(sourceMtimeMs, 24);
  buffer.set(bytes, headerBytes);
  return buffer;
}

function decode(buffer: Buffer, sourceBytes: number, sourceMtimeMs: number): RgbImage | undefined {
  if (buffer.length < headerBytes || buffer.readUInt32LE(0) !== magic) return undefined;
  const width = buffer.readUInt32LE(4);
  const height = buffer.readUInt32LE(8);
  const layout = buffer.readUInt32LE(12);
  if (buffer.readDoubleLE(16) !== sourceBytes || buffer.readDoubleLE(24) !== sourceMtimeMs) return undefined;
  const pixels = width * height;
  const body = buffer.subarray(headerBytes);
  if (layout === Layout.Bytes) {
    if (body.length !== pixels * 3) return undefined;
    return { data: new Uint8Array(body.buffer, body.byteOffset, pixels * 3), width, height };
  }
  const channels = layout === Layout.FloatGray ? 1 : layout === Layout.FloatRgb ? 3 : 0;
  if (channels === 0 || body.length !== pixels * channels * 4) return undefined;
  // Copied: the file's buffer need not be 4-byte aligned.
  const samples = new Float32Array(Uint8Array.from(body).buffer);
  if (channels === 3) return { data: samples, width, height };
  const data = new Float32Array(pixels * 3);
  for (let i = 0; i < pixels; i++) data[3 * i] = data[3 * i + 1] = data[3 * i + 2] = samples[i]!;
  return { data, width, height };
}

export function createResizedCache(dataDir: string, shorter: number, options: CacheOptions = {}): ResizedCache {
  const dicomWindow = options.dicomWindow ?? 'auto';
  const dir = cacheDir(dataDir, shorter, options.root, dicomWindow);
  const memoryBudget = options.memoryBytes ?? 256 * 1024 * 1024;
  const useDisk = options.disk ?? true;
  const memory = new Map<string, RgbImage>(); // insertion order = recency (re-inserted on hit)
  const pending = new Map<string, Promise<RgbImage>>();
  let memoryUsed = 0;
  const counters = { memory: 0, disk: 0, decoded: 0 };
  let dirReady: Promise<unknown> | undefined;

  const remember = (path: string, image: RgbImage) => {
    if (memoryBudget <= 0 || image.data.byteLength > memoryBudget) return;
    memory.set(path, image);
    memoryUsed += image.data.byteLength;
    for (const [key, old] of memory) {
      if (memoryUsed <= memoryBudget) break;
      memory.delete(key);
      memoryUsed -= old.data.byteLength;
    }
  };

  const load = async (path: string): Promise<RgbImage> => {
    const source = join(dataDir, path);
    let info;
    try {
      info = await stat(source);
    } catch {
      throw new DataError(source, 'listed in the split manifest but missing: re-run `osteo data index` and `osteo data split`');
    }
    const expected = options.verify?.hashes.get(path);
    const file = join(dir, `${createHash('sha1').update(expected === undefined ? path : `${path}\n${expected}`).digest('hex')}.rgb`);
    if (useDisk) {
      const cached = await readFile(file).then(
        (buffer) => decode(buffer, info.size, info.mtimeMs),
        () => undefined,
      );
      if (cached !== undefined) {
        counters.disk++;
        return cached;
      }
    }
    const decoded = await decodeRgb(source, { dicomWindow });
    if (options.verify !== undefined) await verifyContentHash(source, new Map([[dicomWindowText(dicomWindow ?? 'auto'), decoded]]), expected, options.verify.manifest);
    const image = await resizeShorter(decoded, shorter);
    counters.decoded++;
    if (useDisk) {
      dirReady ??= mkdir(dir, { recursive: true });
      await dirReady;
      await writeFileAtomic(file, encode(image, info.size, info.mtimeMs));
    }
    return image;
  };

  return {
    dir,
    shorter,
    async get(path) {
      const hit = memory.get(path);
      if (hit !== undefined) {
        memory.delete(path);
        memory.set(path, hit);
        counters.memory++;
        return hit;
      }
      // Two requests for one path in the same moment share one decode.
      let promise = pending.get(path);
      if (promise === undefined) {
        promise = load(path).finally(() => pending.delete(path));
        pending.set(path, promise);
      }
      const image = await promise;
      if (!memory.has(path)) remember(path, image);
      return image;
    },
    stats: () => ({ ...counters }),
  };
}
