import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { bootstrapAccuracy, calibration, negativeLogLikelihood, oneVsRestAuc, percentile, rocCurve } from '../../src/report/stats.js';
import { randomSource } from '../helpers/random.js';

const close = (actual: number | null, expected: number, what: string, tol = 1e-12) =>
  assert.ok(actual !== null && Math.abs(actual - expected) <= tol, `${what}: ${actual} ≠ ${expected}`);

test('percentile interpolates like numpy', () => {
  close(percentile([1, 2, 3, 4], 0.5), 2.5, 'median');
  close(percentile([1, 2, 3, 4], 0.25), 1.75, 'q25');
  close(percentile([10], 0.975), 10, 'single');
});

test('bootstrap: degenerate cases are exact, seeds reproduce, width matches the normal approximation', () => {
  const allRight = bootstrapAccuracy(new Array(50).fill(true), { rng: randomSource(1), resamples: 200 });
  assert.equal([allRight.lower, allRight.upper], [1, 1]);
  const allWrong = bootstrapAccuracy(new Array(50).fill(0), { rng: randomSource(1), resamples: 200 });
  assert.equal([allWrong.lower, allWrong.upper], [0, 0]);

  const n = 400;
  const correct = Array.from({ length: n }, (_, i) => i % 5 !== 0); // accuracy 0.8
  const a = bootstrapAccuracy(correct, { rng: randomSource(7), resamples: 2000 });
  const b = bootstrapAccuracy(correct, { rng: randomSource(7), resamples: 2000 });
  const c = bootstrapAccuracy(correct, { rng: randomSource(8), resamples: 2000 });
  assert.equal(a, b, 'same seed, same interval');
  assert.ok(a.lower !== c.lower || a.upper !== c.upper, 'another seed resamples differently');
  const halfWidth = 1.96 * Math.sqrt((0.8 * 0.2) / n); // ≈ 0.039
  assert.ok(a.lower < 0.8 && a.upper > 0.8, 'contains the point estimate');
  close(a.upper - a.lower, 2 * halfWidth, 'width ≈ normal approximation', 0.012);
  close((a.upper + a.lower) / 2, 0.8, 'centred', 0.01);
});

test('ROC AUC: hand case with a tie across classes counts half', () => {
  // positives 0.9, 0.8, 0.4; negatives 0.7, 0.4, 0.1 → wins 3 + 3 + (0 + ½ + 1) = 7.5 of 9.
  const roc = rocCurve([0.9, 0.8, 0.4, 0.7, 0.4, 0.1], [true, true, true, false, false, false]);
  close(roc.auc, 7.5 / 9, 'auc');
  assert.equal(roc.fpr.map((v) => +v.toFixed(6)), [0, 0, 0, 1 / 3, 2 / 3, 1].map((v) => +v.toFixed(6)));
  assert.equal(roc.tpr.map((v) => +v.toFixed(6)), [0, 1 / 3, 2 / 3, 2 / 3, 1, 1].map((v) => +v.toFixed(6)));
  close(rocCurve([0.5, 0.5, 0.5, 0.5], [true, false, true, false]).auc, 0.5, 'all tied = chance');
  close(rocCurve([0.1, 0.2, 0.8, 0.9], [false, false, true, true]).auc, 1, 'perfect');
  close(rocCurve([0.9, 0.8, 0.2, 0.1], [false, false, true, true]).auc, 0, 'inverted');
  assert.is(rocCurve([0.3, 0.4], [true, true]).auc, null, 'no negatives: undefined');
});

test('AUC equals the Mann-Whitney pair count on random scores with many ties', () => {
  const rng = randomSource(3);
  const scores = Array.from({ length: 300 }, () => Math.round(rng.next() * 10) / 10);
  const positive = scores.map((s) => rng.next() < 0.3 + 0.4 * s);
  let wins = 0;
  let pairs = 0;
  for (let i = 0; i < scores.length; i++)
    for (let j = 0; j < scores.length; j++) {
      if (!positive[i] || positive[j]) continue;
      pairs++;
      wins += scores[i]! > scores[j]! ? 1 : scores[i] === scores[j] ? 0.5 : 0;
    }
  close(rocCurve(scores, positive).auc, wins / pairs, 'auc', 1e-12);
});

test('one-vs-rest AUC over three classes; an absent class is undefined and left out of the macro mean', () => {
  const probabilities = new Float32Array([0.7, 0.2, 0.1, 0.3, 0.6, 0.1, 0.5, 0.4, 0.1, 0.2, 0.7, 0.1]);
  const labels = [0, 1, 0, 1];
  const auc = oneVsRestAuc(probabilities, labels, 3);
  close(auc.perClass[0]!, 1, 'class 0');
  close(auc.perClass[1]!, 1, 'class 1');
  assert.is(auc.perClass[2], null);
  close(auc.macro, 1, 'macro over defined classes');
});

test('ECE: hand case with two occupied bins', () => {
  // Confidence 0.9 (bin 14/15): two images, one right → |0.5 − 0.9| · 2/4.
  // Confidence 0.55 (bin 9/15): two images, both right → |1 − 0.55| · 2/4.
  const probabilities = new Float32Array([0.9, 0.05, 0.05, 0.05, 0.9, 0.05, 0.55, 0.25, 0.2, 0.25, 0.2, 0.55]);
  const result = calibration(probabilities, [0, 0, 0, 2], 3);
  close(result.ece, 0.5 * 0.4 + 0.5 * 0.45, 'ece', 1e-6);
  assert.is(result.bins.length, 15);
  assert.is(result.bins[13]!.count, 2);
  assert.is(result.bins[8]!.count, 2);
  close(result.bins[13]!.accuracy, 0.5, 'bin accuracy');
  close(calibration(new Float32Array([1, 0, 0, 0, 1, 0]), [0, 1], 3).ece, 0, 'perfectly confident and right');
});

test('negative log-likelihood clamps a zero probability', () => {
  close(negativeLogLikelihood(new Float32Array([0.5, 0.5, 0, 0.25, 0.75, 0]), [0, 1], 3), -(Math.log(0.5) + Math.log(0.75)) / 2, 'nll', 1e-7);
  assert.ok(Number.isFinite(negativeLogLikelihood(new Float32Array([1, 0, 0]), [2], 3)));
});

test.run();
