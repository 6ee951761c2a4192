/**
 * `osteo calibrate`: fits each run's temperature on its val split and writes RUN/calibration.json;
 * flags from the calibrate option table (src/config/calibrate.ts).
 */
import type { Command } from 'commander';
import { useBackend, type BackendPreference } from '../backend/index.js';
import { calibrateOptions, resolveCalibrateConfig } from '../config/index.js';
import { calibrateRuns } from '../eval/index.js';
import { printable } from '../util/index.js';
import { addTableOptions, backendOption, printJson } from './common.js';

interface CalibrateCommandOptions {
  json?: boolean;
  backend: BackendPreference;
  [attribute: string]: unknown;
}

export function registerCalibrateCommand(program: Command): void {
  const command = program.command('calibrate').description("fit each run's temperature (softmax(logits / T)) and its screening thresholds on its val split; eval and predict then use them");
  const tableFlags = addTableOptions(command, calibrateOptions);
  command
    .addOption(backendOption())
    .option('--json', 'print the fitted temperatures as one JSON document')
    .action(async (options: CalibrateCommandOptions) => {
      const config = resolveCalibrateConfig(tableFlags(options), options.backend);
      const backend = await useBackend(options.backend);
      const results = await calibrateRuns({
        backend,
        runs: config.run,
        dataDir: config.data,
        checkpoint: config.checkpoint,
        tta: config.tta,
        batchSize: config.batchSize,
        workers: config.workers,
        targets: { sensitivity: config.targetSensitivity, specificity: config.targetSpecificity },
        onWarning: (message) => process.stderr.write(`osteo: warning: ${printable(message)}\n`),
        onProgress: options.json ? undefined : ({ split, done, total }) => process.stderr.write(`\r${split}: ${done}/${total} images${done === total ? '\n' : ''}`),
      });
      if (options.json) {
        printJson(results.map((r) => ({ run: r.run, name: r.name, file: r.file, ...r.record, val: { before: { ece: r.before.ece, brier: r.before.brier, nll: r.before.nll }, after: { ece: r.after.ece, brier: r.after.brier, nll: r.after.nll } } })));
        return;
      }
      console.log('| model | T | val NLL | val ECE | val Brier | written |\n|---|---|---|---|---|---|');
      for (const r of results) {
        console.log(
          `| ${printable(r.name)} | ${r.record.temperature.toFixed(3)} | ${r.before.nll.toFixed(4)} → ${r.after.nll.toFixed(4)} | ${r.before.ece.toFixed(3)} → ${r.after.ece.toFixed(3)} | ${r.before.brier.toFixed(4)} → ${r.after.brier.toFixed(4)} | ${printable(r.file)} |`,
        );
      }
      console.log('\nScreening thresholds on the calibrated val scores (stored with the temperature):\n| model | view | point | threshold | val sensitivity | val specificity |\n|---|---|---|---|---|---|');
      for (const r of results) {
        for (const view of r.record.operatingPoints?.views ?? []) {
          for (const p of view.points) console.log(`| ${printable(r.name)} | ${view.name} | ${p.name} | ${p.threshold.toFixed(4)} | ${p.fitted.sensitivity?.toFixed(3)} | ${p.fitted.specificity?.toFixed(3)} |`);
        }
      }
    });
}
