/**
 * Every registered model against PyTorch/torchvision, both directions (sweeps the registry):
 *  - torchvision → osteo: PyTorch builds the dashboard's architecture with random weights and
 *    calibrated random BatchNorm statistics, torch.save's it; we read the .pth, load it strictly and
 *    must reproduce PyTorch's eval-mode logits (max abs diff ≤ 1e-4) at 64 px, at 65 px (odd sizes
 *    exercise torch's symmetric padding at every stride-2 layer) and at 224 px.
 *  - osteo → torchvision: our seeded random model (with random BatchNorm tensors) written by writePth
 *    loads with torch.load(weights_only=True) + strict load_state_dict and gives our logits.
 *  - a training step: the torchvision-written weights in training mode (batch statistics; dropout and
 *    stochastic depth off) give PyTorch's cross-entropy loss and parameter gradients (first, middle and
 *    last parameters, and any LayerNorm / layer scale) to ≤ 1e-4 relative, on the wasm backend's kernels
 *    — or, where PyTorch's own float32 gradient is further than that from its float64 one (a random
 *    DenseNet's early layers at 64 px: rounding is amplified ~10^4 on the way back), to within 3× that
 *    floor.
 * Set OSTEO_PARITY_REPORT=1 to print the measured differences.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { useBackend } from '../../src/backend/index.js';
import { LayerScale, listModels, SeededDropout, StochasticDepth, TorchBatchNorm, TorchLayerNorm } from '../../src/models/index.js';
import { SeededRandom } from '../../src/models/random.js';
import { loadStateDict, modelToStateDict, readPth, weightSlots, writePth } from '../../src/weights/index.js';
import { referenceTest, runPython, temporaryDirectory } from '../fixtures/torch/python.js';
import { paritySizes, torchvisionFiles } from '../fixtures/torch/torchvision-files.js';

const tolerance = 1e-4;
const sizes = paritySizes;
const gradSize = 64;
const gradBatch = 4;
const gradTolerance = 1e-4;
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

function maxAbs(values: Float32Array): number {
  let max = 0;
  for (const value of values) max = Math.max(max, Math.abs(value));
  return max;
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
  for (const layer of model.layers) {
    // LayerNorm affines and ConvNeXt's layer scales (1e-6 by default, which hides the block) as reference.py sets them.
    if (layer instanceof TorchLayerNorm) {
      const channels = layer.gamma.shape[0] as number;
      fill(layer.gamma, Float32Array.from({ length: channels }, () => 0.5 + random.next()));
      fill(layer.beta, Float32Array.from({ length: channels }, () => 0.2 * random.nextNormal()));
    } else if (layer instanceof LayerScale) {
      fill(layer.scale, Float32Array.from({ length: layer.scale.shape[0] as number }, () => 0.1 + 0.3 * random.next()));
    }
  }
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
          const ours = await modelToStateDict(model, entry.name);
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
        // Logits are scaled to O(1) at 64 px; at 224 px B3's reach ~23, where float32 alone moves them by 2e-4.
        const bound = tolerance * Math.max(1, maxAbs(expected));
        assert.ok(diff <= bound, `${entry.name} at ${size}px: max abs diff ${diff} > ${bound}`);
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
      const dict = await modelToStateDict(model, entry.name);
      const counters = [...dict.values()].filter((t) => t.dtype === 'int64');
      if (counters.length > 0) assert.ok(counters.some((t) => t.data[0] !== 0n), 'num_batches_tracked is carried over');
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

/** The parameters whose gradients are compared: first, middle, last, and the first of each normalisation or scale kind. */
function gradientKeys(keys: string[]): string[] {
  const picked = new Set([keys[0]!, keys[Math.floor(keys.length / 2)]!, keys[keys.length - 2]!, keys[keys.length - 1]!]);
  for (const pattern of [/layer_scale$/, /\.block\.2\.weight$/, /norm1\.weight$/, /classifier\.0\.weight$/]) {
    const match = keys.find((key) => pattern.test(key));
    if (match !== undefined) picked.add(match);
  }
  return [...picked];
}

