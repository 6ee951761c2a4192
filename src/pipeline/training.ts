/**
 * Re-running an experiment: each training run it needs is reused when finished, resumed from `last`
 * when interrupted, started when absent (or when a start never saved `last`) — and refused, before
 * anything is trained, when the run on disk was made with another config. `reproduce` and `cv` both
 * plan their runs with this, so running either twice costs nothing and a killed one continues where
 * it stopped. Where a run stands is runs/'s inspectRun, the same test `osteo train` applies.
 */
import type { TrainConfig } from '../config/index.js';
import { formatConfigDifferences, inspectRun, type FinishedStatus } from '../runs/index.js';
import { trainModel, type TrainEvent, type TrainResult } from '../train/index.js';
import type { BackendHandle } from '../backend/index.js';
import { UserError } from '../util/index.js';

export type RunAction = 'train' | 'resume' | 'reuse';

export interface PlannedRun {
  config: TrainConfig;
  action: RunAction;
  /** The status the finished run ended with (reuse only). */
  status?: FinishedStatus;
}

/**
 * What to do with `config.out`: train (nothing there, or a start that never saved `last`), resume
 * (started, not finished), reuse (finished). A run made with a different config (any key that is not
 * a runtime one, such as the backend or the worker count, and its number of epochs) is a UserError
 * naming the keys and both values, and `wayOut`: what the command offers instead.
 */
export async function planRun(config: TrainConfig, wayOut = 're-run with --fresh to start over, or choose another --out'): Promise<PlannedRun> {
  const inspection = await inspectRun(config.out, config);
  if (inspection.differences.length > 0) {
    throw new UserError(`${config.out} holds a run made with another config: ${formatConfigDifferences(inspection.differences)}. Nothing was changed; ${wayOut}`);
  }
  if (inspection.condition === 'finished') return { config, action: 'reuse', status: inspection.status };
  if (inspection.condition === 'resumable') return { config, action: 'resume' };
  return { config, action: 'train' };
}

/**
 * Carry out a planned run; a start that never saved `last` is started again by the trainer, which
 * clears only what that start wrote. Under a stop request (`signal` aborted) the trainer finishes
 * its step and saves `last`; a run not yet begun is not begun.
 */
export async function executeRun(
  planned: PlannedRun,
  options: { backend: BackendHandle; inference?: BackendHandle; onEvent?: (event: TrainEvent) => void; signal?: AbortSignal },
): Promise<TrainResult | undefined> {
  if (planned.action === 'reuse') return undefined;
  // A stop request that came between two runs (while one was evaluated, say) starts no other one.
  if (options.signal?.aborted) throw new UserError(`stopped before ${planned.action === 'resume' ? 'resuming' : 'starting'} ${planned.config.out}: run the same command again to continue`);
  return trainModel(planned.config, { backend: options.backend, inference: options.inference, resume: planned.action === 'resume', onEvent: options.onEvent, signal: options.signal });
}
