import { accessSync, constants, existsSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * The project's error vocabulary (ARCHITECTURE.md, *Errors and exit codes*). The CLI prints the message of a UserError or a
 * DataError without a stack and exits non-zero; any other error is a bug and keeps its stack.
 */

/** Bad input, option or configuration: the message says what to do about it. */
export class UserError extends Error {
  override name = 'UserError';
}

/** A data file that cannot be used: the message names the file and the reason. */
export class DataError extends Error {
  override name = 'DataError';
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}

export function isUserFacing(error: unknown): error is UserError | DataError {
  return error instanceof UserError || error instanceof DataError;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * What to tell the user about a Node system error, by its code: these are conditions of the machine
 * (a full disk, a read-only folder, a file where a folder belongs), not bugs, so they become a
 * UserError naming the path and what to do. Anything else gives undefined and stays a bug.
 */
const environmentFixes: Record<string, (path: string) => string> = {
  ENOENT: (path) => `${path} does not exist: check the path (or create the folder it names)`,
  EACCES: (path) => `no permission to use ${path}: choose a folder you can write to, or change its permissions`,
  EPERM: (path) => `the operating system does not permit this on ${path}: choose another location, or check its permissions and attributes`,
  EROFS: (path) => `${path} is on a read-only file system: choose an output on a writable disk`,
  ENOSPC: (path) => `no space left on the disk holding ${path}: free some space or choose an output on another disk`,
  EDQUOT: (path) => `disk quota exceeded writing ${path}: free some space or choose an output on another disk`,
  ENOTDIR: (path) => `a part of ${path} is a file where a folder is needed: choose another path, or move that file away`,
  EISDIR: (path) => `${path} is a folder where a file is needed: give a file name (e.g. ${path.replace(/\/+$/, '')}/<name>)`,
  EEXIST: (path) => `${path} already exists: remove it or choose another path`,
  // mkdir -p meets a file where it needs a folder and says EEXIST (naming the file), not ENOTDIR.
  'EEXIST mkdir': (path) => `${path} is a file where a folder is needed: choose another path, or move that file away`,
  ENOTEMPTY: (path) => `${path} is a folder that is not empty: choose another path, or empty it yourself`,
  EMFILE: () => 'too many open files: raise the limit (ulimit -n) or lower --workers',
  ENFILE: () => 'the system is out of file handles: close other programs or raise the limit (ulimit -n)',
  ENAMETOOLONG: (path) => `the path ${path} is too long for the file system: choose a shorter one`,
  ELOOP: (path) => `${path} is a loop of symbolic links: fix the link`,
  EBUSY: (path) => `${path} is in use by another program: close it and try again`,
  ETXTBSY: (path) => `${path} is in use by another program: close it and try again`,
  EIO: (path) => `an input/output error on ${path}: the disk may be failing or disconnected`,
  EFBIG: (path) => `${path} would exceed the largest file the file system allows: choose an output on another disk`,
};

/**
 * Node's recursive mkdir reports ENOENT where the first folder it cannot make is on a read-only file
 * system or in a folder it may not write (it answers with the stat that follows the refused mkdir), and
 * the user would read "does not exist" for a folder they asked osteo to make. The nearest existing
 * folder above it says the real reason: access(2) answers EROFS or EACCES there. Anything else stays ENOENT.
 */
function mkdirCause(path: string): string | undefined {
  let folder = dirname(path);
  while (!existsSync(folder) && dirname(folder) !== folder) folder = dirname(folder);
  try {
    accessSync(folder, constants.W_OK);
    return undefined;
  } catch (error) {
    const code = (error as SystemErrorLike).code;
    return code === 'EROFS' || code === 'EACCES' || code === 'EPERM' ? code : undefined;
  }
}

interface SystemErrorLike {
  code?: unknown;
  path?: unknown;
  dest?: unknown;
  syscall?: unknown;
}

/**
 * A UserError for a Node file-system error (ENOSPC, EACCES, ENOTDIR, …), or undefined for anything
 * else. `path` names the file or folder when the caller knows better than the error (which, for a
 * write, often carries no path at all).
 */
export function environmentUserError(error: unknown, path?: string): UserError | undefined {
  if (!(error instanceof Error) || isUserFacing(error)) return undefined;
  const { code: reported, path: errorPath, dest, syscall } = error as SystemErrorLike;
  if (typeof reported !== 'string') return undefined;
  const code = reported === 'ENOENT' && syscall === 'mkdir' && typeof errorPath === 'string' ? (mkdirCause(errorPath) ?? reported) : reported;
  const fix = environmentFixes[`${code} ${String(syscall)}`] ?? environmentFixes[code];
  if (fix === undefined) return undefined;
  // rename/link/copy errors carry both paths; the destination is the one a user chose.
  const named =
    path ?? (typeof dest === 'string' && (code === 'EEXIST' || code === 'ENOTEMPTY' || code === 'EISDIR') ? dest : typeof errorPath === 'string' ? errorPath : undefined);
  // Without a path the message would name nothing: too little to act on, so it stays a bug report.
  if (named === undefined && code !== 'EMFILE' && code !== 'ENFILE' && code !== 'ENOSPC' && code !== 'EDQUOT') return undefined;
  const during = typeof syscall === 'string' ? ` (${code} in ${syscall})` : ` (${code})`;
  return new UserError(`${fix(named ?? 'the output')}${during}`);
}
