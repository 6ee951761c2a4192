/**
 * What every subcommand shares: the --backend option and one JSON document on stdout for --json.
 * Commands parse options and call one library function; errors travel up to src/cli.ts.
 */
import { InvalidArgumentError as InvalidOptionValue, Option } from 'commander';
import { backendPreferences } from '../backend/index.js';

export function backendOption(): Option {
  return new Option('--backend <name>', 'compute backend').choices([...backendPreferences]).default(process.env.OSTEO_BACKEND ?? 'auto');
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

/** Parse a number option, naming the option in the error. */
export function finiteNumber(name: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidOptionValue(`${name} must be a number, got '${value}'`);
    return n;
  };
}
