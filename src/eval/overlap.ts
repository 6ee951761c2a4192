/**
 * Which evaluated images a run trained on, counted exactly: the content hash of each evaluated row
 * (splits.csv's contentHash column, which evaluation checks against the pixels it reads) against the
 * run's training set (RUN/split.json, runs/split-record.ts). A count above 0 is refused unless the
 * user asks for it (--allow-train-overlap: the published protocol, an external set known to share
 * images); either way the count goes into the report.
 */
import { resolve } from 'node:path';
import { splitManifestPath, type ManifestHash, type ManifestRow } from '../data/index.js';
import type { TrainOverlap } from '../report/index.js';
import { manifestSha256, readRunSplit, runTrainingHashes } from '../runs/index.js';
import { UserError } from '../util/index.js';

export interface OverlapOptions {
  /** Evaluate although some evaluated images are training images (the count is reported). */
  allowTrainOverlap: boolean;
  warn: (message: string) => void;
}

const allowHint = 'or pass --allow-train-overlap to evaluate anyway (the count is then reported with the metrics)';

/** One run's training images among `rows` (hashes: each row's content hash), or null and why not. */
async function runOverlap(run: string, dataDir: string, rows: readonly Pick<ManifestRow, 'path'>[], hashes: ReadonlyMap<string, ManifestHash>, options: OverlapOptions): Promise<TrainOverlap['runs'][number] & { trained?: Set<string> }> {
  const record = await readRunSplit(run);
  const manifest = splitManifestPath(dataDir);
  if (record === undefined) {
    options.warn(`run ${run} has no split record (split.json; runs trained before osteo wrote one): osteo cannot check that ${manifest} is the split it was trained on`);
    return { run, images: null, unknown: 'no split.json' };
  }
  const trained = await runTrainingHashes(record, dataDir);
  if (trained === undefined) {
    const current = await manifestSha256(dataDir);
    if (record.manifestSha256 === current) return { run, images: null, unknown: `${manifest} has no contentHash column` };
    const what = `run ${run} was trained with a splits.csv of SHA-256 ${record.manifestSha256}`;
    if (record.data === resolve(dataDir) && !options.allowTrainOverlap) {
      throw new UserError(
        `${what}, but ${manifest} now has SHA-256 ${current}: the data was re-split since, and the run's record does not say which images it trained on, so the evaluated images may be ones the model trained on. ` +
          `Evaluate on the split the run was trained with (restore that splits.csv), retrain the run on the current split, ${allowHint}`,
      );
    }
    if (record.data === resolve(dataDir)) {
      options.warn(`${what}, but ${manifest} now has SHA-256 ${current} (re-split since), and its record does not say which images it trained on: evaluated as asked (--allow-train-overlap); some evaluated images may be ones the model trained on`);
    } else {
      options.warn(`${what} in ${record.data}, not ${manifest} (SHA-256 ${current}), and its record does not say which images it trained on: if these share images, some evaluated images may be ones the model trained on`);
    }
    return { run, images: null, unknown: 'its training images are not recorded' };
  }
  if (rows.some((row) => !hashes.has(row.path))) return { run, images: null, unknown: `${manifest} has no content hash for some evaluated images` };
  return { run, images: rows.filter((row) => trained.has(hashes.get(row.path)!.hash)).length, trained };
}

/**
 * The evaluated images that are training images of the runs, per run and in all; refused when there
 * are any, unless allowed. Warns where a run's training set cannot be known.
 */
export async function checkTrainOverlap(runs: readonly string[], dataDir: string, split: string, rows: readonly Pick<ManifestRow, 'path'>[], hashes: ReadonlyMap<string, ManifestHash>, options: OverlapOptions): Promise<TrainOverlap> {
  const perRun: TrainOverlap['runs'] = [];
  const trainedSets: (Set<string> | undefined)[] = [];
  for (const run of runs) {
    const { trained, ...counted } = await runOverlap(run, dataDir, rows, hashes, options);
    perRun.push(counted);
    trainedSets.push(trained);
  }
  const known = perRun.every((r) => r.images !== null);
  const images = known ? rows.filter((row) => trainedSets.some((trained) => trained!.has(hashes.get(row.path)!.hash))).length : null;
  const overlap: TrainOverlap = { images, of: rows.length, runs: perRun, allowed: options.allowTrainOverlap };
  if (images !== null && images > 0) {
    const which = perRun.filter((r) => r.images! > 0).map((r) => `${r.images} of run ${r.run}`).join(', ');
    const message = `${images} of the ${rows.length} ${split} images of ${dataDir} are training images of the runs (${which}; the same decoded pixels, by the content hashes of ${splitManifestPath(dataDir)} and each run's split.json)`;
    if (!options.allowTrainOverlap) throw new UserError(`${message}: their metrics would overstate the models' accuracy. Evaluate on images the runs did not train on (the split each run was trained with), ${allowHint}`);
    options.warn(`${message}: evaluated as asked (--allow-train-overlap); the metrics overstate the models' accuracy`);
  }
  return overlap;
}
