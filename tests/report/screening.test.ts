import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  binaryScores,
  binaryViews,
  chooseThresholds,
  decisionCurve,
  evaluateOperatingPoints,
  fitOperatingPoints,
  precisionRecallCurve,
  predictiveValuesAt,
  ratesAt,
  rocCurve,
} from '../../src/report/index.js';
import { runPython, sklearn } from '../fixtures/torch/python.js';
import { testWith } from '../helpers/requirements.js';
import { randomSource } from '../helpers/random.js';
import { refusal } from '../helpers/refusal.js';

const classNames = ['Normal', 'Osteopenia', 'Osteoporosis'];
const close = (actual: number | null | undefined, expected: number, what: string, tol = 1e-12) =>
  assert.ok(actual !== null && actual !== undefined && Math.abs(actual - expected) <= tol, `${what}: ${actual} ≠ ${expected}`);
const targets = { sensitivity: 0.9, specificity: 0.9 };

/** Scores with many ties (two decimals), positives higher on average. */
function labelled(n: number, seed: number): { scores: number[]; positive: boolean[] } {
  const rng = randomSource(seed);
  const positive = Array.from({ length: n }, () => rng.next() < 0.4);
  const scores = positive.map((p) => Math.round(Math.min(1, Math.max(0, (p ? 0.3 : 0) + rng.next() * 0.7)) * 100) / 100);
  return { scores, positive };
}

test('the threshold rules on a hand-worked case: the highest threshold reaching the target sensitivity, the lowest reaching the target specificity, Youden highest among ties', () => {
  // Positives 0.9 0.8 0.6 0.4, negatives 0.7 0.5 0.3 0.2 0.1 0.05 (score ≥ t is positive).
  // t:    0.9  0.8  0.7  0.6  0.5  0.4  0.3  0.2  0.1  0.05
  // sens: 1/4  2/4  2/4  3/4  3/4  4/4  …
  // spec: 6/6  6/6  5/6  5/6  4/6  4/6  3/6  2/6  1/6  0
  // J:    .25  .5   .333 .583 .417 .667 .5   .333 .167 0
  const scores = [0.9, 0.8, 0.6, 0.4, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05];
  const positive = [true, true, true, true, false, false, false, false, false, false];
  const [sens, spec, youden] = chooseThresholds(scores, positive, { sensitivity: 0.7, specificity: 0.8 }, 'case');
  assert.equal([sens!.name, sens!.threshold, sens!.fitted.tp, sens!.fitted.fp], ['sens70', 0.6, 3, 1], 'sensitivity 3/4 ≥ 0.7 first at 0.6');
  assert.equal([spec!.name, spec!.threshold, spec!.fitted.tn, spec!.fitted.fn], ['spec80', 0.6, 5, 1], 'specificity 5/6 ≥ 0.8 last at 0.6');
  assert.equal([youden!.name, youden!.threshold, youden!.target], ['youden', 0.4, null]);
  close(youden!.fitted.sensitivity, 1, 'Youden sensitivity');
  close(youden!.fitted.specificity, 4 / 6, 'Youden specificity');
  // A target met exactly counts as reached (≥): sensitivity 0.75 at 0.6, specificity 5/6 at 0.6.
  assert.is(chooseThresholds(scores, positive, { sensitivity: 0.75, specificity: 5 / 6 }, 'case')[0]!.threshold, 0.6);
  // Half the negatives tied with the positives at the top score: no score keeps specificity ≥ 0.9,
  // so the point is roc_curve's first threshold, top + 1, calling no one positive.
  const unreachable = chooseThresholds([0.9, 0.9, 0.9, 0.9, 0.1, 0.1], [true, true, false, false, false, false], targets, 'case')[1]!;
  assert.equal([unreachable.threshold, unreachable.fitted.tp, unreachable.fitted.fp, unreachable.fitted.sensitivity, unreachable.fitted.specificity], [1.9, 0, 0, 0, 1]);
  // Youden ties: positives 0.9 0.5, negatives 0.7 0.3 give J = ½ at both 0.9 and 0.5; the higher wins.
  assert.is(chooseThresholds([0.9, 0.5, 0.7, 0.3], [true, true, false, false], targets, 'case')[2]!.threshold, 0.9);
});

