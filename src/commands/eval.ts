import { InvalidArgumentError, Option, type Command } from 'commander';
import { useBackend, type BackendPreference } from '../backend/index.js';
import { reportSummaryJson, resultsTable } from '../report/index.js';
import { evaluateRuns, type EvalSplit } from '../eval/index.js';
import { backendOption, positiveInt, printJson } from './common.js';
import { registerExportCommand } from './export.js';
import { registerPredictCommand } from './predict.js';

interface EvalCommandOptions {
  run: string[];
  data: string;
  split: EvalSplit;
  tta?: boolean;
  weights: string;
  out?: string;
  json?: boolean;
  batchSize: number;
  seed: number;
  resamples: number;
  backend: BackendPreference;
}

function nonNegativeInt(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got '${value}'`);
    return n;
  };
}

/** The eval room's commands: eval, predict, export (one registration call for src/cli.ts). */
export function registerEvalCommands(program: Command): void {
  registerEvalCommand(program);
  registerPredictCommand(program);
  registerExportCommand(program);
}

function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description('evaluate runs and their soft-vote ensemble on a split: metrics with a bootstrap interval, AUC, calibration, plots')
    .requiredOption('--run <dir...>', 'training run directories (each contributes its best checkpoint)')
    .requiredOption('--data <dir>', 'dataset directory with splits.csv')
    .addOption(new Option('--split <split>', 'split to evaluate').choices(['test', 'val']).default('test'))
    .option('--tta', 'average each image with its horizontal mirror')
    .option('--weights <spec>', "ensemble weights: 'equal', 'auto' (fitted on val), or w1,w2,… per run", 'equal')
    .option('--out <dir>', 'report directory (default: eval-<split> beside the first run)')
    .option('--batch-size <n>', 'images per forward pass', positiveInt('--batch-size'), 16)
    .option('--seed <n>', 'bootstrap seed', nonNegativeInt('--seed'), 0)
    .option('--resamples <n>', 'bootstrap resamples', positiveInt('--resamples'), 2000)
    .addOption(backendOption())
    .option('--json', 'print the summary as one JSON document')
    .action(async (options: EvalCommandOptions) => {
      await useBackend(options.backend);
      const { report, written } = await evaluateRuns({
        runs: options.run,
        dataDir: options.data,
        split: options.split,
        tta: options.tta ?? false,
        weights: options.weights,
        outDir: options.out,
        batchSize: options.batchSize,
        seed: options.seed,
        resamples: options.resamples,
        onProgress: options.json ? undefined : ({ split, done, total }) => process.stderr.write(`\r${split}: ${done}/${total} images${done === total ? '\n' : ''}`),
      });
      if (options.json) {
        printJson({ ...(reportSummaryJson(report) as object), out: written?.dir ?? null, files: written?.files ?? [] });
        return;
      }
      console.log(`${report.split} split, ${report.images.length} images${report.tta ? ', flip TTA' : ''}\n`);
      console.log(resultsTable(report));
      if (written) console.log(`\nreport: ${written.dir} (${written.files.join(', ')})`);
    });
}
