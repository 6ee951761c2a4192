/**
 * What ties a run to the split it was trained on: RUN/split.json records the dataset's absolute path
 * (and as seen from the run folder) and the SHA-256 of its splits.csv when training starts. A resumed run continues on that dataset
 * whatever the working directory, and evaluation can tell when the manifest was re-split since (its
 * test images may then be ones the model trained on).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { readConfigFile } from '../config/index.js';
import { splitManifestPath } from '../data/index.js';
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

/** Record the dataset (absolute) and its manifest's hash in RUN/split.json. */
export async function writeRunSplit(run: string, dataDir: string): Promise<RunSplitRecord> {
  const record: RunSplitRecord = { format: 'osteo-run-split', version: 1, data: resolve(dataDir), dataFromRun: relative(resolve(run), resolve(dataDir)), manifestSha256: await manifestSha256(dataDir) };
  await writeJsonAtomic(runSplitPath(run), record);
  return record;
}

/** RUN/split.json, or undefined for a run written before osteo recorded it. */
export async function readRunSplit(run: string): Promise<RunSplitRecord | undefined> {
  const file = runSplitPath(run);
  if (!existsSync(file)) return undefined;
  const json = (await readConfigFile(file, 'run split record')) as Partial<RunSplitRecord> | null;
  if (json?.format !== 'osteo-run-split' || json.version !== 1 || typeof json.data !== 'string' || typeof json.manifestSha256 !== 'string') {
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
