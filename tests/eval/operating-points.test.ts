import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { classNames } from '../../src/data/index.js';
import { applyTemperature, binaryScores, binaryViews, fitOperatingPoints, ratesAt, reportSummaryJson, softVote } from '../../src/report/index.js';
import { calibrateRuns } from '../../src/eval/calibrate.js';
import { evaluateRuns } from '../../src/eval/evaluate.js';
import { formatPredictions, predictImages } from '../../src/eval/predict.js';
import { readRunCalibration, runCalibrationPath, writeRunSplit } from '../../src/runs/index.js';
import { captureMain } from '../helpers/cli.js';
import { refusal } from '../helpers/refusal.js';
import { writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';

let backend: BackendHandle;
let root = '';
let data = '';
let a: RunFixture;
let b: RunFixture;
const labels = { val: [0, 1, 2, 0, 1, 2, 1, 0, 2, 2, 0, 1], test: [0, 0, 1, 1, 2, 2, 1, 0, 2, 1] };
const targets = { sensitivity: 0.9, specificity: 0.9 };

async function writeManifest(dir: string, keep: (label: number, split: string) => boolean = () => true): Promise<void> {
  const rows = ['path,label,split,group'];
  for (const split of ['val', 'test'] as const) {
    for (const [i, label] of labels[split].entries()) {
      if (!keep(label, split)) continue;
      const path = `${classNames[label]}/${split}-${i}.png`;
      await mkdir(join(dir, classNames[label]!), { recursive: true });
      await writeTestImage(join(dir, path), 70 + (i % 3) * 7, 66 + (i % 2) * 9, (split === 'test' ? 300 : 400) + i);
      // Pairs of test images share a duplicate group: the intervals draw them together.
      rows.push(`${path},${label},${split},${split}-${split === 'test' ? Math.floor(i / 2) : i}`);
    }
  }
  await writeFile(join(dir, 'splits.csv'), rows.join('\n') + '\n');
}

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-operating-points-'));
  data = join(root, 'data');
  await writeManifest(data);
  a = await writeRunFixture(join(root, 'runs', 'a'), 'resnet18', { imageSize: 32, seed: 51 });
  b = await writeRunFixture(join(root, 'runs', 'b'), 'resnet18', { imageSize: 32, seed: 52 });
  for (const run of [a, b]) await writeRunSplit(run.dir, data);
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('calibrate stores each run’s thresholds, chosen on its calibrated val scores; eval reports test rates at them and chooses the ensemble’s on val; predict decides at them', async () => {
  const runs = [a.dir, b.dir];
  const val = (await evaluateRuns({ backend, runs, dataDir: data, split: 'val', outDir: null, resamples: 10, operatingPoints: false })).report;
  const results = await calibrateRuns({ backend, runs, dataDir: data, targets: { sensitivity: 0.8, specificity: 0.85 } });
  const valCalibrated = results.map((r, i) => applyTemperature(val.models[i]!.probabilities, 3, r.record.temperature));
  for (const [i, r] of results.entries()) {
    const expected = fitOperatingPoints(valCalibrated[i]!, labels.val, classNames, { sensitivity: 0.8, specificity: 0.85 }, 'val');
    assert.equal(r.record.operatingPoints, expected, `${r.name}: the thresholds of its calibrated val scores`);
    assert.equal((await readRunCalibration(runs[i]!))!.operatingPoints, expected, 'stored in RUN/calibration.json');
    assert.equal(expected.views[0]!.points.map((p) => p.name), ['sens80', 'spec85', 'youden']);
  }

  const out = join(root, 'report');
  const { report, written } = await evaluateRuns({ backend, runs, dataDir: data, outDir: out, resamples: 30, targets: { sensitivity: 0.8, specificity: 0.85 }, prevalence: 0.1 });
  const section = report.operatingPoints!;
  assert.equal(section.models.map((m) => [m.name, m.kind]), report.models.map((m) => [m.name, m.kind]));
  assert.equal(section.models.slice(0, 2).map((m) => m.thresholdsFrom), runs.map((r) => runCalibrationPath(r)), 'members: their calibration records');
  assert.match(section.models[2]!.thresholdsFrom, /the val split of .*, chosen by osteo eval/);
  // The ensemble's thresholds: chosen on the val split's calibrated ensemble score (its own temperature over the vote).
  const ensembleT = report.calibration!.models[2]!.temperature;
  const ensembleVal = applyTemperature(softVote(valCalibrated), 3, ensembleT);
  const expectedEnsemble = fitOperatingPoints(ensembleVal, labels.val, classNames, { sensitivity: 0.8, specificity: 0.85 }, 'val');
  section.models[2]!.fitted.views.forEach((v, j) => v.points.forEach((p, q) => assert.ok(Math.abs(p.threshold - expectedEnsemble.views[j]!.points[q]!.threshold) < 1e-6, `ensemble ${v.view} ${p.name}`)));
  // On test: the rates at the val thresholds of the (calibrated) probabilities the report holds.
  section.models.forEach((m, i) => {
    binaryViews(classNames).forEach((view, j) => {
      const { scores, positive } = binaryScores(view, report.models[i]!.probabilities, labels.test, 3);
      m.views[j]!.points.forEach((p, q) => {
        assert.is(p.threshold, m.fitted.views[j]!.points[q]!.threshold);
        const r = ratesAt(scores, positive, p.threshold);
        assert.equal([p.counts.tp, p.counts.fp, p.counts.tn, p.counts.fn, p.sensitivity.value, p.npv.value], [r.tp, r.fp, r.tn, r.fn, r.sensitivity, r.npv]);
        assert.ok(p.atPrevalence!.prevalence === 0.1);
      });
    });
  });
  for (const file of ['roc_view_lowbonedensity.png', 'pr_view_topclass.png', 'decision_curve_lowbonedensity.png', 'decision_curve_topclass.png']) {
    assert.ok(written!.files.includes(file) && existsSync(join(out, file)), `${file} in ${written!.files.join(', ')}`);
  }
  const md = await readFile(join(out, 'results.md'), 'utf8');
  assert.match(md, /## Screening operating points/);
  assert.match(md, /### Osteopenia \+ Osteoporosis vs Normal \(7 positive, 3 negative\)/);
  assert.match(md, /\| PPV at 0\.1 \| NPV at 0\.1 \|/);
  const record = JSON.parse(await readFile(join(out, 'evaluation.json'), 'utf8'));
  assert.equal(record.runs, runs.map((r) => join(r)), 'the run record is kept');
  assert.equal(record.operatingPoints.models[2].views[1].points[0].threshold, section.models[2]!.views[1]!.points[0]!.threshold);
  assert.equal(record.operatingPoints.ensemble.members.map((m: { temperature: number }) => m.temperature), results.map((r) => r.record.temperature));
  assert.is(record.operatingPoints.ensemble.temperature, ensembleT);
  assert.equal(JSON.parse(JSON.stringify((reportSummaryJson(report) as { operatingPoints: unknown }).operatingPoints)), record.operatingPoints, '--json prints the same object');

  // predict at sens80: each run's decision at its stored threshold, the ensemble's at the report's.
  const image = 4;
  const predicted = await predictImages({ backend, images: [join(data, report.images[image]!.path)], runs, operatingPoint: 'sens80', evalReport: out });
  const decisions = predicted.images[0]!.screening!;
  binaryViews(classNames).forEach((view, j) => {
    const d = decisions[j]!;
    assert.is(d.view, view.key);
    Object.values(d.models).forEach((m, i) => {
      const score = binaryScores(view, report.models[i]!.probabilities.subarray(image * 3, image * 3 + 3), [0], 3).scores[0]!;
      assert.ok(Math.abs(m.score - score) < 1e-6, `${view.key} member ${i}: ${m.score} vs ${score}`);
      assert.is(m.threshold, results[i]!.record.operatingPoints!.views[j]!.points[0]!.threshold);
      assert.is(m.positive, m.score >= m.threshold);
    });
    const ensembleScore = binaryScores(view, report.models[2]!.probabilities.subarray(image * 3, image * 3 + 3), [0], 3).scores[0]!;
    assert.ok(Math.abs(d.ensemble!.score - ensembleScore) < 1e-6, `${view.key} ensemble: ${d.ensemble!.score} vs eval's ${ensembleScore}`);
    assert.is(d.ensemble!.threshold, section.models[2]!.views[j]!.points[0]!.threshold);
  });
  const text = formatPredictions(predicted);
  assert.match(text, /screening sens80, Osteopenia \+ Osteoporosis vs Normal: resnet18:a (positive|negative) \(score 0\.\d{3} (≥|<) \d\.\d{3}\); resnet18:b .*; ensemble (positive|negative)/);
  assert.match(text, /Screening decisions at sens80: positive when the view's score .* the osteo eval report /);
  const alone = formatPredictions(await predictImages({ backend, images: [join(data, report.images[image]!.path)], runs, operatingPoint: 'youden' }));
  assert.match(alone, /ensemble: no thresholds \(give --eval with the osteo eval report of these runs\)/);

  // The same through the command line: the flags come from the screening option records.
  const cli = await captureMain(['predict', join(data, report.images[image]!.path), '--run', a.dir, b.dir, '--operating-point', 'sens80', '--eval', out, '--backend', 'wasm', '--json']);
  assert.is(cli.code, 0, cli.stderr);
  assert.equal((JSON.parse(cli.stdout) as { images: { screening: unknown }[] }).images[0]!.screening, JSON.parse(JSON.stringify(decisions)));
  const badPoint = await captureMain(['predict', join(data, report.images[image]!.path), '--run', a.dir, '--operating-point', 'sensitive']);
  assert.is(badPoint.code, 1);
  assert.match(badPoint.stderr, /--operating-point: operatingPoint: expected sensNN, specNN or youden/);
  const badTarget = await captureMain(['calibrate', '--run', a.dir, '--data', data, '--target-sensitivity', '1']);
  assert.is(badTarget.code, 1);
  assert.match(badTarget.stderr, /--target-sensitivity: targetSensitivity: /);

  // Refusals, naming what is missing.
  const one = [join(data, report.images[0]!.path)];
  await refusal(predictImages({ backend, images: one, runs, operatingPoint: 'sens90' }), /runs\/a\/calibration\.json has no such point for Osteopenia \+ Osteoporosis vs Normal \(it has sens80, spec85, youden\)/);
  await refusal(predictImages({ backend, images: one, runs: [b.dir, a.dir], operatingPoint: 'sens80', evalReport: out }), /--eval .* is the report of .*runs\/a, .*runs\/b, not of .*runs\/b, .*runs\/a in this order/);
  await refusal(predictImages({ backend, images: one, runs, evalReport: out }), /--eval gives the ensemble its screening thresholds: use it with --operating-point/);
  await refusal(predictImages({ backend, images: one, runs, operatingPoint: 'sens80', evalReport: root }), /holds no evaluation\.json/);
});

test('uncalibrated runs: eval chooses every threshold on val itself; thresholds of other targets are not used, and say so', async () => {
  const c = await writeRunFixture(join(root, 'runs', 'c'), 'resnet18', { imageSize: 32, seed: 53 });
  await writeRunSplit(c.dir, data);
  const val = (await evaluateRuns({ backend, runs: [c.dir], dataDir: data, split: 'val', outDir: null, resamples: 10, operatingPoints: false })).report;
  const { report } = await evaluateRuns({ backend, runs: [c.dir], dataDir: data, outDir: null, resamples: 10 });
  const m = report.operatingPoints!.models[0]!;
  assert.equal(m.fitted, fitOperatingPoints(val.models[0]!.probabilities, labels.val, classNames, targets, 'val'));
  assert.match(m.thresholdsFrom, /chosen by osteo eval/);
  assert.is(report.operatingPoints!.calibrated, false);
  await refusal(predictImages({ backend, images: [join(data, report.images[0]!.path)], runs: [c.dir], operatingPoint: 'sens90' }), /--operating-point sens90 needs every run calibrated/);

  await calibrateRuns({ backend, runs: [c.dir], dataDir: data, targets: { sensitivity: 0.95, specificity: 0.9 } });
  const warnings: string[] = [];
  const other = await evaluateRuns({ backend, runs: [c.dir], dataDir: data, outDir: null, resamples: 10, onWarning: (w) => warnings.push(w) });
  assert.ok(warnings.some((w) => /holds screening thresholds for targets sensitivity 0\.95 \/ specificity 0\.9, not the ones asked for now: eval chooses resnet18's on the val split instead/.test(w)), warnings.join('\n'));
  assert.match(other.report.operatingPoints!.models[0]!.thresholdsFrom, /chosen by osteo eval/);
  assert.equal(other.report.operatingPoints!.models[0]!.fitted.views[0]!.points.map((p) => p.name), ['sens90', 'spec90', 'youden']);
});

test('a val split without a class: calibrate refuses before writing anything, eval reports without operating points and says why', async () => {
  const d = await writeRunFixture(join(root, 'runs', 'd'), 'resnet18', { imageSize: 32, seed: 54 });
  const noOsteopenia = join(root, 'no-osteopenia');
  await writeManifest(noOsteopenia, (label, split) => !(split === 'val' && label === 1));
  await writeRunSplit(d.dir, noOsteopenia);
  await refusal(calibrateRuns({ backend, runs: [d.dir], dataDir: noOsteopenia }), /the val split of .*no-osteopenia has no Osteopenia image, so the screening thresholds cannot be chosen on it/);
  assert.not.ok(existsSync(runCalibrationPath(d.dir)), 'no calibration written');
  await refusal(calibrateRuns({ backend, runs: [d.dir], dataDir: noOsteopenia, targets: { sensitivity: 1, specificity: 0.9 } }), /the target sensitivity 1 is outside \(0, 1\)/);
  const warnings: string[] = [];
  const { report } = await evaluateRuns({ backend, runs: [d.dir], dataDir: noOsteopenia, outDir: null, resamples: 10, onWarning: (w) => warnings.push(w) });
  assert.is(report.operatingPoints, undefined);
  assert.ok(warnings.some((w) => /^no screening operating points in this report: the val split of .* \(resnet18\) has no Osteopenia image/.test(w)), warnings.join('\n'));
  assert.ok(report.models[0]!.metrics.accuracy >= 0, 'the rest of the report stands');
});

test.run();
