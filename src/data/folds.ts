/**
 * Cross-validation folds and the published protocol's random splits, both as split manifests that
 * the trainer and evaluator read unchanged.
 *
 * Folds are dealt over the index's duplicate groups (identical pixels and near duplicates together),
 * so no group straddles two folds, and per class, so every fold holds about 1/K of each class. The
 * published protocol's split is the opposite on purpose: every file on its own, duplicates kept, one
 * unstratified shuffle, as the seed project's notebooks did it.
 */
import { existsSync } from 'node:fs';
import { mkdir, readlink, rm, symlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createRng, shuffleInPlace, UserError } from '../util/index.js';
import { classNames } from './classes.js';
import type { IndexRow } from './indexer.js';
import { assignSplits, shuffledGroupsByClass, splitManifestPath, writeSplitManifest, type ManifestRow, type Split } from './split.js';

export interface FoldRow {
  path: string;
  label: number;
  group: string;
  fold: number;
}

/**
 * Deal each class's duplicate groups to `folds` folds: groups shuffled with a seeded generator, then
 * largest first (so a big group cannot unbalance the last fold), each to the fold holding the fewest
 * images of that class so far (ties: lowest fold). Pure: same rows and seed, same folds.
 */
export function assignFolds(rows: readonly IndexRow[], folds: number, seed: number): FoldRow[] {
  if (!Number.isInteger(folds) || folds < 2) throw new UserError(`cross-validation needs at least 2 folds, got ${folds}`);
  const foldOf = new Map<string, number>();
  for (const [label, classGroups] of shuffledGroupsByClass(rows, seed).entries()) {
    if (classGroups.length > 0 && classGroups.length < folds) {
      throw new UserError(`class ${label} has ${classGroups.length} distinct image groups, fewer than --folds ${folds}: every fold needs each class`);
    }
    // A stable sort keeps the shuffled order among groups of one size.
    classGroups.sort((a, b) => b.size - a.size);
    const filled = new Array<number>(folds).fill(0);
    for (const { group, size } of classGroups) {
      let fold = 0;
      for (let f = 1; f < folds; f++) if (filled[f]! < filled[fold]!) fold = f;
      filled[fold]! += size;
      foldOf.set(group, fold);
    }
  }
  return rows
    .filter((row) => row.use)
    .map((row) => ({ path: row.path, label: row.label, group: row.group, fold: foldOf.get(row.group)! }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * The manifest of one fold: the held-out fold is `test`; the other folds are split again, over
 * groups and stratified, into train and an inner `val` (early stopping and the best checkpoint
 * never see the held-out fold).
 */
export function foldManifest(indexRows: readonly IndexRow[], folds: readonly FoldRow[], fold: number, innerVal: number, seed: number): ManifestRow[] {
  const foldOf = new Map(folds.map((row) => [row.path, row.fold]));
  const rest = indexRows.filter((row) => row.use && foldOf.has(row.path) && foldOf.get(row.path) !== fold);
  const inner = assignSplits(rest, { val: innerVal, test: 0 }, seed);
  const held = folds.filter((row) => row.fold === fold).map((row): ManifestRow => ({ path: row.path, label: row.label, split: 'test', group: row.group }));
  return [...inner, ...held].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * The published protocol's split: every readable file on its own (duplicates and label conflicts
 * kept, as no de-duplication was done), shuffled once with `seed`, cut into train/val/test with
 * floor(n·train) and floor(n·val) images and the rest test — torch's `random_split` lengths
 * (1362/292/293 for ResNet50's 1,947 files). The order is osteo's generator, not torch's or numpy's:
 * the same protocol, not the same images.
 */
export function publishedSplit(indexRows: readonly IndexRow[], fractions: { val: number; test: number }, seed: number): ManifestRow[] {
  const files = indexRows.filter((row) => row.status === 'ok').sort((a, b) => (a.path < b.path ? -1 : 1));
  shuffleInPlace(files, createRng(seed));
  const train = Math.floor(files.length * (1 - fractions.val - fractions.test));
  const val = Math.floor(files.length * fractions.val);
  return files
    .map((row, i): ManifestRow => ({ path: row.path, label: row.label, split: i < train ? 'train' : i < train + val ? 'val' : 'test', group: row.path }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * How many `test` images of `evaluated` have an identical copy (same content hash: the same decoded
 * pixels) among the `train` images of any of `training`: the leak the published protocol has.
 */
export function countLeakedTestImages(indexRows: readonly IndexRow[], evaluated: readonly ManifestRow[], training: readonly (readonly ManifestRow[])[]): number {
  const hashOf = new Map(indexRows.map((row) => [row.path, row.contentHash]));
  const trained = new Set<string>();
  for (const manifest of training) for (const row of manifest) if (row.split === 'train') trained.add(hashOf.get(row.path)!);
  return evaluated.filter((row) => row.split === 'test' && trained.has(hashOf.get(row.path)!)).length;
}

/**
 * A folder that trains and evaluates on `rows` without copying the dataset: its own splits.csv, and
 * links to the dataset's class folders and its resize cache (shared, so each fold or protocol decodes
 * an image once). Trainer and evaluator read it as any dataset folder; a link left by an earlier run
 * that points elsewhere (the dataset moved) is replaced.
 */
export async function writeManifestView(viewDir: string, dataDir: string, rows: readonly ManifestRow[], indexRows: readonly IndexRow[]): Promise<void> {
  const source = resolve(dataDir);
  await mkdir(viewDir, { recursive: true });
  await mkdir(join(source, '.cache'), { recursive: true });
  for (const name of [...classNames, '.cache']) {
    const link = join(viewDir, name);
    const target = join(source, name);
    const current = await readlink(link).catch(() => undefined);
    if (current === target) continue;
    if (current !== undefined || existsSync(link)) await rm(link, { recursive: true, force: true });
    await symlink(target, link, 'dir');
  }
  await writeSplitManifest(splitManifestPath(viewDir), rows, indexRows);
}

export type { Split };
