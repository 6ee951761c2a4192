/**
 * `osteo data download`: the Kaggle *Multi-Class Knee Osteoporosis X-Ray Dataset* through Kaggle's
 * public API, laid out as DEST/{Normal,Osteopenia,Osteoporosis}/.
 *
 * Everything happens in a staging directory beside DEST (download, zip check, extraction, layout) and
 * only a complete dataset is renamed into place, so an interrupted or failed download never looks
 * like a finished one.
 *
 * DEST/download.json records that osteo downloaded the dataset there. `--force` replaces only what
 * osteo owns in such a folder (the class folders, download.json, and the index, split and cache made
 * from them); other files are kept, and a folder osteo did not download into is never written over.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { DataError, UserError, HttpStatusError, checkWritableFolder, downloadFile, environmentUserError, parseHttpUrl, replaceEntries, type DownloadOptions, silentProgress, type ProgressSink, type StatFs, writeJsonAtomic } from '../util/index.js';
import { classNames } from './classes.js';
import { extractZip, inspectZip } from './zip.js';

export const kaggleDataset = { owner: 'mohamedgobara', slug: 'multi-class-knee-osteoporosis-x-ray-dataset' } as const;
export const defaultKaggleApi = 'https://www.kaggle.com/api/v1';
/** Files per class in the published dataset (Normal, Osteopenia, Osteoporosis). */
export const publishedCounts: readonly number[] = [780, 374, 793];
/** The record osteo leaves in DEST: what was downloaded, from where, when. */
export const downloadRecordName = 'download.json';
/** What `osteo data download` writes at the top of DEST, and what is derived from it there (index, split, cache). */
const ownedEntries = [...classNames, downloadRecordName, 'index.csv', 'splits.csv', '.cache'];

export interface KaggleCredentials {
  username: string;
  key: string;
  /** Where they came from, for messages (never the key itself). */
  source: string;
}

/**
 * Credentials as the kaggle CLI finds them: KAGGLE_USERNAME + KAGGLE_KEY, else kaggle.json in
 * KAGGLE_CONFIG_DIR or ~/.kaggle. `homeDir` is injectable so tests never read the real home.
 */
export async function resolveKaggleCredentials(env: NodeJS.ProcessEnv = process.env, homeDir: string = homedir()): Promise<KaggleCredentials> {
  if (env.KAGGLE_USERNAME && env.KAGGLE_KEY) return { username: env.KAGGLE_USERNAME, key: env.KAGGLE_KEY, source: 'KAGGLE_USERNAME/KAGGLE_KEY' };
  const file = join(env.KAGGLE_CONFIG_DIR || join(homeDir, '.kaggle'), 'kaggle.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw environmentUserError(error, file) ?? error;
    throw new UserError(
      `no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or put {"username": …, "key": …} in ${file} ` +
        `(create an API token at https://www.kaggle.com/settings), or use the phantom dataset: osteo data synth`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new DataError(file, `not valid JSON (${(error as Error).message})`);
  }
  const { username, key } = (parsed ?? {}) as { username?: unknown; key?: unknown };
  if (typeof username !== 'string' || typeof key !== 'string' || username === '' || key === '') {
    throw new DataError(file, 'must contain {"username": "...", "key": "..."}');
  }
  return { username, key, source: file };
}

export interface DownloadDatasetOptions {
  dest: string;
  apiUrl?: string;
  /** Replace a dataset already at `dest`. */
  force?: boolean;
  env?: NodeJS.ProcessEnv;
  homeDir?: string;
  progress?: ProgressSink;
  /** Retry and backoff settings for the HTTP layer (tests shorten the waits). */
  http?: Pick<DownloadOptions, 'retries' | 'backoffMs' | 'maxBackoffMs' | 'timeoutMs' | 'onRetry' | 'sleep'>;
  log?: (line: string) => void;
  /** Free space of a folder's disk (tests pretend a full one). */
  statfs?: StatFs;
}

export interface DownloadDatasetResult {
  dest: string;
  /** True when `dest` already held the dataset and nothing was downloaded. */
  skipped: boolean;
  /** Files per class, in class order. */
  counts: number[];
  published: readonly number[];
  bytes: number;
  attempts: number;
}

/** Files under each class folder of `dir` (recursively, hidden files excluded). */
export async function countClassFiles(dir: string): Promise<number[]> {
  return Promise.all(classNames.map(async (name) => (await listFiles(join(dir, name))).length));
}

async function listFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const files: string[] = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await listFiles(path)));
    else if (entry.isFile()) files.push(path);
  }
  return files;
}

/** Every directory under `root` whose name is a class name (any case), skipping macOS resource forks. */
async function findClassDirectories(root: string): Promise<Map<number, string[]>> {
  const found = new Map<number, string[]>();
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const entry of entries) {
      if (!entry.isDirectory() || entry.name.startsWith('.') || entry.name === '__MACOSX') continue;
      const path = join(dir, entry.name);
      const label = classNames.findIndex((name) => name.toLowerCase() === entry.name.toLowerCase());
      if (label >= 0) found.set(label, [...(found.get(label) ?? []), path]);
      else await walk(path);
    }
  };
  await walk(root);
  return found;
}

/**
 * Move the class folders found anywhere in `extracted` (Kaggle's is `OS Collected Data/<Class>`) to
 * `target/<Class>/`. If a class appears in several folders their files are merged; a name clash gets
 * the source folder's path as a prefix so nothing is overwritten.
 */
