import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { binaryViews, delongTest, metricRegistry, pairedBootstrapDifference, pairedComparison, rocCurve, type OverallMetric } from '../../src/report/index.js';
import { randomSource } from '../helpers/random.js';

const close = (actual: number | null | undefined, expected: number, what: string, tol = 1e-12) =>
  assert.ok(actual !== null && actual !== undefined && Math.abs(actual - expected) <= tol, `${what}: ${actual} ≠ ${expected}`);

const classNames = ['Normal', 'Osteopenia', 'Osteoporosis'];
const accuracy = metricRegistry.get('accuracy') as OverallMetric;

test("DeLong's test on a hand-worked example (three positives, two negatives, one tie)", () => {
  // Positives are images 0–2, negatives 3–4.
  // A: positives 0.9, 0.6, 0.4; negatives 0.5, 0.2. ψ rows: [1,1], [1,1], [0,1]
  //    V10 = 1, 1, ½; V01 = ⅔, 1; AUC_A = 2.5/3 = 5/6.
  // B: positives 0.8, 0.3, 0.6; negatives 0.6, 0.1. ψ rows: [1,1], [0,1], [½,1] (a tie)
  //    V10 = 1, ½, ¾; V01 = ½, 1; AUC_B = 2.25/3 = 3/4.
  // V10_A − V10_B = 0, ½, −¼: mean 1/12, sample variance (1/144 + 25/144 + 16/144)/2 = 7/48, over m = 3: 7/144.
  // V01_A − V01_B = ⅙, 0: sample variance 2·(1/12)²/1 = 1/72, over n = 2: 1/144.
  // Var = 8/144 = 1/18; z = (1/12)·√18 = √2/4; p = erfc(z/√2) = erfc(1/4) = 0.7236736098317631.
  const positive = [true, true, true, false, false];
  const t = delongTest([0.9, 0.6, 0.4, 0.5, 0.2], [0.8, 0.3, 0.6, 0.6, 0.1], positive)!;
  close(t.aucA, 5 / 6, 'AUC A');
  close(t.aucB, 3 / 4, 'AUC B');
  close(t.difference, 1 / 12, 'difference');
  close(t.standardError, Math.sqrt(1 / 18), 'standard error');
  close(t.z, Math.SQRT2 / 4, 'z');
  close(t.pValue, 0.7236736098317631, 'p', 1e-12);
  close(t.upper - t.difference, 1.959963984540054 * Math.sqrt(1 / 18), '95% half-width', 1e-9);
  assert.equal([t.positives, t.negatives], [3, 2]);
  // The AUCs are the trapezoidal ones of rocCurve (ties half), and swapping A and B flips the sign only.
  close(t.aucB, rocCurve([0.8, 0.3, 0.6, 0.6, 0.1], positive).auc!, 'AUC B = rocCurve');
  const swapped = delongTest([0.8, 0.3, 0.6, 0.6, 0.1], [0.9, 0.6, 0.4, 0.5, 0.2], positive)!;
  close(swapped.z, -t.z!, 'z swapped');
  close(swapped.pValue, t.pValue, 'p swapped');
});

test('DeLong: identical scores give no test (p 1), fewer than two positives or negatives give null', () => {
  const same = delongTest([0.1, 0.7, 0.3, 0.9], [0.1, 0.7, 0.3, 0.9], [false, true, false, true])!;
  assert.is(same.difference, 0);
  assert.is(same.z, null);
  assert.is(same.pValue, 1);
  assert.is(delongTest([0.1, 0.7, 0.3], [0.2, 0.5, 0.3], [false, true, false]), null);
});

/** Probabilities that put 0.8 on `predicted` and 0.1 on the other two classes. */
function confident(predicted: readonly number[]): Float32Array {
  const p = new Float32Array(predicted.length * 3).fill(0.1);
  predicted.forEach((c, i) => (p[i * 3 + c] = 0.8));
  return p;
}

test('the paired bootstrap resamples duplicate groups whole, both models on the same draw', () => {
  // Two groups of ten images. In group x, A is right and B wrong; in group y both are right.
  const labels = Array.from({ length: 20 }, (_, i) => i % 3);
  const a = confident(labels);
  const b = confident(labels.map((y, i) => (i < 10 ? (y + 1) % 3 : y)));
  const grouped = Array.from({ length: 20 }, (_, i) => (i < 10 ? 'x' : 'y'));
  const g = pairedBootstrapDifference(accuracy, a, b, labels, grouped, classNames, { rng: randomSource(3), resamples: 400 });
  close(g.difference, 0.5, 'difference on all images');
  // A draw of two groups is xx, xy or yy: the difference is 1, ½ or 0, so the 95% interval spans 0 to 1.
  assert.equal([g.lower, g.upper], [0, 1]);
  // Each image its own group: the interval is the much narrower one of an image bootstrap.
  const single = pairedBootstrapDifference(accuracy, a, b, labels, labels.map((_, i) => `g${i}`), classNames, { rng: randomSource(3), resamples: 400 });
  assert.ok(single.lower > 0.15 && single.upper < 0.85 && single.lower < 0.5 && single.upper > 0.5, `${single.lower}–${single.upper}`);
  // The same model against itself: every paired draw gives 0.
  const self = pairedBootstrapDifference(accuracy, a, a, labels, grouped, classNames, { rng: randomSource(3), resamples: 50 });
  assert.equal([self.difference, self.lower, self.upper], [0, 0, 0]);
});

test('a paired comparison carries each record difference and DeLong on both binary views', () => {
  const rng = randomSource(21);
  const n = 60;
  const labels = Array.from({ length: n }, () => Math.floor(rng.next() * 3));
  const noisy = (strength: number) => {
    const p = new Float32Array(n * 3);
    labels.forEach((y, i) => {
      const raw = [0, 1, 2].map((k) => (k === y ? strength : 0) + rng.next());
      const s = raw[0]! + raw[1]! + raw[2]!;
      raw.forEach((v, k) => (p[i * 3 + k] = v / s));
    });
    return p;
  };
  const model = { name: 'm', probabilities: noisy(0.3) };
  const ensemble = { name: 'e', probabilities: noisy(1) };
  const groups = labels.map((_, i) => String(i));
  const comparison = pairedComparison(model, ensemble, labels, groups, classNames, { records: [accuracy], rng: () => randomSource(9), resamples: 100 });
  assert.equal(Object.keys(comparison.differences), ['accuracy']);
  assert.equal(comparison.differences.accuracy, pairedBootstrapDifference(accuracy, model.probabilities, ensemble.probabilities, labels, groups, classNames, { rng: randomSource(9), resamples: 100 }));
  assert.equal(
    comparison.auc.map((v) => [v.view, v.name]),
    [
      ['lowBoneDensity', 'Osteopenia + Osteoporosis vs Normal'],
      ['topClass', 'Osteoporosis vs rest'],
    ],
  );
  // Low bone density's score is P(Osteopenia) + P(Osteoporosis); its AUC is rocCurve's on that score.
  const score = (p: Float32Array) => labels.map((_, i) => p[i * 3 + 1]! + p[i * 3 + 2]!);
  const positive = labels.map((y) => y > 0);
  close(comparison.auc[0]!.test!.aucA, rocCurve(score(model.probabilities), positive).auc!, 'view AUC A', 1e-12);
  close(comparison.auc[0]!.test!.aucB, rocCurve(score(ensemble.probabilities), positive).auc!, 'view AUC B', 1e-12);
  assert.equal(binaryViews(['Normal', 'Osteoporosis']).map((v) => v.positiveClasses), [[1]], 'two classes: one view');
});

test.run();
