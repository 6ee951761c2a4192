/**
 * The inference engine on onnxruntime (cpu provider) against the tfjs engine (tfjs cpu backend) on
 * the same weights: every registered architecture at 64 px within 1e-4 (relative beyond |logit| 1),
 * odd counts cut into passes of the batch limit in order, `workers` as the session's threads, one
 * session per engine released on dispose, strict loading of the weights, and memory flat across many
 * predict calls.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../../src/backend/index.js';
import { createInferenceEngine, inferenceWorkers, onnxPassImages, type InferenceEngine } from '../../src/engine/index.js';
import { listModels } from '../../src/models/index.js';
import { onnxTestHandle } from '../helpers/onnx-handle.js';
import { rng } from '../helpers/random.js';
import { seededStateDict } from '../helpers/state-dict.js';
import { refusal, rejection } from '../helpers/refusal.js';

const cpu = await useBackend('cpu');

function images(n: number, size: number, seed: number): Float32Array {
  const next = rng(seed);
  return Float32Array.from({ length: n * size * size * 3 }, () => next() * 4 - 2);
}


function assertClose(ours: Float32Array, reference: Float32Array, what: string): number {
  assert.is(ours.length, reference.length, `${what}: lengths`);
  const bound = 1e-4 * Math.max(1, ...Array.from(reference, Math.abs));
  let max = 0;
  for (let i = 0; i < reference.length; i++) max = Math.max(max, Math.abs(ours[i]! - reference[i]!));
  assert.ok(max <= bound, `${what}: max |Δ| ${max} > ${bound}`);
  return max;
}

async function withEngine<T>(engine: InferenceEngine, use: (engine: InferenceEngine) => Promise<T>): Promise<T> {
  try {
    return await use(engine);
  } finally {
    await engine.dispose();
  }
}

for (const entry of listModels()) {
  test(`${entry.name} at 64 px: the onnxruntime engine gives the tfjs engine's logits (1e-4), one session, released`, async () => {
    const size = 64;
    const weights = await seededStateDict(entry.name, { imageSize: size, seed: 11 });
    const probe = images(3, size, 5);
    const options = { model: entry.name, imageSize: size, numClasses: 3, weights, workers: 1 };
    const reference = await withEngine(await createInferenceEngine({ ...options, backend: cpu }), (e) => e.predict(probe, 3));
    const { handle, counts } = onnxTestHandle('cpu');
    const tensors = tf.memory().numTensors;
    const ours = await withEngine(await createInferenceEngine({ ...options, backend: handle }), async (e) => {
      assert.is(tf.memory().numTensors, tensors, 'the tfjs model that emitted the graph is gone');
      return e.predict(probe, 3);
    });
    assertClose(ours, reference, entry.name);
    assert.equal(counts, { created: 1, released: 1, batches: [3] });
  });
}

test('odd counts are cut into passes of the batch limit, in order; a memory bound lowers the limit', async () => {
  const size = 32;
  const weights = await seededStateDict('resnet18', { imageSize: size, seed: 3 });
  const count = onnxPassImages + 5;
  const probe = images(count, size, 9);
  const options = { model: 'resnet18' as const, imageSize: size, numClasses: 3, weights, workers: 1 };
  const reference = await withEngine(await createInferenceEngine({ ...options, backend: cpu }), (e) => e.predict(probe, count));
  const plain = onnxTestHandle('cpu');
  await withEngine(await createInferenceEngine({ ...options, backend: plain.handle }), async (e) => {
    assertClose(await e.predict(probe, count), reference, `${count} images`);
    assertClose(await e.predict(probe.subarray(0, 7 * size * size * 3), 7), reference.subarray(0, 21), '7 images');
    assert.is((await e.predict(new Float32Array(0), 0)).length, 0);
  });
  assert.equal(plain.counts.batches, [onnxPassImages, 5, 7]);
  // A budget too small for two images' activations: one image per pass.
  const tight = onnxTestHandle('cpu', 2, { activationMemory: { budgetBytes: 1, bytesPerActivationFloat: 4 } });
  await withEngine(await createInferenceEngine({ ...options, backend: tight.handle }), async (e) => {
    assertClose(await e.predict(probe.subarray(0, 3 * size * size * 3), 3), reference.subarray(0, 9), 'one per pass');
  });
  assert.equal(tight.counts.batches, [1, 1, 1]);
  assert.equal([plain.counts.created, plain.counts.released, tight.counts.created, tight.counts.released], [1, 1, 1, 1]);
});

test('workers are the session threads: inferenceWorkers gives the provider default or --workers, whatever the image count', async () => {
  const { handle } = onnxTestHandle('cpu', 3);
  assert.is(inferenceWorkers(undefined, 1, handle.capabilities), 3);
  assert.is(inferenceWorkers(2, 1, handle.capabilities), 2);
  const weights = await seededStateDict('resnet18', { imageSize: 32, seed: 4 });
  const engine = await createInferenceEngine({ model: 'resnet18', imageSize: 32, numClasses: 3, weights, backend: handle, workers: 2 });
  await withEngine(engine, async (e) => assert.is(e.workers, 2));
  await refusal(createInferenceEngine({ model: 'resnet18', imageSize: 32, numClasses: 3, weights, backend: handle, workers: 0 }), /threads \(--workers\) must be a positive integer/);
});

test('weights are loaded strictly (a missing key is refused, no session is built); wrong image counts are refused', async () => {
  const weights = await seededStateDict('resnet18', { imageSize: 32, seed: 5 });
  const { handle, counts } = onnxTestHandle('cpu');
  const partial = new Map(weights);
  partial.delete('layer2.0.conv1.weight');
  await refusal(createInferenceEngine({ model: 'resnet18', imageSize: 32, numClasses: 3, weights: partial, backend: handle, workers: 1 }), /missing keys: layer2\.0\.conv1\.weight/);
  assert.is(counts.created, 0);
  const engine = await createInferenceEngine({ model: 'resnet18', imageSize: 32, numClasses: 3, weights, backend: handle, workers: 1 });
  await withEngine(engine, async (e) => {
    await refusal(e.predict(new Float32Array(10), 1), /1 images of 32² need 3072/);
  });
  await rejection(engine.predict(images(1, 32, 1), 1), Error, /disposed/);
  assert.equal([counts.created, counts.released], [1, 1]);
});

test('memory flat: 50 predict calls leave no tensor behind and bounded RSS/external growth; every session released', async () => {
  const size = 32;
  const weights = await seededStateDict('resnet18', { imageSize: size, seed: 6 });
  const { handle, counts } = onnxTestHandle('cpu');
  const probe = images(4, size, 2);
  const tensors = tf.memory().numTensors;
  const engine = await createInferenceEngine({ model: 'resnet18', imageSize: size, numClasses: 3, weights, backend: handle, workers: 1 });
  const usage = () => process.memoryUsage();
  await withEngine(engine, async (e) => {
    const first = await e.predict(probe, 4);
    for (let i = 0; i < 5; i++) await e.predict(probe, 4); // warm the session's arena
    globalThis.gc?.();
    const before = usage();
    for (let i = 0; i < 50; i++) assertClose(await e.predict(probe, 4), first, `call ${i}`);
    globalThis.gc?.();
    const after = usage();
    const mb = (n: number) => n / 2 ** 20;
    // 50 calls of 4 images at 32 px: a leak of the inputs or outputs alone would be ≥ 2.4 MB, of the session's buffers far more.
    assert.ok(mb(after.rss - before.rss) < 24, `RSS grew by ${mb(after.rss - before.rss).toFixed(1)} MB over 50 calls`);
    assert.ok(mb(after.external - before.external) < 8, `external memory grew by ${mb(after.external - before.external).toFixed(1)} MB`);
    assert.is(tf.memory().numTensors, tensors);
  });
  for (let i = 0; i < 3; i++) {
    const again = await createInferenceEngine({ model: 'resnet18', imageSize: size, numClasses: 3, weights, backend: handle, workers: 1 });
    await again.predict(probe, 4);
    await again.dispose();
  }
  assert.equal([counts.created, counts.released], [4, 4]);
});

test.run();
