/** `npm run docs`: rewrite README.md's generated option tables from src/config's option tables. */
import { readFileSync, writeFileSync } from 'node:fs';
import { regenerateDocs } from '../src/config/index.js';

const file = new URL('../README.md', import.meta.url);
const before = readFileSync(file, 'utf8');
const after = regenerateDocs(before);
if (after !== before) writeFileSync(file, after);
console.log(after === before ? 'README.md is up to date' : 'README.md: generated option tables rewritten');
