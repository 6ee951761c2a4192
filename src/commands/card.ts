/**
 * `osteo card`: a model card of runs (model-card.md and model-card.json), filled from their records
 * and their evaluation reports; flags from the card option table (src/config/card.ts).
 */
import type { Command } from 'commander';
import { cardOptions, resolveCardConfig } from '../config/index.js';
import { writeModelCard } from '../eval/index.js';
import { printable } from '../util/index.js';
import { addTableOptions, printJson } from './common.js';

interface CardCommandOptions {
  json?: boolean;
  [attribute: string]: unknown;
}

export function registerCardCommand(program: Command): void {
  const command = program.command('card').description('write a model card of runs (model-card.md and model-card.json) from their records and evaluation reports');
  const tableFlags = addTableOptions(command, cardOptions);
  command.option('--json', 'print the card as one JSON document').action(async (options: CardCommandOptions) => {
    const config = resolveCardConfig(tableFlags(options));
    const { dir, files, card } = await writeModelCard({ runs: config.run, reports: config.eval, checkpoint: config.checkpoint, outDir: config.out });
    if (options.json) {
      printJson({ dir, files, card });
      return;
    }
    console.log(`wrote ${files.join(', ')} to ${printable(dir)}`);
    if (card.notEvaluated !== null) console.log(`note: ${printable(card.notEvaluated)}`);
  });
}
