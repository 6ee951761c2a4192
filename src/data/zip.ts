/**
 * Safe zip extraction with yauzl.
 *
 * Every entry name is checked before a single byte is written: an archive with an entry that would
 * resolve outside the destination (`../x`, `/etc/x`, `C:\x`, a symlink entry) is refused as a whole
 * (zip-slip). Sizes are validated by yauzl and each file's CRC-32 is checked while it streams, so a
 * damaged archive fails loudly instead of leaving a silently corrupt image behind.
 */
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import yauzl from 'yauzl';
import { DataError, errorMessage } from '../util/index.js';

const unsafeNameMessages = /^(invalid relative path|absolute path|invalid characters in fileName)/;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

async function openZip(zipPath: string): Promise<yauzl.ZipFile> {
  try {
    // strictFileNames: false turns Windows backslashes into slashes before yauzl's own path checks.
    return await yauzl.openPromise(zipPath, { lazyEntries: true, decodeStrings: true, validateEntrySizes: true, strictFileNames: false });
  } catch (error) {
    throw new DataError(zipPath, `not a readable zip archive (${errorMessage(error)}); the download may be incomplete`);
  }
}

function refuseUnsafe(zipPath: string, detail: string): never {
  throw new DataError(zipPath, `refusing to extract: entry ${detail} would land outside the destination (zip-slip)`);
}

function isSymlink(entry: yauzl.Entry): boolean {
  return ((entry.externalFileAttributes >>> 16) & S_IFMT) === S_IFLNK;
}

/** The destination path of an entry, or a DataError if it escapes `root`. */
function entryTarget(zipPath: string, root: string, entry: yauzl.Entry): string {
  const name = entry.fileName;
  if (isAbsolute(name) || /^[a-zA-Z]:/.test(name)) refuseUnsafe(zipPath, `'${name}'`);
  const target = resolve(root, name);
  const rel = relative(root, target);
  if (rel === '' ? !name.endsWith('/') : rel.startsWith('..') || isAbsolute(rel)) refuseUnsafe(zipPath, `'${name}'`);
  if (isSymlink(entry)) refuseUnsafe(zipPath, `'${name}' (a symbolic link)`);
  return target;
}

async function forEachEntry(zipPath: string, zip: yauzl.ZipFile, visit: (entry: yauzl.Entry) => Promise<void>): Promise<void> {
  try {
    for await (const entry of zip.eachEntry()) await visit(entry);
  } catch (error) {
    if (error instanceof DataError) throw error;
    const message = errorMessage(error);
    if (unsafeNameMessages.test(message)) refuseUnsafe(zipPath, `(${message})`);
    throw new DataError(zipPath, `damaged zip archive: ${message}`);
  } finally {
    zip.close();
  }
}

export interface ZipListing {
  files: number;
  bytes: number;
}

/** Read the whole central directory and check every entry name; nothing is extracted. */
export async function inspectZip(zipPath: string, root = '/__osteo_zip_root__'): Promise<ZipListing> {
  let files = 0;
  let bytes = 0;
  await forEachEntry(zipPath, await openZip(zipPath), async (entry) => {
    entryTarget(zipPath, root, entry);
    if (!entry.fileName.endsWith('/')) {
      files++;
      bytes += entry.uncompressedSize;
    }
  });
  return { files, bytes };
}

/**
 * Extract `zipPath` into `destDir` (which should be a fresh temporary directory: the caller renames it
 * into place once everything succeeded). The archive is inspected first, so an unsafe entry anywhere
 * in it means nothing is written.
 */
export async function extractZip(zipPath: string, destDir: string, onBytes?: (bytes: number) => void): Promise<ZipListing> {
  const root = resolve(destDir);
  const listing = await inspectZip(zipPath, root);
  await mkdir(root, { recursive: true });
  let written = 0;
  const zip = await openZip(zipPath);
  await forEachEntry(zipPath, zip, async (entry) => {
    const target = entryTarget(zipPath, root, entry);
    if (entry.fileName.endsWith('/')) {
      await mkdir(target, { recursive: true });
      return;
    }
    await mkdir(dirname(target), { recursive: true });
    let crc = 0;
    const check = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        crc = zlib.crc32(chunk, crc);
        written += chunk.length;
        onBytes?.(written);
        callback(null, chunk);
      },
    });
    await pipeline(await zip.openReadStreamPromise(entry), check, createWriteStream(target, { flags: 'wx' }));
    if (crc >>> 0 !== entry.crc32 >>> 0) throw new DataError(zipPath, `entry '${entry.fileName}' fails its CRC-32 check (damaged archive)`);
  });
  return listing;
}

