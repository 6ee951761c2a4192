import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ensembleProbabilities, fitEnsembleWeights, parseEnsembleWeights, simplexGrid } from '../../src/eval/ensemble.js';
import { negativeLogLikelihood } from '../../src/report/stats.js';
import { UserError } from '../../src/util/index.js';

const a = new Float32Array([0.7, 0.2, 0.1, 0.1, 0.1, 0.8]);
const b = new Float32Array([0.5, 0.4, 0.1, 0.3, 0.3, 0.4]);
const c = new Float32Array([0.1, 0.8, 0.1, 0.2, 0.2, 0.6]);

test('the soft vote is the element-wise mean of the members', () => {
  const mean = ensembleProbabilities([a, b, c]);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(mean[i]! - (a[i]! + b[i]! + c[i]!) / 3) < 1e-7, `element ${i}`);
  const weighted = ensembleProbabilities([a, b], [3, 1]);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(weighted[i]! - (0.75 * a[i]! + 0.25 * b[i]!)) < 1e-7);
  assert.equal([...ensembleProbabilities([a])], [...a]);
  assert.throws(() => ensembleProbabilities([a, new Float32Array(3)]), (e: unknown) => e instanceof UserError);
});

test('--weights parsing', () => {
  assert.equal(parseEnsembleWeights('auto', 3), { kind: 'auto' });
  assert.equal(parseEnsembleWeights('equal', 3), { kind: 'equal' });
  assert.equal(parseEnsembleWeights('2, 1,1', 3), { kind: 'fixed', weights: [0.5, 0.25, 0.25] });
  for (const bad of ['1,2', '1,-1,1', 'a,b,c', '0,0,0', '1,,2']) {
    assert.throws(() => parseEnsembleWeights(bad, 3), (e: unknown) => e instanceof UserError, bad);
  }
});

test('simplex grid: every point sums to 1, count is C(d+k-1, k-1)', () => {
  const grid = simplexGrid(3, 20);
  assert.is(grid.length, 231);
  assert.ok(grid.every((w) => Math.abs(w.reduce((s, v) => s + v, 0) - 1) < 1e-12 && w.every((v) => v >= 0)));
  assert.is(simplexGrid(2, 4).length, 5);
});

test('auto weights favour the member that is right on val and never do worse than equal weights there', () => {
  // Member 0 knows the labels; member 1 is confidently wrong; member 2 is uninformative.
  const labels = [0, 1, 2, 0, 1, 2, 0, 1];
  const n = labels.length;
  const good = new Float32Array(n * 3);
  const bad = new Float32Array(n * 3);
  const flat = new Float32Array(n * 3).fill(1 / 3);
  labels.forEach((y, i) => {
    for (let k = 0; k < 3; k++) {
      good[i * 3 + k] = k === y ? 0.8 : 0.1;
      bad[i * 3 + k] = k === (y + 1) % 3 ? 0.9 : 0.05;
    }
  });
  const fitted = fitEnsembleWeights([good, bad, flat], labels, 3);
  assert.ok(fitted.weights[0]! > 0.6, `good member weight ${fitted.weights[0]}`);
  assert.ok(fitted.weights[1]! < 0.1, `bad member weight ${fitted.weights[1]}`);
  assert.ok(fitted.nll <= fitted.equalNll);
  const recomputed = negativeLogLikelihood(ensembleProbabilities([good, bad, flat], fitted.weights), labels, 3);
  assert.ok(Math.abs(recomputed - fitted.nll) < 1e-9);
  // Identical members: nothing to choose, so the tie-break keeps equal weights.
  assert.equal(fitEnsembleWeights([good, good], labels, 3).weights, [0.5, 0.5]);
  assert.throws(() => fitEnsembleWeights([good], [], 3), (e: unknown) => e instanceof UserError);
});

test.run();
