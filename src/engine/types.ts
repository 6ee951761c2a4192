/**
 * The engines' API. The step engine (TrainingEngine) is what src/train/train.ts (steps, validation)
 * and src/engine/bench.ts call; the inference engine (InferenceEngine) is what evaluation, predict
 * and Grad-CAM call. Both take the backend's handle and speak torchvision-keyed state dicts and
 * plain Float32Arrays, never a backend's tensors, so a second implementation (another runtime than
 * tfjs) can stand behind the same interfaces.
 */
import type { BackendHandle } from '../backend/index.js';
import type { ModelBuildOptions, ModelName } from '../models/index.js';
import type { LoadReport, StateDict, StateTensor } from '../weights/index.js';

export type OptimizerConfig =
  | { type: 'adam'; beta1?: number; beta2?: number; eps?: number; weightDecay?: number /* L2 added to grad, like torch Adam */ }
  | { type: 'adamw'; beta1?: number; beta2?: number; eps?: number; weightDecay: number /* decoupled, like torch AdamW */ }
  | { type: 'sgd'; momentum?: number; nesterov?: boolean; weightDecay?: number };

/** The weights room's types: torchvision keys and PyTorch layouts. */
export type { LoadReport, StateDict, StateTensor };

/** What a training step consumes: the data room's Batch (only these fields are read). */
export interface EngineBatch {
  images: Float32Array; // N·S·S·3, NHWC, normalized
  labels: Int32Array;
  size: number;
  targets?: Float32Array; // N·C soft targets (mixup)
}

export interface EngineOptions {
  model: ModelName;
  build: ModelBuildOptions;
  /** The backend the command chose: the engine computes on it and reads its capabilities. */
  backend: BackendHandle;
  /** Default: the backend's (one per core on wasm, 1 elsewhere). More than one runs data-parallel worker threads. */
  workers?: number;
  /**
   * Images per forward/backward pass. Default: the whole shard (logical batch ÷ workers), capped so a
   * pass fits the backend's activation memory where it has a bound (the wasm heap). BatchNorm statistics are per micro-batch (PyTorch DDP); fixing it makes
   * a step's result independent of the number of workers (up to float reassociation).
   */
  microBatch?: number;
  optimizer: OptimizerConfig;
  clipGradNorm?: number;
  labelSmoothing?: number;
  classWeights?: number[];
  seed: number;
  /**
   * Where models come from: a module URL whose `modelProvider` export builds them by name (default:
   * osteo's registry). Workers import it themselves, so it must be a module, not an object.
   */
  providerModule?: string;
}

export interface StepResult {
  loss: number;
  correct: number;
  size: number;
  gradNorm: number;
  /** wall time of the parallel forward/backward phase and of the serial gradient sum + optimizer update */
  timing?: { gradientsMs: number; updateMs: number };
}

export interface EngineState {
  weights: StateDict; // torchvision keys
  optimizer: StateDict;
  step: number;
  rng: unknown;
}

export interface TrainingEngine {
  readonly workers: number;
  /** One optimizer step over the whole logical batch. */
  step(batch: EngineBatch, lr: number): Promise<StepResult>;
  /** Logits size×C, inference mode. */
  predict(images: Float32Array, size: number): Promise<Float32Array>;
  getState(): Promise<EngineState>;
  setState(state: EngineState): Promise<void>;
  loadWeights(dict: StateDict, options?: { allowHeadSwap?: boolean }): Promise<LoadReport>;
  /** Tensors alive in the main thread and in every worker (for leak checks). */
  numTensors(): Promise<number[]>;
  dispose(): Promise<void>;
}

export interface InferenceEngineOptions {
  model: ModelName;
  imageSize: number;
  numClasses: number;
  /** torchvision keys, loaded strictly (no head swap): the weights of a trained run */
  weights: StateDict;
  /** The backend the command chose. */
  backend: BackendHandle;
  /** Worker threads (see inferenceWorkers); 1: the model in the caller's thread. More need a backend that runs in worker threads. */
  workers: number;
  /** A module of models other than osteo's registry (tests); see EngineOptions.providerModule. */
  providerModule?: string;
}

/** Which feature map Grad-CAM looks at, and for which class. */
export interface FeatureRequest {
  /** the layer whose output is the feature map (the registry entry's `gradCamLayer`) */
  layer: string;
  classIndex: number;
}

/** A feature map A of one image (height×width×channels, channels last) and ∂(class score)/∂A, same layout. */
export interface CamFeatures {
  layer: string;
  height: number;
  width: number;
  channels: number;
  activations: Float32Array;
  gradients: Float32Array;
}

/** A trained model ready for inference: logits in the images' order, and what Grad-CAM needs. */
export interface InferenceEngine {
  /** Threads that compute predict's logits (1: the caller's own). */
  readonly workers: number;
  /** Logits count×classes, inference mode, for `count` preprocessed images (NHWC, imageSize²×3 each). */
  predict(images: Float32Array, count: number): Promise<Float32Array>;
  /** The feature map at `request.layer` of one preprocessed image and the gradient of the class's logit with respect to it. */
  features(image: Float32Array, request: FeatureRequest): Promise<CamFeatures>;
  /** Tensors alive in the main thread and in every worker (for leak checks). */
  numTensors(): Promise<number[]>;
  dispose(): Promise<void>;
}
