import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { monitorMetrics as configMonitorMetrics, trainConfigSchema } from '../../src/config/index.js';
import {
  builtInMetrics,
  calibration,
  classificationMetrics,
  isImprovement,
  metricInput,
  metricRegistry,
  MetricRegistry,
  monitorMetrics,
  meanAbsoluteClassError,
  negativeLogLikelihood,
  quadraticWeightedKappa,
  oneVsRestAuc,
  softVote,
  argmaxRows,
  type MetricRecord,
} from '../../src/report/index.js';
import { UserError } from '../../src/util/index.js';
import { randomSource } from '../helpers/random.js';

const classNames = ['Normal', 'Osteopenia', 'Osteoporosis'];

function randomProbabilities(n: number, seed: number): { probabilities: Float32Array; labels: number[] } {
  const rng = randomSource(seed);
  const labels = Array.from({ length: n }, () => Math.floor(rng.next() * 3));
  const probabilities = new Float32Array(n * 3);
  labels.forEach((y, i) => {
    const raw = [0, 1, 2].map((k) => (k === y ? 0.8 : 0) + rng.next());
    const sum = raw[0]! + raw[1]! + raw[2]!;
    raw.forEach((v, k) => (probabilities[i * 3 + k] = v / sum));
  });
  return { probabilities, labels };
}

const scratch = (key: string, extra: Partial<MetricRecord> = {}): MetricRecord =>
  ({ key, label: key, higherIsBetter: true, scale: 'proportion', format: String, views: [], compute: () => 0, ...extra }) as MetricRecord;

test('a key registered twice throws naming it; so does a CSV column, JSON key or monitor name another record owns', () => {
  const registry = new MetricRegistry([scratch('a', { csvColumn: 'a', jsonKey: 'a', monitor: 'valA' })]);
  assert.throws(() => registry.register(scratch('a')), (e: unknown) => e instanceof UserError && /metric 'a' is registered twice/.test(e.message));
  assert.throws(() => registry.register(scratch('b', { csvColumn: 'a' })), /metric 'b' has the csvColumn 'a' of metric 'a'/);
  assert.throws(() => registry.register(scratch('b', { jsonKey: 'a' })), /jsonKey 'a' of metric 'a'/);
  assert.throws(() => registry.register(scratch('b', { monitor: 'valA' })), /monitor 'valA' of metric 'a'/);
  assert.throws(() => new MetricRegistry([...builtInMetrics, scratch('accuracy')]), /metric 'accuracy' is registered twice/);
  assert.throws(() => registry.register(scratch('b', { perClass: true, interval: true })), /metric 'b': bootstrap intervals are for overall metrics/);
  assert.throws(() => registry.register(scratch('b', { views: ['cvFolds'] })), /metric 'b' is in the CV view 'cvFolds' but has no jsonKey/);
  registry.register(scratch('b'));
  assert.equal(registry.keys(), ['a', 'b']);
});

test('an unknown key (or monitor name) is refused listing the valid ones', () => {
  assert.throws(() => metricRegistry.get('kappa'), (e: unknown) => e instanceof UserError && /unknown metric 'kappa'; the metrics are: accuracy, balancedAccuracy, macroF1, .*, nll, quadraticKappa, meanAbsoluteClassError$/.test(e.message));
  assert.throws(() => metricRegistry.monitored('valKappa'), /unknown monitor metric 'valKappa'; training can monitor: valLoss, valAccuracy, valBalancedAccuracy, valMacroF1$/);
  assert.is(metricRegistry.get('macroAuc').label, 'macro AUC');
});

test("training's monitor names and directions come from the records: the config enum is the registry's list, the loss first", () => {
  assert.equal([...monitorMetrics], ['valLoss', 'valAccuracy', 'valBalancedAccuracy', 'valMacroF1']);
  assert.is(configMonitorMetrics, monitorMetrics);
  const withKappa = new MetricRegistry([...builtInMetrics, scratch('kappa', { monitor: 'valKappa' })]);
  assert.equal(withKappa.monitorNames(), ['valLoss', 'valAccuracy', 'valBalancedAccuracy', 'valMacroF1', 'valKappa']);
  const loss = metricRegistry.monitored('valLoss');
  assert.is(loss.key, 'nll');
  assert.ok(isImprovement(loss, 0.4, 0.5) && !isImprovement(loss, 0.6, 0.5) && !isImprovement(loss, 0.5, 0.5), 'a lower loss improves, a tie does not');
  const accuracy = metricRegistry.monitored('valAccuracy');
  assert.ok(isImprovement(accuracy, 0.6, 0.5) && !isImprovement(accuracy, 0.4, 0.5) && !isImprovement(accuracy, 0.5, 0.5), 'a higher accuracy improves, a tie does not');
  const parsed = trainConfigSchema.safeParse({ earlyStopping: { metric: 'valKappa' } });
  assert.not.ok(parsed.success, 'a name no record monitors is refused by the config schema');
});

test('the built-in records compute what the metric functions compute', () => {
  const { probabilities, labels } = randomProbabilities(120, 3);
  const input = metricInput(probabilities, labels, classNames);
  const m = classificationMetrics(labels, argmaxRows(probabilities, 3), 3);
  const auc = oneVsRestAuc(probabilities, labels, 3);
  const values = Object.fromEntries(metricRegistry.all().map((r) => [r.key, r.compute(input)]));
  assert.equal(values, {
    accuracy: m.accuracy,
    balancedAccuracy: m.balancedAccuracy,
    macroF1: m.macroF1,
    weakClassRecall: m.perClass[1]!.recall,
    precision: m.perClass.map((c) => c.precision),
    recall: m.perClass.map((c) => c.recall),
    f1: m.perClass.map((c) => c.f1),
    support: m.perClass.map((c) => c.support),
    macroAuc: auc.macro,
    auc: auc.perClass,
    ece: calibration(probabilities, labels, 3).ece,
    nll: negativeLogLikelihood(probabilities, labels, 3),
    quadraticKappa: quadraticWeightedKappa(labels, argmaxRows(probabilities, 3), 3),
    meanAbsoluteClassError: meanAbsoluteClassError(labels, argmaxRows(probabilities, 3)),
  });
  // The shared intermediate results are computed once per input.
  assert.is(input.classification, input.classification);
  assert.is(input.auc, input.auc);
  // The weak class is found by name.
  const reordered = metricInput(probabilities, labels, ['Osteopenia', 'Normal', 'Osteoporosis']);
  assert.is(metricRegistry.get('weakClassRecall').compute(reordered), m.perClass[0]!.recall);
});

test('the soft vote sums in float64 and rounds once: identical members give that member exactly', () => {
  const { probabilities: a } = randomProbabilities(200, 8);
  const { probabilities: b } = randomProbabilities(200, 9);
  const { probabilities: c } = randomProbabilities(200, 10);
  // A float32 running sum of p/7 misses p for about a third of these values.
  assert.equal([...softVote([a, a, a, a, a, a, a])], [...a]);
  // A float32 running sum of p/3 rounds differently from this for about one value in six.
  const mean = softVote([a, b, c]);
  const third = 1 / 3;
  for (let i = 0; i < a.length; i++) assert.is(mean[i], Math.fround(third * a[i]! + third * b[i]! + third * c[i]!));
  const weighted = softVote([a, b], [3, 1]);
  for (let i = 0; i < a.length; i++) assert.is(weighted[i], Math.fround(0.75 * a[i]! + 0.25 * b[i]!));
  assert.throws(() => softVote([]), /at least one model/);
});

test.run();
