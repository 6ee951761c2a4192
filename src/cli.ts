#!/usr/bin/env node
/**
 * The osteo command line. Each subcommand lives in src/commands/, parses its options and calls one
 * library function; this file only assembles them and turns errors into exit codes (ARCHITECTURE.md, *Errors and exit codes*).
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { environmentUserError, isUserFacing, osteoVersion, printableLines } from './util/index.js';
import { registerInfoCommand } from './commands/info.js';
import { registerDataCommands } from './commands/data.js';
import { registerWeightsCommands } from './commands/weights.js';
import { registerBenchCommands } from './commands/bench.js';
import { registerEvalCommands } from './commands/eval.js';
import { registerReproduceCommands } from './commands/reproduce.js';
import { registerCvCommands } from './commands/cv.js';
import { registerTrainCommands } from './commands/train.js';
import { registerServeCommand } from './commands/serve.js';

export function buildProgram(): Command {
  const program = new Command('osteo')
    .description('knee osteoporosis X-ray classifiers: data, training, evaluation and export on TensorFlow.js')
    .version(osteoVersion)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerInfoCommand(program);
  registerDataCommands(program);
  registerWeightsCommands(program);
  registerBenchCommands(program);
  registerEvalCommands(program);
  registerReproduceCommands(program);
  registerCvCommands(program);
  registerTrainCommands(program);
  registerServeCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode; // commander already printed it
    if (isUserFacing(error)) {
      process.stderr.write(`osteo: ${printableLines(error.message)}\n`);
      return 1;
    }
    // A full disk, a read-only folder or a file where a folder belongs is the machine's state, not a bug.
    const environment = environmentUserError(error);
    if (environment !== undefined) {
      process.stderr.write(`osteo: ${printableLines(environment.message)}\n`);
      return 1;
    }
    process.stderr.write(`osteo: internal error (a bug; please report it with this trace)\n${(error as Error)?.stack ?? String(error)}\n`);
    return 70;
  }
}

/** True when this file is the process entry (directly, or through the node_modules/.bin link). */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
