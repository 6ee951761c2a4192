/**
 * The one reader of JSON config files (training recipes, augmentation configs, pipeline configs, a
 * run's saved config): every failure names the file and says what kind of file was expected.
 */
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { visit } from 'jsonc-parser';
import { DataError, UserError, errorMessage } from '../util/index.js';

/** osteo's own configs/ folder (recipes, augmentation presets, pipeline configs): at the package root, two levels above src/config and dist/config. */
export const shippedConfigDir = fileURLToPath(new URL('../../configs/', import.meta.url));

/**
 * The file to read for a config path given on the command line: the path itself, or, for a relative
 * `configs/…` path that the working directory does not hold, the file osteo ships under that name —
 * so `--config configs/demo.json` (README.md's commands) runs from any folder once osteo is installed.
 */
export function locateConfigFile(file: string): string {
  if (isAbsolute(file) || existsSync(file)) return file;
  const [top, ...rest] = normalize(file).split(sep);
  if (top !== 'configs' || rest.length === 0) return file;
  const shipped = join(shippedConfigDir, ...rest);
  return existsSync(shipped) ? shipped : file;
}

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
  return parseConfigJson(text, file);
}

/**
 * Strict JSON, less two traps of hand-edited files: a UTF-8 byte-order mark (Windows editors write
 * one; JSON.parse refuses it) is skipped, and a key given twice in one object is refused, since
 * JSON.parse would keep the last silently and the recipe would not say what it trains with.
 */
export function parseConfigJson(text: string, file: string): unknown {
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  let value: unknown;
  try {
    value = JSON.parse(body) as unknown;
  } catch (error) {
    throw new DataError(file, `not valid JSON (${errorMessage(error)})`);
  }
  const duplicate = firstDuplicateKey(body);
  if (duplicate !== undefined) throw new DataError(file, `the key "${duplicate.path}" is given twice (line ${duplicate.line}): keep one`);
  return value;
}

/**
 * The first key that repeats within one object, as a dotted path, with the line of its second
 * occurrence. jsonc-parser's visitor walks the text with keys unescaped ("a" and "\u0061" are one
 * key), which a JSON.parse reviver cannot: the object it sees has already dropped the duplicate.
 */
function firstDuplicateKey(text: string): { path: string; line: number } | undefined {
  const objects: Set<string>[] = [];
  let found: { path: string; line: number } | undefined;
  visit(text, {
    onObjectBegin: () => {
      objects.push(new Set());
    },
    onObjectEnd: () => {
      objects.pop();
    },
    onObjectProperty: (property, _offset, _length, startLine, _startCharacter, pathSupplier) => {
      const keys = objects.at(-1)!;
      if (found === undefined && keys.has(property)) found = { path: [...pathSupplier(), property].join('.'), line: startLine + 1 };
      keys.add(property);
    },
  });
  return found;
}
