/**
 * Validation inside training on an onnxruntime inference handle: each epoch the current weights go
 * to a fresh onnxruntime session, which predicts the val split and is released. The same training
 * (same seed, one wasm worker) validated on the training engine gives the same val loss and metrics
 * to 1e-4, and the same weights bit for bit (validation changes nothing in the run).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { splitDataset, synthesizePhantom } from '../../src/data/index.js';
import { trainModel } from '../../src/train/index.js';
import { onnxTestHandle } from '../helpers/onnx-handle.js';
import { assertSameDict, readWeights, tinyConfig, wasm } from './helpers.js';

test('validation on an onnxruntime handle: the training engine’s val metrics, one session per epoch, released', async () => {
  const root = await mkdtemp(join(tmpdir(), 'osteo-val-onnx-'));
  try {
    const dataDir = join(root, 'phantom');
    await synthesizePhantom({ dest: dataDir, perClass: 8, size: 40, seed: 2 });
    await splitDataset({ dataDir, val: 0.4, test: 0.1 });
    const flags = { epochs: '2', batchSize: '8' };
    const plain = await trainModel(await tinyConfig(dataDir, join(root, 'plain'), flags), { backend: await wasm() });
    const { handle, counts } = onnxTestHandle('cpu', 1);
    const tensors = tf.memory().numTensors;
    const onnx = await trainModel(await tinyConfig(dataDir, join(root, 'onnx'), flags), { backend: await wasm(), inference: handle });
    assert.is(tf.memory().numTensors, tensors, 'no tensor left behind');
    assert.equal([plain.status, onnx.status], ['completed', 'completed']);
    assert.equal([counts.created, counts.released], [2, 2], 'one session per epoch, each released');
    assert.ok(counts.batches.length >= 2, 'the val split ran through the sessions');
    for (const [i, row] of onnx.history.entries()) {
      const reference = plain.history[i]!;
      for (const key of ['valLoss', 'valAccuracy', 'valBalancedAccuracy', 'valMacroF1'] as const) {
        assert.ok(Math.abs(row[key] - reference[key]) <= 1e-4, `epoch ${i + 1} ${key}: ${row[key]} vs ${reference[key]}`);
      }
    }
    assertSameDict(await readWeights(join(root, 'onnx', 'last', 'model.safetensors')), await readWeights(join(root, 'plain', 'last', 'model.safetensors')), 'last');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test.run();
