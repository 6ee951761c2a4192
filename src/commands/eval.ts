/**
 * `osteo eval`: its flags are generated from the evaluation option table (src/config/eval.ts), so a
 * flag, its default, its validation and its help text cannot drift apart.
 */
import type { Command } from 'commander';
import { useBackend, type BackendPreference } from '../backend/index.js';
import { evalOptions, resolveEvalConfig } from '../config/index.js';
import { reportSummaryJson, resultsTable, trainOverlapText } from '../report/index.js';
import { evaluateRuns } from '../eval/index.js';
import { parseDicomWindow } from '../data/index.js';
import { printable } from '../util/index.js';
import { addTableOptions, backendOption, printJson } from './common.js';
import { registerCalibrateCommand } from './calibrate.js';
import { registerCardCommand } from './card.js';
import { registerExportCommand } from './export.js';
import { registerPredictCommand } from './predict.js';

interface EvalCommandOptions {
  json?: boolean;
  backend: BackendPreference;
  [attribute: string]: unknown;
}

/** The eval room's commands: eval, calibrate, predict, export, card (one registration call for src/cli.ts). */
export function registerEvalCommands(program: Command): void {
  registerEvalCommand(program);
  registerCalibrateCommand(program);
  registerPredictCommand(program);
  registerExportCommand(program);
  registerCardCommand(program);
}

function registerEvalCommand(program: Command): void {
  const command = program
    .command('eval')
    .description('evaluate runs and their soft-vote ensemble on a split or an external folder: metrics with a bootstrap interval, AUC, calibration, plots, subgroups');
  const tableFlags = addTableOptions(command, evalOptions);
  command
    .addOption(backendOption())
    .option('--json', 'print the summary as one JSON document')
    .action(async (options: EvalCommandOptions) => {
      const config = resolveEvalConfig(tableFlags(options), options.backend);
      const backend = await useBackend(options.backend, 'infer');
      const { report, written } = await evaluateRuns({
        backend,
        runs: config.run,
        dataDir: config.data,
        split: config.split,
        external: config.external,
        metadata: config.metadata,
        ageBands: config.ageBands,
        minSubgroup: config.minSubgroup,
        checkpoint: config.checkpoint,
        tta: config.tta,
        allowTrainOverlap: config.allowTrainOverlap,
        dicomWindow: config.dicomWindow === undefined ? undefined : parseDicomWindow(config.dicomWindow),
        weights: config.weights,
        outDir: config.out,
        batchSize: config.batchSize,
        workers: config.workers,
        seed: config.seed,
        resamples: config.resamples,
        targets: { sensitivity: config.targetSensitivity, specificity: config.targetSpecificity },
        prevalence: config.prevalence,
        onWarning: (message) => process.stderr.write(`osteo: warning: ${printable(message)}\n`),
        onProgress: options.json ? undefined : ({ split, done, total }) => process.stderr.write(`\r${split}: ${done}/${total} images${done === total ? '\n' : ''}`),
      });
      if (options.json) {
        printJson({ ...(reportSummaryJson(report) as object), out: written?.dir ?? null, files: written?.files ?? [] });
        return;
      }
      console.log(`${report.split === 'external' ? 'external folder' : `${report.split} split`}, ${report.images.length} images${report.tta ? ', flip TTA' : ''}\n`);
      console.log(resultsTable(report));
      if (report.trainOverlap !== undefined) console.log(`\n${printable(trainOverlapText(report.trainOverlap))}`);
      for (const section of report.sections ?? []) if (section.console !== undefined) console.log(`\n${section.console.join('\n')}`);
      if (written) console.log(`\nreport: ${printable(written.dir)} (${written.files.map(printable).join(', ')})`);
    });
}
