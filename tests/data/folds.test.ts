import { existsSync, lstatSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UserError } from '../../src/util/index.js';
import { assignFolds, countLeakedTestImages, foldManifest, publishedSplit, writeManifestView } from '../../src/data/folds.js';
import { indexDataset } from '../../src/data/indexer.js';
import type { IndexRow } from '../../src/data/indexer.js';
import { synthesizePhantom } from '../../src/data/phantom.js';
import { tempDir } from '../helpers/temp.js';

/** Rows of a synthetic index: `groups[c]` lists the group sizes of class c; every member is used. */
function rowsOf(groups: number[][]): IndexRow[] {
  const rows: IndexRow[] = [];
  groups.forEach((sizes, label) =>
    sizes.forEach((size, g) => {
      for (let m = 0; m < size; m++) {
        const path = `c${label}/g${g}_m${m}.png`;
        rows.push({ path, label, status: 'ok', reason: '', format: 'png', width: 8, height: 8, channels: 1, depth: 8, bytes: 1, contentHash: `h${label}-${g}-${m}`, perceptualHash: '', dicomWindow: '', group: `c${label}g${g}`, use: true, note: '' });
      }
    }),
  );
  return rows;
}

test('folds: no group straddles two folds; each class is spread evenly; same seed, same folds; another seed, others', () => {
  const rows = rowsOf([
    [3, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 2, 1, 1],
    [2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
  ]);
  const folds = assignFolds(rows, 3, 7);
  assert.is(folds.length, rows.length);
  const foldsOfGroup = new Map<string, Set<number>>();
  for (const r of folds) foldsOfGroup.set(r.group, (foldsOfGroup.get(r.group) ?? new Set()).add(r.fold));
  assert.ok([...foldsOfGroup.values()].every((s) => s.size === 1), 'every group sits in one fold');
  for (let label = 0; label < 3; label++) {
    const perFold = [0, 1, 2].map((f) => folds.filter((r) => r.label === label && r.fold === f).length);
    const total = perFold.reduce((s, n) => s + n, 0);
    // Greedy dealing, largest group first: no fold is more than the largest group away from its share.
    for (const n of perFold) assert.ok(Math.abs(n - total / 3) <= 3, `class ${label}: ${perFold}`);
  }
  assert.equal(assignFolds(rows, 3, 7), folds);
  assert.not.equal(assignFolds(rows, 3, 8).map((r) => r.fold), folds.map((r) => r.fold));
});

test('folds: fewer groups of a class than folds is refused, naming the class', () => {
  try {
    assignFolds(rowsOf([[1, 1], [1, 1, 1], [1, 1, 1]]), 3, 0);
    assert.unreachable();
  } catch (error) {
    assert.instance(error, UserError);
    assert.match((error as Error).message, /class 0 has 2 distinct image groups, fewer than --folds 3/);
  }
});

test('a fold manifest: the held-out fold is test; the rest splits into train and an inner val over groups', () => {
  const rows = rowsOf([Array(12).fill(1), Array(9).fill(1), Array(12).fill(2)]);
  const folds = assignFolds(rows, 3, 1);
  for (let fold = 0; fold < 3; fold++) {
    const manifest = foldManifest(rows, folds, fold, 0.2, 5);
    assert.is(manifest.length, rows.length);
    const held = new Set(folds.filter((r) => r.fold === fold).map((r) => r.path));
    for (const r of manifest) assert.is(r.split === 'test', held.has(r.path), r.path);
    assert.ok(manifest.some((r) => r.split === 'val') && manifest.some((r) => r.split === 'train'));
    const splitsOfGroup = new Map<string, Set<string>>();
    for (const r of manifest) splitsOfGroup.set(r.group, (splitsOfGroup.get(r.group) ?? new Set()).add(r.split));
    assert.ok([...splitsOfGroup.values()].every((s) => s.size === 1), 'no group straddles train/val/test');
  }
});

test("the published protocol's split: every file alone, unstratified, torch random_split lengths; the leak is counted by content", () => {
  // 1,947 files as the seed project's ResNet50 saw: 1362 / 292 / 293.
  const rows = rowsOf([Array(780).fill(1), Array(374).fill(1), Array(793).fill(1)]);
  const split = publishedSplit(rows, { val: 0.15, test: 0.15 }, 123);
  assert.equal(['train', 'val', 'test'].map((s) => split.filter((r) => r.split === s).length), [1362, 292, 293]);
  assert.equal(publishedSplit(rows, { val: 0.15, test: 0.15 }, 123), split);
  // Two copies of one image (same content hash) on both sides of the line are one leaked test image.
  const copies = rowsOf([[2], [1], [1]]).map((r) => ({ ...r, contentHash: r.label === 0 ? 'same' : r.contentHash }));
  const manifest = copies.map((r, i) => ({ path: r.path, label: r.label, group: r.path, split: (i === 0 ? 'train' : 'test') as 'train' | 'test' }));
  assert.is(countLeakedTestImages(copies, manifest, [manifest]), 1);
  assert.is(countLeakedTestImages(copies, manifest, []), 0);
});

test('a manifest view: its own splits.csv, the class folders and the cache linked, re-writable', async () => {
  const dir = await tempDir();
  try {
    const data = join(dir.path, 'data');
    await synthesizePhantom({ dest: data, perClass: 6, size: 48, seed: 1 });
    const { rows } = await indexDataset({ dataDir: data });
    const manifest = publishedSplit(rows, { val: 0.2, test: 0.2 }, 4);
    const view = join(dir.path, 'view');
    await writeManifestView(view, data, manifest, rows);
    await writeManifestView(view, data, manifest, rows);
    assert.ok(lstatSync(join(view, 'Normal')).isSymbolicLink());
    assert.ok(existsSync(join(view, manifest[0]!.path)), 'paths resolve through the view');
    const csv = await readFile(join(view, 'splits.csv'), 'utf8');
    assert.is(csv.trim().split('\n').length, manifest.length + 1);
  } finally {
    await dir.cleanup();
  }
});

test.run();
