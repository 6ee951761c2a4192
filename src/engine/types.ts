/** The training-step API: what src/train/train.ts (steps, validation) and src/engine/bench.ts call. */
import type { BackendPreference } from '../backend/index.js';
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
  backend?: BackendPreference;
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
