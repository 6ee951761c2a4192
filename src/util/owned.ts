/**
 * What osteo wrote in a folder it may share with its user (an export folder, reproduce's OUT): a
 * record of every file's path and SHA-256, kept beside them. A file osteo replaces or removes must be
 * in the record with its current hash; anything else there is the user's, and is refused by name
 * (ARCHITECTURE.md, *Staged writes*: no command deletes what it did not create).
 *
 * A write records its new hash as `pending` before the file is switched in and moves it to `files`
 * after, so a kill between the two leaves a file the record still recognises.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { lstat, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DataError, errorMessage } from './errors.js';
import { writeJsonAtomic } from './fs.js';
import { printable } from './text.js';

export interface OwnedRecord {
  format: string;
  version: 1;
  /** Path (relative to the record's folder, `/`-separated) → SHA-256 of the file osteo wrote there. */
  files: Record<string, string>;
  /** Hashes of writes in progress: recognised as osteo's as well. */
  pending?: Record<string, string>;
  /** Folders osteo made and owns whole (their contents are managed by the code that made them). */
  folders?: string[];
}

export function sha256Of(content: string | Uint8Array): string {
  return createHash('sha256').update(content).digest('hex');
}

/** SHA-256 of a file, streamed (weights files are hundreds of MB). */
export function sha256File(file: string): Promise<string> {
  return new Promise((done, fail) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', fail)
      .on('end', () => done(hash.digest('hex')));
  });
}

export const emptyOwnedRecord = (format: string): OwnedRecord => ({ format, version: 1, files: {} });

/** The record in `file` (an empty one when there is none); a file that is not such a record is a DataError. */
export async function readOwnedRecord(file: string, format: string): Promise<OwnedRecord> {
  if (!existsSync(file)) return emptyOwnedRecord(format);
  let record: Partial<OwnedRecord>;
  try {
    record = JSON.parse(await readFile(file, 'utf8')) as Partial<OwnedRecord>;
  } catch (error) {
    throw new DataError(file, `is not readable JSON (${errorMessage(error)}): it is osteo's record of the files it wrote beside it; without it nothing there can be replaced — move the folder aside or choose another one`);
  }
  const valid =
    record?.format === format &&
    record.version === 1 &&
    typeof record.files === 'object' &&
    record.files !== null &&
    Object.values(record.files).every((hash) => typeof hash === 'string') &&
    (record.folders === undefined || (Array.isArray(record.folders) && record.folders.every((f) => typeof f === 'string')));
  if (!valid) throw new DataError(file, `is not an osteo record of written files (${format}, version 1): move the folder aside or choose another one`);
  return { format, version: 1, files: { ...record.files }, ...(record.pending ? { pending: { ...record.pending } } : {}), ...(record.folders ? { folders: [...record.folders] } : {}) };
}

export function writeOwnedRecord(file: string, record: OwnedRecord): Promise<void> {
  return writeJsonAtomic(file, record);
}

/** Whether `hash` is what the record says osteo wrote (or is writing) at `path`. */
export function isRecorded(record: OwnedRecord, path: string, hash: string): boolean {
  return record.files[path] === hash || record.pending?.[path] === hash;
}

/** Every non-folder entry under `dir` (files, links, anything else), as `/`-separated paths relative to `dir`; links are not followed. */
export async function listTree(dir: string, prefix = ''): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) found.push(...(await listTree(dir, path)));
    else found.push(path);
  }
  return found.sort();
}

/**
 * Of `paths` (relative to `root`; a folder stands for every file under it), the ones that exist and
 * that the record does not name with their current content: a link or anything not a regular file
 * is never osteo's.
 */
export async function unrecordedFiles(root: string, record: OwnedRecord, paths: readonly string[]): Promise<string[]> {
  const foreign: string[] = [];
  for (const path of paths) {
    const full = join(root, path);
    const info = await lstat(full).catch(() => undefined);
    if (info === undefined) continue;
    if (info.isDirectory()) {
      foreign.push(...(await unrecordedFiles(root, record, (await listTree(full)).map((inner) => `${path}/${inner}`))));
    } else if (!info.isFile() || !isRecorded(record, path, await sha256File(full))) {
      foreign.push(path);
    }
  }
  return foreign;
}

/** "a, b, c" of the first few (each made printable: file names are anyone's), with "… (N in all)" when there are more. */
export function listSome(items: readonly string[], shown = 5): string {
  const names = items.map(printable);
  return names.length <= shown ? names.join(', ') : `${names.slice(0, shown).join(', ')}, … (${names.length} in all)`;
}
