/**
 * The flow of images from the class folders to the split (CONSORT-style): the files found, the
 * unreadable ones, the redundant identical copies and the label conflicts left out, what entered the
 * split, and the split's train/val/test counts, per class. Counted from the index (index.csv) and the
 * split manifest (splits.csv) as they are, so a model card's numbers are those files' numbers.
 */
import { classNames } from './classes.js';
import { countLeakedTestImages } from './folds.js';
import type { IndexRow } from './indexer.js';
import { splits, type ManifestRow, type Split } from './split.js';

export interface DataFlow {
  classes: string[];
  /** Files in each class folder. */
  found: number[];
  /** Files no image reader could decode (index status bad). */
  unreadable: number[];
  /** Readable files, before de-duplication. */
  readable: number[];
  /** Redundant identical copies left out (one file per decoded image and label is kept). */
  duplicates: number[];
  /** Files left out by the index's label-conflict policy. */
  conflicts: number[];
  /** Files that enter the split (after de-duplication and conflicts). */
  used: number[];
  /** Groups of identical decoded pixels with two or more files. */
  duplicateGroups: number;
  /** Duplicate groups (identical or near-identical images, the split's unit) holding more than one distinct image. */
  nearDuplicateGroups: number;
  /** Duplicate groups whose readable files carry more than one label. */
  conflictGroups: number;
  /** The split manifest's images per split and class. */
  split: Record<Split, number[]>;
  /** Test images of the manifest with an identical copy (same decoded pixels) among its train images. */
  leakedTestImages: number;
}

const perClass = (rows: readonly { label: number }[]) => classNames.map((_, label) => rows.filter((row) => row.label === label).length);

/** How many groups of rows (by `key`) hold more than one distinct `value`. */
function groupsWithSeveral<T>(rows: readonly IndexRow[], key: (row: IndexRow) => string, value: (row: IndexRow) => T): number {
  const seen = new Map<string, Set<T>>();
  for (const row of rows) seen.set(key(row), (seen.get(key(row)) ?? new Set()).add(value(row)));
  return [...seen.values()].filter((values) => values.size > 1).length;
}

export function dataFlow(indexRows: readonly IndexRow[], manifest: readonly ManifestRow[]): DataFlow {
  const readable = indexRows.filter((row) => row.status === 'ok');
  const left = readable.filter((row) => !row.use);
  // The index notes why a readable file stays out: a conflict's note says so; any other is a redundant copy.
  const conflicted = left.filter((row) => row.note.includes('label conflict'));
  const copies = new Map<string, number>();
  for (const row of readable) copies.set(row.contentHash, (copies.get(row.contentHash) ?? 0) + 1);
  return {
    classes: [...classNames],
    found: perClass(indexRows),
    unreadable: perClass(indexRows.filter((row) => row.status === 'bad')),
    readable: perClass(readable),
    duplicates: perClass(left.filter((row) => !conflicted.includes(row))),
    conflicts: perClass(conflicted),
    used: perClass(readable.filter((row) => row.use)),
    duplicateGroups: [...copies.values()].filter((n) => n > 1).length,
    nearDuplicateGroups: groupsWithSeveral(readable, (row) => row.group, (row) => row.contentHash),
    conflictGroups: groupsWithSeveral(readable, (row) => row.group, (row) => row.label),
    split: Object.fromEntries(splits.map((split) => [split, perClass(manifest.filter((row) => row.split === split))])) as Record<Split, number[]>,
    leakedTestImages: countLeakedTestImages(indexRows, manifest, [manifest]),
  };
}
