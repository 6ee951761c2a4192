/**
 * The training engine on tiny models: it learns, micro-batching and worker threads change nothing
 * but float rounding, BatchNorm follows DDP's per-micro-batch semantics (checked against a direct
 * tfjs computation), no tensor leaks in any thread, and state round-trips exactly.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { refusal } from '../helpers/refusal.js';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../../src/backend/index.js';
import { createEngine, type EngineBatch, type EngineOptions, type TrainingEngine } from '../../src/engine/index.js';
import { modelProvider } from './fixtures/tiny-provider.js';
import { rng } from '../helpers/random.js';

/** The backends these tests run on, as a command passes them down. */
const cpu = await useBackend('cpu');
const wasm = await useBackend('wasm');

const providerModule = new URL('./fixtures/tiny-provider.ts', import.meta.url).href;
const size = 8;
const per = size * size * 3;


/** Class k lights up channel k: learnable in a few steps. */
function makeBatch(n: number, seed: number): EngineBatch {
  const next = rng(seed);
  const images = new Float32Array(n * per);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const label = Math.floor(next() * 3);
    labels[i] = label;
    for (let p = 0; p < size * size; p++)
      for (let c = 0; c < 3; c++) images[i * per + p * 3 + c] = (next() - 0.5) + (c === label ? 1 : 0);
  }
  return { images, labels, size: n };
}

/** The fixture's model names are not osteo's ModelName. */
const tiny = (name: string) => name as EngineOptions['model'];

function options(overrides: Partial<EngineOptions>): EngineOptions {
  return {
    model: tiny('tiny-bn'),
    build: { imageSize: size, numClasses: 3 },
    backend: cpu,
    workers: 1,
    optimizer: { type: 'sgd', momentum: 0.9 },
    seed: 5,
    providerModule,
    ...overrides,
  };
}

async function weightsOf(engine: TrainingEngine): Promise<Map<string, Float32Array>> {
  const state = await engine.getState();
  return new Map([...state.weights].map(([k, v]) => [k, v.data as Float32Array]));
}

function assertSameWeights(a: Map<string, Float32Array>, b: Map<string, Float32Array>, tolerance: number, label: string): void {
  assert.equal([...a.keys()], [...b.keys()], `${label}: keys`);
  for (const [key, x] of a) {
    const y = b.get(key)!;
    let worst = 0;
    let scale = 1e-3;
    for (let i = 0; i < x.length; i++) {
      worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
      scale = Math.max(scale, Math.abs(x[i]!));
    }
    assert.ok(worst <= tolerance * scale, `${label}: ${key} differs by ${worst} (scale ${scale})`);
  }
}

function assertChanged(before: Map<string, Float32Array>, after: Map<string, Float32Array>, key: string): void {
  const a = before.get(key)!;
  const b = after.get(key)!;
  assert.ok(a.some((v, i) => v !== b[i]), `${key} should have changed`);
}

test('loss falls on a tiny separable problem (cpu, Adam, label smoothing, class weights)', async () => {
  const engine = await createEngine(options({ optimizer: { type: 'adam' }, labelSmoothing: 0.1, classWeights: [1, 2, 0.5] }));
  try {
    const batch = makeBatch(12, 1);
    const first = await engine.step(batch, 0.02);
    let last = first;
    for (let i = 0; i < 25; i++) last = await engine.step(makeBatch(12, 2 + i), 0.02);
    assert.ok(Number.isFinite(first.loss) && first.gradNorm > 0);
    assert.ok(last.loss < 0.6 * first.loss, `loss ${first.loss} → ${last.loss}`);
    const logits = await engine.predict(batch.images, batch.size);
    assert.is(logits.length, 12 * 3);
  } finally {
    await engine.dispose();
  }
});

test('micro-batches sum to the whole-batch gradient for a BatchNorm-free model', async () => {
  const common: Partial<EngineOptions> = { model: tiny('tiny-bnfree'), labelSmoothing: 0.1, classWeights: [1, 3, 0.5], optimizer: { type: 'adamw', weightDecay: 0.01 } };
  const whole = await createEngine(options({ ...common, microBatch: 10 }));
  const split = await createEngine(options({ ...common, microBatch: 3 }));
  try {
    const before = await weightsOf(whole);
    for (let i = 0; i < 3; i++) {
      const batch = makeBatch(10, 40 + i);
      const a = await whole.step(batch, 0.01);
      const b = await split.step(batch, 0.01);
      assert.ok(Math.abs(a.loss - b.loss) <= 1e-5 * Math.abs(a.loss), `loss ${a.loss} vs ${b.loss}`);
      assert.ok(Math.abs(a.gradNorm - b.gradNorm) <= 1e-5 * a.gradNorm, `grad norm ${a.gradNorm} vs ${b.gradNorm}`);
      assert.is(a.correct, b.correct);
    }
    const after = await weightsOf(whole);
    assertChanged(before, after, 'conv1/kernel');
    assertSameWeights(after, await weightsOf(split), 1e-5, 'microBatch 10 vs 3');
  } finally {
    await whole.dispose();
    await split.dispose();
  }
});

