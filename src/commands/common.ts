/**
 * What every subcommand shares: the --backend option, one JSON document on stdout for --json, flags
 * generated from an option table, and Ctrl-C and SIGTERM as a request to stop training cleanly.
 * Commands parse options and call one library function; errors travel up to src/cli.ts.
 */
import { InvalidArgumentError as InvalidOptionValue, Option, type Command } from 'commander';
import { backendPreferences, parseBackendPreference } from '../backend/index.js';
import { optionEntries, type OptionTable } from '../config/index.js';
import { errorMessage } from '../util/index.js';

/**
 * --backend, or the OSTEO_BACKEND variable when the flag is absent (empty counts as unset). The value
 * is checked when the command runs, not when the program is built, so a bad variable never stops --help.
 */
export function backendOption(): Option {
  return new Option('--backend <name>', `compute backend: ${backendPreferences.join(', ')}`)
    .env('OSTEO_BACKEND')
    .default('auto')
    .argParser((value: string) => {
      if (value === '') return 'auto';
      try {
        return parseBackendPreference(value);
      } catch (error) {
        // commander's own message already says which flag or variable held the value
        throw new InvalidOptionValue(errorMessage(error).replace(/^--backend '[^']*' /, ''));
      }
    });
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Parse a positive integer option, naming the option in the error. */
export function positiveInt(name: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidOptionValue(`${name} must be a positive integer, got '${value}'`);
    return n;
  };
}

/** Parse a number ≥ 0 (a tolerance, a count of points), naming the option in the error. */
export function nonNegativeNumber(name: string): (value: string) => number {
  const parse = finiteNumber(name);
  return (value: string) => {
    const n = parse(value);
    if (n < 0) throw new InvalidOptionValue(`${name} must be ≥ 0, got '${value}'`);
    return n;
  };
}

/** Parse a number option, naming the option in the error. */
export function finiteNumber(name: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidOptionValue(`${name} must be a number, got '${value}'`);
    return n;
  };
}

/**
 * Add a flag for every key of `table` that has one (help and default from the table; a required key's
 * flag is mandatory). Commander applies no defaults and no parsing: the table's resolver does both,
 * so a value it never saw keeps the origin 'default' and a bad one is reported naming its flag.
 * Returns the reader of the given flags by config key, for that resolver.
 */
export function addTableOptions(command: Command, table: OptionTable): (options: Readonly<Record<string, unknown>>) => Record<string, unknown> {
  const keyOf = new Map<string, string>();
  for (const [key, spec] of optionEntries(table)) {
    if (spec.flag === undefined) continue;
    const option = new Option(spec.flag, spec.hasDefault ? `${spec.help} (default ${JSON.stringify(spec.default)})` : spec.help);
    if (spec.present && !spec.hasDefault) option.makeOptionMandatory();
    command.addOption(option);
    keyOf.set(option.attributeName(), key);
  }
  return (options) => {
    const flags: Record<string, unknown> = {};
    for (const [attribute, key] of keyOf) if (options[attribute] !== undefined) flags[key] = options[attribute];
    return flags;
  };
}

/** The signals that ask a training command to stop: Ctrl-C, and SIGTERM (`timeout`, Slurm, Kubernetes). */
const stopSignals: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

/**
 * Run `work` with Ctrl-C and SIGTERM wired to one stop request (`train`, `cv` and `reproduce`): the
 * training loop in progress finishes its step, saves `last` and returns, and the command releases
 * its locks and ends with exit status 1. The listeners go after the first signal, so a second one
 * gets Node's default and ends the process at once.
 */
export async function withStopSignals<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const unlisten = () => {
    for (const name of stopSignals) process.removeListener(name, onSignal);
  };
  function onSignal(name: NodeJS.Signals): void {
    unlisten();
    process.stderr.write(`\n${name === 'SIGINT' ? 'Ctrl-C' : name}: finishing the current step and saving \`last\` (send it again to quit at once)\n`);
    controller.abort();
  }
  for (const name of stopSignals) process.on(name, onSignal);
  try {
    return await work(controller.signal);
  } finally {
    unlisten();
  }
}
