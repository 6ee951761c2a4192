/** `npm run docs`: rewrite the generated option tables in docs/*.md from src/config's option tables. */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { regenerateDocs } from '../src/config/index.js';

const docs = fileURLToPath(new URL('../docs/', import.meta.url));
for (const name of readdirSync(docs).filter((file) => file.endsWith('.md')).sort()) {
  const file = `${docs}${name}`;
  const before = readFileSync(file, 'utf8');
  const after = regenerateDocs(before, `docs/${name}`);
  if (after !== before) writeFileSync(file, after);
  if (after !== before) console.log(`docs/${name}: generated option tables rewritten`);
}
console.log('docs/*.md: every generated option table is current');
