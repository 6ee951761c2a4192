/**
 * Trained models ready for inference: loaded from a run directory or from a single weights file,
 * each with the preprocessing it was trained with, and batched softmax probabilities (optionally
 * averaged with the horizontally flipped image: test-time augmentation).
 */
import { basename, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { EvalTransform } from '../data/index.js';
import { UserError } from '../util/index.js';
import { getModel, type ModelName } from '../models/index.js';
import { loadRunModel, openRun, runWeightsPath } from '../runs/index.js';
import { buildWithWeights, readStateDict } from '../weights/index.js';
import { softmax } from '../report/index.js';

export interface LoadedModel {
  /** Display name: the architecture, or `architecture:run` when two runs share one. */
  name: string;
  modelName: ModelName;
  /** The run directory, when loaded from a run. */
  run?: string;
  /** The weights file that was loaded. */
  weightsFile: string;
  model: tfl.LayersModel;
  imageSize: number;
  transform: EvalTransform;
  numClasses: number;
}

/**
 * The best checkpoint of a training run, loaded strictly into its architecture by the training
 * room's loader, with the run's preprocessing. With `imageSize` (predict --image-size) the same
 * weights are built for that input size instead — the networks end in global pooling, so any size
 * works — with the architecture's transform for it.
 */
export async function loadRunForInference(dir: string, options: { imageSize?: number } = {}): Promise<LoadedModel> {
  if (options.imageSize === undefined) {
    const run = await loadRunModel(dir, 'best');
    return {
      name: run.entry.name,
      modelName: run.entry.name,
      run: run.info.dir,
      weightsFile: runWeightsPath(run.info.dir, 'best'),
      model: run.model,
      imageSize: run.info.imageSize,
      transform: run.transform,
      numClasses: run.info.numClasses,
    };
  }
  const info = await openRun(dir);
  const loaded = await loadWeightsFile(info.model, runWeightsPath(info.dir, 'best'), options.imageSize, info.numClasses);
  return { ...loaded, run: info.dir };
}

/** A torchvision-keyed weights file (.pth or .safetensors) for a named architecture; 3 classes. */
export async function loadWeightsFile(modelName: string, weightsFile: string, imageSize?: number, numClasses = 3): Promise<LoadedModel> {
  const entry = getModel(modelName);
  const size = imageSize ?? entry.defaultImageSize;
  const { model } = buildWithWeights(entry, await readStateDict(weightsFile), { numClasses, imageSize: size });
  return { name: entry.name, modelName: entry.name, weightsFile: resolve(weightsFile), model, imageSize: size, transform: entry.transform(size), numClasses };
}

/** Give models that share an architecture distinct display names (`resnet18:run-a`, `resnet18:run-b`). */
export function disambiguateNames(models: LoadedModel[]): void {
  const counts = new Map<string, number>();
  for (const m of models) counts.set(m.name, (counts.get(m.name) ?? 0) + 1);
  const seen = new Set<string>();
  for (const m of models) {
    if (counts.get(m.name)! > 1) m.name = `${m.name}:${m.run === undefined ? basename(m.weightsFile) : basename(m.run)}`;
    let name = m.name;
    for (let k = 2; seen.has(name); k++) name = `${m.name}#${k}`;
    m.name = name;
    seen.add(name);
  }
}

export function disposeModels(models: LoadedModel[]): void {
  for (const m of models) m.model.dispose();
}

/** Same size and same normalization: one preprocessed batch can feed both models. */
export function transformKey(t: EvalTransform): string {
  return JSON.stringify([t.resize, t.crop, t.mean, t.std]);
}

/**
 * Softmax probabilities for `count` preprocessed images (NHWC, crop×crop×3 each), in batches.
 * With `tta`, each image's probabilities are averaged with its horizontal mirror's — averaging
 * probabilities rather than logits, as the soft-vote ensemble does.
 */
export function predictProbabilities(loaded: LoadedModel, images: Float32Array, count: number, options: { tta?: boolean; batchSize?: number } = {}): Float32Array {
  const size = loaded.transform.crop;
  const pixels = size * size * 3;
  if (images.length !== count * pixels) throw new UserError(`expected ${count} images of ${size}×${size}×3 values, got ${images.length} values`);
  const batchSize = options.batchSize ?? 16;
  const k = loaded.numClasses;
  const out = new Float32Array(count * k);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const logits = tf.tidy(() => {
      const x = tf.tensor4d(images.subarray(start * pixels, (start + n) * pixels), [n, size, size, 3]);
      const outputs = [loaded.model.predict(x) as tf.Tensor];
      if (options.tta) outputs.push(loaded.model.predict(tf.reverse(x, 2)) as tf.Tensor);
      return outputs;
    });
    let probabilities: Float32Array[];
    try {
      probabilities = logits.map((l) => softmax(l.dataSync() as Float32Array, k));
    } finally {
      tf.dispose(logits);
    }
    for (let i = 0; i < n * k; i++) {
      let sum = 0;
      for (const p of probabilities) sum += p[i]!;
      out[start * k + i] = sum / probabilities.length;
    }
  }
  return out;
}