async function normaliseLayout(extracted: string, target: string, archive: string): Promise<void> {
  const found = await findClassDirectories(extracted);
  const missing = classNames.filter((_, label) => !found.has(label));
  if (missing.length > 0) {
    const top = (await readdir(extracted)).join(', ') || '(empty)';
    throw new DataError(archive, `no folder for class ${missing.join(', ')} in the archive (top level: ${top})`);
  }
  for (const [label, dirs] of found) {
    const classDir = join(target, classNames[label]!);
    await mkdir(classDir, { recursive: true });
    const used = new Set<string>();
    for (const dir of dirs) {
      for (const file of await listFiles(dir)) {
        let name = basename(file);
        if (used.has(name.toLowerCase())) name = `${relative(extracted, dirname(file)).replace(/[\\/ ]+/g, '_')}_${name}`;
        used.add(name.toLowerCase());
        await rename(file, join(classDir, name));
      }
    }
  }
}

async function hasAnyClassFiles(dir: string): Promise<boolean> {
  return (await countClassFiles(dir)).some((n) => n > 0);
}

function describeStatus(error: HttpStatusError, url: string, credentials: KaggleCredentials): UserError {
  if (error.status === 401 || error.status === 403) {
    return new UserError(
      `Kaggle refused the credentials from ${credentials.source} (HTTP ${error.status}): check the username and API key, ` +
        `and accept the dataset's terms on its Kaggle page if asked`,
    );
  }
  if (error.status === 404) return new UserError(`Kaggle has no dataset at ${url} (HTTP 404): check --api-url and the dataset name`);
  return error;
}

/**
 * Whether osteo may write the dataset into `dest`: absent, empty, or a dataset osteo downloaded there
 * (and then only with --force). Returns true when an existing dataset should be kept as it is.
 */
async function checkDestination(dest: string, force: boolean, log: (line: string) => void): Promise<boolean> {
  if (!existsSync(dest)) return false;
  if (!(await stat(dest)).isDirectory()) throw new UserError(`--dest ${dest} is a file: give a folder for the dataset (a new or empty one)`);
  const entries = await readdir(dest);
  if (entries.length === 0) return false;
  const downloaded = existsSync(join(dest, downloadRecordName));
  if (!force && (await hasAnyClassFiles(dest))) {
    const how = downloaded ? 'pass --force to download it again (only the files osteo wrote are replaced)' : 'to download it again, choose another --dest';
    log(`${dest} already holds a dataset; not downloading (${how})`);
    return true;
  }
  if (!downloaded) {
    const what = existsSync(join(dest, 'phantom.json')) ? 'holds a phantom made by `osteo data synth`' : `holds files osteo did not download (no ${downloadRecordName})`;
    throw new UserError(`${dest} ${what}: osteo will not write over it; choose another --dest (a new or empty folder)`);
  }
  return false;
}

export async function downloadKaggleDataset(options: DownloadDatasetOptions): Promise<DownloadDatasetResult> {
  const dest = resolve(options.dest);
  const log = options.log ?? (() => {});
  const api = (options.apiUrl ?? defaultKaggleApi).replace(/\/+$/, '');
  parseHttpUrl(api, '--api-url');
  if (await checkDestination(dest, options.force ?? false, log)) {
    return { dest, skipped: true, counts: await countClassFiles(dest), published: publishedCounts, bytes: 0, attempts: 0 };
  }
  const credentials = await resolveKaggleCredentials(options.env, options.homeDir);
  const url = `${api}/datasets/download/${kaggleDataset.owner}/${kaggleDataset.slug}`;
  try {
    // Downloaded, checked, extracted and laid out beside DEST; only the entries osteo owns are switched in.
    return await replaceEntries(dest, ownedEntries, async (staging) => {
      const archive = join(staging, '.download.zip');
      log(`downloading ${kaggleDataset.owner}/${kaggleDataset.slug} from ${api} (credentials: ${credentials.source})`);
      let download;
      try {
        download = await downloadFile(url, archive, {
          ...options.http,
          headers: { authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.key}`).toString('base64')}` },
          progress: options.progress ?? silentProgress,
        });
      } catch (error) {
        if (error instanceof HttpStatusError) throw describeStatus(error, url, credentials);
        throw error;
      }
      log(`extracting ${(await stat(archive)).size} bytes`);
      try {
        // Extraction needs the archive's full uncompressed size on the same disk: say so now, not when it fills up.
        await checkWritableFolder(dirname(dest), (await inspectZip(archive)).bytes, options.statfs);
        await extractZip(archive, join(staging, '.extracted'));
        await normaliseLayout(join(staging, '.extracted'), staging, archive);
      } catch (error) {
        // The archive is deleted with the staging folder: name where it came from instead.
        if (error instanceof DataError && error.file === archive) throw new DataError(`the archive downloaded from ${redactedUrl(url)}`, error.reason);
        throw error;
      }
      const counts = await countClassFiles(staging);
      const record = { dataset: `${kaggleDataset.owner}/${kaggleDataset.slug}`, url: redactedUrl(url), downloaded: new Date().toISOString(), bytes: download.bytes, counts };
      await writeJsonAtomic(join(staging, downloadRecordName), record);
      return { dest, skipped: false, counts, published: publishedCounts, bytes: download.bytes, attempts: download.attempts };
    });
  } catch (error) {
    // A full disk or a read-only folder met in the staging folder is reported against DEST, which
    // the user chose and which still exists once the staging folder is gone.
    throw environmentUserError(error, dest) ?? error;
  }
}

function redactedUrl(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}

/** "Normal 780 (published 780) …" for the CLI. */
export function formatCounts(counts: readonly number[], published: readonly number[] = publishedCounts): string {
  return classNames
    .map((name, label) => {
      const count = counts[label] ?? 0;
      const expected = published[label]!;
      const note = count === expected ? 'as published' : `published ${expected}, ${count > expected ? '+' : ''}${count - expected}`;
      return `${name.padEnd(13)} ${String(count).padStart(5)}  (${note})`;
    })
    .join('\n');
}
