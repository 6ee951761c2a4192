/**
 * The custom layers against independent references: TorchBatchNorm against a hand computation of
 * PyTorch's BatchNorm2d (normalise with the biased batch variance, track the unbiased one) and its
 * gradients against tfjs-layers' own BatchNormalization; the seeded dropout layers against their
 * definitions (torch.nn.Dropout, torchvision's StochasticDepth "row").
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { useBackend } from '../../src/backend/index.js';
import { SeededDropout, StochasticDepth, TorchBatchNorm } from '../../src/models/index.js';

test.before(async () => {
  await useBackend('cpu');
});

// x: [N=2, H=1, W=2, C=2]; per channel the batch holds 4 values.
const xValues = [1, 10, 2, 20, 4, 40, 9, 50];
const channel = (c: number) => xValues.filter((_, i) => i % 2 === c);

function close(actual: ArrayLike<number>, expected: number[], tolerance = 1e-5): void {
  assert.is(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) assert.ok(Math.abs(actual[i]! - expected[i]!) <= tolerance * Math.max(1, Math.abs(expected[i]!)), `[${i}] ${actual[i]} vs ${expected[i]}`);
}

function setWeights(layer: TorchBatchNorm, gamma: number[], beta: number[], mean: number[], variance: number[]): void {
  layer.setWeights([tf.tensor1d(gamma), tf.tensor1d(beta), tf.tensor1d(mean), tf.tensor1d(variance), tf.scalar(7)]);
}

test('TorchBatchNorm in training: batch statistics, PyTorch running-stat update, batch counter', () => {
  const layer = new TorchBatchNorm({ name: 'bn', epsilon: 1e-5, momentum: 0.9 });
  const x = tf.tensor4d(xValues, [2, 1, 2, 2]);
  layer.apply(x); // build
  const gamma = [1.5, 0.5];
  const beta = [0.1, -0.2];
  const runningMean = [0.3, -0.4];
  const runningVar = [2, 3];
  setWeights(layer, gamma, beta, runningMean, runningVar);
  const y = (layer.apply(x, { training: true }) as tf.Tensor).dataSync();
  const expected: number[] = [];
  const stats = [0, 1].map((c) => {
    const v = channel(c);
    const mean = v.reduce((a, b) => a + b) / v.length;
    const biased = v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length;
    return { mean, biased, unbiased: (biased * v.length) / (v.length - 1) };
  });
  xValues.forEach((value, i) => {
    const c = i % 2;
    expected.push(((value - stats[c]!.mean) / Math.sqrt(stats[c]!.biased + 1e-5)) * gamma[c]! + beta[c]!);
  });
  close(y, expected);
  close(layer.movingMean.read().dataSync(), [0, 1].map((c) => 0.9 * runningMean[c]! + 0.1 * stats[c]!.mean));
  close(layer.movingVariance.read().dataSync(), [0, 1].map((c) => 0.9 * runningVar[c]! + 0.1 * stats[c]!.unbiased));
  assert.is(layer.numBatchesTracked.read().dataSync()[0], 8);
  // Inference uses the running statistics and changes nothing.
  const mean = layer.movingMean.read().dataSync().slice();
  const variance = layer.movingVariance.read().dataSync().slice();
  const inference = (layer.apply(x) as tf.Tensor).dataSync();
  close(inference, xValues.map((value, i) => ((value - mean[i % 2]!) / Math.sqrt(variance[i % 2]! + 1e-5)) * gamma[i % 2]! + beta[i % 2]!));
  close(layer.movingMean.read().dataSync(), Array.from(mean));
  assert.is(layer.numBatchesTracked.read().dataSync()[0], 8);
});

test('a frozen TorchBatchNorm (trainable=false) stays in inference mode under training=true', () => {
  const layer = new TorchBatchNorm({ name: 'bn_frozen', epsilon: 1e-5, momentum: 0.9 });
  const x = tf.tensor4d(xValues, [2, 1, 2, 2]);
  layer.apply(x);
  setWeights(layer, [1.5, 0.5], [0.1, -0.2], [0.3, -0.4], [2, 3]);
  layer.trainable = false;
  const training = (layer.apply(x, { training: true }) as tf.Tensor).dataSync();
  const inference = (layer.apply(x) as tf.Tensor).dataSync();
  assert.equal(training, inference);
  close(layer.movingMean.read().dataSync(), [0.3, -0.4]);
  close(layer.movingVariance.read().dataSync(), [2, 3]);
  assert.is(layer.numBatchesTracked.read().dataSync()[0], 7);
  assert.equal(layer.trainableWeights, []);
});

test("TorchBatchNorm's training gradients equal tfjs-layers BatchNormalization's", () => {
  const ours = new TorchBatchNorm({ name: 'ours', epsilon: 1e-3, momentum: 0.9 });
  const reference = tfl.layers.batchNormalization({ name: 'reference', epsilon: 1e-3, momentum: 0.9 });
  const x = tf.randomNormal([3, 4, 5, 6], 0, 2, 'float32', 1) as tf.Tensor4D;
  const upstream = tf.randomNormal([3, 4, 5, 6], 0, 1, 'float32', 2);
  ours.apply(x);
  reference.apply(x);
  const gamma = tf.randomUniform([6], 0.5, 1.5, 'float32', 3);
  const beta = tf.randomNormal([6], 0, 1, 'float32', 4);
  ours.setWeights([gamma, beta, tf.zeros([6]), tf.ones([6]), tf.scalar(0)]);
  reference.setWeights([gamma, beta, tf.zeros([6]), tf.ones([6])]);
  const gradients = (layer: tfl.layers.Layer) => {
    const variables = layer.trainableWeights.map((w) => w.read() as tf.Variable);
    const loss = (input: tf.Tensor) => tf.sum(tf.mul(layer.apply(input, { training: true }) as tf.Tensor, upstream)) as tf.Scalar;
    const { grads } = tf.variableGrads(() => loss(x), variables);
    const dx = tf.grad(loss)(x);
    return [dx, ...variables.map((v) => grads[v.name]!)].map((t) => Array.from(t.dataSync()));
  };
  const [ourGrads, referenceGrads] = [gradients(ours), gradients(reference)];
  ourGrads.forEach((grad, i) => close(grad, referenceGrads[i]!, 1e-4));
});

test('SeededDropout: torch.nn.Dropout semantics, fresh masks per call, reproducible by seed', () => {
  const layer = new SeededDropout({ name: 'drop', rate: 0.3, seed: 11 });
  const x = tf.ones([4000]);
  const first = (layer.apply(x, { training: true }) as tf.Tensor).dataSync();
  const values = new Set(Array.from(first, (v) => v.toFixed(5)));
  assert.equal([...values].sort(), ['0.00000', (1 / 0.7).toFixed(5)]);
  const dropped = first.filter((v) => v === 0).length / first.length;
  assert.ok(Math.abs(dropped - 0.3) < 0.03, `dropped ${dropped}`);
  const second = (layer.apply(x, { training: true }) as tf.Tensor).dataSync();
  assert.not.equal(Array.from(second), Array.from(first), 'a new mask each step');
  layer.reseed(11);
  assert.equal((layer.apply(x, { training: true }) as tf.Tensor).dataSync(), first, 'the same seed replays the masks');
  assert.equal((layer.apply(x) as tf.Tensor).dataSync(), x.dataSync(), 'identity at inference');
});

test('StochasticDepth: whole rows dropped with probability p, survivors scaled by 1/(1 − p)', () => {
  const layer = new StochasticDepth({ name: 'sd', rate: 0.25, seed: 3 });
  const x = tf.ones([400, 2, 2, 3]);
  const y = (layer.apply(x, { training: true }) as tf.Tensor).arraySync() as number[][][][];
  let droppedRows = 0;
  for (const row of y) {
    const flat = row.flat(2);
    assert.ok(flat.every((v) => v === flat[0]), 'a row is dropped or kept as a whole');
    if (flat[0] === 0) droppedRows++;
    else assert.ok(Math.abs(flat[0]! - 1 / 0.75) < 1e-6);
  }
  assert.ok(Math.abs(droppedRows / 400 - 0.25) < 0.07, `dropped ${droppedRows}/400`);
  assert.equal((layer.apply(x) as tf.Tensor).dataSync(), x.dataSync());
});

test('custom layers serialise and deserialise through tf.serialization', async () => {
  const input = tfl.input({ shape: [2, 2, 3] });
  let y = new TorchBatchNorm({ name: 'bn', epsilon: 2e-5, momentum: 0.8 }).apply(input) as tfl.SymbolicTensor;
  y = new StochasticDepth({ name: 'sd', rate: 0.1, seed: 4 }).apply(y) as tfl.SymbolicTensor;
  y = new SeededDropout({ name: 'drop', rate: 0.2, seed: 5 }).apply(y) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: y });
  const json = model.toJSON(null, false) as { config: { layers: { class_name: string; config: Record<string, unknown> }[] } };
  const layers = json.config.layers;
  assert.equal(layers.map((l) => l.class_name), ['InputLayer', 'TorchBatchNorm', 'StochasticDepth', 'SeededDropout']);
  assert.is(layers[1]!.config['epsilon'], 2e-5);
  assert.is(layers[1]!.config['momentum'], 0.8);
  assert.is(layers[3]!.config['seed'], 5);
  const rebuilt = await tfl.models.modelFromJSON({ modelTopology: json as unknown as tf.io.ModelJSON['modelTopology'] });
  assert.equal(rebuilt.layers.map((l) => l.getClassName()), ['InputLayer', 'TorchBatchNorm', 'StochasticDepth', 'SeededDropout']);
  const bn = rebuilt.layers[1] as TorchBatchNorm;
  assert.instance(bn, TorchBatchNorm);
  assert.equal([bn.epsilon, bn.momentum], [2e-5, 0.8]);
  assert.is((rebuilt.layers[3] as SeededDropout).rate, 0.2);
});

test.run();
