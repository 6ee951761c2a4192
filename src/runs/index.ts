/** runs: a training run directory — its layout, config, checkpoint format, and loading its weights into a model (train writes runs, eval reads them). */
export { openRun, readRunConfig, readRunConfigJson, runWeightsPath, runPaths, loadRunModel, type RunInfo, type RunModel } from './run.js';
export { checkpointNames, saveCheckpoint, loadCheckpoint, recoverCheckpoints, checkpointDir, type CheckpointName, type CheckpointPoint, type CheckpointContents, type FaultInjector, type LoadedCheckpoint } from './checkpoint.js';
export { runSplitPath, manifestSha256, writeRunSplit, readRunSplit, type RunSplitRecord } from './split-record.js';
export { acquireRunLock, runLockPath, type RunLockOwner } from './lock.js';
