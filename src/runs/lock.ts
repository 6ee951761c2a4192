/**
 * One trainer per run: RUN/.lock holds the owner's pid and host while a process trains the run. A
 * second process is refused naming the owner; a lock whose owner is gone (killed with -9, or a second
 * Ctrl-C, which ends Node at once) is stale and taken over.
 */
import { readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UserError, createFileExclusive, processAlive } from '../util/index.js';

export interface RunLockOwner {
  pid: number;
  host: string;
  started: string;
}

/** The lock is held by another live process (or one on another host): `owner` says which. */
export class LockHeldError extends UserError {
  constructor(
    message: string,
    readonly owner: RunLockOwner,
  ) {
    super(message);
  }
}

export function runLockPath(run: string): string {
  return join(run, '.lock');
}

async function readOwner(file: string): Promise<RunLockOwner | undefined> {
  try {
    const owner = JSON.parse(await readFile(file, 'utf8')) as Partial<RunLockOwner>;
    return typeof owner.pid === 'number' && typeof owner.host === 'string' ? (owner as RunLockOwner) : undefined;
  } catch {
    return undefined; // gone since, or not a lock osteo wrote whole: treated as stale below
  }
}

/** The process that holds RUN/.lock now: a live one on this host, or one on another (which cannot be checked); undefined when none does. */
export async function runLockOwner(run: string): Promise<RunLockOwner | undefined> {
  const owner = await readOwner(runLockPath(run));
  return owner !== undefined && (owner.host !== hostname() || processAlive(owner.pid)) ? owner : undefined;
}

/**
 * Take RUN/.lock (the run folder must exist) and return the function that releases it. A live owner
 * on this host is a UserError naming its pid; an owner on another host cannot be checked from here,
 * so it is refused too, saying which file to delete once that process is known to be gone.
 */
export async function acquireRunLock(run: string): Promise<() => Promise<void>> {
  const file = runLockPath(run);
  const me: RunLockOwner = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
  const content = JSON.stringify(me) + '\n';
  for (let attempt = 0; attempt < 2; attempt++) {
    if (await createFileExclusive(file, content)) return () => rm(file, { force: true });
    const owner = await readOwner(file);
    if (owner && owner.host !== me.host) {
      throw new LockHeldError(`${run} is locked by process ${owner.pid} on host ${owner.host} (since ${owner.started}); if that process has ended, delete ${file} and try again`, owner);
    }
    if (owner && processAlive(owner.pid)) {
      throw new LockHeldError(`${run} is being trained by process ${owner.pid} (since ${owner.started}); wait for it to finish or stop it (kill ${owner.pid}) — two trainers would overwrite each other's checkpoints`, owner);
    }
    // stale: its owner is gone (or it is unreadable); remove it and create ours once more (two
    // processes taking over the same stale lock in the same instant are not excluded: a rare race
    // that a file lock without a lock server cannot close)
    await rm(file, { force: true });
  }
  throw new UserError(`${run}: another process took the run's lock (${file}) at the same moment; try again`);
}
