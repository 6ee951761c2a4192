/**
 * Test fixtures for the eval room: training runs written by the runs room's own writers (the config
 * resolved by the config room, and a `best` checkpoint) from freshly built models instead of trained
 * ones, so the tests need no training; and small deterministic images.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import { resolveTrainConfig } from '../../src/config/index.js';
import { classNames, contentHash, decodeRgb, type Split } from '../../src/data/index.js';
import { getModel, type ModelName } from '../../src/models/index.js';
import { saveCheckpoint, writeRunConfig } from '../../src/runs/index.js';
import { loadStateDict, modelToStateDict, type StateDict } from '../../src/weights/index.js';
import { randomSource } from '../helpers/random.js';

export interface RunFixture {
  dir: string;
  model: ModelName;
  imageSize: number;
}

/**
 * A run whose weights are a seeded random model with non-trivial BatchNorm statistics, and whose
 * classifier is scaled so its logits on typical inputs are O(1): the softmax is then far from
 * one-hot, and a probability comparison means something.
 */
export async function writeRunFixture(dir: string, model: ModelName, options: { imageSize: number; seed: number }): Promise<RunFixture> {
  const entry = getModel(model);
  const built = entry.build({ imageSize: options.imageSize, seed: options.seed });
  const dict: StateDict = await modelToStateDict(built, entry.name);
  const rng = randomSource(options.seed);
  for (const [key, tensor] of dict) {
    if (tensor.dtype !== 'float32') continue;
    const data = tensor.data as Float32Array;
    if (key.endsWith('running_mean')) for (let i = 0; i < data.length; i++) data[i] = (rng.next() - 0.5) * 0.2;
    if (key.endsWith('running_var')) for (let i = 0; i < data.length; i++) data[i] = 0.5 + rng.next();
    if (key.endsWith('bn3.weight') || key.endsWith('bn2.weight')) for (let i = 0; i < data.length; i++) data[i] = 0.2 + 0.3 * rng.next();
  }
  // Scale the last linear layer so the largest logit on a random input is about 2.
  loadStateDict(built, entry.name, dict);
  const logits = tf.tidy(() => (built.predict(tf.randomNormal([2, options.imageSize, options.imageSize, 3], 0, 1, 'float32', options.seed)) as tf.Tensor).dataSync());
  built.dispose();
  const scale = 2 / Math.max(...Array.from(logits, Math.abs));
  const head = entry.classifierName === 'fc' ? 'fc' : 'classifier.4';
  for (const suffix of ['weight', 'bias']) {
    const data = dict.get(`${head}.${suffix}`)!.data as Float32Array;
    for (let i = 0; i < data.length; i++) data[i]! *= scale;
  }
  for (const [key, tensor] of dict) if (key.endsWith('num_batches_tracked')) (tensor.data as BigInt64Array)[0] = 7n;
  // The config the training room would save for this run (its recipe, resolved and validated).
  const config = await resolveTrainConfig({ flags: { model, imageSize: options.imageSize, seed: options.seed, data: 'fixture', out: dir } });
  await writeRunConfig(dir, config);
  await saveCheckpoint(dir, 'best', { weights: dict, state: { epoch: 3, metrics: { valAccuracy: 0.5, valLoss: 1.0 } } });
  return { dir, model, imageSize: options.imageSize };
}

/**
 * A dataset of one small image per entry of `splits` (classes in turn, image i seeded `seed + i`),
 * whose splits.csv carries the content hash of every image, as `osteo data split` writes it.
 */
export async function writeHashedDataset(dir: string, splits: readonly Split[], seed = 300): Promise<void> {
  const rows = ['path,label,class,split,group,contentHash'];
  for (const [i, split] of splits.entries()) {
    const path = `${classNames[i % 3]}/${split}-${i}.png`;
    await mkdir(join(dir, classNames[i % 3]!), { recursive: true });
    await writeTestImage(join(dir, path), 40 + i, 36, seed + i);
    rows.push(`${path},${i % 3},c,${split},g${i},${contentHash(await decodeRgb(join(dir, path)))}`);
  }
  await writeFile(join(dir, 'splits.csv'), rows.join('\n') + '\n');
}

/** A deterministic RGB "radiograph-like" PNG: smooth bands, a bright bone-like bar, texture. */
export async function writeTestImage(file: string, width: number, height: number, seed = 1): Promise<void> {
  const rng = randomSource(seed);
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const bone = Math.abs(x - width / 2) < width / 6 ? 90 : 0;
      const base = 60 + 60 * Math.sin(y / 9) * Math.cos(x / 13) + bone + 30 * rng.next();
      for (let c = 0; c < 3; c++) pixels[(y * width + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(base + c * 7)));
    }
  await sharp(pixels, { raw: { width, height, channels: 3 } }).png().toFile(file);
}

export function countTensors(): number {
  return tf.memory().numTensors;
}