for (const entry of models) {
  referenceTest(test, `${entry.name}: a training step's loss and gradients equal PyTorch's (wasm kernels)`, async () => {
    const files = torchvisionFiles();
    const dict = await readPth(join(files, `${entry.name}.pth`));
    const model = entry.build({ imageSize: gradSize, initialize: false });
    try {
      loadStateDict(model, entry.name, dict);
      // Dropout and stochastic depth off (their masks are random on both sides); BatchNorm keeps batch statistics.
      for (const layer of model.layers) if (layer instanceof SeededDropout || layer instanceof StochasticDepth) Object.defineProperty(layer, 'rate', { value: 0 });
      const slots = weightSlots(model, entry).filter((slot) => slot.variable !== null && slot.variable.trainable);
      const keys = gradientKeys(slots.map((slot) => slot.key));
      writeFileSync(join(files, `${entry.name}_grad_keys.json`), JSON.stringify(keys));
      const random = new SeededRandom(300);
      const nchw = Float32Array.from({ length: gradBatch * 3 * gradSize * gradSize }, () => random.nextNormal());
      writeFileSync(join(files, `${entry.name}_grad_input_${gradSize}.bin`), nchw);
      const labels = Array.from({ length: gradBatch }, (_, i) => i % 3);
      const before = tf.memory().numTensors;
      const { value, grads } = tf.variableGrads(() =>
        tf.tidy(() => {
          const x = tf.transpose(tf.tensor4d(nchw, [gradBatch, 3, gradSize, gradSize]), [0, 2, 3, 1]);
          const logits = model.apply(x, { training: true }) as tf.Tensor;
          return tf.losses.softmaxCrossEntropy(tf.oneHot(labels, 3), logits) as tf.Scalar;
        }),
      );
      const loss = value.dataSync()[0]!;
      runPython('reference.py', ['grad', files, entry.name, '--sizes', String(gradSize)]);
      const torchLoss = readF32(join(files, `${entry.name}_grad_loss_${gradSize}.bin`))[0]!;
      const report = [`loss ${loss.toFixed(6)} vs ${torchLoss.toFixed(6)}`];
      assert.ok(Math.abs(loss - torchLoss) <= gradTolerance * Math.abs(torchLoss), `${entry.name}: loss ${loss} vs PyTorch ${torchLoss}`);
      for (const key of keys) {
        const slot = slots.find((candidate) => candidate.key === key)!;
        const gradient = grads[slot.variable!.name];
        assert.ok(gradient !== undefined, `${key} has a gradient`);
        const values = gradient!.dataSync() as Float32Array;
        const permutation = { conv: [3, 2, 0, 1], depthwise: [2, 3, 0, 1], linear: [1, 0] }[slot.layout as string];
        const ours = permutation ? permuteTo(values, gradient!.shape, permutation) : values;
        const theirs = readF32(join(files, `${entry.name}_grad_${gradSize}_${key}.bin`));
        const scale = maxAbs(theirs);
        const relative = maxAbsDiff(ours, theirs) / scale;
        const floor = maxAbsDiff(theirs, readF32(join(files, `${entry.name}_grad64_${gradSize}_${key}.bin`))) / scale;
        report.push(`${key} ${relative.toExponential(2)} (float32 floor ${floor.toExponential(2)})`);
        assert.ok(scale > 0, `${key}: PyTorch's gradient is not zero`);
        const bound = Math.max(gradTolerance, 3 * floor);
        assert.ok(relative <= bound, `${entry.name} ${key}: max |Δgrad| / max |grad| = ${relative} > ${bound}`);
      }
      tf.dispose([value, ...Object.values(grads)]);
      assert.is(tf.memory().numTensors, before, 'a training step leaves no tensor behind');
      measured.push(`${entry.name} gradients at ${gradSize}px (relative): ${report.join(', ')}`);
    } finally {
      model.dispose();
    }
  });
}

/** tfjs layout → torch layout (output axis i is input axis permutation[i]), as the key map transposes. */
function permuteTo(data: Float32Array, shape: number[], permutation: number[]): Float32Array {
  const strides = shape.map((_, axis) => shape.slice(axis + 1).reduce((a, b) => a * b, 1));
  const outShape = permutation.map((axis) => shape[axis]!);
  const out = new Float32Array(data.length);
  const index = new Array<number>(outShape.length).fill(0);
  for (let o = 0; o < out.length; o++) {
    let source = 0;
    for (let d = 0; d < index.length; d++) source += index[d]! * strides[permutation[d]!]!;
    out[o] = data[source]!;
    for (let d = index.length - 1; d >= 0; d--) {
      if (++index[d]! < outShape[d]!) break;
      index[d] = 0;
    }
  }
  return out;
}

test.run();
