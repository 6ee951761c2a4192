/** printable: names from outside cannot forge lines or drive the terminal when printed. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { listSome, printable, printableLines } from '../../src/util/index.js';

test('control characters, line separators and bidirectional overrides are escaped; other text is kept', () => {
  assert.is(printable('a.png: Normal (confidence 99.9%)\nb.png'), 'a.png: Normal (confidence 99.9%)\\nb.png');
  assert.is(printable('x\r\t\b\f'), 'x\\r\\t\\b\\f');
  assert.is(printable('\u001b[31mred\u001b[0m'), '\\u001b[31mred\\u001b[0m');
  assert.is(printable('\u0000\u007f\u0085\u009b'), '\\u0000\\u007f\\u0085\\u009b');
  assert.is(printable('a\u2028b\u202ec\u2066'), 'a\\u2028b\\u202ec\\u2066');
  assert.is(printable('Ostéopénie/knee 1 — ü.png'), 'Ostéopénie/knee 1 — ü.png');
  assert.not.match(printable(String.fromCharCode(...Array.from({ length: 32 }, (_, i) => i))), /[\u0000-\u001f]/);
});

test('printableLines keeps a message’s line breaks and escapes everything else; listSome escapes each name it lists', () => {
  assert.is(printableLines('first\n  \u001b[2Jsecond\r'), 'first\n  \\u001b[2Jsecond\\r');
  assert.is(listSome(['a\nb: Normal (confidence 99.9%)', 'c']), 'a\\nb: Normal (confidence 99.9%), c');
  assert.is(listSome(['1', '2', '3'], 2), '1, 2, … (3 in all)');
});

test.run();
