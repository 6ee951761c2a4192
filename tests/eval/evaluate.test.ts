import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import * as tf from '@tensorflow/tfjs-core';
import { parse } from 'csv-parse/sync';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { preprocessForModel, type EvalTransform } from '../../src/data/image.js';
import { classNames } from '../../src/data/index.js';
import { UserError } from '../../src/util/index.js';
import { classificationMetrics } from '../../src/report/index.js';
import { evaluateRuns } from '../../src/eval/evaluate.js';
import { predictImages } from '../../src/eval/predict.js';
import { writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';

/** The backend the tests run on, as a command passes it down. */
let backend: BackendHandle;

let root = '';
let data = '';
let r18: RunFixture;
let b3: RunFixture;

const labels = { val: [0, 1, 2, 0, 1, 2, 1], test: [0, 0, 1, 1, 2, 2, 1, 0] };

async function writeManifest(dir: string, testLabels: number[], testSeedOffset = 0): Promise<void> {
  const rows = ['path,label,split,group'];
  for (const split of ['val', 'test'] as const) {
    const splitLabels = split === 'test' ? testLabels : labels.val;
    for (const [i, label] of splitLabels.entries()) {
      // `<class folder>/<file>`, as `osteo data split` writes paths (the manifest reader refuses others).
      const path = `${classNames[label]}/${split}-${i}.png`;
      await mkdir(join(dir, classNames[label]!), { recursive: true });
      await writeTestImage(join(dir, path), 80 + (i % 3) * 7, 76 + (i % 2) * 9, (split === 'test' ? 100 + testSeedOffset : 200) + i);
      rows.push(`${path},${label},${split},${split}-${i}`);
    }
  }
  await writeFile(join(dir, 'splits.csv'), rows.join('\n') + '\n');
}

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-eval-'));
  data = join(root, 'data');
  await writeManifest(data, labels.test);
  r18 = await writeRunFixture(join(root, 'runs', 'r18'), 'resnet18', { imageSize: 64, seed: 31 });
  b3 = await writeRunFixture(join(root, 'runs', 'b3'), 'efficientnet_b3', { imageSize: 64, seed: 32 });
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('each model and the soft vote on the test split: metrics, ensemble = mean, same numbers as predict, report files', async () => {
  const before = tf.memory().numTensors;
  const out = join(root, 'report');
  const { report, written } = await evaluateRuns({ backend, runs: [r18.dir, b3.dir], dataDir: data, outDir: out, resamples: 200 });
  assert.is(tf.memory().numTensors, before, 'no tensors leak');
  assert.equal(
    report.models.map((m) => m.name),
    ['resnet18', 'efficientnet_b3', 'ensemble (soft vote)'],
  );
  assert.is(report.images.length, labels.test.length);
  const [a, b, ensemble] = report.models;
  for (let i = 0; i < a!.probabilities.length; i++) assert.ok(Math.abs(ensemble!.probabilities[i]! - (a!.probabilities[i]! + b!.probabilities[i]!) / 2) < 1e-7);
  for (const m of report.models) {
    const expected = classificationMetrics(labels.test, m.predictions, 3);
    assert.equal(m.metrics, expected);
    assert.ok(m.accuracyInterval.lower <= m.metrics.accuracy && m.metrics.accuracy <= m.accuracyInterval.upper);
  }
  // Evaluation and prediction share one preprocessing and inference path.
  const predicted = await predictImages({ backend, images: [join(data, 'Osteopenia/test-3.png')], runs: [r18.dir, b3.dir] });
  predicted.images[0]!.probabilities.forEach((p, c) => assert.ok(Math.abs(p - ensemble!.probabilities[3 * 3 + c]!) < 1e-6));

  assert.ok(written !== null);
  for (const f of ['results.csv', 'results.md', 'predictions.csv', 'reliability.png', 'confusion_resnet18.png', 'roc_ensemble_soft_vote.png']) assert.ok(written!.files.includes(f), f);
  const csv = parse(await readFile(join(out, 'results.csv')), { columns: true }) as Record<string, string>[];
  assert.is(csv.length, 3);
  assert.is(Number(csv[2]!.accuracy), Number(ensemble!.metrics.accuracy.toFixed(6)));
  const md = await readFile(join(out, 'results.md'), 'utf8');
  assert.match(md, /\| \*\*ensemble \(soft vote\)\*\* \|/);
  assert.match(md, /Ensemble weights \(equal\): resnet18 0\.50, efficientnet_b3 0\.50/);
  // Each member against the ensemble on the same images: the paired difference and DeLong per binary view.
  assert.equal(
    report.comparisons!.map((c) => [c.model, c.against]),
    [
      ['resnet18', 'ensemble (soft vote)'],
      ['efficientnet_b3', 'ensemble (soft vote)'],
    ],
  );
  report.comparisons!.forEach((c, i) => {
    const d = c.differences.accuracy!;
    assert.ok(Math.abs(d.difference! - (report.models[i]!.metrics.accuracy - ensemble!.metrics.accuracy)) < 1e-12, 'accuracy difference');
    assert.ok(d.lower <= d.difference! && d.difference! <= d.upper, 'inside its interval');
    assert.equal(c.auc.map((v) => v.view), ['lowBoneDensity', 'topClass']);
  });
  assert.match(md, /## Each model against the ensemble \(paired, same images\)/);
  assert.ok(written!.files.includes('comparisons.csv'));
  const comparisons = parse(await readFile(join(out, 'comparisons.csv')), { columns: true }) as Record<string, string>[];
  assert.equal(comparisons.map((r) => `${r.model}:${r.statistic}:${r.view}`).slice(0, 4), ['resnet18:accuracy:', 'resnet18:quadraticKappa:', 'resnet18:auc_delong:lowBoneDensity', 'resnet18:auc_delong:topClass']);
});

test('--weights auto is fitted on val before any test image is read, and test data cannot change it', async () => {
  const events: string[] = [];
  const readImage = (file: string, transform: EvalTransform) => {
    events.push(/\/test-\d+\.png$/.test(file) ? 'test' : /\/val-\d+\.png$/.test(file) ? 'val' : `other:${file}`);
    return preprocessForModel(file, transform);
  };
  const first = await evaluateRuns({ backend,
    runs: [r18.dir, b3.dir],
    dataDir: data,
    weights: 'auto',
    outDir: null,
    resamples: 50,
    readImage,
    onWeightsFitted: () => events.push('fitted'),
  });
  const fittedAt = events.indexOf('fitted');
  assert.ok(fittedAt > 0, 'weights were fitted');
  assert.ok(events.slice(0, fittedAt).every((e) => e === 'val'), 'only val images before the fit');
  assert.ok(events.slice(fittedAt + 1).every((e) => e === 'test'), 'only test images after it');
  // ResNet18 at 64 resizes to 73, B3 to 68: two distinct transforms, so two reads per image.
  assert.is(events.filter((e) => e === 'val').length, 2 * labels.val.length, 'one read per val image and distinct transform');
  const w = first.report.ensembleWeights;
  assert.is(w.mode, 'auto');
  assert.is(w.fittedOn, 'val');
  assert.ok(w.valNll! <= w.equalValNll! + 1e-12, 'the fit is no worse than equal weights on val');
  const ensemble = first.report.models[2]!;
  const [a, b] = first.report.models;
  for (let i = 0; i < ensemble.probabilities.length; i++) {
    assert.ok(Math.abs(ensemble.probabilities[i]! - (w.weights[0]! * a!.probabilities[i]! + w.weights[1]! * b!.probabilities[i]!)) < 1e-6);
  }

  // Different test images and labels: the fitted weights are bit-for-bit the same.
  const other = join(root, 'data-other');
  await writeManifest(other, [2, 2, 2, 1, 0, 0, 1, 1], 50);
  const second = await evaluateRuns({ backend, runs: [r18.dir, b3.dir], dataDir: other, weights: 'auto', outDir: null, resamples: 50 });
  assert.equal(second.report.ensembleWeights.weights, w.weights);
  assert.not.equal(second.report.models[0]!.metrics.confusion, first.report.models[0]!.metrics.confusion);
});

test('option errors: auto on val, wrong weight count, empty split', async () => {
  const reject = async (options: Parameters<typeof evaluateRuns>[0], pattern: RegExp) =>
    evaluateRuns(options).then(
      () => assert.unreachable('accepted'),
      (e: unknown) => assert.ok(e instanceof UserError && pattern.test(e.message), String(e)),
    );
  await reject({ backend, runs: [r18.dir, b3.dir], dataDir: data, split: 'val', weights: 'auto', outDir: null }, /biased/);
  await reject({ backend, runs: [r18.dir, b3.dir], dataDir: data, weights: '1,2,3', outDir: null }, /3 values but there are 2 models/);
  const empty = join(root, 'data-empty');
  await mkdir(empty, { recursive: true });
  await writeFile(join(empty, 'splits.csv'), 'path,label,split,group\nNormal/x.png,0,train,g\n');
  await reject({ backend, runs: [r18.dir], dataDir: empty, outDir: null }, /test split .* is empty/);
});

test.run();
