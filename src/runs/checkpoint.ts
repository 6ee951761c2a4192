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

/** Write a checkpoint beside the current one and switch it in; the previous one survives any failure. */
export async function saveCheckpoint(run: string, name: CheckpointName, contents: CheckpointContents, fault?: FaultInjector): Promise<void> {
  const final = checkpointDir(run, name);
  const temporary = join(run, `${name}.tmp-${uniqueSuffix()}`);
  await mkdir(temporary, { recursive: true });
  try {
    fault?.(name, 'model');
    await writeSafetensors(join(temporary, 'model.safetensors'), contents.weights, contents.metadata);
    if (contents.optimizer) {
      fault?.(name, 'optimizer');
      await writeSafetensors(join(temporary, 'optimizer.safetensors'), contents.optimizer);
    }
    fault?.(name, 'state');
    await writeJsonAtomic(join(temporary, 'state.json'), contents.state);
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
  const dir = checkpointDir(run, name);
  const stateFile = join(dir, 'state.json');
  if (!existsSync(stateFile)) throw new UserError(`${run} has no ${name} checkpoint (${stateFile} is missing)`);
  let state: unknown;
  try {
    state = JSON.parse(await readFile(stateFile, 'utf8')) as unknown;
  } catch (error) {
    throw new DataError(stateFile, `not valid JSON (${errorMessage(error)})`);
  }
  const weights = await readSafetensors(join(dir, 'model.safetensors'));
  const optimizerFile = join(dir, 'optimizer.safetensors');
  const optimizer = existsSync(optimizerFile) ? await readSafetensors(optimizerFile) : undefined;
  return { weights, optimizer, state };
}
