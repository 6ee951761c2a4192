import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { type BackendPreference } from '../backend/index.js';
import { byteProgress, countProgress, printable, printableLines, UserError } from '../util/index.js';
import { protocols, reproduce, type Protocol } from '../pipeline/index.js';
import { progressReporter } from '../train/index.js';
import { backendOption, nonNegativeNumber, positiveInt, printJson, withStopSignals } from './common.js';

interface ReproduceFlags {
  config: string;
  data?: string;
  out: string;
  check?: number;
  protocol: Protocol;
  cv?: number;
  fresh?: boolean;
  weightsDir?: string;
  pretrained: boolean;
  backend: BackendPreference;
  workers?: number;
  set: string[];
  json?: boolean;
}

export function registerReproduceCommands(program: Command): void {
  program
    .command('reproduce')
    .description('the published experiment end to end under the published protocol and a leak-free one: data, index, splits, three models, ensemble, export, and the published table beside ours')
    .option('--config <file>', 'pipeline config (configs/demo.json runs it on the phantom dataset)', 'configs/reproduce.json')
    .option('--data <dir>', 'use this dataset folder instead of downloading (Normal/, Osteopenia/, Osteoporosis/)')
    .option('--out <dir>', 'where runs, reports and the dashboard files go', 'reports/reproduce')
    .addOption(new Option('--protocol <name>', "published: each model's own random split, duplicates kept, as the seed project did; clean: one de-duplicated shared split; both").choices([...protocols]).default('both'))
    .option('--cv <k>', 'also run grouped K-fold cross-validation under the clean protocol (OUT/cv)', positiveInt('--cv'))
    .option('--fresh', 'remove the runs and reports an earlier reproduce wrote in --out and start over (default: reuse finished runs, resume interrupted ones)')
    .option('--check <points>', 'exit non-zero when a published-protocol accuracy falls more than this many points below the published one (Kaggle data only)', nonNegativeNumber('--check'))
    .option('--no-pretrained', 'train every model from random weights instead of ImageNet checkpoints (offline machines)')
    .option('--weights-dir <dir>', 'where torchvision ImageNet checkpoints are found or fetched (default checkpoints/pretrained)')
    .addOption(backendOption())
    .option('--workers <n>', 'data-parallel worker threads for training', positiveInt('--workers'))
    .option('--set <key=value>', 'training override for every model (repeatable), e.g. --set epochs=5', (v: string, all: string[]) => [...all, v], [])
    .option('--json', 'print the result as one JSON document')
    .action(async (flags: ReproduceFlags) => {
      const human = !flags.json;
      const result = await withStopSignals((signal) =>
        reproduce({
          config: flags.config,
          data: flags.data,
          out: flags.out,
          check: flags.check,
          protocol: flags.protocol,
          cv: flags.cv,
          fresh: flags.fresh,
          weightsDir: flags.weightsDir,
          pretrained: flags.pretrained,
          backend: flags.backend,
          workers: flags.workers,
          sets: flags.set,
          log: (line) => process.stderr.write(printableLines(line) + '\n'),
          progress: human ? (kind) => (kind === 'download' ? byteProgress('download') : countProgress('index', 'files')) : undefined,
          onTrainEvent: human ? progressReporter(process.stderr) : undefined,
          signal,
        }),
      );
      if (flags.json) printJson(result);
      else {
        console.log('\n' + (await readFile(result.artefacts.report, 'utf8')));
        console.log('artefacts:');
        console.log(`  report          ${printable(result.artefacts.report)}`);
        if (result.artefacts.evaluation) console.log(`  evaluation      ${printable(result.artefacts.evaluation)}`);
        if (result.artefacts.publishedEvaluation) console.log(`  published eval  ${printable(result.artefacts.publishedEvaluation)}`);
        if (result.artefacts.cv) console.log(`  cv report       ${printable(result.artefacts.cv)}`);
        for (const run of result.artefacts.runs) console.log(`  run             ${printable(run)}`);
        for (const file of result.artefacts.dashboard ?? []) console.log(`  dashboard file  ${printable(file)}`);
      }
      const problems = [...result.failures.map((f) => `${f.model} (${f.protocol}) failed: ${f.error}`), ...result.checkFailures.map((c) => `check: ${c}`)];
      if (problems.length > 0) throw new UserError(problems.join('\n'));
    });
}
