/**
 * `osteo cv`: grouped, stratified K-fold cross-validation (flags generated from the cv option table,
 * src/config/cv.ts), `osteo cv collect DIR` to merge shards, `osteo cv compare DIR1 DIR2` for the
 * paired difference between two configs on the same folds.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { backendFromEnvironment, useBackends } from '../backend/index.js';
import { cvOptions, optionsText, resolveCvConfig } from '../config/index.js';
import { collectCv, compareCv, cvExperimentFromConfig, runCv } from '../pipeline/index.js';
import { progressReporter } from '../train/index.js';
import { addTableOptions, printJson, withStopSignals } from './common.js';
import { printable, printableLines } from '../util/index.js';

const stderrLine = (line: string) => process.stderr.write(`${printableLines(line)}\n`);

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function registerCvCommands(program: Command): void {
  const cv = program
    .command('cv')
    .description('grouped, stratified K-fold cross-validation over the duplicate groups: per-fold and pooled out-of-fold metrics with bootstrap CIs; --shard I/N for any scheduler');
  const readFlags = addTableOptions(cv, cvOptions);
  // --model and --data are required by the table (its resolver names a missing one); commander must
  // not demand them too, or `osteo cv collect DIR` would need them.
  for (const option of cv.options) option.mandatory = false;
  cv.option('--set <key=value>', 'training override for every job (repeatable), e.g. --set optimizer.lr=3e-4', collect)
    .option('--json', 'print the result as one JSON document')
    .addHelpText('after', `\nSettings:\n${optionsText(cvOptions)}\n`)
    .action(async (options: Record<string, unknown> & { set?: string[]; json?: boolean }) => {
      const flags = readFlags(options);
      flags.backend ??= backendFromEnvironment();
      const config = resolveCvConfig(flags);
      const experiment = cvExperimentFromConfig(config, options.set ?? []);
      const backends = await useBackends(experiment.backend ?? 'auto');
      const result = await withStopSignals((signal) =>
        runCv(experiment, {
          backend: backends.train,
          inference: backends.infer,
          log: stderrLine,
          onTrainEvent: options.json ? undefined : progressReporter(process.stderr),
          signal,
        }),
      );
      if (options.json) return printJson({ out: result.out, plan: result.plan.fingerprint, jobs: result.jobs, report: result.report ? { dir: result.report.out, ...result.report.report } : null });
      if (result.report) {
        console.log(await readFile(result.report.files[0]!, 'utf8'));
        console.log(`report: ${printable(result.report.out)}`);
      } else console.log(`${result.jobs.length} job(s) done in ${printable(result.out)}; \`osteo cv collect ${printable(result.out)}\` merges the shards once all have run`);
    });

  // commander hands a --json after `cv collect DIR` to cv itself (options are global to a command's subcommands).
  const wantsJson = () => cv.opts().json === true;

  cv.command('collect')
    .description("merge the shards' job results in DIR into DIR/report (refuses missing jobs and jobs run with other settings, naming them)")
    .argument('<dir>', 'the CV folder (--out of every shard)')
    .option('--json', 'print the report as one JSON document')
    .action(async (dir: string, options: { json?: boolean }) => {
      const result = await collectCv(dir);
      if (options.json || wantsJson()) return printJson({ dir: result.out, files: result.files, ...result.report });
      console.log(await readFile(result.files[0]!, 'utf8'));
      console.log(`report: ${printable(result.out)}`);
    });

  cv.command('compare')
    .description('paired differences (B − A) between two CV folders run on the same folds, with bootstrap CIs')
    .argument('<dirA>', 'CV folder A (the baseline)')
    .argument('<dirB>', 'CV folder B')
    .option('--json', 'print the differences as one JSON document')
    .action(async (dirA: string, dirB: string, options: { json?: boolean }) => {
      const result = await compareCv(dirA, dirB);
      if (options.json || wantsJson()) return printJson(result);
      console.log(printableLines(result.markdown));
    });
}
