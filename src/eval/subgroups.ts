/**
 * `osteo eval --metadata FILE`: the per-image attributes for subgroup metrics, read and checked before
 * any model runs. The table has a `path` column (relative to --data, as `<class folder>/<file>`) and
 * any of site, device, sex, age, laterality. A path outside the data folder, a path given twice, an
 * age that is not a number of years or an unknown column is refused naming the row or the column.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { DataError, UserError, environmentUserError, parseCsvRecords, printable } from '../util/index.js';
import { subgroupAttributes, type ImageAttributes, type SubgroupAttribute } from '../report/index.js';

export interface SubgroupMetadata {
  /** Absolute path of the table. */
  file: string;
  /** The attribute columns it has, in subgroupAttributes order. */
  attributes: SubgroupAttribute[];
  byPath: Map<string, ImageAttributes>;
}

/** Oldest age accepted, in years: a larger number is a typo or another unit (months, a birth year). */
const maxAge = 130;

/** A path that names a file inside the data folder: relative, forward slashes, no `..`, `.` or empty part. */
function insideFolder(path: string): boolean {
  const parts = path.split('/');
  return !isAbsolute(path) && !/^[a-zA-Z]:/.test(path) && !path.includes('\\') && !path.includes('\0') && parts.every((part) => part !== '' && part !== '.' && part !== '..');
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`--metadata ${file} does not exist: give the CSV of per-image attributes (columns path and any of ${subgroupAttributes.join(', ')})`);
    throw environmentUserError(error, file) ?? error;
  }
}

export async function readSubgroupMetadata(metadataFile: string): Promise<SubgroupMetadata> {
  const file = resolve(metadataFile);
  const text = await readText(file);
  const records = parseCsvRecords(text, file);
  if (records.length === 0) throw new DataError(file, `has no rows: expected a header with path and any of ${subgroupAttributes.join(', ')}, then one row per image`);
  const columns = Object.keys(records[0]!);
  const unknown = columns.filter((c) => c !== 'path' && !(subgroupAttributes as readonly string[]).includes(c));
  if (unknown.length > 0) throw new DataError(file, `unknown column(s) ${unknown.map((c) => `'${printable(c)}'`).join(', ')}: the columns are path and any of ${subgroupAttributes.join(', ')}`);
  if (!columns.includes('path')) throw new DataError(file, `has no path column: each row names its image by its path relative to --data (e.g. Normal/knee.png)`);
  const attributes = subgroupAttributes.filter((a) => columns.includes(a));
  const byPath = new Map<string, ImageAttributes>();
  const rowOf = new Map<string, number>();
  records.forEach((record, i) => {
    const row = i + 2;
    const path = record.path ?? '';
    if (path === '') throw new DataError(file, `row ${row} has no path`);
    if (!insideFolder(path)) throw new DataError(file, `row ${row}: path '${printable(path)}' is not inside the data folder: give it relative to --data, e.g. Normal/knee.png`);
    const first = rowOf.get(path);
    if (first !== undefined) throw new DataError(file, `rows ${first} and ${row} both describe '${printable(path)}': keep one row per image`);
    rowOf.set(path, row);
    const entry: ImageAttributes = {};
    for (const attribute of attributes) {
      const value = (record[attribute] ?? '').trim();
      if (value === '') continue;
      if (attribute === 'age') {
        const age = Number(value);
        if (!/^\d+(\.\d+)?$/.test(value) || age > maxAge) throw new DataError(file, `row ${row}: age '${printable(value)}' is not an age in years (a number from 0 to ${maxAge}; leave it empty when unknown)`);
        entry.age = age;
      } else entry[attribute] = value;
    }
    byPath.set(path, entry);
  });
  return { file, attributes, byPath };
}
