/**
 * Trained models ready for inference: loaded from a run directory or from a single weights file into
 * an inference engine (src/engine/) on the backend the command chose, each with the preprocessing it
 * was trained with, and batched softmax probabilities (optionally averaged with the horizontally
 * flipped image: test-time augmentation). With workers > 1 the engine's replicas in worker threads
 * compute the logits, the images cut into one block per worker in order.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { BackendHandle } from '../backend/index.js';
import { dicomWindowText, numClasses as classCount, parseDicomWindow, type DicomWindow, type EvalTransform } from '../data/index.js';
import { evalOptions } from '../config/index.js';
import { DataError, UserError, sha256File } from '../util/index.js';
import { getModel, transformAt, type ModelName } from '../models/index.js';
import { imageSizeRange } from '../config/index.js';
import { checkpointNames, openRun, runWeightsPath, type CheckpointName } from '../runs/index.js';
import { readOnnxStateDict, readStateDict } from '../weights/index.js';
import { softmax } from '../report/index.js';
import { createInferenceEngine, inferenceWorkers, type InferenceEngine } from '../engine/index.js';

export interface LoadedModel {
  /** Display name: the architecture, or `architecture:run` when two runs share one. */
  name: string;
  modelName: ModelName;
  /** The run directory, when loaded from a run. */
  run?: string;
  /** The weights file that was loaded. */
  weightsFile: string;
  /** Computes the logits and Grad-CAM's feature maps (`workers` says in how many threads). */
  engine: InferenceEngine;
  imageSize: number;
  transform: EvalTransform;
  /** How DICOM inputs become gray levels for this model: its run's window, or the command's override (absent: auto). */
  dicomWindow?: DicomWindow;
  numClasses: number;
}

/** --checkpoint's choices: the run's checkpoints. */
export const checkpointChoices = checkpointNames;
export type CheckpointChoice = CheckpointName;

export interface LoadOptions {
  /** The backend the command chose: the engine computes on it. */
  backend: BackendHandle;
  /** predict --image-size: build the same weights for this input size (default: the size they were trained at). */
  imageSize?: number;
  /** Which of the run's checkpoints (default best). */
  checkpoint?: CheckpointChoice;
  /** Told when the requested input size differs from the one the weights were trained at. */
  onWarning?: (message: string) => void;
  /** Worker threads that compute the predictions (inferenceWorkers decides how many); 1 or absent: this thread. */
  workers?: number;
  /** --dicom-window: overrides the window the run was trained with. */
  dicomWindow?: DicomWindow;
}

function sizeMismatch(source: string, trained: number, requested: number): string {
  return `${source} was trained at ${trained}px but --image-size ${requested} was given: accuracy at another size is unmeasured (omit --image-size to use ${trained})`;
}

/**
 * A checkpoint of a training run, loaded strictly into its architecture, with the preprocessing the
 * run recorded. With `imageSize` (predict --image-size) the same weights are built for that input
 * size instead — the networks end in global pooling, so any size works — with the run's transform
 * scaled to it (same resize/crop ratio and normalization). DICOM inputs take the window the run
 * recorded unless `dicomWindow` overrides it.
 */
export async function loadRunForInference(dir: string, options: LoadOptions): Promise<LoadedModel> {
  const which = options.checkpoint ?? 'best';
  const { config, transform } = await openRun(dir, which);
  const file = runWeightsPath(dir, which);
  if (options.imageSize !== undefined && options.imageSize !== config.imageSize) options.onWarning?.(sizeMismatch(`run ${dir}`, config.imageSize, options.imageSize));
  const loaded = await buildFromFile(config.model, file, options.imageSize === undefined ? transform : transformAt(transform, options.imageSize), classCount, options);
  return { ...loaded, run: resolve(dir), dicomWindow: options.dicomWindow ?? parseDicomWindow(config.dicomWindow) ?? 'auto' };
}

/** The file is read once, so the model here and its replicas hold the same weights even if it is replaced meanwhile. */
async function buildFromFile(modelName: string, weightsFile: string, transform: EvalTransform, numClasses: number, options: LoadOptions): Promise<LoadedModel> {
  const entry = getModel(modelName);
  const imageSize = transform.crop;
  const weights = extname(weightsFile).toLowerCase() === '.onnx' ? await readOnnxStateDict(weightsFile, entry, { numClasses, imageSize }) : await readStateDict(weightsFile);
  const engine = await createInferenceEngine({ model: entry.name, imageSize, numClasses, weights, backend: options.backend, workers: options.workers ?? inferenceWorkers(undefined, 1, options.backend.capabilities) });
  return { name: entry.name, modelName: entry.name, weightsFile: resolve(weightsFile), engine, imageSize, transform, dicomWindow: options.dicomWindow ?? 'auto', numClasses };
}

