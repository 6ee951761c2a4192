import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import { loadLayersModelFromDir, saveLayersModelToDir } from '../../src/eval/tfjs-io.js';
import { DataError } from '../../src/util/index.js';

setupOnce(test, async () => {
  await tf.setBackend('cpu');
});

test('a model larger than one shard saves to model.json + shards and reloads predicting the same', async () => {
  const input = tfl.input({ shape: [1100] });
  const hidden = tfl.layers.dense({ units: 1000, activation: 'relu', kernelInitializer: tfl.initializers.randomNormal({ seed: 1 }) }).apply(input);
  const output = tfl.layers.dense({ units: 3, kernelInitializer: tfl.initializers.randomNormal({ seed: 2 }) }).apply(hidden) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  const dir = await mkdtemp(join(tmpdir(), 'osteo-tfjs-'));
  try {
    const saved = await saveLayersModelToDir(model, dir, 'osteo test');
    assert.equal(saved.files, ['model.json', 'group1-shard1of2.bin', 'group1-shard2of2.bin']);
    assert.equal((await readdir(dir)).sort(), ['group1-shard1of2.bin', 'group1-shard2of2.bin', 'model.json']);
    const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
    assert.is(json.format, 'layers-model');
    assert.is(json.convertedBy, 'osteo test');
    assert.is(json.weightsManifest[0].weights.length, 4);

    const reloaded = await loadLayersModelFromDir(dir);
    const x = tf.randomNormal([4, 1100], 0, 1, 'float32', 3);
    const a = model.predict(x) as tf.Tensor;
    const b = reloaded.predict(x) as tf.Tensor;
    assert.equal(Array.from(b.dataSync()), Array.from(a.dataSync()));
    tf.dispose([x, a, b]);
    reloaded.dispose();
  } finally {
    model.dispose();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a missing model.json or shard is a DataError naming the file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'osteo-tfjs-'));
  try {
    await loadLayersModelFromDir(dir).then(
      () => assert.unreachable('loaded nothing'),
      (e: unknown) => assert.ok(e instanceof DataError && e.message.includes('model.json'), String(e)),
    );
    const model = tfl.sequential({ layers: [tfl.layers.dense({ units: 2, inputShape: [3] })] });
    await saveLayersModelToDir(model, dir, 'osteo test');
    await rm(join(dir, 'group1-shard1of1.bin'));
    await loadLayersModelFromDir(dir).then(
      () => assert.unreachable('loaded without weights'),
      (e: unknown) => assert.ok(e instanceof DataError && e.message.includes('group1-shard1of1.bin'), String(e)),
    );
    model.dispose();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
