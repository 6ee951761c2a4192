/**
 * The CSV writer every osteo CSV goes through: spreadsheet formulas neutralised as OWASP's
 * CSV-injection guidance says (a leading apostrophe on text cells starting with = + - @, tab or CR),
 * numbers untouched, and the reader gives back exactly what was written.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatCsv, parseCsvRecords } from '../../src/util/index.js';

const hostile = ['=HYPERLINK("http://x","y")', '+1+1', '-2+3', '@SUM(A1)', '\t=1', '\r=1', '＝1', '＠x', '－1', '＋1'];

test('text cells that a spreadsheet would run as a formula get a leading apostrophe', () => {
  const lines = formatCsv([['path', 'n'], ...hostile.map((h) => [h, 1])]).split('\n');
  for (const [i, h] of hostile.entries()) {
    const cell = lines[i + 1]!;
    const first = cell.startsWith('"') ? cell[1] : cell[0];
    assert.is(first, "'", `${JSON.stringify(h)} → ${JSON.stringify(cell)}`);
  }
});

test('numbers, negative ones included, and ordinary text are written as they are', () => {
  assert.is(formatCsv([['a', 'b', 'c', 'd'], [-0.5, 1e-7, 'Normal/x.png', 'ensemble (soft vote)']]), 'a,b,c,d\n-0.5,1e-7,Normal/x.png,ensemble (soft vote)\n');
  assert.is(formatCsv([[-3, 'x']], { header: ['n', 's'] }), 'n,s\n-3,x\n');
});

test('parseCsvRecords reads back exactly what formatCsv wrote, apostrophes of the text itself included', () => {
  const values = [...hostile, "'=already quoted", "''+twice", "'plain", "it's", 'a,b', '"q"', '-0.5', ''];
  const text = formatCsv([['value', 'n'], ...values.map((v, i) => [v, i])]);
  assert.equal(parseCsvRecords(text, 'x.csv').map((r) => r.value), values);
});

test.run();
