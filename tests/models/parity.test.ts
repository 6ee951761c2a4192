/**
 * Every registered model against PyTorch/torchvision, both directions (sweeps the registry):
 *  - torchvision → osteo: PyTorch builds the dashboard's architecture with random weights and
 *    calibrated random BatchNorm statistics, torch.save's it; we read the .pth, load it strictly and
 *    must reproduce PyTorch's eval-mode logits (max abs diff ≤ 1e-4) at 64 px and at 65 px (odd sizes
 *    exercise torch's symmetric padding at every stride-2 layer).
 *  - osteo → torchvision: our seeded random model (with random BatchNorm tensors) written by writePth
 *    loads with torch.load(weights_only=True) + strict load_state_dict and gives our logits.
 * Set OSTEO_PARITY_REPORT=1 to print the measured differences.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { useBackend } from '../../src/backend/index.js';
import { listModels, TorchBatchNorm } from '../../src/models/index.js';
import { SeededRandom } from '../../src/models/random.js';
import { loadStateDict, modelToStateDict, readPth, writePth } from '../../src/weights/index.js';
import { once, referenceTest, runPython, temporaryDirectory } from '../fixtures/torch/python.js';

const tolerance = 1e-4;
const sizes = [64, 65];
const reverseSize = 64;
const report = process.env['OSTEO_PARITY_REPORT'] === '1';
const models = listModels();
const dir = temporaryDirectory('parity');

function readF32(path: string): Float32Array {
  const bytes = readFileSync(path);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

function logits(model: tfl.LayersModel, nhwc: tf.Tensor4D): Float32Array {
  return tf.tidy(() => (model.predict(nhwc) as tf.Tensor).dataSync() as Float32Array).slice();
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.is(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Does this layer's output go (directly or through stochastic depth) into a residual Add? */
function closesResidualBranch(layer: tfl.layers.Layer): boolean {
  return layer.outboundNodes.some((node) => {
    const next = node.outboundLayer;
    if (next.getClassName() === 'Add') return true;
    return next.getClassName() === 'StochasticDepth' && closesResidualBranch(next);
  });
}

/**
 * As reference.py does on the PyTorch side: random BatchNorm affines (smaller on the BN closing each
 * residual branch), then running statistics measured by one training-mode batch (momentum 0), then
 * random batch counters. Default BN tensors would hide a swapped or dropped one; random running
 * statistics alone leave an untrained network so badly scaled that its logits barely depend on the
 * input; full-size residual branches make a random ResNet50 chaotic enough for float32 rounding
 * alone to move its logits by ~1e-4.
 */
function randomiseBatchNorms(model: tfl.LayersModel, seed: number, size: number): void {
  const random = new SeededRandom(seed);
  const fill = (variable: tfl.LayerVariable, values: Float32Array | number) => {
    const value = typeof values === 'number' ? tf.scalar(values) : tf.tensor1d(values);
    variable.write(value);
    value.dispose();
  };
  const batchNorms = model.layers.filter((layer): layer is TorchBatchNorm => layer instanceof TorchBatchNorm);
  for (const layer of batchNorms) {
    const channels = layer.gamma.shape[0] as number;
    const scale = closesResidualBranch(layer) ? 0.3 : 1;
    fill(layer.gamma, Float32Array.from({ length: channels }, () => scale * (0.5 + random.next())));
    fill(layer.beta, Float32Array.from({ length: channels }, () => 0.2 * random.nextNormal()));
    layer.momentum = 0;
  }
  const batch = tf.tidy(() => tf.tensor4d(Float32Array.from({ length: 8 * size * size * 3 }, () => random.nextNormal()), [8, size, size, 3]));
  tf.dispose(model.apply(batch, { training: true }) as tf.Tensor);
  batch.dispose();
  for (const layer of batchNorms) {
    layer.momentum = 0.9;
    fill(layer.numBatchesTracked, Math.floor(random.next() * 10000));
  }
}

/** Rescales the last Dense so the logits are O(1) (an absolute tolerance must not become a loose relative one). */
function normaliseLogitScale(model: tfl.LayersModel, input: tf.Tensor4D): void {
  const last = model.layers.filter((layer) => layer.getClassName() === 'Dense').pop()!;
  const spread = tf.tidy(() => tf.sqrt(tf.moments(model.predict(input) as tf.Tensor).variance).dataSync()[0]!);
  for (const weight of last.weights) {
    const scaled = tf.tidy(() => tf.div(weight.read(), spread));
    weight.write(scaled);
    scaled.dispose();
  }
}

const measured: string[] = [];

// In before.each, not before: uvu 0.5 hides an error thrown in test.before, but one thrown in
// before.each fails the test (useBackend returns at once when the backend is already in use).
test.before.each(async () => {
  await useBackend('wasm');
});

/** The torchvision-written .pth files, inputs and logits, made by the first test that reads them. */
const torchvisionFiles = once(() => {
  runPython('reference.py', ['export', dir.path, ...models.map((m) => m.name), '--sizes', sizes.join(',')]);
  return dir.path;
});

