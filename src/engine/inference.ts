/**
 * Inference on the engine's replicas: a trained state dict loaded once, then logits for any number of
 * images, in their order, the images cut into one contiguous block per worker thread (engine.predict).
 * On wasm, where one instance computes on one core, this is what spreads `osteo eval` and
 * `osteo predict` over the machine; elsewhere the caller keeps the model in its own thread.
 */
import { currentBackend, type BackendCapabilities, type BackendPreference } from '../backend/index.js';
import type { ModelName } from '../models/index.js';
import { createEngine } from './engine.js';
import type { StateDict } from './types.js';

export interface PredictorOptions {
  model: ModelName;
  imageSize: number;
  numClasses: number;
  /** torchvision keys, loaded strictly (no head swap): the weights of a trained run */
  weights: StateDict;
  /** Worker threads (see inferenceWorkers). */
  workers: number;
  /** Default: the backend selected last (the command's --backend), so the workers run what the main thread runs. */
  backend?: BackendPreference;
  /** A module of models other than osteo's registry (tests); see EngineOptions.providerModule. */
  providerModule?: string;
}

/** A model's replicas: logits (count×classes, inference mode) in the images' order. */
export interface Predictor {
  readonly workers: number;
  logits(images: Float32Array, count: number): Promise<Float32Array>;
  /** Tensors alive in the main thread and in every worker (for leak checks). */
  numTensors(): Promise<number[]>;
  dispose(): Promise<void>;
}

/**
 * Below this many images per worker, one more worker thread does not pay for itself: starting one
 * (its own wasm instance and model) and its first, warming pass take about a second, what ResNet18
 * spends on some 30 images at 224 px on one core. Only the default count is bounded by it.
 */
export const imagesPerWorker = 32;

/**
 * How many worker threads inference over `images` images uses: `requested` (never more than there
 * are images), else one per core on a backend that runs in worker threads — as `osteo train` — but
 * no more than pay for themselves (imagesPerWorker), else 1: the model in the caller's thread.
 */
export function inferenceWorkers(requested: number | undefined, images: number, capabilities: BackendCapabilities | undefined = currentBackend()?.capabilities): number {
  if (requested !== undefined) return Math.max(1, Math.min(requested, images));
  const threads = capabilities?.workerThreads;
  if (!threads?.trainsInWorkers) return 1;
  return Math.max(1, Math.min(threads.defaultCount(), Math.floor(images / imagesPerWorker)));
}

/**
 * An engine for inference only: no optimizer state (plain SGD has none), the model built without its
 * random initialization, which the strictly loaded weights replace entirely.
 */
export async function createPredictor(options: PredictorOptions): Promise<Predictor> {
  const engine = await createEngine({
    model: options.model,
    build: { imageSize: options.imageSize, numClasses: options.numClasses, initialize: false },
    backend: options.backend ?? (currentBackend()?.preference as BackendPreference | undefined),
    workers: options.workers,
    optimizer: { type: 'sgd' },
    seed: 0,
    providerModule: options.providerModule,
  });
  try {
    await engine.loadWeights(options.weights, { allowHeadSwap: false });
  } catch (error) {
    await engine.dispose();
    throw error;
  }
  return {
    workers: engine.workers,
    logits: (images, count) => engine.predict(images, count),
    numTensors: () => engine.numTensors(),
    dispose: () => engine.dispose(),
  };
}
