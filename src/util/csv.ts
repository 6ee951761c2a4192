import { parse } from 'csv-parse/sync';
import { DataError, errorMessage } from './errors.js';

/** Rows of a CSV with a header line (index.csv, splits.csv); a malformed file is a DataError naming it. */
export function parseCsvRecords(text: string, file: string): Record<string, string>[] {
  try {
    return parse(text, { columns: true, skip_empty_lines: true });
  } catch (error) {
    throw new DataError(file, `not a valid CSV (${errorMessage(error)})`);
  }
}
