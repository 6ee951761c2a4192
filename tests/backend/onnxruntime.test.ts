/**
 * onnxruntime-node sessions (src/backend/onnxruntime.ts): the bundled providers are listed, a session
 * runs a graph osteo emitted and gives the tfjs model's logits, many runs leave memory flat, and a
 * provider this build lacks, bytes that are no model, and a wrong input are UserErrors that name the
 * model, its size and the batch.
 */
import { existsSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { createOnnxSession, listOnnxProviders, useBackend } from '../../src/backend/index.js';
import { getModel } from '../../src/models/index.js';
import { modelToOnnx } from '../../src/weights/index.js';
import { refusal } from '../helpers/refusal.js';

const size = 32;
const label = { model: 'resnet18', imageSize: size };

test('the npm package bundles the cpu and webgpu providers; cuda counts as installed only with its library', async () => {
  const providers = await listOnnxProviders();
  assert.ok(providers.some((p) => p.name === 'cpu' && p.bundled && p.installed), JSON.stringify(providers));
  assert.ok(providers.some((p) => p.name === 'webgpu' && p.bundled && p.installed), JSON.stringify(providers));
  const cuda = providers.find((p) => p.name === 'cuda')!;
  assert.is(cuda.bundled, false);
  assert.match(cuda.library!, /onnxruntime_providers_cuda\.(so|dll)$/);
  assert.is(cuda.installed, existsSync(cuda.library!));
});

test("a session on the cpu provider runs osteo's graph and gives the tfjs model's logits, with memory flat over many runs", async () => {
  await useBackend('wasm');
  const model = getModel('resnet18').build({ imageSize: size, seed: 9 });
  try {
    const { bytes } = await modelToOnnx(model, 'resnet18');
    const session = await createOnnxSession(bytes, { label, threads: 1 });
    try {
      assert.is(session.inputName, 'input');
      assert.is(session.outputName, 'logits');
      const batch = 3;
      const input = Float32Array.from({ length: batch * 3 * size * size }, (_, i) => Math.sin(i * 0.113));
      const ours = await session.run(input, [batch, 3, size, size]);
      const reference = tf.tidy(() => (model.predict(tf.transpose(tf.tensor4d(input, [batch, 3, size, size]), [0, 2, 3, 1])) as tf.Tensor).dataSync());
      assert.is(ours.length, batch * 3);
      for (let i = 0; i < ours.length; i++) assert.ok(Math.abs(ours[i]! - reference[i]!) <= 1e-4, `logit ${i}: ${ours[i]} vs tfjs ${reference[i]}`);
      // The batch dimension is dynamic: one image runs through the same session.
      const single = await session.run(input.subarray(0, 3 * size * size), [1, 3, size, size]);
      for (let i = 0; i < 3; i++) assert.ok(Math.abs(single[i]! - ours[i]!) <= 1e-5);

      for (let i = 0; i < 5; i++) await session.run(input, [batch, 3, size, size]);
      const before = process.memoryUsage().rss;
      for (let i = 0; i < 60; i++) await session.run(input, [batch, 3, size, size]);
      const grown = process.memoryUsage().rss - before;
      // 60 runs of ~37 KB in and out each: a leak of even the inputs would pass 2 MB; allocator noise stays below 16 MB.
      assert.ok(grown < 16 * 1024 * 1024, `resident memory grew by ${(grown / 1048576).toFixed(1)} MiB over 60 runs`);
    } finally {
      await session.release();
    }
  } finally {
    model.dispose();
  }
});

// A machine where the CUDA provider was installed cannot show this refusal: there the test is skipped.
const hasCuda = (await listOnnxProviders()).some((p) => p.name === 'cuda' && p.installed);
(hasCuda ? test.skip : test)('a provider this build lacks is refused with what it has', async () => {
  const message = await refusal(createOnnxSession(new Uint8Array(4), { label, provider: 'cuda' }));
  assert.match(message, /no 'cuda' execution provider here for resnet18 at 32 px \(it has cpu, webgpu.*\): install the CUDA 12 provider as docs\/onnx\.md describes/);
});

test('bytes that are no ONNX model fail to build a session, naming the model and size', async () => {
  const message = await refusal(createOnnxSession(new TextEncoder().encode('not a model at all'), { label }));
  assert.match(message, /onnxruntime could not build a cpu session for resnet18 at 32 px: .*export it again/);
});

test('an input of the wrong size fails naming the model, size and batch', async () => {
  await useBackend('wasm');
  const model = getModel('resnet18').build({ imageSize: size, initialize: false });
  try {
    const { bytes } = await modelToOnnx(model, 'resnet18');
    const session = await createOnnxSession(bytes, { label, threads: 1 });
    try {
      const message = await refusal(session.run(new Float32Array(2 * 3 * 40 * 40), [2, 3, 40, 40]));
      assert.match(message, /onnxruntime \(cpu\) failed on resnet18 at 32 px, batch 2: /);
    } finally {
      await session.release();
    }
  } finally {
    model.dispose();
  }
});

test.run();
