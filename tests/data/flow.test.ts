/**
 * The flow of images (found → unreadable → copies and conflicts left out → the split) against the
 * phantom's planted copies, counted by hand from its documentation (per class one image saved three
 * times with the same pixels, one JPEG re-saved as PNG, one downscaled near duplicate; one
 * Osteopenia image also filed under Osteoporosis), the index's own report, and the split's report.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { dataFlow, indexDataset, readIndex, readSplitManifest, splitDataset, synthesizePhantom } from '../../src/data/index.js';
import { publishedSplit } from '../../src/data/folds.js';
import { tempDir } from '../helpers/temp.js';

test('the flow of a phantom: the planted copies and the conflict by hand, the index report and the split report', async () => {
  const dir = await tempDir('osteo-flow-');
  try {
    const data = join(dir.path, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 6, size: 48, seed: 7 });
    // One file no reader can decode: counted as unreadable, in its class.
    await writeFile(join(data, 'Normal', 'broken.png'), 'not a png');
    const { report: indexReport } = await indexDataset({ dataDir: data });
    const { report: splitReport } = await splitDataset({ dataDir: data, val: 0.2, test: 0.2, seed: 3 });
    const flow = dataFlow(await readIndex(data), await readSplitManifest(data));
    assert.equal(flow.found, [11, 10, 11]);
    assert.equal(flow.unreadable, [1, 0, 0]);
    assert.equal(flow.readable, [10, 10, 11]);
    // Per class: two redundant copies of the thrice-saved image, one of the re-saved JPEG.
    assert.equal(flow.duplicates, [3, 3, 3]);
    // --conflicts drop: both files of the conflicting image leave.
    assert.equal(flow.conflicts, [0, 1, 1]);
    assert.equal(flow.used, [7, 6, 7]);
    assert.equal(flow.used, indexReport.usablePerClass);
    assert.equal([flow.duplicateGroups, flow.nearDuplicateGroups, flow.conflictGroups], [indexReport.exactDuplicateGroups.length, indexReport.nearDuplicateGroups.length, indexReport.conflicts.length]);
    assert.equal([flow.duplicateGroups, flow.nearDuplicateGroups, flow.conflictGroups], [7, 3, 1]);
    assert.equal(flow.split, splitReport.counts);
    for (let c = 0; c < 3; c++) {
      assert.is(flow.found[c], flow.unreadable[c]! + flow.duplicates[c]! + flow.conflicts[c]! + flow.used[c]!, 'every file is counted once');
      assert.is(flow.used[c], flow.split.train[c]! + flow.split.val[c]! + flow.split.test[c]!, 'every used file is in one split');
    }
    assert.is(flow.leakedTestImages, 0, "osteo's split keeps copies together");
  } finally {
    await dir.cleanup();
  }
});

test("the published protocol's split keeps the copies and leaks them: the leak counted by hand", async () => {
  const dir = await tempDir('osteo-flow-');
  try {
    const data = join(dir.path, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 8, size: 48, seed: 5, duplicateRate: 0.5 });
    const { rows } = await indexDataset({ dataDir: data });
    const manifest = publishedSplit(rows, { val: 0.15, test: 0.3 }, 9);
    const flow = dataFlow(rows, manifest);
    const hashOf = new Map(rows.map((row) => [row.path, row.contentHash]));
    const trained = new Set(manifest.filter((row) => row.split === 'train').map((row) => hashOf.get(row.path)));
    const leaked = manifest.filter((row) => row.split === 'test' && trained.has(hashOf.get(row.path))).length;
    assert.ok(leaked > 0, 'copies at half the files leak into test');
    assert.is(flow.leakedTestImages, leaked);
    assert.is(flow.split.test.reduce((a, b) => a + b, 0), manifest.filter((row) => row.split === 'test').length);
  } finally {
    await dir.cleanup();
  }
});

test.run();
