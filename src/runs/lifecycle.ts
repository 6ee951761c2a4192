/**
 * Where a run directory stands, asked the same way by `osteo train`, `osteo reproduce` and `osteo cv`:
 *
 *   absent     no RUN/config.json: nothing of a run is there
 *   unsaved    config.json but no `last` checkpoint: a start that failed or was killed before its
 *              first save; nothing would be lost by starting it again (clearUnsavedRun)
 *   resumable  `last` holds training that has not reached its end: --resume continues it, from an
 *              epoch's end or from mid-epoch (a stop, --max-steps, a --checkpoint-every recovery
 *              save; `state.batch` counts the batches done in that epoch)
 *   finished   its latest session ended for good: it completed its epochs, stopped early, or diverged
 *
 * and in which keys the run on disk differs from the config asked for (runtime keys — where and how
 * fast it runs — aside, but the number of epochs counted: a run trained for fewer epochs is not the
 * one asked for).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { optionEntries, trainOptions, type TrainConfig } from '../config/index.js';
import { DataError, UserError, errorMessage, writeJsonAtomic } from '../util/index.js';
import { checkpointDir, checkpointFiles, checkpointNames } from './checkpoint.js';
import { runPaths } from './run.js';
import { runSplitPath } from './split-record.js';

/** How one training session ends: the `status` of its `stop` event in RUN/events.jsonl. */
export const trainStatuses = ['completed', 'early-stopped', 'max-steps', 'interrupted', 'diverged'] as const;
export type TrainStatus = (typeof trainStatuses)[number];

/** Endings after which training the same config again would do nothing new. */
export const finishedStatuses: readonly TrainStatus[] = ['completed', 'early-stopped', 'diverged'];
export type FinishedStatus = 'completed' | 'early-stopped' | 'diverged';

export type RunCondition = 'absent' | 'unsaved' | 'resumable' | 'finished';

/** One key where the run on disk (`before`) differs from the config asked for (`after`); undefined: not set. */
export interface ConfigDifference {
  key: string;
  before: unknown;
  after: unknown;
}

/** What every `last/state.json` records, whatever else the trainer keeps there. */
export interface CheckpointProgress {
  /** Epochs completed. */
  epoch: number;
  /** Batches done in the epoch in progress (0 at an epoch boundary). */
  batch: number;
  /** Optimizer steps done in all. */
  step: number;
}

export interface RunInspection {
  dir: string;
  condition: RunCondition;
  /** Keys where RUN/config.json differs from the config asked for; empty when absent. */
  differences: ConfigDifference[];
  /** finished: how it ended. */
  status?: FinishedStatus;
  /** resumable and finished: `last/state.json` as saved (undefined when it cannot be read). */
  state?: CheckpointProgress & Record<string, unknown>;
}

function valueAt(config: unknown, key: string): unknown {
  let node = config;
  for (const part of key.split('.')) node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[part] : undefined;
  return node;
}

/**
 * A run folder moved or copied together with its dataset (a CV folder's jobs/<job>/{data,run}, a
 * shard resumed under another absolute path) is the same run: the data sits where it sat, seen
 * from the run. Which split that dataset holds is checked on resume (RUN/split.json's manifest hash).
 */
function sameDataBesideRun(saved: unknown, config: TrainConfig): boolean {
  const [savedData, savedOut] = [valueAt(saved, 'data'), valueAt(saved, 'out')];
  if (typeof savedData !== 'string' || typeof savedOut !== 'string' || config.out === undefined) return false;
  return relative(resolve(savedOut), resolve(savedData)) === relative(resolve(config.out), resolve(config.data));
}

/** Each key that shapes a run's result where `saved` and `config` differ, in the option table's order; epochs last. */
export function configDifferences(saved: unknown, config: TrainConfig): ConfigDifference[] {
  const differences: ConfigDifference[] = [];
  const compare = (key: string) => {
    const before = valueAt(saved, key);
    const after = valueAt(config, key);
    if (key === 'data' && sameDataBesideRun(saved, config)) return;
    if (JSON.stringify(before) !== JSON.stringify(after)) differences.push({ key, before, after });
  };
  for (const [key, spec] of optionEntries(trainOptions)) if (!spec.runtime) compare(key);
  // How long a run trains is a runtime key for `osteo train --resume`, which may extend it; a run of
  // another length is still not the run asked for.
  compare('epochs');
  return differences;
}

/** "key (the run has X, the config asks for Y)", joined with "; ". */
export function formatConfigDifferences(differences: readonly ConfigDifference[]): string {
  const text = (value: unknown) => (value === undefined ? 'none' : JSON.stringify(value));
  return differences.map((d) => `${d.key} (the run has ${text(d.before)}, the config asks for ${text(d.after)})`).join('; ');
}

/** The newest copy of `last` that a kill between the two renames of a save left set aside, if any. */
function setAsideLast(run: string): string | undefined {
  if (!existsSync(run) || !statSync(run).isDirectory()) return undefined;
  const olds = readdirSync(run).filter((entry) => entry.startsWith('last.old-'));
  return olds.length === 0 ? undefined : join(run, olds.sort().at(-1)!);
}

