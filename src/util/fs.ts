/**
 * Files appear whole or not at all: everything osteo writes goes to a unique temporary name beside
 * its target and is renamed into place (a rename within a folder is atomic), so a kill at any moment
 * leaves either the previous file or the new one, never half of one.
 */
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

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
