/**
 * Trained models ready for inference: loaded from a run directory or from a single weights file,
 * each with the preprocessing it was trained with, and batched softmax probabilities (optionally
 * averaged with the horizontally flipped image: test-time augmentation). With workers > 1 the same
 * weights also go to replicas in worker threads (the training engine's), which then compute every
 * probability, the images cut into one block per worker in order; the model in this thread stays
 * for Grad-CAM.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { EvalTransform } from '../data/index.js';
import { DataError, UserError } from '../util/index.js';
import { getModel, type ModelName } from '../models/index.js';
import { imageSizeRange } from '../config/index.js';
import { checkpointNames, openRun, runWeightsPath, type CheckpointName } from '../runs/index.js';
import { buildWithWeights, readStateDict } from '../weights/index.js';
import { softmax } from '../report/index.js';
import { createPredictor, type Predictor } from '../train/index.js';

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
  /** Replicas in worker threads that compute the predictions instead of `model` (workers > 1). */
  replicas?: Predictor;
}

/** --checkpoint's choices: the run's checkpoints. */
export const checkpointChoices = checkpointNames;
export type CheckpointChoice = CheckpointName;

export interface LoadOptions {
  /** predict --image-size: build the same weights for this input size (default: the size they were trained at). */
  imageSize?: number;
  /** Which of the run's checkpoints (default best). */
  checkpoint?: CheckpointChoice;
  /** Told when the requested input size differs from the one the weights were trained at. */
  onWarning?: (message: string) => void;
  /** Worker threads that compute the predictions (inferenceWorkers decides how many); 1 or absent: this thread. */
  workers?: number;
}

function sizeMismatch(source: string, trained: number, requested: number): string {
  return `${source} was trained at ${trained}px but --image-size ${requested} was given: accuracy at another size is unmeasured (omit --image-size to use ${trained})`;
}

/**
 * A checkpoint of a training run, loaded strictly into its architecture, with the run's
 * preprocessing. With `imageSize` (predict --image-size) the same weights are built for that input
 * size instead — the networks end in global pooling, so any size works — with the architecture's
 * transform for it.
 */
export async function loadRunForInference(dir: string, options: LoadOptions = {}): Promise<LoadedModel> {
  const which = options.checkpoint ?? 'best';
  const { config } = await openRun(dir, which);
  const file = runWeightsPath(dir, which);
  if (options.imageSize !== undefined && options.imageSize !== config.imageSize) options.onWarning?.(sizeMismatch(`run ${dir}`, config.imageSize, options.imageSize));
  const loaded = await buildFromFile(config.model, file, options.imageSize ?? config.imageSize, config.numClasses, options.workers);
  return { ...loaded, run: resolve(dir) };
}

/** The file is read once, so the model here and its replicas hold the same weights even if it is replaced meanwhile. */
async function buildFromFile(modelName: string, weightsFile: string, imageSize: number, numClasses: number, workers = 1): Promise<LoadedModel> {
  const entry = getModel(modelName);
  const weights = await readStateDict(weightsFile);
  const { model } = buildWithWeights(entry, weights, { numClasses, imageSize });
  let replicas: Predictor | undefined;
  try {
    if (workers > 1) replicas = await createPredictor({ model: entry.name, imageSize, numClasses, weights, workers });
  } catch (error) {
    model.dispose();
    throw error;
  }
  return { name: entry.name, modelName: entry.name, weightsFile: resolve(weightsFile), model, imageSize, transform: entry.transform(imageSize), numClasses, replicas };
}

/**
 * The input size `osteo export` recorded for a weights file in the metadata.json beside it: a run
 * export names one model, a dashboard export one record per file. Undefined when there is none or it
 * describes another architecture. A record of this file whose imageSize is no size a model here
 * takes (−1, "abc", 1e9) is a DataError: guessing the default instead would change every answer.
 */
