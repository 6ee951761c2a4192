/** engine: the step engine (one optimizer step per logical batch), inference, the optimizer and the replica reduce, on any backend, across worker threads where the backend trains in them; the benchmark of both. */
export { createEngine, combineBuffers } from './engine.js';
export { runBench, median, syntheticBatch, type BenchOptions, type BenchResult } from './bench.js';
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
