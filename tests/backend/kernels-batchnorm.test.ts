/**
 * The fused training BatchNorm against tfjs' own composition (tf.moments + tf.batchNorm): outputs,
 * statistics and the gradients with respect to x, γ and β, on cpu (composed path) and wasm (kernels).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// tfjs-layers registers tfjs-core's gradients (the composed reference needs them)
import '@tensorflow/tfjs-layers';
import { useBackend } from '../../src/backend/index.js';
import { batchNormTraining } from '../../src/backend/kernels/index.js';
import { rng } from '../helpers/random.js';


function close(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, tolerance = 1e-4): void {
  assert.is(actual.length, expected.length, `${label}: length`);
  let scale = 1;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tolerance * scale, `${label}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

test.before(async () => {
  await useBackend('wasm');
});

for (const backend of ['cpu', 'wasm']) {
  test(`batchNormTraining equals moments + batchNorm, values and gradients (${backend})`, async () => {
    await tf.setBackend(backend);
    const next = rng(backend === 'cpu' ? 1 : 2);
    // channel counts that are multiples of 4 take the SIMD loops on wasm; 300·3 rows cross a flush boundary
    for (const shape of [[3, 5, 7, 6], [2, 4, 4, 17], [9, 4], [2, 5, 5, 8], [3, 300, 12]]) {
      const c = shape[shape.length - 1]!;
      const size = shape.reduce((a, b) => a * b, 1);
      const x = tf.tensor(Float32Array.from({ length: size }, () => next() * 4 + 1), shape);
      const gamma = tf.tensor1d(Float32Array.from({ length: c }, () => next() + 0.5));
      const beta = tf.tensor1d(Float32Array.from({ length: c }, () => next() - 0.5));
      const weight = tf.tensor(Float32Array.from({ length: size }, () => next() * 2 - 1), shape);
      const eps = 1e-5;
      const before = tf.memory().numTensors;
      const fused = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(batchNormTraining(a, g as tf.Tensor1D, b as tf.Tensor1D, eps).output, weight)));
      const composed = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
        const axes = shape.map((_, i) => i).slice(0, -1);
        const { mean, variance } = tf.moments(a, axes);
        return tf.sum(tf.mul(tf.batchNorm(a, mean, variance, b as tf.Tensor1D, g as tf.Tensor1D, eps), weight));
      });
      const got = fused([x, gamma, beta]);
      const want = composed([x, gamma, beta]);
      for (let i = 0; i < 3; i++) close(await got[i]!.data(), await want[i]!.data(), `${backend} ${shape} grad ${['x', 'gamma', 'beta'][i]}`);
      tf.dispose([...got, ...want]);
      const result = batchNormTraining(x, gamma, beta, eps);
      const axes = shape.map((_, i) => i).slice(0, -1);
      const moments = tf.moments(x, axes);
      const reference = tf.batchNorm(x, moments.mean, moments.variance, beta, gamma, eps);
      close(await result.output.data(), await reference.data(), `${backend} ${shape} output`);
      close(await result.mean.data(), await moments.mean.data(), `${backend} ${shape} mean`);
      close(await result.variance.data(), await moments.variance.data(), `${backend} ${shape} variance`);
      tf.dispose([result.output, result.mean, result.variance, reference, moments.mean, moments.variance]);
      assert.is(tf.memory().numTensors, before, 'no tensor leaks');
      tf.dispose([x, gamma, beta, weight]);
    }
  });
}

test.run();
