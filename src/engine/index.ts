/** engine: the step engine (one optimizer step per logical batch) and the inference engine (logits, Grad-CAM's feature maps), the optimizer and the replica reduce, on the backend handed in, across worker threads where it runs in them; the benchmark. */
export { createEngine, combineBuffers } from './engine.js';
export { runBench, median, syntheticBatch, type BenchOptions, type BenchResult } from './bench.js';
export { createInferenceEngine, inferenceWorkers, imagesPerWorker } from './inference.js';
export { createOnnxInferenceEngine, onnxPassImages } from './onnx-inference.js';
export { layerFeatures, layersModelFeatures, splitAtLayer } from './features.js';
export { FlatOptimizer, clipCoefficient } from './optimizer.js';
export { ReplicaReduce, type ReduceMemory } from './reduce.js';
export { lossCoefficients, lossDenominator, weightedCrossEntropy } from './loss.js';
export type { ModelProvider } from './provider.js';
export type {
  EngineBatch,
  EngineOptions,
  EngineState,
  CamFeatures,
  FeatureRequest,
  InferenceEngine,
  InferenceEngineOptions,
  LoadReport,
  OptimizerConfig,
  StateDict,
  StateTensor,
  StepResult,
  TrainingEngine,
} from './types.js';
