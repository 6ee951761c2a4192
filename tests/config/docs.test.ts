import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { documentedTables, generatedBlocks, optionEntries, regenerateDocs } from '../../src/config/index.js';

const readme = readFileSync('README.md', 'utf8');

test('README.md documents every option table, and each generated block is current (npm run docs rewrites them)', () => {
  assert.equal(generatedBlocks(readme).sort(), Object.keys(documentedTables).sort());
  assert.ok(regenerateDocs(readme) === readme, 'README.md is out of date with src/config: run `npm run docs`');
});

test('a generated block lists every key of its table, and a stale or unknown block is caught', () => {
  const stale = '<!-- generated: split options -->\n| old |\n<!-- /generated -->';
  const fresh = regenerateDocs(stale);
  for (const [key] of optionEntries(documentedTables['split options']!)) assert.ok(fresh.includes(`| \`${key}\` |`), key);
  assert.is.not(fresh, stale);
  assert.throws(() => regenerateDocs('<!-- generated: nonsense -->\n<!-- /generated -->'), /unknown generated block "nonsense"/);
});

test.run();
