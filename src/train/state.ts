/**
 * A training run's state between two steps — what RUN/last/state.json holds besides the weights and
 * the optimizer state — and opening a run directory to start a new run or to continue one: its
 * dataset, its lock, the space its checkpoints need.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { TrainConfig } from '../config/index.js';
import { DataError, UserError, environmentUserError } from '../util/index.js';
import { splitManifestPath } from '../data/index.js';
import { getModel } from '../models/index.js';
import {
  acquireRunLock,
  checkpointDir,
  checkpointFiles,
  clearUnsavedRun,
  inspectRun,
  loadResumeCheckpoint,
  manifestSha256,
  readRunSplit,
  recoverCheckpoints,
  runHoldsTraining,
  runPaths,
  writeRunConfig,
  writeRunSplit,
  type FinishedStatus,
  type ResumeCheckpoint,
} from '../runs/index.js';
import type { BestRecord, TrainEvent } from './events.js';
import type { EpochMetrics } from './logs.js';

export type Stage = 'head' | 'main';

export interface RunState {
  format: 'osteo-train-state';
  version: 1;
  epoch: number; // epochs completed
  batch: number; // batches done in the epoch in progress
  step: number; // optimizer steps done in all
  stage: Stage;
  /** Sums over the epoch in progress, kept so an epoch resumed mid-way reports the same metrics. */
  partial: { lossSum: number; correct: number; seen: number; seconds: number; lr: number };
  history: EpochMetrics[];
  best: BestRecord | null;
  sinceImprovement: number;
  engine: { step: number; rng: unknown };
  /** The loader keeps no state: batches are a function of these. */
  loader: { seed: number; epoch: number; batch: number };
}

export const emptyPartial = (): RunState['partial'] => ({ lossSum: 0, correct: 0, seen: 0, seconds: 0, lr: 0 });

export function freshState(config: TrainConfig): RunState {
  return {
    format: 'osteo-train-state',
    version: 1,
    epoch: 0,
    batch: 0,
    step: 0,
    stage: config.headEpochs > 0 ? 'head' : 'main',
    partial: emptyPartial(),
    history: [],
    best: null,
    sinceImprovement: 0,
    engine: { step: 0, rng: null },
    loader: { seed: config.seed, epoch: 0, batch: 0 },
  };
}

export interface OpenedRun {
  state: RunState;
  /** RUN/last as it was read, when resuming: the engine restores its weights and optimizer state. */
  resumeFrom?: ResumeCheckpoint;
}

/**
 * Open the run under its lock. Resuming first repairs a save that a kill interrupted (reported as a
 * `recovered` event). Starting refuses a run that holds training, and restarts one that holds none
 * (a start that failed or was killed before its first `last`): there is nothing to lose, so the same
 * command works again. Either way the resolved config is written beside the results, as the
 * reference training scripts do, and a new start records the dataset and its split (RUN/split.json).
 */
export async function openTrainingRun(config: TrainConfig, run: string, opening: { resume: boolean; dataDir: string }, emit: (event: TrainEvent) => Promise<void>): Promise<OpenedRun> {
  if (opening.resume) {
    const repaired = await recoverCheckpoints(run);
    const resumeFrom = await loadResumeCheckpoint(run);
    const state = resumeFrom.state as RunState;
    if (state?.format !== 'osteo-train-state' || state.version !== 1) throw new DataError(checkpointFiles(checkpointDir(run, 'last')).state, 'is not an osteo training state (version 1)');
    if (repaired.length > 0) await emit({ type: 'recovered', actions: repaired });
    await writeRunConfig(run, config);
    return { state, resumeFrom };
  }
  // checked again under the lock: another process may have saved `last` since the caller looked
  if (runHoldsTraining(run)) throw new UserError(alreadyTrainedMessage(run));
  if (existsSync(runPaths(run).config)) {
    const removed = await clearUnsavedRun(run);
    await emit({ type: 'restarted', reason: `${run} holds no saved training (a start that failed or was stopped before its first checkpoint): starting it from scratch`, removed });
  }
  await writeRunConfig(run, config);
  await writeRunSplit(run, opening.dataDir);
  return { state: freshState(config) };
}

/**
 * A run that already holds this very training, finished (inspectRun: the same config, and its
 * latest session completed, stopped early or diverged): starting it again has nothing to do, so the
 * same command (a tour, a script run twice) succeeds instead of refusing. Any other run that holds
 * training is refused: it needs --resume, or another --out.
 */
export async function finishedRun(config: TrainConfig, run: string): Promise<{ state: RunState; status: FinishedStatus }> {
  const inspection = await inspectRun(run, config);
  const state = inspection.state as RunState | undefined;
  if (inspection.condition !== 'finished' || inspection.differences.length > 0 || state?.format !== 'osteo-train-state') throw new UserError(alreadyTrainedMessage(run));
  return { state, status: inspection.status! };
}

export function alreadyTrainedMessage(run: string): string {
  return `${run} already holds a training run: add --resume to continue it, or choose another --out`;
}

/**
 * The dataset a run trains on. A new run: --data. A resumed one: the folder its RUN/split.json
 * recorded (absolute, so the working directory does not matter), refused when that folder's
 * splits.csv is not the one the run started with — its val images could be ones it trained on.
 */
export async function datasetOf(config: TrainConfig, run: string, resume: boolean): Promise<string> {
  const record = resume ? await readRunSplit(run) : undefined;
  if (!record) return resolve(config.data); // a new run, or one from before osteo recorded its split
  const manifest = splitManifestPath(record.data);
  if (!existsSync(manifest)) {
    throw new UserError(`${run} was trained on ${record.data}, whose split manifest ${manifest} is missing: restore that dataset (its splits.csv has SHA-256 ${record.manifestSha256}), or start a new run with another --out`);
  }
  const now = await manifestSha256(record.data);
  if (now !== record.manifestSha256) {
    throw new UserError(
      `${manifest} has changed since ${run} started (SHA-256 ${record.manifestSha256} then, ${now} now): resuming would continue on another split, ` +
        'whose val and test images may be ones the model already trained on. Restore the original splits.csv, or start a new run with another --out',
    );
  }
  return record.data;
}

/** Bytes the run's checkpoints take: `best` (weights) and `last` (weights and optimizer slots), each doubled while a save writes its new copy beside the old. */
export function checkpointBytes(config: TrainConfig): number {
  const parameterBytes = 4 * getModel(config.model).parameterCount;
  const optimizerSlots = config.optimizer.type === 'sgd' ? 1 : 2;
  return 2 * (parameterBytes + parameterBytes * (1 + optimizerSlots));
}

/** Make the run folder if it is new and take its lock (RUN/.lock), which the returned function releases. */
export async function lockRun(run: string): Promise<() => Promise<void>> {
  try {
    await mkdir(run, { recursive: true });
  } catch (error) {
    throw environmentUserError(error, run) ?? error;
  }
  return acquireRunLock(run);
}
