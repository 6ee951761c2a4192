import { readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DataError, UserError, createRng, restoreRng } from '../../src/util/index.js';
import { loadAugmentConfig } from '../../src/config/index.js';
import { classCounts, createLoader, createResizedCache, decodeRgb, manifestContentHashes, inverseFrequencyWeights, preprocessForModel, previewAugmentations, readSplitManifest, resizeShorter, sampleOrder, splitDataset, synthesizePhantom, imagenetNormalization, type Batch, type ManifestRow, type ResizedCache } from '../../src/data/index.js';
import { rejection } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';

const transform = { resize: 37, crop: 32, ...imagenetNormalization };

let dir: { path: string; cleanup: () => Promise<void> };
let dataDir: string;
test.before(async () => {
  dir = await tempDir();
  dataDir = join(dir.path, 'phantom');
  await synthesizePhantom({ dest: dataDir, perClass: 8, size: 48, seed: 2 });
  await splitDataset({ dataDir, val: 0.2, test: 0.2 });
});
test.after(async () => {
  await dir.cleanup();
});

async function collect(iterable: AsyncIterable<Batch>): Promise<Batch[]> {
  const batches: Batch[] = [];
  for await (const batch of iterable) batches.push(batch);
  return batches;
}

test('seeded RNG: saved state resumes the exact stream; seeds give different streams', () => {
  const rng = createRng(42);
  for (let i = 0; i < 10; i++) rng.next();
  const saved = JSON.parse(JSON.stringify(rng.state()));
  const expected = Array.from({ length: 5 }, () => rng.next());
  const resumed = restoreRng(saved);
  assert.equal(Array.from({ length: 5 }, () => resumed.next()), expected);
  assert.is.not(createRng(1).next(), createRng(2).next());
  assert.throws(() => restoreRng({ algorithm: 'sfc32', words: [1, 2] }), /not a saved random-number state/);
  // Uniform enough: mean of 20k draws near 1/2.
  const r = createRng(7);
  let sum = 0;
  for (let i = 0; i < 20000; i++) sum += r.next();
  assert.ok(Math.abs(sum / 20000 - 0.5) < 0.01);
});

test('weighted sampler: class frequencies converge to balanced on imbalanced data; shuffle is a permutation', () => {
  const rows = [...Array(300).fill(0), ...Array(60).fill(1), ...Array(140).fill(2)].map((label) => ({ label }));
  const drawn = [0, 0, 0];
  const epochs = 40;
  for (let epoch = 0; epoch < epochs; epoch++) for (const i of sampleOrder(rows, 'weighted', 1, epoch)) drawn[rows[i]!.label]!++;
  const total = rows.length * epochs;
  for (const count of drawn) assert.ok(Math.abs(count / total - 1 / 3) < 0.01, `frequencies ${drawn.map((c) => (c / total).toFixed(3))}`);
  // Without weighting the proportions stay those of the data.
  const plain = sampleOrder(rows, 'shuffle', 1, 0);
  assert.equal([...plain].sort((a, b) => a - b), rows.map((_, i) => i));
  assert.equal(sampleOrder(rows, 'shuffle', 1, 0), plain, 'same seed and epoch, same order');
  assert.not.equal(sampleOrder(rows, 'shuffle', 1, 1), plain, 'a new epoch reshuffles');
  assert.equal(sampleOrder(rows, 'sequential', 1, 3), rows.map((_, i) => i));
});

test('class weights are inverse frequencies with mean 1 (hand computed)', () => {
  assert.equal(classCounts([{ label: 0 }, { label: 2 }, { label: 2 }]), [1, 0, 2]);
  // 1/100, 1/20, 1/50 = 0.01, 0.05, 0.02; mean 0.08/3 → 0.375, 1.875, 0.75.
  const weights = inverseFrequencyWeights([100, 20, 50]);
  [0.375, 1.875, 0.75].forEach((w, i) => assert.ok(Math.abs(weights[i]! - w) < 1e-12));
  assert.equal(inverseFrequencyWeights([10, 0, 10]), [1, 0, 1]);
});

