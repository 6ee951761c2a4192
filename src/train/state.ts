/**
 * A training run's state between two steps — what RUN/last/state.json holds besides the weights and
 * the optimizer state — and opening a run directory to start a new run or to continue one: its
 * dataset, its lock, the space its checkpoints need.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { optionEntries, trainOptions, type TrainConfig } from '../config/index.js';
import { DataError, UserError, environmentUserError, writeJsonAtomic } from '../util/index.js';
import { splitManifestPath } from '../data/index.js';
import { getModel } from '../models/index.js';
import { acquireRunLock, loadCheckpoint, manifestSha256, readRunSplit, recoverCheckpoints, runPaths, writeRunSplit, type LoadedCheckpoint } from '../runs/index.js';
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
  resumeFrom?: LoadedCheckpoint;
}

/**
 * Whether the run holds training that starting over would lose: RUN/last, or a `last` that a kill
 * between the two renames of a save left set aside (recoverCheckpoints moves it back).
 */
export function holdsTraining(run: string): boolean {
  if (existsSync(runPaths(run).last)) return true;
  return existsSync(run) && statSync(run).isDirectory() && readdirSync(run).some((entry) => entry.startsWith('last.old-'));
}

/** What an earlier start that never saved `last` may have left, all of it osteo's own: a restart removes it. */
const leftoverOfUnsavedRun = (entry: string) => /^(best|last)(\.(tmp|old)-.*)?$/.test(entry) || ['metrics.csv', 'curves.png', 'split.json'].includes(entry);

/**
 * Open the run under its lock. Resuming first repairs a save that a kill interrupted (reported as a
 * `recovered` event). Starting refuses a run that holds training, and restarts one that holds none
 * (a start that failed or was killed before its first `last`): there is nothing to lose, so the same
 * command works again. Either way the resolved config is written beside the results, as the
 * reference training scripts do, and a new start records the dataset and its split (RUN/split.json).
 */
export async function openTrainingRun(config: TrainConfig, run: string, opening: { resume: boolean; dataDir: string }, emit: (event: TrainEvent) => Promise<void>): Promise<OpenedRun> {
  const paths = runPaths(run);
  if (opening.resume) {
    const repaired = await recoverCheckpoints(run);
    const resumeFrom = await loadCheckpoint(run, 'last');
    const state = resumeFrom.state as RunState;
    if (state?.format !== 'osteo-train-state' || state.version !== 1) throw new DataError(`${paths.last}/state.json`, 'is not an osteo training state (version 1)');
    if (repaired.length > 0) await emit({ type: 'recovered', actions: repaired });
    await writeJsonAtomic(paths.config, config);
    return { state, resumeFrom };
  }
  // checked again under the lock: another process may have saved `last` since the caller looked
  if (holdsTraining(run)) throw new UserError(alreadyTrainedMessage(run));
  if (existsSync(paths.config)) {
    await refuseForeignConfig(paths.config);
    const removed = readdirSync(run).filter(leftoverOfUnsavedRun);
    for (const entry of removed) await rm(join(run, entry), { recursive: true, force: true });
    await emit({ type: 'restarted', reason: `${run} holds no saved training (a start that failed or was stopped before its first checkpoint): starting it from scratch`, removed });
  }
  await writeJsonAtomic(paths.config, config);
  await writeRunSplit(run, opening.dataDir);
  return { state: freshState(config) };
}

/** A restart deletes a run's own leftovers: only in a folder whose config.json is a training config osteo wrote. */
async function refuseForeignConfig(file: string): Promise<void> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch {
    json = undefined;
  }
  const keys = typeof json === 'object' && json !== null ? Object.keys(json) : [];
  if (!['model', 'epochs', 'optimizer', 'schedule'].every((key) => keys.includes(key))) {
    throw new UserError(`${file} is not the config of an osteo training run, so its folder is not one: choose another --out (nothing was changed)`);
  }
}

/**
 * A run that already holds this very training, finished: the same config in every key that shapes
 * the result (runtime keys — where and how long it runs — aside) and `last` at or past the epochs
 * asked for. Starting it again has nothing to do, so the same command (a tour, a script run twice)
 * succeeds instead of refusing. Undefined when anything differs or cannot be read.
 */
export async function finishedRunState(config: TrainConfig, run: string): Promise<RunState | undefined> {
  const paths = runPaths(run);
  try {
    const saved = JSON.parse(await readFile(paths.config, 'utf8')) as Record<string, unknown>;
    const state = JSON.parse(await readFile(join(paths.last, 'state.json'), 'utf8')) as RunState;
    if (state?.format !== 'osteo-train-state' || state.batch !== 0 || state.epoch < config.epochs) return undefined;
    const runtime = new Set(optionEntries(trainOptions).filter(([, spec]) => spec.runtime).map(([key]) => key));
    const shaping = (value: Record<string, unknown>) => JSON.stringify(Object.entries(value).filter(([key]) => !runtime.has(key)));
    return shaping(saved) === shaping(config as unknown as Record<string, unknown>) ? state : undefined;
  } catch {
    return undefined;
  }
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
