/**
 * Inference across worker threads (`--workers`): eval, its TTA and predict give the numbers of the
 * single-thread path, in the same order, with the same errors and no leaked tensors; the number of
 * workers follows the flag, the backend's capabilities and the image count.
 */
import { availableParallelism } from 'node:os';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { captureMain } from '../helpers/cli.js';
import * as tf from '@tensorflow/tfjs-core';
import { parse } from 'csv-parse/sync';
import { setupOnce } from './helpers.js';
import { useBackend, type BackendCapabilities, type BackendHandle } from '../../src/backend/index.js';
import { classNames, preprocessForModel } from '../../src/data/index.js';
import { DataError } from '../../src/util/index.js';
import { readSafetensors, writeSafetensors } from '../../src/weights/index.js';
import { evaluateRuns, type EvaluateOptions } from '../../src/eval/evaluate.js';
import { disposeModels, loadRunForInference, mirrorImages, predictProbabilities, type LoadedModel } from '../../src/eval/inference.js';
import { predictImages, type PredictResult } from '../../src/eval/predict.js';
import { imagesPerWorker, inferenceWorkers } from '../../src/engine/index.js';
import { writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';

/** The backend the tests run on, as a command passes it down. */
let backend: BackendHandle;

let root = '';
let data = '';
let folder = '';
let r18: RunFixture;
let b3: RunFixture;

/** 5 val and 7 test images of assorted sizes (distinct, so a reordering shows). */
async function writeDataset(dir: string): Promise<void> {
  const rows = ['path,label,split,group'];
  for (const [split, count] of [['val', 5], ['test', 7]] as const) {
    for (let i = 0; i < count; i++) {
      const label = i % 3;
      const path = `${classNames[label]}/${split}-${i}.png`;
      await mkdir(join(dir, classNames[label]!), { recursive: true });
      await writeTestImage(join(dir, path), 44 + i * 3, 40 + (i % 2) * 6, (split === 'test' ? 700 : 800) + i);
      rows.push(`${path},${label},${split},${split}-${i}`);
    }
  }
  await writeFile(join(dir, 'splits.csv'), rows.join('\n') + '\n');
}

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-parallel-'));
  data = join(root, 'data');
  await writeDataset(data);
  // Two preprocessings (64 and 32 px), so each model gets its own batch.
  r18 = await writeRunFixture(join(root, 'r18'), 'resnet18', { imageSize: 64, seed: 91 });
  b3 = await writeRunFixture(join(root, 'b3'), 'efficientnet_b3', { imageSize: 32, seed: 92 });
  // More images than one predict batch (16), and one that cannot be decoded among them.
  folder = join(root, 'many');
  await mkdir(folder);
  for (let i = 0; i < 19; i++) await writeTestImage(join(folder, `knee-${String(i).padStart(2, '0')}.png`), 36 + i, 34 + (i % 4) * 5, 900 + i);
  await writeFile(join(folder, 'knee-07b.png'), 'not a png');
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

const rejection = async (promise: Promise<unknown>): Promise<Error> =>
  promise.then(
    () => assert.unreachable('should have failed') as never,
    (error: unknown) => error as Error,
  );

function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.is(a.length, b.length, 'as many values');
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Where each loaded model runs: 1 in this thread, else its worker threads. */
const placement = (seen: number[][]) => (models: readonly LoadedModel[]) => seen.push(models.map((m) => m.engine.workers));

test('mirrorImages flips NHWC images left to right exactly as tf.reverse(x, 2)', () => {
  const [n, size] = [2, 5];
  const images = Float32Array.from({ length: n * size * size * 3 }, (_, i) => Math.sin(i * 1.7));
  const expected = tf.tidy(() => tf.reverse(tf.tensor4d(images, [n, size, size, 3]), 2).dataSync());
  assert.equal(Array.from(mirrorImages(images, n, size)), Array.from(expected));
});

test('worker count: the flag (at most one per image), else one per core where the backend runs in workers, only with images enough', () => {
  const inWorkers: BackendCapabilities = { workerThreads: { trainsInWorkers: true, defaultCount: () => 4 } };
  const oneProcess: BackendCapabilities = { workerThreads: { trainsInWorkers: false, why: 'one process' } };
  assert.is(inferenceWorkers(undefined, 1000, inWorkers), 4, 'one per core');
  assert.is(inferenceWorkers(undefined, 2 * imagesPerWorker, inWorkers), 2, 'no more than the images repay');
  assert.is(inferenceWorkers(undefined, imagesPerWorker - 1, inWorkers), 1, 'a few images stay in this thread');
  assert.is(inferenceWorkers(undefined, 1000, oneProcess), 1, 'a backend that does not run in workers');
  assert.is(inferenceWorkers(2, 3, inWorkers), 2, 'the flag, however few the images');
  assert.is(inferenceWorkers(3, 2, inWorkers), 2, 'but never more workers than images');
  assert.is(inferenceWorkers(1, 1000, inWorkers), 1);
});

test('eval --workers 2 (TTA, auto weights): the --workers 1 report, row for row, |Δp| ≤ 1e-6, and no tensor left behind', async () => {
  const seen: number[][] = [];
  const evaluate = (workers: number) => {
    const options: EvaluateOptions = { backend, runs: [r18.dir, b3.dir], dataDir: data, tta: true, weights: 'auto', batchSize: 3, resamples: 20, workers, outDir: join(root, `report-${workers}`) };
    return evaluateRuns({ ...options, onModelsLoaded: placement(seen) });
  };
  const before = tf.memory().numTensors;
  const single = await evaluate(1);
  const parallel = await evaluate(2);
  assert.is(tf.memory().numTensors, before, 'models, replicas and intermediates are released');
  assert.equal(seen, [[1, 1], [2, 2]], 'the in-thread path, then two workers per model');

  assert.equal(parallel.report.images, single.report.images);
  assert.equal(
    parallel.report.models.map((m) => m.name),
    single.report.models.map((m) => m.name),
  );
  for (const [i, m] of parallel.report.models.entries()) {
    const reference = single.report.models[i]!;
    const diff = maxDifference(m.probabilities, reference.probabilities);
    assert.ok(diff <= 1e-6, `${m.name}: max |Δp| ${diff}`);
    assert.equal(m.predictions, reference.predictions, `${m.name}: predictions`);
  }
  // The weights are fitted on the val split, which the workers predicted too.
  assert.ok(maxDifference(parallel.report.ensembleWeights.weights, single.report.ensembleWeights.weights) <= 1e-9, 'the same fitted weights');

  const csv = async (workers: number) => parse(await readFile(join(root, `report-${workers}`, 'predictions.csv')), { columns: true }) as Record<string, string>[];
  const [a, b] = [await csv(1), await csv(2)];
  assert.is(b.length, 7 * 3, 'one row per test image and model (two and the ensemble)');
  assert.equal(
    b.map((r) => [r.path, r.model, r.prediction]),
    a.map((r) => [r.path, r.model, r.prediction]),
    'the same rows in the same order',
  );
  const probabilities = (rows: Record<string, string>[]) => rows.flatMap((r) => classNames.map((c) => Number(r[`p_${c}`])));
  // The file rounds to 6 decimals: equal probabilities may round one unit apart.
  assert.ok(maxDifference(probabilities(b), probabilities(a)) <= 1e-6 + 1e-6);
});

test('predict over many images: --workers 2 gives the --workers 1 verdicts in the same order, failures in place', async () => {
  const seen: number[][] = [];
  const run = (workers: number): Promise<PredictResult> => predictImages({ backend, images: [folder], runs: [r18.dir, b3.dir], workers, onModelsLoaded: placement(seen) });
  const before = tf.memory().numTensors;
  const single = await run(1);
  const parallel = await run(2);
  assert.is(tf.memory().numTensors, before);
  assert.equal(seen, [[1, 1], [2, 2]]);
  assert.is(parallel.images.length, 19, 'two batches (16 + 3)');
  assert.equal(
    parallel.images.map((i) => i.path),
    single.images.map((i) => i.path),
  );
  assert.equal(parallel.failed, single.failed);
  assert.equal(
    parallel.failed.map((f) => f.path),
    [join(folder, 'knee-07b.png')],
  );
  for (const [i, image] of parallel.images.entries()) {
    const reference = single.images[i]!;
    assert.is(image.prediction, reference.prediction);
    assert.ok(maxDifference(image.probabilities, reference.probabilities) <= 1e-6, image.path);
    for (const name of Object.keys(reference.models)) assert.ok(maxDifference(image.models[name]!.probabilities, reference.models[name]!.probabilities) <= 1e-6, `${image.path} ${name}`);
  }
});

test('the replicas of one model: in-thread probabilities for odd counts and TTA, tensors flat in every thread', async () => {
  const here = await loadRunForInference(r18.dir, { backend });
  const there = await loadRunForInference(r18.dir, { backend, workers: 2 });
  try {
    assert.is(here.engine.workers, 1);
    assert.is(there.engine.workers, 2);
    const crops = await Promise.all(Array.from({ length: 5 }, (_, i) => preprocessForModel(join(folder, `knee-${String(i).padStart(2, '0')}.png`), here.transform)));
    const images = new Float32Array(crops.length * crops[0]!.length);
    crops.forEach((c, i) => images.set(c, i * c.length));
    const tensors = await there.engine.numTensors();
    for (const tta of [false, true]) {
      const expected = await predictProbabilities(here, images, 5, { tta });
      const got = await predictProbabilities(there, images, 5, { tta });
      assert.ok(maxDifference(got, expected) <= 1e-6, `tta ${tta}`);
    }
    assert.equal(await there.engine.numTensors(), tensors, 'no thread holds more tensors after predicting');
  } finally {
    await disposeModels([here, there]);
  }
});

test('non-finite outputs: the same error naming the model and its file, with workers or without', async () => {
  const broken = join(root, 'nan');
  await cp(r18.dir, broken, { recursive: true });
  const file = join(broken, 'best', 'model.safetensors');
  const dict = await readSafetensors(file);
  // Finite weights whose logits overflow to Infinity (a NaN weight is refused when the file is read).
  (dict.get('fc.weight')!.data as Float32Array).fill(3.4028234663852886e38);
  (dict.get('fc.bias')!.data as Float32Array).fill(3.4028234663852886e38);
  await writeSafetensors(file, dict);
  const before = tf.memory().numTensors;
  const seen: number[][] = [];
  const errors: Error[] = [];
  for (const workers of [1, 2]) errors.push(await rejection(evaluateRuns({ backend, runs: [broken], dataDir: data, outDir: null, resamples: 20, workers, onModelsLoaded: placement(seen) })));
  assert.is(tf.memory().numTensors, before);
  assert.equal(seen, [[1], [2]]);
  for (const error of errors) {
    assert.ok(error instanceof DataError, String(error));
    assert.is((error as DataError).file, file);
    assert.match(error.message, /model resnet18 of run .*nan gives non-finite outputs/);
  }
  assert.is(errors[1]!.message, errors[0]!.message);
});

/** Run the CLI in-process on wasm, capturing what it prints. */
const osteo = (...argv: string[]) => captureMain([...argv, '--backend', 'wasm']);

test('--workers beyond the cores is refused naming the flag, before any model is loaded (eval and predict)', async () => {
  const cores = availableParallelism();
  const tooMany = String(cores + 1);
  const message = new RegExp(`--workers: (workers: )?${cores + 1} is more than this machine runs at once \\(${cores}, .*use at most ${cores}`);
  const evaluated = await osteo('eval', '--run', join(root, 'missing-run'), '--data', data, '--workers', tooMany);
  assert.is(evaluated.code, 1);
  assert.match(evaluated.stderr, message);
  const predicted = await osteo('predict', folder, '--run', join(root, 'missing-run'), '--workers', tooMany);
  assert.is(predicted.code, 1);
  assert.match(predicted.stderr, message);
  const zero = await osteo('predict', folder, '--run', r18.dir, '--workers', '0');
  assert.is(zero.code, 1);
  assert.match(zero.stderr, /--workers must be a positive integer/);
});

test.run();
