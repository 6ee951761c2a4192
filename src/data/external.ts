/**
 * A labelled folder that was never split (an external test set), and what ties its images to a
 * training set: the same per-file inspection as `osteo data index` (readers.ts, the content hash and
 * the perceptual hash), over any subset of the class folders, and the match of each image against
 * the training and validation images of a dataset's manifest.
 */
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DataError, UserError, mapLimit, printable, silentProgress, type ProgressSink } from '../util/index.js';
import { classNames } from './classes.js';
import { hammingDistance, hashWords } from './hash.js';
import { classNameCloseTo, inspectFile, listClassFiles, readIndex, indexPath } from './indexer.js';
import { maxInputPixels } from './readers.js';
import { readSplitManifest, splitManifestPath, type Split } from './split.js';

/** One image of a labelled folder, with the index's fingerprints. */
export interface LabelledImage {
  /** Relative to the folder, with forward slashes: `<class folder>/<file>`. */
  path: string;
  label: number;
  format: string;
  width: number;
  height: number;
  /** Bits per sample of the file. */
  depth: number;
  contentHash: string;
  perceptualHash: string;
}

export interface LabelledFolder {
  dataDir: string;
  images: LabelledImage[];
  /** Class indices with at least one image, in class order. */
  present: number[];
  /** Class indices without a folder or without an image in it. */
  absent: number[];
  /** Top-level files (not folders) that were not scanned: a metadata CSV, a README. */
  ignoredFiles: string[];
}

const expectedFolders = classNames.map((name) => `${name}/`).join(', ');

/**
 * Decode and fingerprint every file of DIR's class folders. Any subset of the classes may be there;
 * a folder that is not a class folder is refused, naming the near misses (`normal` → `Normal`), since
 * its images would otherwise be left out silently. Every file must be an image osteo reads: an
 * evaluation that skipped files would be of another set, so an unreadable file is refused with the others.
 */
export async function scanLabelledFolder(dataDir: string, options: { maxPixels?: number; concurrency?: number; progress?: ProgressSink } = {}): Promise<LabelledFolder> {
  const dir = resolve(dataDir);
  if (!existsSync(dir)) throw new UserError(`--data ${dataDir} does not exist: give a folder of class folders (any of ${expectedFolders})`);
  if (!(await stat(dir)).isDirectory()) throw new UserError(`--data ${dataDir} is a file: give a folder of class folders (any of ${expectedFolders})`);
  const top = (await readdir(dir, { withFileTypes: true })).filter((entry) => !entry.name.startsWith('.'));
  const folders = top.filter((entry) => entry.isDirectory()).map((entry) => entry.name);
  const foreign = folders.filter((name) => !(classNames as readonly string[]).includes(name)).sort();
  if (foreign.length > 0) {
    const described = foreign.map((name) => {
      const close = classNameCloseTo(name);
      return close === undefined ? `'${printable(name)}'` : `'${printable(name)}' (near miss: rename it to '${close}')`;
    });
    throw new UserError(
      `${dataDir} holds folder(s) that are not class folders: ${described.join(', ')}. An external folder holds only class folders spelled exactly ${expectedFolders} (any of them), ` +
        'so that no image is left out unseen: rename or move the others',
    );
  }
  const files: { path: string; label: number }[] = [];
  for (const [label, name] of classNames.entries()) {
    if (folders.includes(name)) for (const path of await listClassFiles(join(dir, name), name)) files.push({ path, label });
  }
  if (files.length === 0) throw new UserError(`${dataDir} has no image in any class folder: expected images under ${expectedFolders} (any of them)`);
  const progress = options.progress ?? silentProgress;
  progress.start(files.length);
  let done = 0;
  const rows = await mapLimit(files, options.concurrency ?? 4, async ({ path, label }) => {
    const row = await inspectFile(dir, path, label, options.maxPixels ?? maxInputPixels);
    progress.update(++done);
    return row;
  });
  progress.stop();
  const bad = rows.filter((row) => row.status === 'bad');
  if (bad.length > 0) {
    const listed = bad.slice(0, 5).map((row) => `${printable(row.path)} (${row.reason}: ${printable(row.note)})`);
    throw new UserError(
      `${bad.length} file(s) in ${dataDir} cannot be read as images: ${listed.join('; ')}${bad.length > 5 ? '; …' : ''}. ` +
        'An external evaluation uses every image of the folder: fix or move these files (`osteo data index` reports the same reasons)',
    );
  }
  const images = rows.map(({ path, label, format, width, height, depth, contentHash, perceptualHash }) => ({ path, label, format, width, height, depth, contentHash, perceptualHash }));
  const present = classNames.map((_, label) => label).filter((label) => images.some((image) => image.label === label));
  return {
    dataDir: dir,
    images,
    present,
    absent: classNames.map((_, label) => label).filter((label) => !present.includes(label)),
    ignoredFiles: top.filter((entry) => !entry.isDirectory()).map((entry) => entry.name).sort(),
  };
}