testWith(sklearn, test, "thresholds and rates equal scikit-learn's roc_curve candidates and confusion_matrix counts, on val and on test", () => {
  const val = labelled(240, 5);
  const testSet = labelled(180, 6);
  const chosen = chooseThresholds(val.scores, val.positive, { sensitivity: 0.85, specificity: 0.8 }, 'val');
  const out = runPython(
    {
      code: [
        'import json, sys',
        'import numpy as np',
        'from sklearn.metrics import confusion_matrix, roc_curve',
        'd = json.load(sys.stdin)',
        "y = np.array(d['y']); s = np.array(d['s'])",
        '_, _, cands = roc_curve(y, s, drop_intermediate=False)  # cands[0] = top score + 1 (scikit-learn 1.2)',
        'def counts(yy, ss, t):',
        '    tn, fp, fn, tp = confusion_matrix(yy, (ss >= t).astype(int), labels=[0, 1]).ravel()',
        '    return [int(tp), int(fp), int(tn), int(fn)]',
        'c = [counts(y, s, t) for t in cands]',
        "sens = [i for i, (tp, fp, tn, fn) in enumerate(c) if tp / (tp + fn) >= d['ts']][0]",
        "spec = [i for i, (tp, fp, tn, fn) in enumerate(c) if tn / (tn + fp) >= d['tp']][-1]",
        'j = [tp / (tp + fn) - fp / (fp + tn) for tp, fp, tn, fn in c[1:]]',
        'youden = 1 + int(np.argmax(j))  # among the scores, the first (highest) of the largest',
        "yt = np.array(d['yt']); st = np.array(d['st'])",
        "print(json.dumps({'thresholds': [float(cands[i]) for i in (sens, spec, youden)], 'val': [c[i] for i in (sens, spec, youden)],",
        "  'test': [counts(yt, st, cands[i]) for i in (sens, spec, youden)]}))",
      ].join('\n'),
    },
    [],
    { input: JSON.stringify({ y: val.positive.map(Number), s: val.scores, yt: testSet.positive.map(Number), st: testSet.scores, ts: 0.85, tp: 0.8 }), needs: sklearn },
  );
  const expected = JSON.parse(out) as { thresholds: number[]; val: number[][]; test: number[][] };
  assert.equal(
    chosen.map((p) => p.threshold),
    expected.thresholds,
  );
  chosen.forEach((p, i) => {
    assert.equal([p.fitted.tp, p.fitted.fp, p.fitted.tn, p.fitted.fn], expected.val[i], `${p.name} val counts`);
    const r = ratesAt(testSet.scores, testSet.positive, p.threshold);
    const [tp, fp, tn, fn] = expected.test[i]!;
    assert.equal([r.tp, r.fp, r.tn, r.fn], [tp, fp, tn, fn], `${p.name} test counts`);
    close(r.sensitivity, tp! / (tp! + fn!), 'sensitivity');
    close(r.specificity, tn! / (tn! + fp!), 'specificity');
    close(r.ppv, tp! / (tp! + fp!), 'PPV');
    close(r.npv, tn! / (tn! + fn!), 'NPV');
  });
});

testWith(sklearn, test, "the precision-recall curve and average precision equal scikit-learn's", () => {
  const { scores, positive } = labelled(150, 8);
  const pr = precisionRecallCurve(scores, positive);
  const out = runPython(
    {
      code: [
        'import json, sys',
        'import numpy as np',
        'from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score',
        'd = json.load(sys.stdin)',
        "p, r, _ = precision_recall_curve(d['y'], d['s'])",
        "print(json.dumps({'precision': p[::-1].tolist(), 'recall': r[::-1].tolist(), 'ap': average_precision_score(d['y'], d['s']), 'auc': roc_auc_score(d['y'], d['s'])}))",
      ].join('\n'),
    },
    [],
    { input: JSON.stringify({ y: positive.map(Number), s: scores }), needs: sklearn },
  );
  const expected = JSON.parse(out) as { precision: number[]; recall: number[]; ap: number; auc: number };
  assert.is(pr.recall.length, expected.recall.length);
  pr.recall.forEach((v, i) => close(v, expected.recall[i]!, `recall ${i}`));
  pr.precision.forEach((v, i) => close(v, expected.precision[i]!, `precision ${i}`));
  close(pr.averagePrecision, expected.ap, 'average precision', 1e-12);
  close(rocCurve(scores, positive).auc, expected.auc, 'AUC', 1e-12);
});

