/** train: the fine-tuning loop (train.ts, top to bottom), its schedules, logs and progress; the steps are the engine room's. */
export { trainModel, type TrainOptions, type TrainResult } from './train.js';
export { learningRate, warmupSteps, type ScheduleConfig, type ScheduleSpan } from './schedule.js';
export { metricsCsv, metricsColumns, curvesPng, type EpochMetrics } from './logs.js';
export type { TrainEvent, TrainStatus, BestRecord } from './events.js';
export type { TrainConfig } from '../config/index.js';
export { progressReporter, epochLine, type ProgressStream } from './progress.js';
export { checkpointBytes } from './state.js';