type Triple = readonly [number, number, number];
const isTriple = (value: unknown): value is Triple => Array.isArray(value) && value.length === 3 && value.every((v) => typeof v === 'number' && Number.isFinite(v));

/** A record of metadata.json: the run export's root, or one of a dashboard export's `models`. */
type ExportRecord = { model?: unknown; imageSize?: unknown; files?: unknown; sha256?: unknown; preprocessing?: { resize?: unknown; crop?: unknown; mean?: unknown; std?: unknown } };

/** The SHA-256 a record gives for `name` (its `sha256` map), if any. */
function recordedSha256(record: ExportRecord, name: string): string | undefined {
  const hashes = record.sha256;
  const hash = typeof hashes === 'object' && hashes !== null ? (hashes as Record<string, unknown>)[name] : undefined;
  return typeof hash === 'string' ? hash : undefined;
}

/**
 * The preprocessing `osteo export` recorded for a weights file in the metadata.json beside it (a run
 * export names one model, a dashboard export one record per file): its `preprocessing` when that is
 * complete and crops to its `imageSize`, else the model's default weights' transform at that size.
 * The record must describe this very file: named in its `files` and, when it records the file's
 * SHA-256 (every export does), with that hash. A record whose hash differs describes other weights
 * (the file was replaced since): refused, or with an explicit --image-size (`sizeGiven`) warned
 * about and not used, since a 32 px model run at the default 224 gives other answers. Undefined,
 * with a warning saying why, when the metadata.json is not JSON, describes other files or another
 * architecture; silently undefined when there is none. A record of this file whose imageSize is no
 * size a model here takes (−1, "abc", 1e9) is a DataError: guessing the default would change every answer.
 */
export async function exportedTransform(weightsFile: string, modelName: ModelName, options: { onWarning?: (message: string) => void; sizeGiven?: boolean } = {}): Promise<EvalTransform | undefined> {
  const warn = options.onWarning ?? (() => undefined);
  const file = join(dirname(weightsFile), 'metadata.json');
  const name = basename(weightsFile);
  if (!existsSync(file)) return undefined;
  const ignored = `its preprocessing is not used: ${weightsFile} runs at ${modelName}'s default size unless --image-size says otherwise`;
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch {
    warn(`${file} beside the weights is not valid JSON, so not osteo's export record: ${ignored}`);
    return undefined;
  }
  const root = (typeof json === 'object' && json !== null ? json : {}) as ExportRecord & { models?: { [file: string]: ExportRecord } };
  const candidates = [root.models?.[name], root].filter((r): r is ExportRecord => typeof r === 'object' && r !== null && r.imageSize !== undefined);
  const record = candidates.find((r) => !Array.isArray(r.files) || r.files.includes(name));
  if (record === undefined) {
    if (candidates.length > 0) warn(`${file} describes other files (${candidates.flatMap((r) => (Array.isArray(r.files) ? r.files : [])).join(', ') || 'none named'}), not ${name}: ${ignored}`);
    return undefined;
  }
  const recorded = recordedSha256(record, name);
  if (recorded === undefined) {
    warn(`${file} records no SHA-256 of ${name}, so osteo cannot check that it describes this file; its size and preprocessing are used`);
  } else {
    const actual = await sha256File(weightsFile);
    if (actual !== recorded) {
      const why = `records SHA-256 ${recorded.slice(0, 12)}… for ${name}, but the file has SHA-256 ${actual.slice(0, 12)}…: it describes other weights (the file was replaced after the export)`;
      if (!options.sizeGiven) throw new DataError(file, `${why}, so its image size may be wrong for this file. Export these weights again (\`osteo export\`), or move the stale metadata.json aside and give --image-size N`);
      warn(`${file} ${why}: ${ignored.replace(' unless --image-size says otherwise', ' and the --image-size given')}`);
      return undefined;
    }
  }
  if (record.model !== modelName) {
    warn(`${file} describes ${name} as a ${String(record.model)}, not a ${modelName} (--model): ${ignored}`);
    return undefined;
  }
  const { min, max } = imageSizeRange;
  const size = record.imageSize;
  if (typeof size !== 'number' || !Number.isInteger(size) || size < min || size > max) {
    const shown = typeof size === 'number' ? String(size) : JSON.stringify(size);
    throw new DataError(file, `imageSize ${shown} for ${name} is not an integer from ${min} to ${max} px: correct it, or delete the metadata.json and give --image-size`);
  }
  const { resize, crop, mean, std } = record.preprocessing ?? {};
  if (crop === size && typeof resize === 'number' && Number.isInteger(resize) && resize >= size && isTriple(mean) && isTriple(std)) return { resize, crop: size, mean, std };
  return transformAt(getModel(modelName).weights[0].evalTransform, size);
}