test("PPV and NPV at a prevalence by hand (Bayes' rule)", () => {
  // sens 0.8, spec 0.9, π 0.1: PPV = 0.08 / (0.08 + 0.1·0.9) = 0.08/0.17; NPV = 0.81 / (0.81 + 0.2·0.1) = 0.81/0.83.
  const at = predictiveValuesAt(0.8, 0.9, 0.1);
  close(at.ppv, 0.08 / 0.17, 'PPV at 10%');
  close(at.npv, 0.81 / 0.83, 'NPV at 10%');
  // At the split's own prevalence they are the split's PPV and NPV.
  const { scores, positive } = labelled(120, 3);
  const r = ratesAt(scores, positive, 0.5);
  const own = predictiveValuesAt(r.sensitivity, r.specificity, (r.tp + r.fn) / scores.length);
  close(own.ppv, r.ppv!, 'PPV at the own prevalence', 1e-12);
  close(own.npv, r.npv!, 'NPV at the own prevalence', 1e-12);
  assert.equal(predictiveValuesAt(null, 0.9, 0.1), { ppv: null, npv: null });
});

test('net benefit by hand, with treat-all and treat-none', () => {
  // Positives 0.9 0.7 0.3 0.1, negatives 0.8 0.4 0.25 0.15 0.05 0.02: n = 10, prevalence 0.4.
  // pt 0.2 (odds 1/4): TP 3, FP 3 → 0.3 − 0.3/4 = 0.225; treat all 0.4 − 0.6/4 = 0.25.
  // pt 0.5 (odds 1): TP 2, FP 1 → 0.2 − 0.1 = 0.1; treat all 0.4 − 0.6 = −0.2.
  // pt 0.95 (odds 19): TP 0, FP 0 → 0.
  const scores = [0.9, 0.7, 0.3, 0.1, 0.8, 0.4, 0.25, 0.15, 0.05, 0.02];
  const positive = [true, true, true, true, false, false, false, false, false, false];
  const curve = decisionCurve(scores, positive, [0.2, 0.5, 0.95]);
  curve.netBenefit.forEach((v, i) => close(v, [0.225, 0.1, 0][i]!, `net benefit at ${curve.thresholds[i]}`, 1e-15));
  curve.treatAll.forEach((v, i) => close(v, [0.25, -0.2, 0.4 - 0.6 * 19][i]!, `treat all at ${curve.thresholds[i]}`, 1e-12));
  assert.equal(curve.treatNone, [0, 0, 0]);
  // The default grid: 0.01 … 0.99; a score equal to pt is called positive (0.3 at pt 0.3: TP 3, FP 2).
  const grid = decisionCurve(scores, positive);
  assert.is(grid.thresholds.length, 99);
  assert.equal([grid.thresholds[0], grid.thresholds[98]], [0.01, 0.99]);
  close(grid.netBenefit[29], 0.3 - 0.2 * (0.3 / 0.7), 'net benefit at 0.3', 1e-12);
});

/** Probabilities whose view scores separate the classes somewhat. */
function probabilities(labels: number[], seed: number): Float32Array {
  const rng = randomSource(seed);
  const p = new Float32Array(labels.length * 3);
  labels.forEach((y, i) => {
    const raw = [0, 1, 2].map((k) => (k === y ? 0.4 : 0) + rng.next());
    const s = raw[0]! + raw[1]! + raw[2]!;
    raw.forEach((v, k) => (p[i * 3 + k] = v / s));
  });
  return p;
}

