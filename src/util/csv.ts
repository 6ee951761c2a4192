/**
 * CSV in and out. Every CSV osteo writes goes through `formatCsv`, which neutralises spreadsheet
 * formulas as OWASP's CSV-injection guidance says: a text cell that begins with = + - @, a tab or a
 * carriage return (or their full-width forms) gets a leading apostrophe, so a spreadsheet shows it
 * as text instead of running it (a file named `=HYPERLINK(…).png` stays a name). Numbers are left
 * as they are: `-0.5` is a number to a spreadsheet, not a formula. `parseCsvRecords` removes that
 * apostrophe again, and a text that itself begins with apostrophes before such a character gets one
 * more on writing, so osteo reads back exactly what it wrote.
 */
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { DataError, errorMessage } from './errors.js';

/** The first characters that make a spreadsheet read a cell as a formula (csv-stringify's escape_formulas set). */
const formulaStart = '=+\\-@\\t\\r\uFF1D\uFF0B\uFF0D\uFF20';
/** Apostrophes, then a formula character: the form whose first apostrophe the reader removes. */
const neutralised = new RegExp(`^'+[${formulaStart}]`);

/** Rows (the first may be a header) as CSV text, formulas neutralised. */
export function formatCsv(rows: readonly (readonly unknown[])[], options: { header?: readonly string[] } = {}): string {
  return stringify(rows as unknown[][], {
    ...(options.header === undefined ? {} : { header: true, columns: [...options.header] }),
    // csv-stringify prefixes the apostrophe (numbers exempt); the cast keeps already-quoted text distinct.
    escape_formulas: true,
    cast: { string: (value) => (neutralised.test(value) ? `'${value}` : value) },
  });
}

/**
 * Rows of a CSV with a header line (index.csv, splits.csv, results.csv), with formatCsv's
 * neutralising apostrophe removed; a malformed file is a DataError naming it.
 */
export function parseCsvRecords(text: string, file: string): Record<string, string>[] {
  let records: Record<string, string>[];
  try {
    records = parse(text, { columns: true, skip_empty_lines: true });
  } catch (error) {
    throw new DataError(file, `not a valid CSV (${errorMessage(error)})`);
  }
  for (const record of records) {
    for (const [key, value] of Object.entries(record)) if (neutralised.test(value)) record[key] = value.slice(1);
  }
  return records;
}
