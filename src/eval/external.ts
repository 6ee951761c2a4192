/**
 * `osteo eval --external`: a labelled folder that was never split, every image of it evaluated, and
 * each image matched against the train and val images of every run's training data first — on the
 * decoded-pixel hash and on the perceptual near-duplicate distance — so a folder that is mostly
 * training images cannot pass for an external test set. The training data is found through each
 * run's split record; where it cannot be reached (no record, a moved folder, a re-split manifest)
 * the evaluation is refused rather than reported without the check.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { defaultNearThreshold, findCopies, scanLabelledFolder, splitManifestPath, trainingReference, type CopyMatch, type LabelledFolder, type ReferenceImage } from '../data/index.js';
import { refitOnExternal, summarizeSubset, type ExternalCopy, type ExternalResults, type ModelSummary, type RandomSource } from '../report/index.js';
import { manifestSha256, readRunSplit } from '../runs/index.js';
import { UserError } from '../util/index.js';

export interface ExternalData {
  folder: LabelledFolder;
  /** The images to evaluate, in folder order; group: the content hash, so identical files resample together. */
  rows: { path: string; label: number; group: string }[];
  /** Content hash by path: eval checks that each image still has the pixels matched here. */
  hashes: Map<string, string>;
  nearThreshold: number;
  /** Per run, in --run order: its training data and how many train and val images it has. */
  against: { run: string; data: string; images: number }[];
  /** Per run, per image (rows' order): its copy among that run's train and val images. */
  matches: (CopyMatch | undefined)[][];
}

const noCheck = 'so the leakage check of --external (are these images ones it was trained on?) cannot run';

/** The training data folder of a run, with the very splits.csv it was trained on: refused otherwise. */
async function runTrainingData(run: string, external: string): Promise<string> {
  const record = await readRunSplit(run);
  if (record === undefined) throw new UserError(`run ${run} has no split record (split.json) naming the data it was trained on, ${noCheck}: evaluate a run that osteo train wrote with its split record`);
  if (record.data === external) throw new UserError(`--data ${external} is the dataset run ${run} was trained on, not an external folder: evaluate its test split, without --external`);
  const manifest = splitManifestPath(record.data);
  if (!existsSync(manifest)) throw new UserError(`run ${run} was trained on ${record.data}, and ${manifest} is not there, ${noCheck}: restore that dataset folder (its splits.csv and index.csv) at that path`);
  const sha = await manifestSha256(record.data);
  if (sha !== record.manifestSha256) {
    throw new UserError(`run ${run} was trained with a splits.csv of SHA-256 ${record.manifestSha256}, but ${manifest} now has SHA-256 ${sha} (re-split since), ${noCheck}: restore the splits.csv it was trained with`);
  }
  return record.data;
}

/**
 * Check every run's training data is reachable, then scan the folder (every file must be an image)
 * and match its images against each distinct training set's train and val images.
 */
export async function prepareExternal(runs: readonly string[], dataDir: string, options: { nearThreshold?: number } = {}): Promise<ExternalData> {
  const external = resolve(dataDir);
  const trainingData: string[] = [];
  for (const run of runs) trainingData.push(await runTrainingData(run, external));
  const folder = await scanLabelledFolder(dataDir);
  const nearThreshold = options.nearThreshold ?? defaultNearThreshold;
  const references = new Map<string, ReferenceImage[]>();
  const matchesOf = new Map<string, (CopyMatch | undefined)[]>();
  for (const data of new Set(trainingData)) {
    references.set(data, await trainingReference(data));
    matchesOf.set(data, findCopies(folder.images, references.get(data)!, nearThreshold));
  }
  return {
    folder,
    rows: folder.images.map((image) => ({ path: image.path, label: image.label, group: image.contentHash })),
    hashes: new Map(folder.images.map((image) => [image.path, image.contentHash])),
    nearThreshold,
    against: runs.map((run, i) => ({ run: resolve(run), data: trainingData[i]!, images: references.get(trainingData[i]!)!.length })),
    matches: trainingData.map((data) => matchesOf.get(data)!),
  };
}

/**
 * The external results of the evaluated models (summaries on every image, in rows' order): the
 * copies, the metrics again on the images with no copy, and a temperature re-fitted on the folder.
 */
export function externalResults(
  data: ExternalData,
  summaries: readonly ModelSummary[],
  options: { classNames: readonly string[]; rng: () => RandomSource; resamples: number; ensembleUncalibratedVote: boolean },
): ExternalResults {
  const labels = data.rows.map((row) => row.label);
  const copyKind = data.rows.map((_, i): 'exact' | 'near' | null => {
    const kinds = data.matches.map((perImage) => perImage[i]?.kind);
    return kinds.includes('exact') ? 'exact' : kinds.includes('near') ? 'near' : null;
  });
  const copies: ExternalCopy[] = data.rows.flatMap((row, i) =>
    data.matches.flatMap((perImage, r) => {
      const match = perImage[i];
      if (match === undefined) return [];
      const { run, data: trainingData } = data.against[r]!;
      return [{ path: row.path, label: row.label, run, trainingData, trainingPath: match.path, trainingLabel: match.label, split: match.split, kind: match.kind, distance: match.distance }];
    }),
  );
  const unseen = copyKind.flatMap((kind, i) => (kind === null ? [i] : []));
  return {
    dataDir: data.folder.dataDir,
    present: data.folder.present,
    absent: data.folder.absent,
    ignoredFiles: data.folder.ignoredFiles,
    leakage: { nearThreshold: data.nearThreshold, against: data.against, copyKind, copies },
    withoutCopies: unseen.length === 0 ? [] : summarizeSubset(summaries, labels, unseen, options),
    refitted: refitOnExternal(summaries, labels, options.classNames.length),
    ensembleUncalibratedVote: options.ensembleUncalibratedVote,
  };
}