test('operating points chosen on val, scored on test: each rate is the one at the val threshold, every interval present and ordered, and a group is drawn whole', () => {
  const rng = randomSource(12);
  const valLabels = Array.from({ length: 90 }, (_, i) => i % 3);
  const testLabels = Array.from({ length: 120 }, () => Math.floor(rng.next() * 3));
  const fitted = fitOperatingPoints(probabilities(valLabels, 1), valLabels, classNames, targets, 'the val split');
  assert.equal(fitted.views.map((v) => [v.view, v.positiveClasses]), [['lowBoneDensity', [1, 2]], ['topClass', [2]]]);
  for (const v of fitted.views) {
    const [sens, spec] = v.points;
    assert.ok(sens!.fitted.sensitivity! >= 0.9 && spec!.fitted.specificity! >= 0.9, `${v.view}: targets reached on val`);
  }
  const testProbabilities = probabilities(testLabels, 2);
  const groups = testLabels.map((_, i) => `g${Math.floor(i / 2)}`);
  const views = evaluateOperatingPoints(testProbabilities, testLabels, groups, classNames, fitted, { rng: randomSource(4), resamples: 300, prevalence: 0.2 });
  const again = evaluateOperatingPoints(testProbabilities, testLabels, groups, classNames, fitted, { rng: randomSource(4), resamples: 300, prevalence: 0.2 });
  assert.equal(views, again, 'the same seed gives the same intervals');
  binaryViews(classNames).forEach((view, j) => {
    const { scores, positive } = binaryScores(view, testProbabilities, testLabels, 3);
    const v = views[j]!;
    close(v.auc.value, rocCurve(scores, positive).auc!, `${view.key} AUC`);
    assert.ok(v.auc.lower! <= v.auc.value! && v.auc.value! <= v.auc.upper! && v.auc.upper! - v.auc.lower! > 0.01, `${view.key} AUC interval ${v.auc.lower}–${v.auc.upper}`);
    v.points.forEach((p, q) => {
      assert.is(p.threshold, fitted.views[j]!.points[q]!.threshold, 'the val threshold, unchanged');
      const r = ratesAt(scores, positive, p.threshold);
      assert.equal(p.counts, { tp: r.tp, fp: r.fp, tn: r.tn, fn: r.fn });
      for (const key of ['sensitivity', 'specificity', 'ppv', 'npv'] as const) {
        const s = p[key];
        assert.is(s.value, r[key]);
        assert.ok(s.lower !== null && s.upper !== null && s.lower <= s.value! + 1e-12 && s.value! <= s.upper + 1e-12, `${view.key} ${p.name} ${key}: ${s.lower} ≤ ${s.value} ≤ ${s.upper}`);
      }
      const at = predictiveValuesAt(r.sensitivity, r.specificity, 0.2);
      assert.is(p.atPrevalence!.ppv.value, at.ppv);
      assert.ok(p.atPrevalence!.ppv.lower! <= p.atPrevalence!.ppv.upper!, 'PPV at the prevalence has its interval');
    });
    assert.is(v.decisionCurve.netBenefit.length, 99);
    assert.equal([v.positives, v.negatives], [positive.filter(Boolean).length, positive.filter((x) => !x).length]);
  });
  // Two groups, one all right and one all wrong at the threshold: every draw is xx, xy or yy, so
  // the sensitivity interval spans exactly 0 to 1; per image it would be far narrower.
  const labels = [2, 2, 2, 2, 0, 0, 0, 0];
  const p = new Float32Array(labels.flatMap((y, i) => (y === 2 && i < 2 ? [0, 0.1, 0.9] : y === 2 ? [0.9, 0.05, 0.05] : [0.9, 0.05, 0.05])));
  const one = { targets, views: [{ view: 'topClass' as const, name: 'x', positiveClasses: [2], points: [{ name: 'sens90', rule: 'sensitivity' as const, target: 0.9, threshold: 0.5, fitted: ratesAt([], [], 0.5) }] }] };
  const grouped = evaluateOperatingPoints(p, labels, ['x', 'x', 'y', 'y', 'x', 'x', 'y', 'y'], classNames, one, { rng: randomSource(9), resamples: 400 });
  const sensitivity = grouped[1]!.points[0]!.sensitivity;
  assert.equal([sensitivity.value, sensitivity.lower, sensitivity.upper], [0.5, 0, 1]);
});

test('refusals: a target outside (0, 1), a val split without a class or without positives or negatives, a prevalence outside (0, 1)', async () => {
  const { scores, positive } = labelled(40, 2);
  for (const bad of [0, 1, -0.1, 1.5, Number.NaN]) {
    await refusal(() => chooseThresholds(scores, positive, { sensitivity: bad, specificity: 0.9 }, 'val'), /the target sensitivity .* is outside \(0, 1\)/);
    await refusal(() => chooseThresholds(scores, positive, { sensitivity: 0.9, specificity: bad }, 'val'), /the target specificity .* is outside \(0, 1\)/);
  }
  const labels = [0, 2, 0, 2, 0, 2];
  await refusal(() => fitOperatingPoints(probabilities(labels, 3), labels, classNames, targets, 'the val split of data/'), /^the val split of data\/ has no Osteopenia image, so the screening thresholds cannot be chosen/, /every class is in val/);
  await refusal(() => chooseThresholds([0.2, 0.4], [true, true], targets, 'val, view'), /val, view has 2 positive and 0 negative images: a threshold needs both/);
  const fitted = fitOperatingPoints(probabilities([0, 1, 2, 0, 1, 2], 4), [0, 1, 2, 0, 1, 2], classNames, targets, 'val');
  await refusal(() => evaluateOperatingPoints(probabilities([0, 1], 5), [0, 1], ['a', 'b'], classNames, fitted, { rng: randomSource(1), resamples: 5, prevalence: 1 }), /the prevalence 1 is outside \(0, 1\)/);
});

test.run();