test('BatchNorm with micro-batches: statistics per micro-batch, running stats updated in batch order (DDP semantics)', async () => {
  await useBackend('cpu');
  const lr = 0.1;
  const smoothing = 0.1;
  const weights = [1, 2, 0.5];
  const batch = makeBatch(8, 77);
  const engine = await createEngine(options({ optimizer: { type: 'sgd' }, microBatch: 4, labelSmoothing: smoothing, classWeights: weights }));
  // The reference: the same model run directly in tfjs, the two halves one after the other.
  const reference = modelProvider.build('tiny-bn', { imageSize: size, numClasses: 3, seed: 5 });
  try {
    const result = await engine.step(batch, lr);
    let denominator = 0;
    for (let i = 0; i < 8; i++) denominator += weights[batch.labels[i]!]!;
    const variables = reference.trainableWeights.map((v) => v.read() as tf.Variable);
    const summed = new Map<string, tf.Tensor>();
    let expectedLoss = 0;
    for (const half of [0, 1]) {
      const { value, grads } = tf.variableGrads(() => {
        const x = tf.tensor4d(batch.images.subarray(half * 4 * per, (half + 1) * 4 * per), [4, size, size, 3]);
        const logp = tf.logSoftmax(reference.apply(x, { training: true }) as tf.Tensor2D);
        const labels = Array.from(batch.labels.subarray(half * 4, half * 4 + 4));
        const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(labels, 'int32'), 3)), 1);
        const classWeight = tf.tensor1d(labels.map((l) => weights[l]!));
        const nll = tf.neg(tf.sum(tf.mul(classWeight, picked)));
        const smooth = tf.neg(tf.sum(tf.mul(logp, tf.tensor1d(weights))));
        return tf.div(tf.add(tf.mul(nll, 1 - smoothing), tf.mul(smooth, smoothing / 3)), denominator) as tf.Scalar;
      }, variables);
      expectedLoss += value.dataSync()[0]!;
      value.dispose();
      for (const [name, g] of Object.entries(grads)) {
        const prior = summed.get(name);
        summed.set(name, prior ? tf.add(prior, g) : g.clone());
        prior?.dispose();
      }
      tf.dispose(grads);
    }
    assert.ok(Math.abs(result.loss - expectedLoss) < 1e-5, `loss ${result.loss} vs ${expectedLoss}`);
    for (const v of variables) {
      const g = summed.get(v.name)!;
      const updated = tf.sub(v, tf.mul(g, lr));
      v.assign(updated);
      updated.dispose();
    }
    tf.dispose([...summed.values()]);
    const expected = await modelProvider.toStateDict(reference, 'tiny-bn');
    const actual = await weightsOf(engine);
    assertChanged(
      new Map([...(await modelProvider.toStateDict(modelProvider.build('tiny-bn', { imageSize: size, numClasses: 3, seed: 5 }), 'tiny-bn'))].map(([k, v]) => [k, v.data as Float32Array])),
      actual,
      'bn1/moving_mean',
    );
    assertSameWeights(actual, new Map([...expected].map(([k, v]) => [k, v.data as Float32Array])), 1e-5, 'engine vs direct tfjs');
    assert.is(actual.get('bn1/num_batches_tracked')![0], 2);
  } finally {
    reference.dispose();
    await engine.dispose();
  }
});

test('one worker and two workers give the same weights (wasm, BatchNorm, dropout, fixed micro-batch)', async () => {
  const common: Partial<EngineOptions> = { model: tiny('tiny-dropout'), backend: wasm, microBatch: 2, clipGradNorm: 0.5, optimizer: { type: 'sgd', momentum: 0.9, nesterov: true, weightDecay: 1e-4 } };
  const one = await createEngine(options({ ...common, workers: 1 }));
  const two = await createEngine(options({ ...common, workers: 2 }));
  try {
    assert.is(two.workers, 2);
    for (let i = 0; i < 3; i++) {
      const batch = makeBatch(8, 90 + i);
      const a = await one.step(batch, 0.05);
      const b = await two.step(batch, 0.05);
      assert.ok(Math.abs(a.loss - b.loss) <= 1e-5 * a.loss, `step ${i}: loss ${a.loss} vs ${b.loss}`);
    }
    assertSameWeights(await weightsOf(one), await weightsOf(two), 1e-5, 'workers 1 vs 2');
    const images = makeBatch(5, 3).images;
    const la = await one.predict(images, 5);
    const lb = await two.predict(images, 5);
    for (let i = 0; i < la.length; i++) assert.ok(Math.abs(la[i]! - lb[i]!) < 1e-4, 'predictions agree');
  } finally {
    await one.dispose();
    await two.dispose();
  }
});

