/**
 * A training run's state between two steps — what RUN/last/state.json holds besides the weights and
 * the optimizer state — and opening a run directory to start a new run or to continue one.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { TrainConfig } from '../config/index.js';
import { DataError, UserError, writeJsonAtomic } from '../util/index.js';
import { loadCheckpoint, recoverCheckpoints, runPaths, type LoadedCheckpoint } from '../runs/index.js';
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

function freshState(config: TrainConfig): RunState {
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
 * A new run must not overwrite an old one; a resumed one first repairs a save that a kill
 * interrupted (reported as a `recovered` event). Either way the resolved config is written beside
 * the results, as the reference training scripts do.
 */
export async function openTrainingRun(config: TrainConfig, run: string, resume: boolean, emit: (event: TrainEvent) => Promise<void>): Promise<OpenedRun> {
  const paths = runPaths(run);
  let opened: OpenedRun;
  if (resume) {
    const repaired = await recoverCheckpoints(run);
    const resumeFrom = await loadCheckpoint(run, 'last');
    const state = resumeFrom.state as RunState;
    if (state?.format !== 'osteo-train-state' || state.version !== 1) throw new DataError(`${paths.last}/state.json`, 'is not an osteo training state (version 1)');
    if (repaired.length > 0) await emit({ type: 'recovered', actions: repaired });
    opened = { state, resumeFrom };
  } else {
    if (existsSync(paths.config) || existsSync(paths.last)) {
      throw new UserError(`${run} already holds a training run: add --resume to continue it, or choose another --out`);
    }
    await mkdir(run, { recursive: true });
    opened = { state: freshState(config) };
  }
  await writeJsonAtomic(paths.config, config);
  return opened;
}
