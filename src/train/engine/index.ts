/** The engine room: one optimizer step per logical batch, and inference, on any backend, across worker threads on wasm. */
export { createEngine, combineBuffers } from './engine.js';
export { createPredictor, inferenceWorkers, imagesPerWorker, type Predictor, type PredictorOptions } from './inference.js';
export { FlatOptimizer, clipCoefficient } from './optimizer.js';
export { ReplicaReduce, type ReduceMemory } from './reduce.js';
export { lossCoefficients, lossDenominator, weightedCrossEntropy } from './loss.js';
export type { ModelProvider } from './provider.js';
export type {
  EngineBatch,
  EngineOptions,
  EngineState,
  LoadReport,
  OptimizerConfig,
  StateDict,
  StateTensor,
  StepResult,
  TrainingEngine,
} from './types.js';
