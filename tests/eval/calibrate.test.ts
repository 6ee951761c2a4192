import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { classNames } from '../../src/data/index.js';
import { DataError, UserError } from '../../src/util/index.js';
import { applyTemperature, calibrationReport, fitTemperature, negativeLogLikelihood, softVote } from '../../src/report/index.js';
import { calibrateRuns } from '../../src/eval/calibrate.js';
import { evaluateRuns } from '../../src/eval/evaluate.js';
import { formatPredictions, predictImages } from '../../src/eval/predict.js';
import { readRunCalibration, runCalibrationPath, writeRunSplit } from '../../src/runs/index.js';
import { writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';

let backend: BackendHandle;
let root = '';
let data = '';
let a: RunFixture;
let b: RunFixture;
const labels = { val: [0, 1, 2, 0, 1, 2, 1, 0, 2], test: [0, 0, 1, 1, 2, 2, 1, 0] };

async function writeManifest(dir: string): Promise<void> {
  const rows = ['path,label,split,group'];
  for (const split of ['val', 'test'] as const) {
    for (const [i, label] of labels[split].entries()) {
      const path = `${classNames[label]}/${split}-${i}.png`;
      await mkdir(join(dir, classNames[label]!), { recursive: true });
      await writeTestImage(join(dir, path), 70 + (i % 3) * 7, 66 + (i % 2) * 9, (split === 'test' ? 100 : 200) + i);
      rows.push(`${path},${label},${split},${split}-${i}`);
    }
  }
  await writeFile(join(dir, 'splits.csv'), rows.join('\n') + '\n');
}

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-calibrate-'));
  data = join(root, 'data');
  await writeManifest(data);
  a = await writeRunFixture(join(root, 'runs', 'a'), 'resnet18', { imageSize: 32, seed: 41 });
  b = await writeRunFixture(join(root, 'runs', 'b'), 'resnet18', { imageSize: 32, seed: 42 });
  for (const run of [a, b]) await writeRunSplit(run.dir, data);
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('calibrate fits each run on its val split and writes calibration.json; eval then reports calibrated probabilities, before and after', async () => {
  const runs = [a.dir, b.dir];
  // The uncalibrated outputs, from eval itself, before any calibration exists.
  const val = (await evaluateRuns({ backend, runs, dataDir: data, split: 'val', outDir: null, resamples: 20 })).report;
  const rawTest = (await evaluateRuns({ backend, runs, dataDir: data, outDir: null, resamples: 20 })).report;
  assert.is(rawTest.calibration, undefined);

  const warnings: string[] = [];
  const results = await calibrateRuns({ backend, runs, dataDir: data, onWarning: (w) => warnings.push(w) });
  // Random weights: a run no better than chance on val may end at the bracket's edge, and says so; none lacks its split record.
  assert.equal(warnings.filter((w) => !/lies on the edge of the search bracket/.test(w)), []);
  for (const [i, r] of results.entries()) {
    const expected = fitTemperature(val.models[i]!.probabilities, labels.val, 3);
    assert.ok(Math.abs(r.record.temperature - expected.temperature) < 1e-9, `T ${r.record.temperature} vs ${expected.temperature}`);
    assert.ok(r.record.nllAfter <= r.record.nllBefore);
    assert.equal(await readRunCalibration(runs[i]!), r.record);
    assert.is(r.record.fittedOn.images, labels.val.length);
  }

  const out = join(root, 'report');
  const { report, written } = await evaluateRuns({ backend, runs, dataDir: data, outDir: out, resamples: 20 });
  const section = report.calibration!;
  assert.equal(section.models.map((m) => m.name), [...report.models.map((m) => m.name)]);
  const temperatures = results.map((r) => r.record.temperature);
  for (let i = 0; i < 2; i++) {
    const calibrated = applyTemperature(rawTest.models[i]!.probabilities, 3, temperatures[i]!);
    report.models[i]!.probabilities.forEach((p, k) => assert.ok(Math.abs(p - calibrated[k]!) < 1e-6, 'member probabilities are calibrated'));
    assert.equal(report.models[i]!.predictions, rawTest.models[i]!.predictions, 'the argmax is unchanged');
    assert.ok(Math.abs(section.models[i]!.before.nll - negativeLogLikelihood(rawTest.models[i]!.probabilities, labels.test, 3)) < 1e-6);
  }
  // The ensemble: its own T, fitted on the val soft vote of the calibrated members.
  const valCalibrated = [0, 1].map((i) => applyTemperature(val.models[i]!.probabilities, 3, temperatures[i]!));
  const ensembleT = fitTemperature(softVote(valCalibrated), labels.val, 3).temperature;
  assert.ok(Math.abs(section.models[2]!.temperature - ensembleT) < 1e-6, `ensemble T ${section.models[2]!.temperature} vs ${ensembleT}`);
  const vote = softVote([0, 1].map((i) => report.models[i]!.probabilities));
  const ensemble = applyTemperature(vote, 3, ensembleT);
  report.models[2]!.probabilities.forEach((p, k) => assert.ok(Math.abs(p - ensemble[k]!) < 1e-5));
  assert.ok(Math.abs(section.models[2]!.after.brier - calibrationReport(report.models[2]!.probabilities, labels.test, 3).brier) < 1e-9);

  assert.ok(written!.files.includes('calibration_ensemble_soft_vote.png') && existsSync(join(out, 'calibration_resnet18_a.png')), written!.files.join(', '));
  const md = await readFile(join(out, 'results.md'), 'utf8');
  assert.match(md, /## Calibration \(temperature scaling\)/);
  assert.ok(md.includes(`| resnet18:a | ${temperatures[0]!.toFixed(3)} |`), md);
  assert.not.match(md, /fitted on the evaluated split/);

  // predict applies the same temperatures: its per-model probabilities are eval's calibrated ones.
  const image = report.images[3]!;
  const predicted = await predictImages({ backend, images: [join(data, image.path)], runs });
  assert.equal(Object.values(predicted.calibration!), temperatures);
  Object.values(predicted.images[0]!.models).forEach((m, i) =>
    m.probabilities.forEach((p, c) => assert.ok(Math.abs(p - report.models[i]!.probabilities[3 * 3 + c]!) < 1e-6, 'predict = eval, calibrated')),
  );
  assert.match(formatPredictions(predicted), /Probabilities are calibrated \(temperature scaling/);
});

test('a stale or partial calibration is not applied, and says so; a damaged record is refused naming the file', async () => {
  const c = await writeRunFixture(join(root, 'runs', 'c'), 'resnet18', { imageSize: 32, seed: 43 });
  const d = await writeRunFixture(join(root, 'runs', 'd'), 'resnet18', { imageSize: 32, seed: 44 });
  for (const run of [c, d]) await writeRunSplit(run.dir, data);
  await calibrateRuns({ backend, runs: [c.dir], dataDir: data });
  const warnings: string[] = [];
  const partial = await evaluateRuns({ backend, runs: [c.dir, d.dir], dataDir: data, outDir: null, resamples: 10, onWarning: (w) => warnings.push(w) });
  assert.is(partial.report.calibration, undefined);
  assert.ok(warnings.some((w) => /not every run is calibrated \(resnet18:d is not\)/.test(w)), warnings.join('\n'));

  const record = JSON.parse(await readFile(runCalibrationPath(c.dir), 'utf8'));
  await writeFile(runCalibrationPath(c.dir), JSON.stringify({ ...record, weightsSha256: '0'.repeat(64) }));
  warnings.length = 0;
  const stale = await evaluateRuns({ backend, runs: [c.dir], dataDir: data, outDir: null, resamples: 10, onWarning: (w) => warnings.push(w) });
  assert.is(stale.report.calibration, undefined);
  assert.ok(warnings.some((w) => /was fitted on other weights than the best checkpoint/.test(w)), warnings.join('\n'));

  await writeFile(runCalibrationPath(c.dir), JSON.stringify({ ...record, temperature: -1 }));
  try {
    await evaluateRuns({ backend, runs: [c.dir], dataDir: data, outDir: null, resamples: 10 });
    assert.unreachable('a damaged record must be refused');
  } catch (error) {
    assert.ok(error instanceof DataError && error.message.includes(runCalibrationPath(c.dir)), String(error));
  }
});

test("calibrate refuses a dataset that is not the run's own split, and an empty val split", async () => {
  const e = await writeRunFixture(join(root, 'runs', 'e'), 'resnet18', { imageSize: 32, seed: 45 });
  await writeRunSplit(e.dir, data);
  const other = join(root, 'other');
  await writeManifest(other);
  await writeFile(join(other, 'splits.csv'), (await readFile(join(other, 'splits.csv'), 'utf8')) + '\n');
  try {
    await calibrateRuns({ backend, runs: [e.dir], dataDir: other });
    assert.unreachable('another dataset must be refused');
  } catch (error) {
    assert.ok(error instanceof UserError && /a temperature is fitted on the run's own val split only/.test(error.message), String(error));
  }
  assert.not.ok(existsSync(runCalibrationPath(e.dir)), 'nothing written');
  const noVal = join(root, 'noval');
  await writeManifest(noVal);
  const manifest = (await readFile(join(noVal, 'splits.csv'), 'utf8')).split('\n').filter((l) => !l.includes(',val,'));
  await writeFile(join(noVal, 'splits.csv'), manifest.join('\n'));
  try {
    await calibrateRuns({ backend, runs: [e.dir], dataDir: noVal });
    assert.unreachable('an empty val split must be refused');
  } catch (error) {
    assert.ok(error instanceof UserError && /the val split of .* is empty: a temperature is fitted on val/.test(error.message), String(error));
  }
});

test.run();