test('no augmentation: every image equals the eval transform of its file; batch shapes and labels', async () => {
  const manifest = (await readSplitManifest(dataDir)).filter((r) => r.split === 'val');
  const loader = createLoader({ dataDir, split: 'val', imageSize: 32, transform, batchSize: 4, sampler: 'sequential', seed: 0, epoch: 0 });
  assert.is(loader.length, Math.ceil(manifest.length / 4));
  const batches = await collect(loader);
  assert.equal(batches.flatMap((b) => b.paths), manifest.map((r) => r.path));
  for (const batch of batches) {
    assert.is(batch.images.length, batch.size * 32 * 32 * 3);
    assert.is(batch.targets, undefined);
    for (let k = 0; k < batch.size; k++) {
      assert.is(batch.labels[k], manifest.find((r) => r.path === batch.paths[k])!.label);
      const expected = await preprocessForModel(join(dataDir, batch.paths[k]!), transform);
      assert.ok(Buffer.from(batch.images.buffer, k * expected.byteLength, expected.byteLength).equals(Buffer.from(expected.buffer)), batch.paths[k]);
    }
  }
  const dropped = createLoader({ dataDir, split: 'val', imageSize: 32, transform, batchSize: 4, sampler: 'sequential', seed: 0, epoch: 0, dropLast: true });
  assert.is(dropped.length, Math.floor(manifest.length / 4));
  assert.ok((await collect(dropped)).every((b) => b.size === 4));
});

test('augmented batches: identical for the same (seed, epoch), different for another epoch; mixup targets', async () => {
  const augment = { ...(await loadAugmentConfig('strong')), mixup: { p: 1, alpha: 0.4 } };
  const make = (epoch: number, concurrency: number) =>
    createLoader({ dataDir, split: 'train', imageSize: 32, transform, augment, batchSize: 5, sampler: 'weighted', seed: 3, epoch, concurrency, prefetch: 2 });
  const a = await collect(make(0, 4));
  const b = await collect(make(0, 1)); // another degree of parallelism must not change anything
  const c = await collect(make(1, 4));
  assert.is(a.length, b.length);
  a.forEach((batch, i) => {
    assert.equal(batch.paths, b[i]!.paths);
    assert.ok(Buffer.from(batch.images.buffer).equals(Buffer.from(b[i]!.images.buffer)));
    assert.ok(Buffer.from(batch.targets!.buffer).equals(Buffer.from(b[i]!.targets!.buffer)));
  });
  assert.not.equal(a.flatMap((x) => x.paths), c.flatMap((x) => x.paths));
  const { mixup: _, ...withoutMixup } = augment;
  const unmixed = await collect(createLoader({ dataDir, split: 'train', imageSize: 32, transform, augment: withoutMixup, batchSize: 5, sampler: 'weighted', seed: 3, epoch: 0 }));
  for (const [i, batch] of a.entries()) {
    assert.equal(batch.paths, unmixed[i]!.paths, 'mixup draws do not disturb the sample order');
    assert.not.ok(Buffer.from(batch.images.buffer).equals(Buffer.from(unmixed[i]!.images.buffer)), 'p = 1: every batch is mixed');
  }
  for (const batch of a) {
    assert.is(batch.targets!.length, batch.size * 3);
    // One λ per batch: every row is λ·onehot(own label) + (1 − λ)·onehot(partner's label).
    const values = new Set<number>();
    for (let i = 0; i < batch.size; i++) {
      const row = Array.from(batch.targets!.subarray(i * 3, i * 3 + 3));
      assert.ok(Math.abs(row[0]! + row[1]! + row[2]! - 1) < 1e-6);
      assert.ok(row[batch.labels[i]!]! > 0, 'the own label keeps weight');
      for (const v of row) if (v > 1e-6 && v < 1 - 1e-6) values.add(Math.round(Math.min(v, 1 - v) * 1e5));
    }
    assert.ok(values.size <= 1, `one mixing weight per batch, got ${[...values]}`);
  }
});

test('prefetch: the next batch is being prepared before the consumer asks for it', async () => {
  const requested: string[] = [];
  const inner = createResizedCache(dataDir, transform.resize, { disk: false });
  const spy: ResizedCache = { ...inner, get: (path) => (requested.push(path), inner.get(path)) };
  const loader = createLoader({ dataDir, split: 'train', imageSize: 32, transform, batchSize: 3, sampler: 'sequential', seed: 0, epoch: 0, cache: spy, prefetch: 1 });
  const iterator = loader[Symbol.asyncIterator]();
  const first = await iterator.next();
  const manifest = (await readSplitManifest(dataDir)).filter((r) => r.split === 'train');
  await new Promise((resolve) => setTimeout(resolve, 50)); // "training" on the first batch
  assert.equal(first.value!.paths, manifest.slice(0, 3).map((r) => r.path));
  assert.ok(requested.includes(manifest[3]!.path), 'batch 2 was requested while batch 1 trained');
  await iterator.return!();
});

