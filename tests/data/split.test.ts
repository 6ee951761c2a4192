import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DataError, UserError } from '../../src/util/index.js';
import { indexDataset, type IndexRow } from '../../src/data/indexer.js';
import { synthesizePhantom } from '../../src/data/phantom.js';
import { assignSplits, readSplitManifest, splitDataset } from '../../src/data/split.js';
import { rejection } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';

test('phantom split: no content hash or group across splits, class ratios kept, deterministic per seed', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'phantom');
    await synthesizePhantom({ dest: dataDir, perClass: 20, size: 40, seed: 9 });
    const { rows, report } = await splitDataset({ dataDir, seed: 1 });
    assert.ok(report.indexed, 'the index was built because it was missing');
    assert.equal(report.leaks, { contentHashes: 0, groups: 0 });

    // Independent leak check from the index itself.
    const index = await indexDataset({ dataDir, write: false });
    const hashOf = new Map(index.rows.map((r) => [r.path, r.contentHash]));
    const splitsOfHash = new Map<string, Set<string>>();
    for (const row of rows) splitsOfHash.set(hashOf.get(row.path)!, (splitsOfHash.get(hashOf.get(row.path)!) ?? new Set()).add(row.split));
    assert.ok([...splitsOfHash.values()].every((s) => s.size === 1));
    // Every near-duplicate group stays whole.
    for (const group of index.report.nearDuplicateGroups) {
      assert.is(new Set(group.paths.map((p) => rows.find((r) => r.path === p)!.split)).size, 1, group.paths.join());
    }
    // The conflict is not in the manifest.
    for (const path of index.report.conflicts[0]!.paths) assert.not.ok(rows.some((r) => r.path === path));

    // 21/20/21 usable per class; 15% of each is round(3.15)=3 (test) and 3 (val), a near pair may add one.
    for (let label = 0; label < 3; label++) {
      const total = rows.filter((r) => r.label === label).length;
      for (const split of ['val', 'test'] as const) {
        const n = report.counts[split][label]!;
        assert.ok(n >= Math.round(total * 0.15) && n <= Math.round(total * 0.15) + 1, `${split} class ${label}: ${n} of ${total}`);
      }
    }

    const first = await readFile(report.manifestPath, 'utf8');
    await splitDataset({ dataDir, seed: 1 });
    assert.is(await readFile(report.manifestPath, 'utf8'), first, 'same seed, same manifest');
    await splitDataset({ dataDir, seed: 2 });
    assert.is.not(await readFile(report.manifestPath, 'utf8'), first, 'another seed, another split');

    const manifest = await readSplitManifest(dataDir);
    assert.is(manifest.length, rows.length);
    assert.ok(manifest.every((r) => ['train', 'val', 'test'].includes(r.split) && r.group.startsWith('g')));
  } finally {
    await dir.cleanup();
  }
});

test('assignSplits keeps big groups whole and stratifies each class', () => {
  const rows: IndexRow[] = [];
  const add = (label: number, group: string, n: number) => {
    for (let i = 0; i < n; i++) {
      rows.push({
        path: `${label}/${group}-${i}.png`,
        label,
        status: 'ok',
        reason: '',
        format: 'png',
        width: 1,
        height: 1,
        channels: 1,
        depth: 8,
        bytes: 1,
        contentHash: `${group}-${i}`,
        perceptualHash: '',
        dicomWindow: '',
        group,
        use: true,
        note: '',
      });
    }
  };
  for (let g = 0; g < 200; g++) add(0, `a${g}`, 1 + (g % 3)); // 399 images
  for (let g = 0; g < 60; g++) add(1, `b${g}`, 2); // 120 images
  add(2, 'huge', 30);
  for (let g = 0; g < 170; g++) add(2, `c${g}`, 1); // 200 images
  rows.push({ ...rows[0]!, path: 'unused.png', use: false });
  const manifest = assignSplits(rows, { val: 0.2, test: 0.1 }, 5);
  assert.is(manifest.length, rows.length - 1);
  const splitOf = new Map<string, Set<string>>();
  for (const row of manifest) splitOf.set(row.group, (splitOf.get(row.group) ?? new Set()).add(row.split));
  assert.ok([...splitOf.values()].every((s) => s.size === 1), 'no group straddles splits');
  const totals = [399, 120, 200];
  for (let label = 0; label < 3; label++) {
    const count = (split: string) => manifest.filter((r) => r.label === label && r.split === split).length;
    const maxGroup = label === 2 ? 30 : 3;
    assert.ok(Math.abs(count('test') - totals[label]! * 0.1) < maxGroup + 1, `test ${label}: ${count('test')}`);
    assert.ok(Math.abs(count('val') - totals[label]! * 0.2) < maxGroup + 1, `val ${label}: ${count('val')}`);
  }
  assert.equal(assignSplits(rows, { val: 0.2, test: 0.1 }, 5), manifest);
});

test('clear errors: no manifest, stale index (bad fractions: tests/config/split-eval-config.test.ts)', async () => {
  const dir = await tempDir();
  try {
    await rejection(
      () => readSplitManifest(dir.path),
      (e) => e instanceof UserError && e.message === `no split manifest at ${join(dir.path, 'splits.csv')}: run \`osteo data split --data ${dir.path}\` first`,
    );
    const dataDir = join(dir.path, 'p');
    await synthesizePhantom({ dest: dataDir, perClass: 6, size: 32 });
    await indexDataset({ dataDir });
    await writeFile(join(dataDir, 'Normal', 'late.png'), await readFile(join(dataDir, 'Normal', 'normal_0000 (copy).png')));
    await rejection(() => splitDataset({ dataDir }), UserError, /out of date.*\+Normal\/late.png/);
  } finally {
    await dir.cleanup();
  }
});

test('a manifest row pointing outside the dataset is refused, naming the row', async () => {
  const dir = await tempDir();
  try {
    const header = 'path,label,class,split,group,contentHash\n';
    const good = 'Normal/a.png,0,Normal,train,g1,h\n';
    for (const [path, row] of [
      ['../../../../etc/passwd', 3],
      ['Normal/../../outside.png', 3],
      ['/etc/passwd', 3],
      ['C:/Windows/win.ini', 3],
      ['Normal\\..\\..\\x.png', 3],
      ['notes/readme.png', 3],
      ['Normal//a.png', 3],
    ] as const) {
      await writeFile(join(dir.path, 'splits.csv'), `${header}${good}"${path}",1,Osteopenia,test,g2,h\n`);
      await rejection(
        () => readSplitManifest(dir.path),
        (e) => e instanceof DataError && e.file === join(dir.path, 'splits.csv') && e.message.includes(`row ${row}: path '${path}' is not a file inside the dataset`),
      );
    }
    await writeFile(join(dir.path, 'splits.csv'), `${header}${good}"Osteopenia/sub dir/b (1).png",1,Osteopenia,test,g2,h\n`);
    assert.equal((await readSplitManifest(dir.path)).map((r) => r.path), ['Normal/a.png', 'Osteopenia/sub dir/b (1).png']);
  } finally {
    await dir.cleanup();
  }
});

test.run();