/**
 * A torchvision-keyed weights file (.pth or .safetensors) for a named architecture, with osteo's
 * classes. The preprocessing is what an `osteo export` metadata.json beside the file records for it
 * (exportedTransform), else the transform of the architecture's default weights; a different
 * --image-size scales it (same ratio and normalization) and, against a recorded size, is warned about.
 */
export async function loadWeightsFile(modelName: string, weightsFile: string, options: Omit<LoadOptions, 'checkpoint'>): Promise<LoadedModel> {
  const entry = getModel(modelName);
  const { imageSize } = options;
  const recorded = await exportedTransform(weightsFile, entry.name, { onWarning: options.onWarning, sizeGiven: imageSize !== undefined });
  if (imageSize !== undefined && recorded !== undefined && imageSize !== recorded.crop) options.onWarning?.(sizeMismatch(`${weightsFile} (its metadata.json)`, recorded.crop, imageSize));
  const transform = recorded ?? transformAt(entry.weights[0].evalTransform);
  return buildFromFile(entry.name, weightsFile, imageSize === undefined ? transform : transformAt(transform, imageSize), classCount, options);
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

/** The display names `osteo predict --run …` and `osteo eval` give these runs' models, without loading them. */
export function displayNames(runs: readonly { model: string; run: string; weightsFile: string }[]): string[] {
  // disambiguateNames reads only name, run and weightsFile.
  const named = runs.map((r) => ({ name: r.model, run: r.run, weightsFile: r.weightsFile }) as LoadedModel);
  disambiguateNames(named);
  return named.map((m) => m.name);
}

/** Every model's engine, released side by side (worker threads, if any, once they have stopped). */
export async function disposeModels(models: LoadedModel[]): Promise<void> {
  await Promise.all(models.map((m) => m.engine.dispose()));
}

/** Same size and same normalization: one preprocessed batch can feed both models. */
export function transformKey(t: EvalTransform): string {
  return JSON.stringify([t.resize, t.crop, t.mean, t.std]);
}

/** The model's DICOM window as a key: models that share it share one decode of each file. */
export function windowKey(m: Pick<LoadedModel, 'dicomWindow'>): string {
  return dicomWindowText(m.dicomWindow ?? 'auto');
}

/** Same window and same transform: one preprocessed input can feed both models. */
export function inputKey(m: Pick<LoadedModel, 'dicomWindow' | 'transform'>): string {
  return `${windowKey(m)} ${transformKey(m.transform)}`;
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
 * Softmax probabilities for `count` preprocessed images (NHWC, crop×crop×3 each), `batchSize` images
 * at a time. With `tta`, each image's probabilities are averaged with its horizontal mirror's —
 * averaging probabilities rather than logits, as the soft-vote ensemble does; a batch and its
 * mirrors go to the engine in one call, which its worker threads (if any) share out in blocks.
 */
export async function predictProbabilities(loaded: LoadedModel, images: Float32Array, count: number, options: { tta?: boolean; batchSize?: number } = {}): Promise<Float32Array> {
  const size = loaded.transform.crop;
  const pixels = size * size * 3;
  if (images.length !== count * pixels) throw new UserError(`expected ${count} images of ${size}×${size}×3 values, got ${images.length} values`);
  const k = loaded.numClasses;
  const out = new Float32Array(count * k);
  const batchSize = options.batchSize ?? evalOptions.batchSize.default;
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const batch = images.subarray(start * pixels, (start + n) * pixels);
    let input = batch;
    if (options.tta) {
      input = new Float32Array(2 * n * pixels);
      input.set(batch);
      input.set(mirrorImages(batch, n, size), n * pixels);
    }
    const logits = await loaded.engine.predict(input, options.tta ? 2 * n : n);
    const passes = options.tta ? [logits.subarray(0, n * k), logits.subarray(n * k)] : [logits];
    meanOf(
      passes.map((p) => probabilitiesOf(loaded, p)),
      out,
      start * k,
    );
  }
  return out;
}
