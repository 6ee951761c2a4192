/**
 * Checkpoint directories that a kill cannot corrupt.
 *
 * A checkpoint (RUN/last/, RUN/best/) is written whole into RUN/<name>.tmp-<id>/ — each file itself
 * written to a temporary name and renamed — and then switched in with two renames: the previous
 * directory to RUN/<name>.old-<id>, the new one to RUN/<name>. POSIX cannot rename a directory over a
 * non-empty one, so there is a moment with no RUN/<name>; `recoverCheckpoints` (run before training
 * resumes) moves the previous one back if a kill landed exactly there. Every other moment leaves
 * either the previous checkpoint or the new one complete in place.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DataError, UserError, errorMessage, writeJsonAtomic } from '../util/index.js';

import { readSafetensors, writeSafetensors, type StateDict } from '../weights/index.js';

/** A run's two checkpoints: the best validation epoch so far, and the latest state (what --resume continues). */
export const checkpointNames = ['best', 'last'] as const;
export type CheckpointName = (typeof checkpointNames)[number];

/** Points between the writes of a checkpoint, where tests inject a failure to stand in for a kill. */
export type CheckpointPoint = 'model' | 'optimizer' | 'state' | 'switch' | 'between-renames' | 'cleanup';
export type FaultInjector = (name: CheckpointName, point: CheckpointPoint) => void;

export interface CheckpointContents {
  weights: StateDict;
  optimizer?: StateDict;
  state: unknown;
  /** Strings stored in the safetensors header of model.safetensors. */
  metadata?: Record<string, string>;
}

let sequence = 0;
/** A name no other writer in this or another process uses at the same time. */
function uniqueSuffix(): string {
  sequence += 1;
  return `${process.pid}-${Date.now()}-${sequence}`;
}

export function checkpointDir(run: string, name: CheckpointName): string {
  return join(run, name);
}

/** The files of one checkpoint folder (RUN/best, RUN/last, or a staged copy of one). */
export function checkpointFiles(checkpoint: string) {
  return { model: join(checkpoint, 'model.safetensors'), optimizer: join(checkpoint, 'optimizer.safetensors'), state: join(checkpoint, 'state.json') };
}

/** Whether the run has this checkpoint switched in. */
export function hasCheckpoint(run: string, name: CheckpointName): boolean {
  return existsSync(checkpointDir(run, name));
}

/** Write a checkpoint beside the current one and switch it in; the previous one survives any failure. */
export async function saveCheckpoint(run: string, name: CheckpointName, contents: CheckpointContents, fault?: FaultInjector): Promise<void> {
  const final = checkpointDir(run, name);
  const temporary = join(run, `${name}.tmp-${uniqueSuffix()}`);
  await mkdir(temporary, { recursive: true });
  try {
    const files = checkpointFiles(temporary);
    fault?.(name, 'model');
    await writeSafetensors(files.model, contents.weights, contents.metadata);
    if (contents.optimizer) {
      fault?.(name, 'optimizer');
      await writeSafetensors(files.optimizer, contents.optimizer);
    }
    fault?.(name, 'state');
    await writeJsonAtomic(files.state, contents.state);
    fault?.(name, 'switch');
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  }
  const previous = join(run, `${name}.old-${uniqueSuffix()}`);
  const hadPrevious = existsSync(final);
  if (hadPrevious) await rename(final, previous);
  fault?.(name, 'between-renames');
  await rename(temporary, final);
  fault?.(name, 'cleanup');
  if (hadPrevious) await rm(previous, { recursive: true, force: true });
}

/**
 * Undo what a kill during `saveCheckpoint` left behind: a missing checkpoint whose previous version
 * was set aside is moved back; half-written temporaries and set-aside copies are deleted. Only for a
 * run that nothing is writing to (the trainer calls it before it starts).
 */
export async function recoverCheckpoints(run: string): Promise<string[]> {
  if (!existsSync(run)) return [];
  const actions: string[] = [];
  const entries = await readdir(run);
  for (const name of ['last', 'best'] as const) {
    const olds = entries.filter((entry) => entry.startsWith(`${name}.old-`)).sort(bySuffixTime);
    if (!existsSync(checkpointDir(run, name)) && olds.length > 0) {
      const newest = olds.pop()!;
      await rename(join(run, newest), checkpointDir(run, name));
      actions.push(`restored ${name}/ from ${newest} (a save was interrupted between its two renames)`);
    }
    for (const old of olds) await rm(join(run, old), { recursive: true, force: true });
    for (const temporary of entries.filter((entry) => entry.startsWith(`${name}.tmp-`))) {
      await rm(join(run, temporary), { recursive: true, force: true });
      actions.push(`deleted the unfinished ${temporary}/`);
    }
  }
  // set-aside copies whose checkpoint was switched in but not yet cleaned up
  for (const entry of await readdir(run)) {
    if (/^(last|best)\.old-/.test(entry)) await rm(join(run, entry), { recursive: true, force: true });
  }
  return actions;
}

/** Suffixes are pid-time-sequence: order by time, then sequence. */
function bySuffixTime(a: string, b: string): number {
  const key = (name: string) => name.split('-').slice(-2).map(Number);
  const [ta, sa] = key(a);
  const [tb, sb] = key(b);
  return ta! - tb! || sa! - sb!;
}

export interface LoadedCheckpoint {
  weights: StateDict;
  optimizer: StateDict | undefined;
  state: unknown;
}

/** Read a checkpoint; a missing or damaged one is a UserError/DataError naming the file. */
export async function loadCheckpoint(run: string, name: CheckpointName): Promise<LoadedCheckpoint> {
  const files = checkpointFiles(checkpointDir(run, name));
  if (!existsSync(files.state)) throw new UserError(`${run} has no ${name} checkpoint (${files.state} is missing)`);
  let state: unknown;
  try {
    state = JSON.parse(await readFile(files.state, 'utf8')) as unknown;
  } catch (error) {
    throw new DataError(files.state, `not valid JSON (${errorMessage(error)})`);
  }
  const weights = await readSafetensors(files.model);
  const optimizer = existsSync(files.optimizer) ? await readSafetensors(files.optimizer) : undefined;
  return { weights, optimizer, state };
}

/** `last` as a resumed run needs it: its weights, its optimizer slots and its state, each present. */
export interface ResumeCheckpoint extends LoadedCheckpoint {
  optimizer: StateDict;
}

export async function loadResumeCheckpoint(run: string): Promise<ResumeCheckpoint> {
  const loaded = await loadCheckpoint(run, 'last');
  if (!loaded.optimizer) throw new DataError(checkpointFiles(checkpointDir(run, 'last')).optimizer, 'is missing');
  return { ...loaded, optimizer: loaded.optimizer };
}

/** A checkpoint's state.json (best: its epoch and validation metrics), or null when it has none or it cannot be read. */
export async function readCheckpointState(run: string, name: CheckpointName): Promise<unknown> {
  try {
    return JSON.parse(await readFile(checkpointFiles(checkpointDir(run, name)).state, 'utf8')) as unknown;
  } catch {
    return null;
  }
}