export async function exportedImageSize(weightsFile: string, modelName: ModelName): Promise<number | undefined> {
  const file = join(dirname(weightsFile), 'metadata.json');
  if (!existsSync(file)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch {
    return undefined; // not osteo's metadata: nothing known about the size
  }
  type Record = { model?: unknown; imageSize?: unknown; files?: unknown };
  const root = json as Record & { models?: { [file: string]: Record } };
  const candidates = [root.models?.[basename(weightsFile)], root].filter((r): r is Record => typeof r === 'object' && r !== null);
  for (const record of candidates) {
    const describesFile = !Array.isArray(record.files) || record.files.includes(basename(weightsFile));
    if (record.model !== modelName || !describesFile || record.imageSize === undefined) continue;
    const { min, max } = imageSizeRange;
    const size = record.imageSize;
    if (typeof size === 'number' && Number.isInteger(size) && size >= min && size <= max) return size;
    const shown = typeof size === 'number' ? String(size) : JSON.stringify(size);
    throw new DataError(file, `imageSize ${shown} for ${basename(weightsFile)} is not an integer from ${min} to ${max} px: correct it, or delete the metadata.json and give --image-size`);
  }
  return undefined;
}

/**
 * A torchvision-keyed weights file (.pth or .safetensors) for a named architecture; 3 classes unless
 * told. The input size defaults to what an `osteo export` metadata.json beside the file records, else
 * the architecture's default; a different --image-size is used but warned about.
 */
export async function loadWeightsFile(modelName: string, weightsFile: string, options: Omit<LoadOptions, 'checkpoint'> & { numClasses?: number } = {}): Promise<LoadedModel> {
  const entry = getModel(modelName);
  const { imageSize, numClasses = 3 } = options;
  const recorded = await exportedImageSize(weightsFile, entry.name);
  if (imageSize !== undefined && recorded !== undefined && imageSize !== recorded) options.onWarning?.(sizeMismatch(`${weightsFile} (its metadata.json)`, recorded, imageSize));
  return buildFromFile(entry.name, weightsFile, imageSize ?? recorded ?? entry.defaultImageSize, numClasses, options.workers);
}

/**
 * Load several models at once (their worker threads start side by side), in order. All or none: when
 * one fails, those already loaded are disposed and the first failure is thrown.
 */
export async function loadAll(loaders: Array<() => Promise<LoadedModel>>): Promise<LoadedModel[]> {
  const settled = await Promise.allSettled(loaders.map((load) => load()));
  const loaded = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failure === undefined) return loaded;
  await disposeModels(loaded);
  throw failure.reason;
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

/** The models here are released at once; the worker threads, if any, once they have stopped. */
export async function disposeModels(models: LoadedModel[]): Promise<void> {
  for (const m of models) m.model.dispose();
  await Promise.all(models.map((m) => m.replicas?.dispose()));
}

/** Same size and same normalization: one preprocessed batch can feed both models. */
export function transformKey(t: EvalTransform): string {
  return JSON.stringify([t.resize, t.crop, t.mean, t.std]);
}

/** Non-finite outputs name the model and the file whose weights produced them. */
export function nonFiniteError(loaded: Pick<LoadedModel, 'name' | 'run' | 'weightsFile'>): DataError {
  const source = loaded.run === undefined ? '' : ` of run ${loaded.run}`;
  return new DataError(
    loaded.weightsFile,
    `model ${loaded.name}${source} gives non-finite outputs (NaN or infinity): its weights are damaged or its training diverged; retrain it, or evaluate another checkpoint (--checkpoint best|last)`,
  );
}

/** The images (NHWC, size×size×3 each) mirrored left to right, as tf.reverse(x, 2) does. */
export function mirrorImages(images: Float32Array, count: number, size: number): Float32Array {
  const out = new Float32Array(images.length);
  const row = size * 3;
  for (let r = 0; r < count * size; r++) {
    const start = r * row;
    for (let x = 0; x < size; x++) {
      const from = start + x * 3;
      const to = start + (size - 1 - x) * 3;
      out[to] = images[from]!;
      out[to + 1] = images[from + 1]!;
      out[to + 2] = images[from + 2]!;
    }
  }
  return out;
}

/** Softmax of logits (rows of k); non-finite logits name the model and its weights file. */
function probabilitiesOf(loaded: LoadedModel, logits: Float32Array): Float32Array {
  // softmax of a NaN is NaN and argmax then picks class 0: "Normal (confidence NaN%)".
  if (!logits.every(Number.isFinite)) throw nonFiniteError(loaded);
  return softmax(logits, loaded.numClasses);
}

/** The mean of the passes' probabilities, in pass order (the plain image first, then its mirror). */
function meanOf(passes: Float32Array[], out: Float32Array, offset: number): void {
  for (let i = 0; i < passes[0]!.length; i++) {
    let sum = 0;
    for (const p of passes) sum += p[i]!;
    out[offset + i] = sum / passes.length;
  }
}

/**
 * Softmax probabilities for `count` preprocessed images (NHWC, crop×crop×3 each), in batches.
 * With `tta`, each image's probabilities are averaged with its horizontal mirror's — averaging
 * probabilities rather than logits, as the soft-vote ensemble does. With replicas in worker threads,
 * the images and their mirrors go to them in one call, cut into a block per worker; the result is
 * the same as in this thread up to float rounding, in the same order.
 */
export async function predictProbabilities(loaded: LoadedModel, images: Float32Array, count: number, options: { tta?: boolean; batchSize?: number } = {}): Promise<Float32Array> {
  const size = loaded.transform.crop;
  const pixels = size * size * 3;
  if (images.length !== count * pixels) throw new UserError(`expected ${count} images of ${size}×${size}×3 values, got ${images.length} values`);
  const k = loaded.numClasses;
  const out = new Float32Array(count * k);
  if (loaded.replicas !== undefined) {
    const input = options.tta ? new Float32Array(2 * count * pixels) : images;
    if (options.tta) {
      input.set(images);
      input.set(mirrorImages(images, count, size), count * pixels);
    }
    const logits = await loaded.replicas.logits(input, options.tta ? 2 * count : count);
    const passes = options.tta ? [logits.subarray(0, count * k), logits.subarray(count * k)] : [logits];
    meanOf(
      passes.map((p) => probabilitiesOf(loaded, p)),
      out,
      0,
    );
    return out;
  }
  const batchSize = options.batchSize ?? 16;
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
      const values = await Promise.all(logits.map((l) => l.data() as Promise<Float32Array>));
      probabilities = values.map((v) => probabilitiesOf(loaded, v));
    } finally {
      tf.dispose(logits);
    }
    meanOf(probabilities, out, start * k);
  }
  return out;
}
