import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { argmaxRows, classificationMetrics, confusionMatrix, softmax } from '../../src/report/index.js';
import { UserError } from '../../src/util/index.js';

const close = (actual: number, expected: number, what: string, tol = 1e-12) =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} ≠ ${expected}`);

test('confusion matrix: rows are true classes, columns predictions', () => {
  const m = confusionMatrix([0, 0, 0, 1, 1, 2, 2, 2, 2], [0, 1, 0, 1, 2, 2, 2, 0, 2], 3);
  assert.equal(m, [
    [2, 1, 0],
    [0, 1, 1],
    [1, 0, 3],
  ]);
});

test('metrics of a hand-computed 3-class case', () => {
  const m = classificationMetrics([0, 0, 0, 1, 1, 2, 2, 2, 2], [0, 1, 0, 1, 2, 2, 2, 0, 2], 3);
  close(m.accuracy, 6 / 9, 'accuracy');
  const expected = [2 / 3, 1 / 2, 3 / 4];
  m.perClass.forEach((c, i) => {
    close(c.precision, expected[i]!, `precision ${i}`);
    close(c.recall, expected[i]!, `recall ${i}`);
    close(c.f1, expected[i]!, `f1 ${i}`);
  });
  assert.equal(
    m.perClass.map((c) => c.support),
    [3, 2, 4],
  );
  close(m.macroF1, 23 / 36, 'macro-F1');
  close(m.balancedAccuracy, 23 / 36, 'balanced accuracy');
});

test('a class never predicted: precision 0 (zero_division=0), F1 0, still in the macro average', () => {
  const m = classificationMetrics([0, 0, 1, 1, 2, 2], [0, 0, 0, 2, 2, 2], 3);
  close(m.perClass[1]!.precision, 0, 'precision of never-predicted class');
  close(m.perClass[1]!.recall, 0, 'recall');
  close(m.perClass[1]!.f1, 0, 'f1');
  close(m.perClass[0]!.precision, 2 / 3, 'precision 0');
  close(m.perClass[0]!.f1, 4 / 5, 'f1 0');
  close(m.perClass[2]!.f1, 4 / 5, 'f1 2');
  close(m.macroF1, 8 / 15, 'macro-F1');
  close(m.balancedAccuracy, 2 / 3, 'balanced accuracy');
  close(m.accuracy, 4 / 6, 'accuracy');
});

test('a class absent from the split: recall 0 and F1 0 in macro-F1, dropped from balanced accuracy (as sklearn)', () => {
  const m = classificationMetrics([0, 0, 1, 1], [0, 2, 1, 1], 3);
  assert.is(m.perClass[2]!.support, 0);
  close(m.perClass[2]!.recall, 0, 'recall of absent class');
  close(m.perClass[2]!.precision, 0, 'precision of absent class (predicted once, never right)');
  close(m.perClass[0]!.f1, 2 / 3, 'f1 0');
  close(m.macroF1, (2 / 3 + 1 + 0) / 3, 'macro-F1 over all three classes');
  close(m.balancedAccuracy, (1 / 2 + 1) / 2, 'balanced accuracy over the two present classes');
  close(m.accuracy, 3 / 4, 'accuracy');

  const perfectTwo = classificationMetrics([0, 1], [0, 1], 3);
  close(perfectTwo.balancedAccuracy, 1, 'balanced accuracy ignores the absent, never-predicted class');
  close(perfectTwo.macroF1, 2 / 3, 'macro-F1 counts it as 0');
});

test('empty input gives zeros, never NaN', () => {
  const m = classificationMetrics([], [], 3);
  assert.is(m.accuracy, 0);
  assert.is(m.balancedAccuracy, 0);
  assert.is(m.macroF1, 0);
  assert.ok(m.perClass.every((c) => c.precision === 0 && c.recall === 0 && c.f1 === 0 && c.support === 0));
});

test('bad input is a UserError', () => {
  assert.throws(() => confusionMatrix([0, 1], [0], 3), (e: unknown) => e instanceof UserError);
  assert.throws(() => confusionMatrix([0, 3], [0, 1], 3), (e: unknown) => e instanceof UserError && /label 3/.test(e.message));
  assert.throws(() => confusionMatrix([0, 1], [0, -1], 3), (e: unknown) => e instanceof UserError && /prediction -1/.test(e.message));
  assert.throws(() => confusionMatrix([0.5], [0], 3), (e: unknown) => e instanceof UserError);
});

test('softmax: hand case, no overflow on huge logits, and agrees with tf.softmax', async () => {
  const p = softmax(new Float32Array([1, 2, 3, 1000, 1000, 1000]), 3);
  const z = Math.exp(1) + Math.exp(2) + Math.exp(3);
  close(p[0]!, Math.exp(1) / z, 'p0', 1e-7);
  close(p[2]!, Math.exp(3) / z, 'p2', 1e-7);
  for (let i = 3; i < 6; i++) close(p[i]!, 1 / 3, `uniform ${i}`, 1e-7);

  await tf.setBackend('cpu');
  const logits = new Float32Array(40 * 3).map((_, i) => Math.sin(i * 12.9898) * 8);
  const reference = tf.tidy(() => tf.softmax(tf.tensor2d(logits, [40, 3])).dataSync());
  const ours = softmax(logits, 3);
  for (let i = 0; i < ours.length; i++) close(ours[i]!, reference[i]!, `softmax[${i}]`, 1e-6);
  assert.throws(() => softmax(new Float32Array(4), 3), (e: unknown) => e instanceof UserError);
});

test('argmaxRows takes the first maximum on ties', () => {
  assert.equal([...argmaxRows([0.2, 0.5, 0.3, 0.4, 0.4, 0.2, 0.1, 0.1, 0.8], 3)], [1, 0, 2]);
});

test.run();