/** An image a model saw while it was trained or selected: its manifest row and its fingerprints. */
export interface ReferenceImage {
  path: string;
  label: number;
  split: Split;
  contentHash: string;
  perceptualHash: string;
}

/** The splits a model learned from or was selected on (the best checkpoint, a calibration, ensemble weights). */
export const seenSplits: readonly Split[] = ['train', 'val'];

/**
 * The train and val images of a dataset, from its splits.csv and index.csv. An index that lacks a
 * manifest row (re-indexed after files were removed) is refused: a silent gap would hide copies.
 */
export async function trainingReference(dataDir: string): Promise<ReferenceImage[]> {
  const manifest = await readSplitManifest(dataDir);
  const index = new Map((await readIndex(dataDir)).map((row) => [row.path, row]));
  return manifest
    .filter((row) => seenSplits.includes(row.split))
    .map((row) => {
      const indexed = index.get(row.path);
      if (indexed === undefined || indexed.status !== 'ok' || indexed.perceptualHash === '') {
        throw new DataError(indexPath(dataDir), `has no fingerprint of ${printable(row.path)}, which ${splitManifestPath(dataDir)} puts in ${row.split}: restore the index that split was made from, or re-run \`osteo data index --data ${dataDir}\``);
      }
      return { path: row.path, label: row.label, split: row.split, contentHash: indexed.contentHash, perceptualHash: indexed.perceptualHash };
    });
}

/** The training image an external image copies: the same decoded pixels, or a perceptual hash within the threshold. */
export interface CopyMatch {
  kind: 'exact' | 'near';
  path: string;
  label: number;
  split: Split;
  /** Perceptual-hash distance in bits (0 for an exact copy). */
  distance: number;
}

/**
 * For each image, its copy among `reference`, or undefined: an exact copy (same content hash; a
 * train image before a val one) wins over a near one, and of near copies the closest (the first in
 * reference order on a tie). Near means a perceptual distance at or below `nearThreshold`, the
 * index's rule for a near duplicate.
 */
export function findCopies(
  images: readonly Pick<LabelledImage, 'contentHash' | 'perceptualHash'>[],
  reference: readonly ReferenceImage[],
  nearThreshold: number,
): (CopyMatch | undefined)[] {
  const exact = new Map<string, ReferenceImage>();
  for (const row of reference) {
    const seen = exact.get(row.contentHash);
    if (seen === undefined || (seen.split !== 'train' && row.split === 'train')) exact.set(row.contentHash, row);
  }
  const words = reference.map((row) => hashWords(row.perceptualHash));
  const match = (row: ReferenceImage, kind: CopyMatch['kind'], distance: number): CopyMatch => ({ kind, path: row.path, label: row.label, split: row.split, distance });
  return images.map((image) => {
    const same = exact.get(image.contentHash);
    if (same !== undefined) return match(same, 'exact', 0);
    const mine = hashWords(image.perceptualHash);
    let best = -1;
    let bestDistance = Infinity;
    words.forEach((other, i) => {
      const distance = hammingDistance(mine, other);
      if (distance < bestDistance) [best, bestDistance] = [i, distance];
    });
    return best >= 0 && bestDistance <= nearThreshold ? match(reference[best]!, 'near', bestDistance) : undefined;
  });
}
