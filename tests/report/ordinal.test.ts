import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { metricInput, metricRegistry, meanAbsoluteClassError, quadraticWeightedKappa, summarize } from '../../src/report/index.js';
import { randomSource } from '../helpers/random.js';
import { runPython, sklearn } from '../fixtures/torch/python.js';
import { testWith } from '../helpers/requirements.js';

const close = (actual: number | null, expected: number, what: string, tol = 1e-12) =>
  assert.ok(actual !== null && Math.abs(actual - expected) <= tol, `${what}: ${actual} ≠ ${expected}`);

const classNames = ['Normal', 'Osteopenia', 'Osteoporosis'];

test('quadratic kappa and the mean absolute class error of a hand-computed case', () => {
  // O = [[2,1,0],[0,1,1],[1,0,2]] (n = 8): rows 3,2,3, columns 3,2,3.
  // Σ w·O = 1·1 + 1·1 + 4·1 = 6; Σ w·E = Σ (i−j)² r_i c_j / 8 = (1·(3·2+2·3+2·3+3·2) + 4·(3·3+3·3)) / 8 = (24 + 72) / 8 = 12.
  const labels = [0, 0, 0, 1, 1, 2, 2, 2];
  const predictions = [0, 0, 1, 1, 2, 0, 2, 2];
  close(quadraticWeightedKappa(labels, predictions, 3), 1 - 6 / 12, 'kappa');
  close(meanAbsoluteClassError(labels, predictions), (1 + 1 + 2) / 8, 'MAE');
  close(quadraticWeightedKappa(labels, labels, 3), 1, 'perfect agreement');
  // Everything in one class: agreement beyond chance is undefined (sklearn: nan).
  assert.is(quadraticWeightedKappa([1, 1], [1, 1], 3), null);
  assert.is(quadraticWeightedKappa([], [], 3), null);
  assert.is(meanAbsoluteClassError([], []), 0);
});

testWith(sklearn, test, "quadratic kappa and MAE equal scikit-learn's cohen_kappa_score(weights='quadratic') and mean_absolute_error", () => {
  const rng = randomSource(11);
  const cases: { labels: number[]; predictions: number[] }[] = [];
  for (const [n, agreement] of [
    [40, 0.7],
    [200, 0.5],
    [15, 0.1],
  ] as const) {
    const labels = Array.from({ length: n }, () => Math.floor(rng.next() * 3));
    cases.push({ labels, predictions: labels.map((y) => (rng.next() < agreement ? y : Math.floor(rng.next() * 3))) });
  }
  // A class absent from the labels (a two-class external set) and predicted anyway.
  cases.push({ labels: [0, 0, 2, 2, 2, 0], predictions: [0, 1, 2, 1, 2, 2] });
  const out = runPython(
    {
      code: [
        'import json, sys',
        'from sklearn.metrics import cohen_kappa_score, mean_absolute_error',
        'cases = json.load(sys.stdin)',
        "print(json.dumps([[cohen_kappa_score(c['labels'], c['predictions'], labels=[0, 1, 2], weights='quadratic'), mean_absolute_error(c['labels'], c['predictions'])] for c in cases]))",
      ].join('\n'),
    },
    [],
    { input: JSON.stringify(cases), needs: sklearn },
  );
  const expected = JSON.parse(out) as [number, number][];
  cases.forEach((c, i) => {
    close(quadraticWeightedKappa(c.labels, c.predictions, 3), expected[i]![0], `kappa, case ${i}`, 1e-12);
    close(meanAbsoluteClassError(c.labels, c.predictions), expected[i]![1], `MAE, case ${i}`, 1e-12);
  });
});

test('kappa and MAE are registry records with bootstrap intervals in every eval output and the CV views', () => {
  const kappa = metricRegistry.get('quadraticKappa');
  const mae = metricRegistry.get('meanAbsoluteClassError');
  assert.ok(kappa.higherIsBetter && !mae.higherIsBetter);
  for (const r of [kappa, mae]) {
    assert.ok(r.interval === true, `${r.key} has an interval`);
    assert.ok(r.views.includes('table') && r.views.includes('cv') && r.views.includes('cvDifferences'), `${r.key} views`);
  }
  const rng = randomSource(5);
  const labels = Array.from({ length: 90 }, () => Math.floor(rng.next() * 3));
  const probabilities = new Float32Array(90 * 3);
  labels.forEach((y, i) => {
    const raw = [0, 1, 2].map((k) => (k === y ? 0.4 : 0) + rng.next());
    const s = raw[0]! + raw[1]! + raw[2]!;
    raw.forEach((v, k) => (probabilities[i * 3 + k] = v / s));
  });
  const input = metricInput(probabilities, labels, classNames);
  close(kappa.compute(input) as number, quadraticWeightedKappa(labels, input.predictions, 3)!, 'record = function');
  const summary = summarize('m', 'model', probabilities, labels, 3, { rng: randomSource(1), resamples: 200, classNames });
  for (const key of ['quadraticKappa', 'meanAbsoluteClassError']) {
    const v = summary.values[key] as number;
    const ci = summary.intervals[key]!;
    assert.ok(ci.lower < v && v < ci.upper, `${key}: ${ci.lower} < ${v} < ${ci.upper}`);
  }
});

test.run();
