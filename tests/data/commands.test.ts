/** The data and weights subcommands end to end through the CLI entry (in-process, no spawning). */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { captureMain } from '../helpers/cli.js';
import { kaggleDataset } from '../../src/data/index.js';
import { serve, startServer, zipBuffer } from './helpers.js';
import { tempDir } from '../helpers/temp.js';

/** Run `osteo …` in-process and capture what it writes. */
const osteo = (...argv: string[]) => captureMain(argv);

test('synth → index → split → preview with --json', async () => {
  const dir = await tempDir();
  try {
    const data = join(dir.path, 'phantom');
    const synth = await osteo('data', 'synth', '--dest', data, '--per-class', '6', '--size', '40', '--seed', '5', '--json');
    assert.is(synth.code, 0, synth.stderr);
    assert.equal(JSON.parse(synth.stdout).files, [10, 10, 11]);
    const index = await osteo('data', 'index', '--data', data, '--json');
    assert.is(index.code, 0, index.stderr);
    const report = JSON.parse(index.stdout);
    assert.equal([report.exactDuplicateGroups.length, report.nearDuplicateGroups.length, report.conflicts.length], [7, 3, 1]);
    const split = await osteo('data', 'split', '--data', data, '--test', '0.2', '--val', '0.2', '--json');
    assert.is(split.code, 0, split.stderr);
    assert.equal(JSON.parse(split.stdout).leaks, { contentHashes: 0, groups: 0 });
    const out = join(dir.path, 'sheet.png');
    const preview = await osteo('data', 'preview', '--data', data, '--augment', 'seed', '--n', '4', '--image-size', '32', '--out', out);
    assert.is(preview.code, 0, preview.stderr);
    assert.ok(existsSync(out));
    assert.ok(readFileSync(out).subarray(0, 4).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47])), 'a .png is PNG');
    // The format follows the extension: .jpg gets JPEG bytes, an unknown one is refused before any work.
    const jpeg = join(dir.path, 'sheet.jpg');
    const asJpeg = await osteo('data', 'preview', '--data', data, '--n', '2', '--image-size', '32', '--out', jpeg);
    assert.is(asJpeg.code, 0, asJpeg.stderr);
    assert.ok(readFileSync(jpeg).subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff])), 'a .jpg is JPEG');
    // A negative seed is refused by synth and preview as by every other command.
    for (const argv of [['data', 'synth', '--dest', join(dir.path, 'neg'), '--per-class', '6', '--size', '40'], ['data', 'preview', '--data', data, '--n', '2', '--out', join(dir.path, 'neg.png')]]) {
      const negative = await osteo(...argv, '--seed', '-1');
      assert.is(negative.code, 1, negative.stderr);
      assert.match(negative.stderr, /--seed must be an integer ≥ 0, got -1/);
    }
    assert.not.ok(existsSync(join(dir.path, 'neg')) || existsSync(join(dir.path, 'neg.png')));
    const gif = await osteo('data', 'preview', '--data', data, '--n', '2', '--out', join(dir.path, 'sheet.gif'));
    assert.is(gif.code, 1);
    assert.match(gif.stderr, /\.png, \.jpg, \.jpeg, \.webp/);
    // A folder as --out, and a path below a regular file: user errors (exit 1) naming the path, never "internal error".
    const folder = await osteo('data', 'preview', '--data', data, '--n', '2', '--out', dir.path);
    assert.is(folder.code, 1);
    assert.ok(folder.stderr.includes(`--out ${dir.path} is a folder: give the file to write`), folder.stderr);
    const underFile = await osteo('data', 'preview', '--data', data, '--n', '2', '--image-size', '32', '--out', join(out, 'sheet.png'));
    assert.is(underFile.code, 1, underFile.stderr);
    assert.ok(underFile.stderr.includes(out) && /is a file/.test(underFile.stderr), underFile.stderr);
    assert.not.match(underFile.stderr, /internal error/);
    const threshold = await osteo('data', 'index', '--data', data, '--near-threshold', '300');
    assert.is(threshold.code, 1);
    assert.match(threshold.stderr, /--near-threshold must be a whole number of bits from 0 to 256/);
    const bad = await osteo('data', 'index', '--data', data, '--conflicts', 'vote');
    assert.is(bad.code, 1);
    assert.match(bad.stderr, /drop, majority, keep/);
    const missing = await osteo('data', 'split', '--data', join(dir.path, 'nowhere'));
    assert.is(missing.code, 1);
    assert.match(missing.stderr, /no class folders/);
  } finally {
    await dir.cleanup();
  }
});

test('download and weights fetch against a local server', async () => {
  const dir = await tempDir();
  const server = await startServer();
  const saved = { user: process.env.KAGGLE_USERNAME, key: process.env.KAGGLE_KEY };
  try {
    process.env.KAGGLE_USERNAME = 'alice';
    process.env.KAGGLE_KEY = 'k';
    const zip = await zipBuffer({ 'd/Normal/a.png': 'a', 'd/Osteopenia/b.png': 'b', 'd/Osteoporosis/c.png': 'c' });
    server.route(`/api/v1/datasets/download/${kaggleDataset.owner}/${kaggleDataset.slug}`, serve(zip));
    const download = await osteo('data', 'download', '--dest', join(dir.path, 'knee'), '--api-url', `${server.url}/api/v1`, '--json');
    assert.is(download.code, 0, download.stderr);
    assert.equal(JSON.parse(download.stdout).counts, [1, 1, 1]);
    const human = await osteo('data', 'download', '--dest', join(dir.path, 'knee'), '--api-url', `${server.url}/api/v1`);
    assert.match(human.stdout, /already present/);
    assert.match(human.stdout, /Osteopenia\s+1\s+\(published 374, -373\)/);

    server.route('/w/resnet18-f37072fd.pth', serve(Buffer.from('not the checkpoint')));
    const fetch = await osteo('weights', 'fetch', 'resnet18', '--dest', join(dir.path, 'w'), '--url', `${server.url}/w`);
    assert.is(fetch.code, 1);
    assert.match(fetch.stderr, /does not start with f37072fd/);
    const notUrl = await osteo('weights', 'fetch', 'resnet18', '--dest', join(dir.path, 'w'), '--url', 'notaurl');
    assert.is(notUrl.code, 1, notUrl.stderr);
    assert.match(notUrl.stderr, /^osteo: --url: 'notaurl' is not a URL/);
    // A raw file-system error from below (mkdir through a regular file) reaches the CLI's catch: exit 1, path named, no stack.
    const plain = join(dir.path, 'plain-file');
    writeFileSync(plain, 'x');
    const blocked = await osteo('weights', 'fetch', 'resnet18', '--dest', join(plain, 'w'), '--url', `${server.url}/w`);
    assert.is(blocked.code, 1, blocked.stderr);
    assert.ok(blocked.stderr.includes(plain) && /is a file where a folder is needed/.test(blocked.stderr), blocked.stderr);
    assert.not.match(blocked.stderr, /internal error|\n\s+at /);
  } finally {
    process.env.KAGGLE_USERNAME = saved.user;
    process.env.KAGGLE_KEY = saved.key;
    if (saved.user === undefined) delete process.env.KAGGLE_USERNAME;
    if (saved.key === undefined) delete process.env.KAGGLE_KEY;
    await server.close();
    await dir.cleanup();
  }
});

test.run();
