/**
 * `osteo train`: its flags are generated from the training config's option table (src/config/train.ts),
 * so a flag, its config key, its validation and its help text cannot drift. The command resolves the
 * config (recipe → flags → --set), wires Ctrl-C and SIGTERM to a clean stop, and calls trainModel.
 */
import type { Command } from 'commander';
import { backendFromEnvironment, useBackends } from '../backend/index.js';
import { defaultRunDir, optionsText, resolveTrainConfig, trainOptions, type TrainConfig } from '../config/index.js';
import { UserError } from '../util/index.js';
import { progressReporter, trainModel, type TrainResult } from '../train/index.js';
import { readRunConfigJson } from '../runs/index.js';
import { addTableOptions, printJson, withStopSignals } from './common.js';

interface CommandOptions {
  config?: string;
  set?: string[];
  resume?: boolean;
  json?: boolean;
  printConfig?: boolean;
  [attribute: string]: unknown;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function summary(result: TrainResult): string {
  const best = result.best ? `best ${result.best.metric} ${result.best.value.toFixed(4)} at epoch ${result.best.epoch}` : 'no best checkpoint yet';
  return `${result.status}: ${result.message}\nrun: ${result.run} (${best})`;
}

export async function runTrainCommand(options: CommandOptions, readFlags: (options: Readonly<Record<string, unknown>>) => Record<string, unknown>): Promise<void> {
  const flags = readFlags(options);
  flags.backend ??= backendFromEnvironment();

  let config: TrainConfig;
  if (options.resume) {
    const model = typeof flags.model === 'string' ? flags.model : undefined;
    const out = (flags.out as string | undefined) ?? (model ? defaultRunDir(model) : undefined);
    if (out === undefined) throw new UserError(`--resume needs the run to continue: --out RUN (or --model NAME for ${defaultRunDir('NAME')})`);
    const saved = await readRunConfigJson(out);
    config = await resolveTrainConfig({ resumeFrom: { file: saved.file, config: saved.json }, configFile: options.config, flags: { ...flags, out }, sets: options.set });
  } else {
    config = await resolveTrainConfig({ configFile: options.config, flags, sets: options.set });
  }
  if (options.printConfig) {
    printJson(config);
    return;
  }

  // auto: training on the best tfjs backend, validation on the best inference backend; a named one does both
  const backends = await useBackends(config.backend);
  const result = await withStopSignals((signal) =>
    trainModel(config, { backend: backends.train, inference: backends.infer, resume: options.resume, signal, onEvent: options.json ? undefined : progressReporter(process.stderr) }),
  );
  const failed = result.status === 'diverged' || result.status === 'interrupted';
  if (options.json) printJson({ ...result, config });
  else if (!failed) console.log(summary(result));
  // Not a success: the exit code says so (src/cli.ts prints a UserError's message and exits 1).
  if (failed) throw new UserError(result.message);
}

export function registerTrainCommands(program: Command): void {
  const command = program
    .command('train')
    .description('fine-tune a model on a split dataset: recipe (configs/<model>.json) → flags → --set; writes a run directory');
  const readFlags = addTableOptions(command, trainOptions);
  command
    .option('--config <file>', "recipe file (default: the model's configs/<model>.json)")
    .option('--set <key=value>', 'override any config key, dotted for nested ones (repeatable): --set optimizer.lr=3e-4', collect)
    .option('--resume', 'continue the run in --out from its last checkpoint (exactly: same batches, same steps)')
    .option('--print-config', 'print the resolved config and exit without training')
    .option('--json', 'print the result (status, per-epoch metrics, best) as one JSON document')
    .addHelpText('after', `\nConfig keys (recipe files and --set):\n${optionsText(trainOptions)}\n`)
    .action(async (options: CommandOptions) => runTrainCommand(options, readFlags));
}
