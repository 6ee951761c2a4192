/** train: the fine-tuning loop (train.ts, top to bottom), its schedules, logs and progress, and the engine that takes the steps and runs inference across worker threads. */
export { trainModel, type TrainOptions, type TrainResult } from './train.js';
export { learningRate, warmupSteps, type ScheduleConfig, type ScheduleSpan } from './schedule.js';
export { metricsCsv, metricsColumns, curvesPng, type EpochMetrics } from './logs.js';
export type { TrainEvent, TrainStatus, BestRecord } from './events.js';
export type { TrainConfig } from '../config/index.js';
export { progressReporter, epochLine, type ProgressStream } from './progress.js';
export { runBench, median, syntheticBatch, type BenchOptions, type BenchResult } from '../engine/index.js';
export { createPredictor, inferenceWorkers, imagesPerWorker, type Predictor, type PredictorOptions } from '../engine/index.js';
