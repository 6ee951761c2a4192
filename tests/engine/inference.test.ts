/**
 * The inference engine on a tiny model: the logits of the step engine that trained the weights, in
 * this thread and across worker threads alike; Grad-CAM's feature map with the gradient that the
 * classifier's weights predict by hand; no tensor left behind; worker threads only where the
 * backend runs in them.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { createEngine, createInferenceEngine, type EngineOptions, type InferenceEngineOptions, type StateDict } from '../../src/engine/index.js';
import { rng } from '../helpers/random.js';
import { refusal } from '../helpers/refusal.js';

const wasm = await useBackend('wasm');
const providerModule = new URL('./fixtures/tiny-provider.ts', import.meta.url).href;
const size = 8;
const per = size * size * 3;
const model = 'tiny-bn' as EngineOptions['model'];

function images(n: number, seed: number): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: n * per }, () => next() * 2 - 1);
}

/** Weights a few training steps away from the init (BatchNorm statistics moved too) and the step engine's logits for `probe`. */
async function trained(probe: Float32Array, count: number): Promise<{ weights: StateDict; logits: Float32Array }> {
  const engine = await createEngine({ model, build: { imageSize: size, numClasses: 3 }, backend: wasm, workers: 1, optimizer: { type: 'adam' }, seed: 3, providerModule });
  try {
    for (let i = 0; i < 3; i++) await engine.step({ images: images(6, 10 + i), labels: Int32Array.from([0, 1, 2, 0, 1, 2]), size: 6 }, 0.05);
    return { weights: (await engine.getState()).weights, logits: await engine.predict(probe, count) };
  } finally {
    await engine.dispose();
  }
}

/** `work` must fail (any error) with a message matching `pattern`. */
async function failure(work: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await work;
  } catch (error) {
    assert.match((error as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a failure matching ${pattern}`);
}

const inference = (weights: StateDict, workers: number, backend: BackendHandle = wasm): InferenceEngineOptions => ({ model, imageSize: size, numClasses: 3, weights, backend, workers, providerModule });

test('the step engine’s logits, in this thread and in 2 worker threads (odd count), tensors flat in every thread', async () => {
  const probe = images(7, 1);
  const { weights, logits } = await trained(probe, 7);
  for (const workers of [1, 2]) {
    const engine = await createInferenceEngine(inference(weights, workers));
    try {
      assert.is(engine.workers, workers);
      const tensors = await engine.numTensors();
      assert.is(tensors.length, workers === 1 ? 1 : 3);
      const got = await engine.predict(probe, 7);
      assert.is(got.length, 7 * 3);
      const worst = Math.max(...Array.from(got, (v, i) => Math.abs(v - logits[i]!)));
      assert.ok(worst <= 1e-5, `${workers} worker(s): |Δ logit| ${worst}`);
      assert.equal(await engine.numTensors(), tensors, 'no thread holds more tensors after predicting');
      assert.equal(await engine.predict(new Float32Array(0), 0), new Float32Array(0));
    } finally {
      await engine.dispose();
    }
  }
});

test('features: the feature map before pooling, and ∂logit/∂A = the classifier column over the grid (global average pool, then linear)', async () => {
  const { weights } = await trained(images(1, 2), 1);
  const engine = await createInferenceEngine(inference(weights, 1));
  const before = tf.memory().numTensors;
  try {
    const features = await engine.features(images(1, 5), { layer: 'relu2', classIndex: 2 });
    assert.equal([features.layer, features.height, features.width, features.channels], ['relu2', 4, 4, 6]);
    assert.is(features.activations.length, 4 * 4 * 6);
    assert.ok(features.activations.every((v) => v >= 0) && features.activations.some((v) => v > 0), 'a ReLU output');
    const kernel = weights.get('fc/kernel')!.data as Float32Array; // tfjs layout [in, out]
    for (let p = 0; p < 16; p++)
      for (let c = 0; c < 6; c++) {
        const expected = kernel[c * 3 + 2]! / 16;
        assert.ok(Math.abs(features.gradients[p * 6 + c]! - expected) <= 1e-6, `∂y₂/∂A[${p}, ${c}] = ${features.gradients[p * 6 + c]}, expected ${expected}`);
      }
    assert.is(tf.memory().numTensors, before, 'no tensors leak');
    assert.match(await refusal(engine.features(images(1, 5), { layer: 'relu2', classIndex: 3 })), /class 3 is outside the model's 3 classes/);
    assert.match(await refusal(engine.features(images(2, 5), { layer: 'relu2', classIndex: 0 })), /needs one image of 8×8×3 values/);
  } finally {
    await engine.dispose();
  }
  await failure(engine.predict(images(1, 1), 1), /disposed/);
});

test('bad input and a backend without worker threads are refused, naming what is wrong', async () => {
  const { weights } = await trained(images(1, 2), 1);
  const engine = await createInferenceEngine(inference(weights, 1));
  try {
    assert.match(await refusal(engine.predict(images(2, 1), 3)), /3 images of 8² need 576/);
  } finally {
    await engine.dispose();
  }
  const oneProcess: BackendHandle = { ...wasm, capabilities: { ...wasm.capabilities, workerThreads: { trainsInWorkers: false, why: 'it spreads one process over the cores' } } };
  assert.match(await refusal(createInferenceEngine(inference(weights, 2, oneProcess))), /--workers > 1 is for the .* backends; it spreads one process/);
  const missing = new Map(weights);
  missing.delete('fc/bias');
  await failure(createInferenceEngine(inference(missing, 1)), /missing fc\/bias/);
});

test.run();
