/**
 * What ties a run to the split it was trained on: RUN/split.json records the dataset's absolute path
 * (and as seen from the run folder), the SHA-256 of its splits.csv and the content hashes of its
 * training images when training starts. A resumed run continues on that dataset
 * whatever the working directory, and evaluation can tell when the manifest was re-split since (its
 * test images may then be ones the model trained on).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { readConfigFile } from '../config/index.js';
import { splitManifestPath, trainContentHashes } from '../data/index.js';
import { DataError, writeJsonAtomic } from '../util/index.js';

export interface RunSplitRecord {
  format: 'osteo-run-split';
  version: 1;
  /** The dataset folder, absolute. */
  data: string;
  /** The same folder seen from the run folder: found again when both moved together (a CV folder moved or copied). */
  dataFromRun?: string;
  /** SHA-256 (hex) of DATA/splits.csv as it was when the run started. */
  manifestSha256: string;
  /**
   * The content hashes of the images it trains on (the manifest's train rows), distinct and sorted:
   * evaluation counts the evaluated images that are training images, whatever folder or split they
   * are in now. Absent when the manifest had no contentHash column.
   */
  trainContentHashes?: string[];
}

export function runSplitPath(run: string): string {
  return join(run, 'split.json');
}

/** SHA-256 of a dataset's splits.csv (the manifest must exist: readSplitManifest says how to make it). */
export async function manifestSha256(dataDir: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(splitManifestPath(dataDir)))
    .digest('hex');
}

/** Record the dataset (absolute), its manifest's hash and its training images' content hashes in RUN/split.json. */
export async function writeRunSplit(run: string, dataDir: string): Promise<RunSplitRecord> {
  const trained = await trainContentHashes(dataDir);
  const record: RunSplitRecord = {
    format: 'osteo-run-split',
    version: 1,
    data: resolve(dataDir),
    dataFromRun: relative(resolve(run), resolve(dataDir)),
    manifestSha256: await manifestSha256(dataDir),
    ...(trained === undefined ? {} : { trainContentHashes: trained }),
  };
  await writeJsonAtomic(runSplitPath(run), record);
  return record;
}

/**
 * The content hashes of a run's training images: those its record keeps, else those of the very
 * manifest it trained on (the recorded hash), found where the record says or in `elsewhere` (a copy
 * of the dataset); undefined when neither is known (the manifest had no contentHash column, or it
 * was re-split or removed since).
 */
export async function runTrainingHashes(record: RunSplitRecord, elsewhere?: string): Promise<Set<string> | undefined> {
  if (record.trainContentHashes !== undefined) return new Set(record.trainContentHashes);
  for (const dataDir of [record.data, ...(elsewhere === undefined ? [] : [elsewhere])]) {
    if (!existsSync(splitManifestPath(dataDir)) || (await manifestSha256(dataDir)) !== record.manifestSha256) continue;
    const trained = await trainContentHashes(dataDir);
    return trained === undefined ? undefined : new Set(trained);
  }
  return undefined;
}

/** RUN/split.json, or undefined for a run written before osteo recorded it. */
export async function readRunSplit(run: string): Promise<RunSplitRecord | undefined> {
  const file = runSplitPath(run);
  if (!existsSync(file)) return undefined;
  const json = (await readConfigFile(file, 'run split record')) as Partial<RunSplitRecord> | null;
  const hashes = json?.trainContentHashes;
  const validHashes = hashes === undefined || (Array.isArray(hashes) && hashes.every((hash) => typeof hash === 'string' && /^[0-9a-f]{64}$/.test(hash)));
  if (json?.format !== 'osteo-run-split' || json.version !== 1 || typeof json.data !== 'string' || typeof json.manifestSha256 !== 'string' || !validHashes) {
    throw new DataError(file, 'is not an osteo run split record (version 1)');
  }
  const record = json as RunSplitRecord;
  // Moved with its dataset: the folder beside the run, when it holds the very manifest, is the run's data now.
  if (typeof record.dataFromRun === 'string') {
    const beside = resolve(run, record.dataFromRun);
    if (beside !== record.data && existsSync(splitManifestPath(beside)) && (await manifestSha256(beside)) === record.manifestSha256) return { ...record, data: beside };
  }
  return record;
}
