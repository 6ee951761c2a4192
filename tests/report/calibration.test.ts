import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { applyTemperature, calibrationReport, fitTemperature, softmax } from '../../src/report/index.js';
import { randomSource } from '../helpers/random.js';
import { runPython, sklearn } from '../fixtures/torch/python.js';
import { testWith } from '../helpers/requirements.js';

const close = (actual: number, expected: number, what: string, tol = 1e-9) => assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} ≠ ${expected}`);

/**
 * Logits z with labels drawn from softmax(z) — a calibrated model — and the over-confident model
 * that outputs softmax(sharpness · z): temperature scaling should find T ≈ sharpness.
 */
function overConfident(n: number, sharpness: number, seed: number): { calibrated: Float32Array; sharp: Float32Array; labels: number[] } {
  const rng = randomSource(seed);
  const logits = new Float32Array(n * 3);
  for (let i = 0; i < n * 3; i++) logits[i] = 2 * (rng.next() - 0.5) * 2;
  const calibrated = softmax(logits, 3);
  const labels = Array.from({ length: n }, (_, i) => {
    const u = rng.next();
    return u < calibrated[i * 3]! ? 0 : u < calibrated[i * 3]! + calibrated[i * 3 + 1]! ? 1 : 2;
  });
  return { calibrated, sharp: softmax(logits.map((z) => z * sharpness), 3), labels };
}

test('applyTemperature is softmax(z / T) of the logits, from the probabilities alone', () => {
  const logits = new Float32Array([2, -1, 0.5, 0, 0, 0, -3, 4, 1]);
  const p = softmax(logits, 3);
  const expected = softmax(logits.map((z) => z / 2.5), 3);
  applyTemperature(p, 3, 2.5).forEach((v, i) => close(v, expected[i]!, `p[${i}]`, 1e-6));
  applyTemperature(p, 3, 1).forEach((v, i) => close(v, p[i]!, `T = 1, p[${i}]`, 1e-7));
  assert.throws(() => applyTemperature(p, 3, 0), /a temperature must be a positive number, got 0/);
});

test('temperature scaling lowers the validation NLL of a deliberately over-confident model, finding T near its sharpness', () => {
  const { sharp, labels, calibrated } = overConfident(3000, 3, 4);
  const fitted = fitTemperature(sharp, labels, 3);
  assert.ok(fitted.nllAfter < fitted.nllBefore - 0.1, `NLL ${fitted.nllBefore} → ${fitted.nllAfter}`);
  assert.ok(Math.abs(fitted.temperature - 3) < 0.3, `T = ${fitted.temperature}`);
  assert.not.ok(fitted.atBracketEdge);
  // A minimum: the NLL rises on either side of the fitted T.
  const nll = (t: number) => calibrationReport(applyTemperature(sharp, 3, t), labels, 3).nll;
  assert.ok(nll(fitted.temperature * 1.02) > fitted.nllAfter && nll(fitted.temperature / 1.02) > fitted.nllAfter);
  close(nll(fitted.temperature), fitted.nllAfter, 'NLL of the scaled probabilities', 1e-5);
  const before = calibrationReport(sharp, labels, 3);
  const after = calibrationReport(applyTemperature(sharp, 3, fitted.temperature), labels, 3);
  assert.ok(after.ece < before.ece && after.brier < before.brier, `ECE ${before.ece} → ${after.ece}, Brier ${before.brier} → ${after.brier}`);
  // The calibrated model needs no scaling.
  assert.ok(Math.abs(fitTemperature(calibrated, labels, 3).temperature - 1) < 0.15);
  assert.throws(() => fitTemperature(new Float32Array(0), [], 3), /needs labelled images to fit on/);
});

testWith(sklearn, test, "the calibration metrics equal scikit-learn's definitions (brier_score_loss, log_loss, calibration_curve); the fitted T equals scipy's bounded minimiser", () => {
  const { sharp, labels } = overConfident(400, 2, 9);
  const numBins = 10;
  const report = calibrationReport(sharp, labels, 3, numBins);
  const fitted = fitTemperature(sharp, labels, 3);
  const out = runPython(
    {
      code: [
        'import json, sys',
        'import numpy as np',
        'from scipy.optimize import minimize_scalar',
        'from scipy.special import log_softmax',
        'from sklearn.calibration import calibration_curve',
        'from sklearn.metrics import brier_score_loss, log_loss',
        'd = json.load(sys.stdin)',
        "p = np.array(d['p'], dtype=np.float64).reshape(-1, 3); y = np.array(d['y']); nb = d['bins']",
        'def ece(outcome, score, strategy):',
        "    edges = np.linspace(0, 1, nb + 1) if strategy == 'uniform' else np.percentile(score, np.linspace(0, 100, nb + 1))",
        '    counts = np.bincount(np.searchsorted(edges[1:-1], score), minlength=nb)',
        '    true, pred = calibration_curve(outcome, score, n_bins=nb, strategy=strategy)',
        '    return float(np.sum(counts[counts > 0] / len(score) * np.abs(true - pred)))',
        'top = p.argmax(1); conf = p[np.arange(len(y)), top]; correct = (top == y).astype(int)',
        'logs = np.log(p)',
        'nll = lambda s: -np.mean(log_softmax(logs / np.exp(s), axis=1)[np.arange(len(y)), y])',
        "t = float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20)), method='bounded', options={'xatol': 1e-9}).x))",
        'print(json.dumps({',
        "  'ece': ece(correct, conf, 'uniform'), 'adaptive': ece(correct, conf, 'quantile'),",
        "  'classwise': [ece((y == c).astype(int), p[:, c], 'uniform') for c in range(3)],",
        "  'classBrier': [brier_score_loss((y == c).astype(int), p[:, c]) for c in range(3)],",
        "  'nll': log_loss(y, p, labels=[0, 1, 2]), 'temperature': t}))",
      ].join('\n'),
    },
    [],
    { input: JSON.stringify({ p: Array.from(sharp), y: labels, bins: numBins }), needs: sklearn },
  );
  const expected = JSON.parse(out) as { ece: number; adaptive: number; classwise: number[]; classBrier: number[]; nll: number; temperature: number };
  close(report.ece, expected.ece, 'equal-width ECE', 1e-9);
  close(report.adaptiveEce, expected.adaptive, 'adaptive ECE', 1e-9);
  report.classwiseEce.forEach((v, c) => close(v, expected.classwise[c]!, `class-wise ECE ${c}`, 1e-9));
  report.classBrier.forEach((v, c) => close(v, expected.classBrier[c]!, `Brier ${c}`, 1e-9));
  close(report.brier, expected.classBrier.reduce((a, b) => a + b, 0), 'multiclass Brier = Σ per-class Brier', 1e-9);
  close(report.nll, expected.nll, 'log loss', 1e-7);
  close(fitted.temperature, expected.temperature, 'temperature', 1e-4);
});

test.run();
