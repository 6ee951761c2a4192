/**
 * The reference tables in docs/*.md, generated from the option tables so the docs cannot drift from
 * the flags and schemas: `npm run docs` rewrites each block between `<!-- generated: NAME -->` and
 * `<!-- /generated -->` (scripts/docs.ts), and tests/config/docs.test.ts fails when a document is out
 * of date or a table is documented nowhere or twice.
 */
import { calibrateOptions } from './calibrate.js';
import { cardOptions } from './card.js';
import { cvOptions } from './cv.js';
import { evalOptions } from './eval.js';
import { optionsMarkdown, type OptionTable } from './options.js';
import { pipelineOptions } from './pipeline.js';
import { predictScreeningOptions } from './screening.js';
import { splitOptions } from './split.js';
import { trainOptions } from './train.js';

export const documentedTables: Readonly<Record<string, OptionTable>> = {
  'train options': trainOptions,
  'split options': splitOptions,
  'eval options': evalOptions,
  'calibrate options': calibrateOptions,
  'card options': cardOptions,
  'predict screening options': predictScreeningOptions,
  'pipeline options': pipelineOptions,
  'cv options': cvOptions,
};

const block = /(<!-- generated: ([^>]+?) -->)[\s\S]*?(<!-- \/generated -->)/g;

/** `markdown` (the text of `source`) with every generated block rewritten from its table; unknown block names are errors. */
export function regenerateDocs(markdown: string, source = 'the document'): string {
  return markdown.replace(block, (_all, open: string, name: string, close: string) => {
    const table = documentedTables[name];
    if (table === undefined) throw new Error(`${source} names an unknown generated block "${name}"; known: ${Object.keys(documentedTables).join(', ')}`);
    return `${open}\n${optionsMarkdown(table)}\n${close}`;
  });
}

/** The names of the generated blocks a document holds. */
export function generatedBlocks(markdown: string): string[] {
  return [...markdown.matchAll(block)].map((match) => match[2]!);
}
