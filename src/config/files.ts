/**
 * The one reader of JSON config files (training recipes, augmentation configs, pipeline configs, a
 * run's saved config): every failure names the file and says what kind of file was expected.
 */
import { readFile, stat } from 'node:fs/promises';
import { DataError, UserError, errorMessage } from '../util/index.js';

/** Parse `file` as JSON. `kind` names it in errors ("training config", "augmentation config", …). */
export async function readConfigFile(file: string, kind = 'config file'): Promise<unknown> {
  let text: string;
  try {
    const info = await stat(file);
    if (info.isDirectory()) throw new UserError(`${kind} ${file} is a folder: give the path of a .json file`);
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (error instanceof UserError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${kind} ${file} not found`);
    throw new UserError(`${kind} ${file} cannot be read (${code ?? errorMessage(error)})`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new DataError(file, `not valid JSON (${errorMessage(error)})`);
  }
}
