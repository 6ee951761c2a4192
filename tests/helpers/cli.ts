/**
 * Running `osteo` from tests on the code as it is now: in-process through `main()` (what most tests
 * want), as a separate process where a test needs one (its own exit, signals, environment), or, for a
 * script that only runs dist/cli.js (scripts/gpu-check.sh), after building dist/ once if it is stale.
 */
import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { format, promisify } from 'node:util';

export interface CapturedRun {
  code: number;
  stdout: string;
  stderr: string;
}

type Write = typeof process.stdout.write;

/** A stream's write that appends to `sink` instead (and calls the write's callback, as a stream would). */
function capturing(sink: string[]): Write {
  return ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    sink.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    const callback = rest.find((arg): arg is () => void => typeof arg === 'function');
    callback?.();
    return true;
  }) as Write;
}

/** Run `osteo …argv` in-process and return its exit code and everything it wrote to stdout and stderr. */
export async function captureMain(argv: string[]): Promise<CapturedRun> {
  // Imported here, not above, so a test that only spawns the CLI does not load every command.
  const { main } = await import('../../src/cli.js');
  const out: string[] = [];
  const err: string[] = [];
  const saved = { out: process.stdout.write, err: process.stderr.write, log: console.log };
  process.stdout.write = capturing(out);
  process.stderr.write = capturing(err);
  console.log = (...args: unknown[]) => out.push(`${format(...args)}\n`);
  try {
    const code = await main(argv);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.stdout.write = saved.out;
    process.stderr.write = saved.err;
    console.log = saved.log;
  }
}

/** The newest modification time of any file under `dir`. */
function newestFile(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestFile(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** dist/cli.js when it was built (at `builtAt`, absent when not built) after the newest source file, else the source through tsx. */
export function cliEntryFor(builtAt: number | undefined, newestSource: number): string[] {
  return builtAt !== undefined && builtAt >= newestSource ? ['dist/cli.js'] : ['--import', 'tsx', 'src/cli.ts'];
}

let entry: string[] | undefined;
let build: Promise<void> | undefined;

function builtAt(): number | undefined {
  try {
    return statSync('dist/cli.js').mtimeMs;
  } catch {
    return undefined; // not built: run the source
  }
}

/**
 * How a child process runs the CLI: dist/cli.js when that build is newer than every file in src/
 * (as after `npm test`'s build), else the source itself, so a test never runs stale code. Decided
 * once per test process.
 */
function cliEntry(): string[] {
  entry ??= cliEntryFor(builtAt(), newestFile('src'));
  return entry;
}

/**
 * dist/ built from the current source: `tsc -p tsconfig.build.json` once per test process when
 * dist/cli.js is missing or older than a source file, for what can only run the build.
 */
export function currentBuild(): Promise<void> {
  build ??= (async () => {
    if (cliEntryFor(builtAt(), newestFile('src'))[0] === 'dist/cli.js') return;
    await promisify(execFile)(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { encoding: 'utf8' });
    entry = undefined;
  })();
  return build;
}

/** The arguments for `process.execPath` that run `osteo …args` in a child process on the current code. */
export function osteoArgv(args: readonly string[]): string[] {
  return [...cliEntry(), ...args];
}
