/**
 * The engine on osteo's own registry (the default model provider): ResNet18 at 32² trains a step in
 * two wasm workers, its state comes out under torchvision keys, and a run repeated with the same seed
 * gives bit-identical weights.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine, type EngineBatch, type EngineOptions } from '../../src/engine/index.js';
import { useBackend } from '../../src/backend/index.js';

/** The backend these tests run on, as a command passes it down. */
const wasm = await useBackend('wasm');

function batch(n: number, size: number): EngineBatch {
  const images = new Float32Array(n * size * size * 3);
  for (let i = 0; i < images.length; i++) images[i] = Math.sin(i * 0.37) * 2;
  return { images, labels: Int32Array.from({ length: n }, (_, i) => i % 3), size: n };
}

const options: EngineOptions = {
  model: 'resnet18',
  build: { imageSize: 32, numClasses: 3 },
  backend: wasm,
  workers: 2,
  microBatch: 2,
  optimizer: { type: 'adamw', weightDecay: 0.01 },
  labelSmoothing: 0.1,
  seed: 11,
};

test('resnet18 from the registry: two workers, torchvision keys, same seed → same bits', async () => {
  const a = await createEngine(options);
  const b = await createEngine(options);
  try {
    const data = batch(4, 32);
    const ra = await a.step(data, 1e-3);
    const rb = await b.step(data, 1e-3);
    assert.is(ra.loss, rb.loss);
    assert.ok(Number.isFinite(ra.loss) && ra.gradNorm > 0);
    const sa = await a.getState();
    const sb = await b.getState();
    const fc = sa.weights.get('fc.weight');
    assert.ok(fc, 'torchvision key fc.weight');
    assert.equal(fc!.shape, [3, 512]);
    assert.is(Number((sa.weights.get('bn1.num_batches_tracked')!.data as BigInt64Array)[0]), 2, 'two micro-batches tracked');
    for (const [key, tensor] of sa.weights) assert.equal(Array.from(tensor.data as Float32Array), Array.from(sb.weights.get(key)!.data as Float32Array), key);
    // loadWeights takes a torchvision state dict back (the other engine's, here) and predictions follow it
    const report = await b.loadWeights(sa.weights);
    assert.is(report.missing.length, 0);
    const logitsA = await a.predict(data.images, 4);
    const logitsB = await b.predict(data.images, 4);
    assert.equal(Array.from(logitsA), Array.from(logitsB));
  } finally {
    await a.dispose();
    await b.dispose();
  }
});

test.run();