/**
 * Whether the run holds training that starting over would lose: `last`, or a `last` that a kill
 * between the two renames of a save left set aside (recoverCheckpoints moves it back).
 */
export function runHoldsTraining(run: string): boolean {
  return existsSync(checkpointDir(run, 'last')) || setAsideLast(run) !== undefined;
}

async function readProgress(run: string): Promise<RunInspection['state']> {
  const dir = existsSync(checkpointDir(run, 'last')) ? checkpointDir(run, 'last') : setAsideLast(run);
  if (dir === undefined) return undefined;
  try {
    const state = JSON.parse(await readFile(checkpointFiles(dir).state, 'utf8')) as Record<string, unknown>;
    const numbers = ['epoch', 'batch', 'step'].every((key) => typeof state?.[key] === 'number');
    return numbers ? (state as CheckpointProgress & Record<string, unknown>) : undefined;
  } catch {
    return undefined; // half of a save a kill interrupted: the trainer's resume repairs or names it
  }
}

/** The status of the last `stop` event after the last `start`: how the run's latest session ended, if it did. */
async function latestStop(run: string): Promise<TrainStatus | undefined> {
  const file = runPaths(run).events;
  if (!existsSync(file)) return undefined;
  let status: TrainStatus | undefined;
  for (const line of (await readFile(file, 'utf8')).split('\n')) {
    if (line.trim() === '') continue;
    let event: { type?: unknown; status?: unknown };
    try {
      event = JSON.parse(line) as typeof event;
    } catch {
      continue; // a line cut by a kill: the session did not stop cleanly after it
    }
    if (event.type === 'start') status = undefined;
    if (event.type === 'stop' && (trainStatuses as readonly unknown[]).includes(event.status)) status = event.status as TrainStatus;
  }
  return status;
}

/** RUN/config.json as saved (not validated); undefined when there is none. */
async function savedConfig(run: string): Promise<unknown> {
  const file = runPaths(run).config;
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch (error) {
    throw new DataError(file, `is not valid JSON (${errorMessage(error)}): it is not a run osteo can continue; choose another --out`);
  }
}

/**
 * Where `dir` stands against `config` (see the top of this file). Finished means: its latest session
 * (the last `start` in events.jsonl) has a `stop` event that stopped early, diverged, or completed
 * with `last` at an epoch boundary at or past the epochs its own config asks for. A session killed
 * before its `stop` left a run to resume, even after its last save (resuming it then only records
 * the end). Reads only; changes nothing.
 */
export async function inspectRun(dir: string, config: TrainConfig): Promise<RunInspection> {
  const saved = await savedConfig(dir);
  if (saved === undefined && !runHoldsTraining(dir)) return { dir, condition: 'absent', differences: [] };
  const differences = saved === undefined ? [] : configDifferences(saved, config);
  if (!runHoldsTraining(dir)) return { dir, condition: 'unsaved', differences };
  const state = await readProgress(dir);
  const stop = await latestStop(dir);
  if (stop === 'early-stopped' || stop === 'diverged') return { dir, condition: 'finished', differences, status: stop, state };
  const epochs = valueAt(saved, 'epochs');
  // A completed stop of an earlier session whose config was extended since (--resume --epochs) does not count.
  if (stop === 'completed' && state !== undefined && state.batch === 0 && typeof epochs === 'number' && state.epoch >= epochs) {
    return { dir, condition: 'finished', differences, status: 'completed', state };
  }
  return { dir, condition: 'resumable', differences, state };
}

/** The resolved config beside the results, as the reference training scripts keep it (the run folder is made if new). */
export async function writeRunConfig(run: string, config: TrainConfig): Promise<void> {
  await mkdir(run, { recursive: true });
  await writeJsonAtomic(runPaths(run).config, config);
}

/** What an unsaved run may hold, all of it osteo's own: checkpoints (and their half-saved copies), logs, the split record. */
function leftoverOfUnsavedRun(run: string, entry: string): boolean {
  if (checkpointNames.some((name) => entry === name || entry.startsWith(`${name}.tmp-`) || entry.startsWith(`${name}.old-`))) return true;
  const paths = runPaths(run);
  return [paths.metrics, paths.curves, runSplitPath(run)].includes(join(run, entry));
}

/**
 * Empty an unsaved run (see inspectRun) of what its failed start wrote, so it can start again, and
 * return the names removed. Only in a folder whose config.json is one osteo wrote for a training run:
 * anything else is refused with nothing changed. The config, the event log and the lock stay.
 */
export async function clearUnsavedRun(run: string): Promise<string[]> {
  if (runHoldsTraining(run)) throw new UserError(`${run} holds saved training; it is not cleared (add --resume to continue it)`);
  const file = runPaths(run).config;
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
  const removed = readdirSync(run).filter((entry) => leftoverOfUnsavedRun(run, entry));
  for (const entry of removed) await rm(join(run, entry), { recursive: true, force: true });
  return removed;
}
