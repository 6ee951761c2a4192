import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { documentedTables, generatedBlocks, optionEntries, regenerateDocs } from '../../src/config/index.js';

/** docs/*.md, the documents `npm run docs` rewrites, by name. */
const documents = readdirSync('docs')
  .filter((name) => name.endsWith('.md'))
  .sort()
  .map((name) => ({ name: `docs/${name}`, text: readFileSync(`docs/${name}`, 'utf8') }));

test('docs/*.md document every option table exactly once, and each generated block is current (npm run docs rewrites them)', () => {
  const blocks = documents.flatMap((document) => generatedBlocks(document.text));
  assert.equal(blocks.sort(), Object.keys(documentedTables).sort());
  for (const document of documents) {
    assert.ok(regenerateDocs(document.text, document.name) === document.text, `${document.name} is out of date with src/config: run \`npm run docs\``);
  }
});

test('README.md holds no generated table: the reference lives in docs/', () => {
  assert.equal(generatedBlocks(readFileSync('README.md', 'utf8')), []);
});

test('a generated block lists every key of its table, and a stale or unknown block is caught', () => {
  const stale = '<!-- generated: split options -->\n| old |\n<!-- /generated -->';
  const fresh = regenerateDocs(stale);
  for (const [key] of optionEntries(documentedTables['split options']!)) assert.ok(fresh.includes(`| \`${key}\` |`), key);
  assert.is.not(fresh, stale);
  assert.throws(() => regenerateDocs('<!-- generated: nonsense -->\n<!-- /generated -->', 'docs/x.md'), /docs\/x\.md names an unknown generated block "nonsense"/);
});

test.run();