test('resize cache: raw files on disk are reused, equal the decoded resize, and a changed source is redone', async () => {
  const rows: ManifestRow[] = (await readSplitManifest(dataDir)).slice(0, 4);
  const first = createResizedCache(dataDir, 40, { memoryBytes: 0 });
  for (const row of rows) await first.get(row.path);
  assert.equal(first.stats(), { memory: 0, disk: 0, decoded: 4 });
  const second = createResizedCache(dataDir, 40, { memoryBytes: 0 });
  const cached = await second.get(rows[0]!.path);
  assert.equal(second.stats(), { memory: 0, disk: 1, decoded: 0 });
  const direct = await resizeShorter(await decodeRgb(join(dataDir, rows[0]!.path)), 40);
  assert.ok(Buffer.from(cached.data).equals(Buffer.from(direct.data)));
  assert.equal([cached.width, cached.height], [direct.width, direct.height]);
  // Touch the source: the header no longer matches and the image is decoded again.
  const file = join(dataDir, rows[1]!.path);
  await writeFile(file, await readFile(file));
  await utimes(file, new Date(), new Date(Date.now() + 5000));
  const third = createResizedCache(dataDir, 40, { memoryBytes: 0 });
  await third.get(rows[1]!.path);
  assert.equal(third.stats(), { memory: 0, disk: 0, decoded: 1 });
  await rejection(() => third.get('Normal/missing.png'), /missing/);
});

test("resize cache given the manifest's content hashes: a film changed after indexing is refused naming it, even where an unchecked cache holds it", async () => {
  const { cp } = await import('node:fs/promises');
  const copy = join(dir.path, 'tampered');
  await cp(dataDir, copy, { recursive: true });
  const verify = { hashes: await manifestContentHashes(copy), manifest: join(copy, 'splits.csv') };
  assert.is(verify.hashes.size, (await readSplitManifest(copy)).length, 'every row has its hash');
  const train = (await readSplitManifest(copy)).filter((row) => row.split === 'train');
  const good = train[0]!;
  const bad = train.find((row) => verify.hashes.get(row.path) !== verify.hashes.get(good.path));
  // Another film's pixels under this name, cached first by a cache that checks nothing.
  await writeFile(join(copy, bad!.path), await readFile(join(copy, good.path)));
  await createResizedCache(copy, 40, { memoryBytes: 0 }).get(bad!.path);
  const checked = createResizedCache(copy, 40, { memoryBytes: 0, verify });
  await checked.get(good.path);
  const error = await rejection(() => checked.get(bad!.path), /its pixels no longer match the content hash in .*tampered\/splits\.csv/);
  assert.instance(error, DataError);
  assert.is((error as DataError).file, join(copy, bad!.path));
  assert.equal(checked.stats(), { memory: 0, disk: 0, decoded: 1 }, 'the unchecked cache entry was not taken');
});

test('clear errors: missing manifest, empty split, crop larger than the resize', async () => {
  const empty = await tempDir();
  try {
    assert.throws(() => createLoader({ dataDir: empty.path, split: 'train', imageSize: 32, transform, batchSize: 2, sampler: 'shuffle', seed: 0, epoch: 0 }), (e: Error) => e instanceof UserError && /osteo data split/.test(e.message));
  } finally {
    await empty.cleanup();
  }
  assert.throws(() => createLoader({ dataDir, split: 'train', imageSize: 64, transform, batchSize: 2, sampler: 'shuffle', seed: 0, epoch: 0 }), /smaller than the 64 px/);
  assert.throws(() => createLoader({ dataDir, split: 'test', rows: [], imageSize: 32, transform, batchSize: 2, sampler: 'shuffle', seed: 0, epoch: 0 }), /empty/);
});

test('preview: a contact sheet with one labelled tile per sample', async () => {
  const out = join(dir.path, 'sheet.png');
  const result = await previewAugmentations({ dataDir, augment: await loadAugmentConfig('seed'), n: 6, out, imageSize: 48 });
  const meta = await sharp(out).metadata();
  assert.equal([meta.width, meta.height], [result.width, result.height]);
  assert.is(result.tiles.length, 6);
  assert.equal(new Set(result.tiles.map((t) => t.label)), new Set([0, 1, 2]), 'every class shown');
  assert.ok(result.tiles.every((t) => ['Normal', 'Osteopenia', 'Osteoporosis'][t.label] === t.caption));
  const mixed = await previewAugmentations({ dataDir, augment: await loadAugmentConfig('strong'), n: 4, out, imageSize: 48, seed: 1 });
  assert.ok(mixed.tiles.every((t) => /\d\.\d\d/.test(t.caption)), 'mixup captions show the label weights');
});

test.run();
