/**
 * Re-running an experiment: each training run it needs is reused when finished, resumed from `last`
 * when interrupted, started when absent — and refused, before anything is trained, when the run on
 * disk was made with another config. `reproduce` and `cv` both plan their runs with this, so running
 * either twice costs nothing and a killed one continues where it stopped.
 */
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { optionEntries, trainOptions, type TrainConfig } from '../config/index.js';
import { readRunConfigJson, runPaths } from '../runs/index.js';
import { trainModel, type TrainEvent, type TrainResult, type TrainStatus } from '../train/index.js';
import type { BackendHandle } from '../backend/index.js';
import { UserError } from '../util/index.js';

export type RunAction = 'train' | 'resume' | 'reuse';

export interface PlannedRun {
  config: TrainConfig;
  action: RunAction;
  /** The status the finished run ended with (reuse only). */
  status?: TrainStatus;
}

const finishedStatuses: readonly TrainStatus[] = ['completed', 'early-stopped', 'diverged'];

function valueAt(config: unknown, key: string): unknown {
  let node = config;
  for (const part of key.split('.')) node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[part] : undefined;
  return node;
}

/** The status of the last `stop` event after the last `start`: how the run's latest session ended, if it did. */
async function lastStop(eventsFile: string): Promise<TrainStatus | undefined> {
  if (!existsSync(eventsFile)) return undefined;
  let status: TrainStatus | undefined;
  for (const line of (await readFile(eventsFile, 'utf8')).split('\n')) {
    if (line.trim() === '') continue;
    let event: TrainEvent;
    try {
      event = JSON.parse(line) as TrainEvent;
    } catch {
      continue; // a line cut by a kill: the run did not stop cleanly after it
    }
    if (event.type === 'start') status = undefined;
    if (event.type === 'stop') status = event.status;
  }
  return status;
}

/**
 * What to do with `config.out`: train (nothing there), resume (started, not finished), reuse
 * (finished). A run made with a different config (any key that is not a runtime one, such as the
 * backend or the worker count) is a UserError naming the keys and both values.
 */
export async function planRun(config: TrainConfig): Promise<PlannedRun> {
  const paths = runPaths(config.out);
  if (!existsSync(paths.config)) return { config, action: 'train' };
  const saved = (await readRunConfigJson(config.out)).json;
  const changed: string[] = [];
  for (const [key, spec] of optionEntries(trainOptions)) {
    if (spec.runtime) continue;
    const before = JSON.stringify(valueAt(saved, key));
    const after = JSON.stringify(valueAt(config, key));
    if (before !== after) changed.push(`${key} (the run has ${before ?? 'none'}, the config asks for ${after ?? 'none'})`);
  }
  // A run's length is a runtime key for `osteo train --resume`, but a finished run trained for fewer epochs is not the one asked for.
  if (valueAt(saved, 'epochs') !== config.epochs) changed.push(`epochs (the run has ${JSON.stringify(valueAt(saved, 'epochs'))}, the config asks for ${config.epochs})`);
  if (changed.length > 0) {
    throw new UserError(`${config.out} holds a run made with another config: ${changed.join('; ')}. Nothing was changed; re-run with --fresh to start over, or choose another --out`);
  }
  const status = await lastStop(paths.events);
  if (status !== undefined && finishedStatuses.includes(status)) return { config, action: 'reuse', status };
  return { config, action: 'resume' };
}

/** Carry out a planned run; a run that never saved `last` is started again (osteo made its folder). */
export async function executeRun(planned: PlannedRun, options: { backend: BackendHandle; onEvent?: (event: TrainEvent) => void; signal?: AbortSignal }): Promise<TrainResult | undefined> {
  if (planned.action === 'reuse') return undefined;
  let resume = planned.action === 'resume';
  if (resume && !existsSync(runPaths(planned.config.out).last)) {
    await rm(planned.config.out, { recursive: true, force: true });
    resume = false;
  }
  return trainModel(planned.config, { backend: options.backend, resume, onEvent: options.onEvent, signal: options.signal });
}