test('tensor count is flat over 20 steps, in the main thread and in each worker', async () => {
  const engine = await createEngine(options({ backend: wasm, workers: 2, optimizer: { type: 'adam' } }));
  try {
    await engine.step(makeBatch(6, 1), 0.01);
    await engine.predict(makeBatch(3, 1).images, 3);
    const before = await engine.numTensors();
    assert.is(before.length, 3);
    for (let i = 0; i < 20; i++) await engine.step(makeBatch(6, 2 + i), 0.01);
    await engine.predict(makeBatch(3, 1).images, 3);
    assert.equal(await engine.numTensors(), before);
  } finally {
    await engine.dispose();
  }
  const local = await createEngine(options({ backend: wasm, workers: 1, microBatch: 2 }));
  try {
    await local.step(makeBatch(5, 1), 0.01);
    const before = await local.numTensors();
    for (let i = 0; i < 20; i++) await local.step(makeBatch(5, 2 + i), 0.01);
    assert.equal(await local.numTensors(), before);
  } finally {
    await local.dispose();
  }
});

test('getState / setState resume exactly (weights, buffers, optimizer slots, step)', async () => {
  const config = options({ optimizer: { type: 'adam', weightDecay: 1e-3 }, model: tiny('tiny-dropout') });
  const a = await createEngine(config);
  const b = await createEngine({ ...config, seed: 5 });
  try {
    for (let i = 0; i < 2; i++) await a.step(makeBatch(6, 10 + i), 0.01);
    const saved = await a.getState();
    assert.is(saved.step, 2);
    assert.ok(saved.optimizer.has('exp_avg/conv1/kernel'));
    await b.setState(saved);
    const batch = makeBatch(6, 99);
    const ra = await a.step(batch, 0.01);
    const rb = await b.step(batch, 0.01);
    assert.is(ra.loss, rb.loss);
    const wa = await weightsOf(a);
    const wb = await weightsOf(b);
    for (const [key, values] of wa) assert.equal(Array.from(values), Array.from(wb.get(key)!), key);
  } finally {
    await a.dispose();
    await b.dispose();
  }
});

test('state round trip with two workers (optimizer state lives in shared memory, updated by slices)', async () => {
  const config = options({ backend: wasm, workers: 2, optimizer: { type: 'adamw', weightDecay: 0.05 }, clipGradNorm: 0.3 });
  const a = await createEngine(config);
  const b = await createEngine(config);
  try {
    for (let i = 0; i < 2; i++) await a.step(makeBatch(6, 20 + i), 0.01);
    await b.setState(await a.getState());
    const batch = makeBatch(6, 98);
    const ra = await a.step(batch, 0.01);
    const rb = await b.step(batch, 0.01);
    assert.is(ra.loss, rb.loss);
    assert.is(ra.gradNorm, rb.gradNorm);
    const wa = await weightsOf(a);
    const wb = await weightsOf(b);
    for (const [key, values] of wa) assert.equal(Array.from(values), Array.from(wb.get(key)!), key);
    const sa = await a.getState();
    const sb = await b.getState();
    for (const [key, tensor] of sa.optimizer) assert.equal(Array.from(tensor.data as Float32Array), Array.from(sb.optimizer.get(key)!.data as Float32Array), key);
  } finally {
    await a.dispose();
    await b.dispose();
  }
});

test('bad inputs are UserErrors that say what is wrong', async () => {
  const engine = await createEngine(options({}));
  try {
    const batch = makeBatch(4, 1);
    await refusal(() => engine.step({ ...batch, labels: Int32Array.of(0, 1, 5, 0) }, 0.1), /label 5/);
    await refusal(() => engine.step({ ...batch, size: 3 }, 0.1), /floats/);
    await refusal(() => engine.step(batch, Number.NaN), /learning rate/);
  } finally {
    await engine.dispose();
  }
  // the heap message comes from the backend's capability record: wasm's emscripten abort
  const aborting = await createEngine(options({ model: tiny('tiny-abort'), backend: wasm }));
  try {
    await refusal(() => aborting.step(makeBatch(4, 1), 0.1), /wasm heap.*--micro-batch/);
  } finally {
    await aborting.dispose();
  }
  await refusal(() => createEngine(options({ classWeights: [1, 2] })), /classWeights/);
});

test.run();
