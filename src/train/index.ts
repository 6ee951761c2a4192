/** The training room: the fine-tuning loop, its run directories and checkpoints. */
export { trainModel, type TrainOptions, type TrainResult } from './train.js';
export { openRun, readRunConfig, readRunConfigJson, runWeightsPath, runPaths, loadRunModel, type RunInfo, type RunModel } from './run.js';
export { learningRate, warmupSteps, type ScheduleConfig, type ScheduleSpan } from './schedule.js';
export { saveCheckpoint, loadCheckpoint, recoverCheckpoints, writeFileAtomic, writeJsonAtomic, type CheckpointName, type CheckpointPoint, type FaultInjector } from './checkpoint.js';
export { metricsCsv, metricsColumns, curvesPng, type EpochMetrics } from './logs.js';
export type { TrainEvent, TrainStatus, BestRecord } from './events.js';
export type { TrainConfig } from '../config/index.js';
export { progressReporter, epochLine, formatDuration, type ProgressStream } from './progress.js';