test.after(() => {
  if (process.env['OSTEO_KEEP_FIXTURES'] === '1') process.stderr.write(`fixtures kept in ${dir.path}\n`);
  else dir.remove();
  if (report) process.stderr.write(`\n${measured.join('\n')}\n`);
});

for (const entry of models) {
  referenceTest(test, `${entry.name}: a torchvision-written .pth loads strictly, in torchvision's key order, and gives PyTorch's logits`, async () => {
    const files = torchvisionFiles();
    const dict = await readPth(join(files, `${entry.name}.pth`));
    const meta = JSON.parse(readFileSync(join(files, `${entry.name}.json`), 'utf8')) as {
      keys: [string, number[], string][];
      parameters: number;
    };
    assert.equal([...dict.keys()], meta.keys.map(([key]) => key), 'the reader keeps the pickle order');
    assert.is(entry.parameterCount, meta.parameters, 'parameter count equals torchvision');
    for (const size of sizes) {
      const model = entry.build({ imageSize: size, initialize: false });
      try {
        const loaded = loadStateDict(model, entry.name, dict);
        assert.is(loaded.loaded.length, dict.size);
        if (size === sizes[0]) {
          // Our model's state dict is torchvision's: same keys, same order, same shapes, same values.
          const ours = modelToStateDict(model, entry.name);
          assert.equal(
            [...ours].map(([key, t]) => [key, t.shape, t.dtype]),
            meta.keys.map(([key, shape, dtype]) => [key, shape, dtype === 'float32' ? 'float32' : 'int64']),
          );
          for (const [key, tensor] of dict) assert.equal(ours.get(key)!.data, tensor.data, `${key} survives the round trip`);
        }
        const nchw = readF32(join(files, `${entry.name}_input_${size}.bin`));
        const expected = readF32(join(files, `${entry.name}_logits_${size}.bin`));
        const input = tf.tidy(() => tf.transpose(tf.tensor4d(nchw, [2, 3, size, size]), [0, 2, 3, 1]) as tf.Tensor4D);
        const ours = logits(model, input);
        input.dispose();
        const diff = maxAbsDiff(ours, expected);
        const floor = maxAbsDiff(expected, readF32(join(files, `${entry.name}_logits64_${size}.bin`)));
        measured.push(
          `${entry.name} torchvision→osteo ${size}px: max |Δlogit| = ${diff.toExponential(2)} (PyTorch float32 vs float64: ${floor.toExponential(2)}; |logit| ≤ ${Math.max(...expected.map(Math.abs)).toFixed(2)})`,
        );
        assert.ok(diff <= tolerance, `${entry.name} at ${size}px: max abs diff ${diff} > ${tolerance}`);
      } finally {
        model.dispose();
      }
    }
  });
}

referenceTest(test, 'every registered model: our written .pth loads in PyTorch (weights_only, strict) and gives our logits', async () => {
  const ourLogits = new Map<string, Float32Array>();
  for (const [index, entry] of models.entries()) {
    const model = entry.build({ imageSize: reverseSize, seed: 7 + index });
    try {
      randomiseBatchNorms(model, 100 + index, reverseSize);
      const random = new SeededRandom(200 + index);
      const nchw = Float32Array.from({ length: 2 * 3 * reverseSize * reverseSize }, () => random.nextNormal());
      writeFileSync(join(dir.path, `${entry.name}_ours_input_${reverseSize}.bin`), nchw);
      const input = tf.tidy(() => tf.transpose(tf.tensor4d(nchw, [2, 3, reverseSize, reverseSize]), [0, 2, 3, 1]) as tf.Tensor4D);
      normaliseLogitScale(model, input);
      ourLogits.set(entry.name, logits(model, input));
      input.dispose();
      const dict = modelToStateDict(model, entry.name);
      assert.ok([...dict.values()].some((t) => t.dtype === 'int64' && t.data[0] !== 0n), 'num_batches_tracked is carried over');
      await writePth(join(dir.path, `${entry.name}_ours.pth`), dict);
    } finally {
      model.dispose();
    }
  }
  runPython('reference.py', ['check', dir.path, ...models.map((m) => m.name), '--sizes', String(reverseSize)]);
  for (const entry of models) {
    const ours = ourLogits.get(entry.name)!;
    const torch = readF32(join(dir.path, `${entry.name}_ours_torch_logits_${reverseSize}.bin`));
    const diff = maxAbsDiff(ours, torch);
    const floor = maxAbsDiff(torch, readF32(join(dir.path, `${entry.name}_ours_torch_logits64_${reverseSize}.bin`)));
    measured.push(
      `${entry.name} osteo→torchvision ${reverseSize}px: max |Δlogit| = ${diff.toExponential(2)} (PyTorch float32 vs float64: ${floor.toExponential(2)}; |logit| ≤ ${Math.max(...ours.map(Math.abs)).toFixed(2)})`,
    );
    assert.ok(diff <= tolerance, `${entry.name}: max abs diff ${diff} > ${tolerance}`);
    // The logits must depend on the input, or the comparison would prove little.
    assert.ok(Math.abs(ours[0]! - ours[3]!) + Math.abs(ours[1]! - ours[4]!) > 1e-3, `${entry.name}: logits barely depend on the input`);
  }
});

test.run();
