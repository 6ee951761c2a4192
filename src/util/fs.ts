/**
 * Files appear whole or not at all: everything osteo writes goes to a unique temporary name beside
 * its target and is renamed into place (a rename within a folder is atomic), so a kill at any moment
 * leaves either the previous file or the new one, never half of one.
 */
import { existsSync } from 'node:fs';
import { link, mkdir, readdir, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { UserError, environmentUserError } from './errors.js';

let sequence = 0;

/** A temporary name beside `file`, unique across processes and calls. */
export function temporaryPathFor(file: string): string {
  sequence += 1;
  return join(dirname(file), `.${basename(file)}.tmp-${process.pid}-${Date.now()}-${sequence}`);
}

/** Let `write` fill a temporary file, then rename it to `file`; on failure the temporary is removed. */
export async function replaceAtomically(file: string, write: (temporaryPath: string) => Promise<void>): Promise<void> {
  const temporary = temporaryPathFor(file);
  try {
    await write(temporary);
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

export async function writeFileAtomic(file: string, content: string | Uint8Array): Promise<void> {
  await replaceAtomically(file, (temporary) => writeFile(temporary, content));
}

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n');
}

/**
 * Create `file` only if it does not exist, with its content complete from the first moment: the
 * content goes to a temporary name and is hard-linked to `file` (link, unlike rename, fails when the
 * target exists), so a reader never sees a half-written file and two writers cannot both succeed.
 * Returns false when `file` already exists.
 */
export async function createFileExclusive(file: string, content: string | Uint8Array): Promise<boolean> {
  const temporary = temporaryPathFor(file);
  await writeFile(temporary, content);
  try {
    await link(temporary, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await rm(temporary, { force: true });
  }
}

/** Free bytes for an unprivileged writer on the file system holding `path` (fs.statfs's shape, injectable for tests). */
export type StatFs = (path: string) => Promise<{ bavail: number | bigint; bsize: number | bigint }>;

/** The folder itself when it exists, else its nearest existing ancestor; a file on the way is a UserError. */
async function nearestExistingFolder(dir: string): Promise<string> {
  let current = resolve(dir);
  for (;;) {
    let info;
    try {
      info = await stat(current);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw environmentUserError(error, current) ?? error;
      const parent = dirname(current);
      if (parent === current) throw error;
      current = parent;
      continue;
    }
    if (!info.isDirectory()) throw new UserError(`${current} is a file, but ${resolve(dir)} needs it to be a folder: move the file away or choose another folder`);
    return current;
  }
}

/**
 * Before long work starts: can `dir` (or, when it does not exist yet, the folder that will hold it)
 * be written, and does its disk have `bytesNeeded` free? A probe file is written and removed, since
 * permission bits alone do not tell (root, read-only mounts, ACLs). Returns the free bytes.
 */
export async function checkWritableFolder(dir: string, bytesNeeded: number, statfsOf: StatFs = (path) => statfs(path)): Promise<number> {
  const folder = await nearestExistingFolder(dir);
  const probe = join(folder, `.osteo-write-probe-${process.pid}-${Date.now()}`);
  try {
    await writeFile(probe, '');
  } catch (error) {
    throw environmentUserError(error, folder) ?? error;
  } finally {
    await rm(probe, { force: true });
  }
  const { bavail, bsize } = await statfsOf(folder);
  const free = Number(bavail) * Number(bsize);
  if (free < bytesNeeded) {
    throw new UserError(`${folder}: ${formatMiB(bytesNeeded)} are needed and only ${formatMiB(free)} are free on its disk: free some space or choose a folder on another disk`);
  }
  return free;
}

function formatMiB(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** A folder being written beside its target: `dir` is filled, then `commit` switches it in. */
export interface StagedFolder {
  dir: string;
  /** Move the previous target (if any) aside, rename the staging folder into place, remove the previous one. */
  commit(): Promise<void>;
  /**
   * Switch in only the named top-level entries: each one the target has is moved aside, each one the
   * staging folder has is renamed into the target, and the set-aside ones are removed; everything
   * else in the target stays (a dataset folder that also holds the user's own files).
   */
  commitEntries(entries: readonly string[]): Promise<void>;
  /** Remove the staging folder (a no-op after commit). */
  abandon(): Promise<void>;
}

const stagedName = (target: string, kind: 'staging' | 'old', suffix: string) => join(dirname(resolve(target)), `.${basename(resolve(target))}.${kind}-${suffix}`);

/**
 * Stage a whole output folder (ARCHITECTURE.md, *Staged writes*): everything is written into a sibling `.NAME.staging-…`
 * folder and switched in by two renames, so a kill leaves either the previous folder or the new one,
 * never a mix (a re-export's stale weight shards, an old report's plots). The names carry the pid so
 * `recoverStagedFolder` can tell a dead writer's leftovers from a live one's.
 */
export async function stageFolder(target: string): Promise<StagedFolder> {
  sequence += 1;
  const suffix = `${process.pid}-${Date.now()}-${sequence}`;
  const staging = stagedName(target, 'staging', suffix);
  const previous = stagedName(target, 'old', suffix);
  try {
    await mkdir(dirname(resolve(target)), { recursive: true });
    await mkdir(staging);
  } catch (error) {
    throw environmentUserError(error, target) ?? error;
  }
  return {
    dir: staging,
    abandon: () => rm(staging, { recursive: true, force: true }),
    commit: async () => {
      // Another writer of the same target (two `cv collect` at once) may switch its own folder in
      // between our two renames: the target then appears or vanishes under us, and we try again —
      // the last writer's folder stays, whole, and each set-aside one is removed.
      for (let attempt = 0; ; attempt++) {
        const hadPrevious = existsSync(target);
        try {
          if (hadPrevious) await rename(target, previous);
          await rename(staging, target);
        } catch (error) {
          if (hadPrevious && !existsSync(target) && existsSync(previous)) await rename(previous, target).catch(() => undefined);
          const code = (error as NodeJS.ErrnoException).code;
          if (attempt < 8 && (code === 'ENOENT' || code === 'ENOTEMPTY' || code === 'EEXIST') && existsSync(staging)) {
            await rm(previous, { recursive: true, force: true });
            continue;
          }
          throw environmentUserError(error, target) ?? error;
        }
        if (hadPrevious) await rm(previous, { recursive: true, force: true });
        return;
      }
    },
    commitEntries: async (entries) => {
      try {
        await mkdir(target, { recursive: true });
        await mkdir(previous);
        for (const entry of entries) if (existsSync(join(target, entry))) await rename(join(target, entry), join(previous, entry));
        for (const entry of entries) if (existsSync(join(staging, entry))) await rename(join(staging, entry), join(target, entry));
      } catch (error) {
        throw environmentUserError(error, target) ?? error;
      }
      await rm(previous, { recursive: true, force: true });
    },
  };
}

/**
 * Fill a staged folder and switch it in whole; on any failure the target is as it was. What a dead
 * writer left beside the target is cleared first. Returns what `fill` returns.
 */
export async function replaceFolder<T>(target: string, fill: (staging: string) => Promise<T>): Promise<T> {
  await recoverStagedFolder(target);
  const staged = await stageFolder(target);
  try {
    const result = await fill(staged.dir);
    await staged.commit();
    return result;
  } finally {
    await staged.abandon();
  }
}

/**
 * Fill a staged folder and switch in only `entries` (StagedFolder.commitEntries): for a folder that
 * may hold files osteo did not write. Nothing in the target changes until `fill` has finished.
 */
export async function replaceEntries<T>(target: string, entries: readonly string[], fill: (staging: string) => Promise<T>): Promise<T> {
  await recoverStagedFolder(target);
  const staged = await stageFolder(target);
  try {
    const result = await fill(staged.dir);
    await staged.commitEntries(entries);
    return result;
  } finally {
    await staged.abandon();
  }
}

/** Whether a process with this pid exists here (EPERM: it exists but belongs to another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * What a killed writer of `target` left beside it: its staging folder is deleted, and a previous
 * folder set aside for the switch (a kill between the two renames) is put back. A live writer's
 * folders are left alone.
 */
export async function recoverStagedFolder(target: string): Promise<void> {
  const prefix = `.${basename(resolve(target))}.`;
  const parent = dirname(resolve(target));
  // An unreadable or missing parent has no leftovers to see; the checks that follow name its problem.
  const entries = await readdir(parent).catch(() => [] as string[]);
  for (const entry of entries) {
    const match = entry.startsWith(prefix) ? /^(staging|old)-(\d+)-/.exec(entry.slice(prefix.length)) : null;
    if (match === null || processAlive(Number(match[2]))) continue;
    const path = join(parent, entry);
    if (match[1] === 'old' && !existsSync(target)) await rename(path, target);
    else await rm(path, { recursive: true, force: true });
  }
}
