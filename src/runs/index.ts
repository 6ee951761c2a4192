/** runs: a training run directory — its layout, config, checkpoint format, its lifecycle (inspectRun: absent, unsaved, resumable, finished), and loading its weights into a model (train writes runs, eval reads them). */
export { openRun, readRunConfig, readRunConfigJson, runWeightsPath, runExportDir, runPaths, loadRunModel, type RunInfo, type RunModel } from './run.js';
export {
  checkpointNames,
  saveCheckpoint,
  loadCheckpoint,
  loadResumeCheckpoint,
  readCheckpointState,
  recoverCheckpoints,
  checkpointDir,
  checkpointFiles,
  hasCheckpoint,
  type CheckpointName,
  type CheckpointPoint,
  type CheckpointContents,
  type FaultInjector,
  type LoadedCheckpoint,
  type ResumeCheckpoint,
} from './checkpoint.js';
export {
  inspectRun,
  configDifferences,
  formatConfigDifferences,
  runHoldsTraining,
  clearUnsavedRun,
  writeRunConfig,
  trainStatuses,
  finishedStatuses,
  type TrainStatus,
  type FinishedStatus,
  type RunCondition,
  type RunInspection,
  type ConfigDifference,
  type CheckpointProgress,
} from './lifecycle.js';
export { runSplitPath, manifestSha256, writeRunSplit, readRunSplit, runTrainingHashes, type RunSplitRecord } from './split-record.js';
export { acquireRunLock, runLockOwner, runLockPath, LockHeldError, type RunLockOwner } from './lock.js';
export { checkpointWeightsSha256, readRunCalibration, runCalibrationPath, writeRunCalibration, type RunCalibrationRecord } from './calibration-record.js';
