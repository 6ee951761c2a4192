import { Option, type Command } from 'commander';
import { useBackend, type BackendPreference } from '../backend/index.js';
import { printable, UserError } from '../util/index.js';
import { listModels } from '../models/index.js';
import { checkpointChoices, dashboardFileOf, dashboardModels, dashboardRunFlag, exportDashboard, exportFormats, exportRun, exportWeb, type CheckpointChoice, type ExportFormat } from '../eval/index.js';
import { backendOption, printJson } from './common.js';

/** Every export builds the run's tfjs model (its weights, its graph): it computes on a tfjs backend, as training does. */
const exportBackend = (preference: BackendPreference) => useBackend(preference, 'train');

/** The single-run formats plus `web`, the browser viewer of one run or an ensemble. */
const commandFormats = [...exportFormats, 'web'] as const;

interface ExportCommandOptions {
  run: string[];
  format?: ExportFormat | 'web';
  out?: string;
  dashboard?: string;
  checkpoint: CheckpointChoice;
  json?: boolean;
  backend: BackendPreference;
  /** The per-model run flags (`--resnet18 RUN`), by commander's attribute name. */
  [runFlag: string]: unknown;
}

/**
 * One `--<model> RUN` flag per registered model. Models without a dashboard file get a hidden flag,
 * so that naming one is answered by exportDashboard's "has no dashboard file" rather than by
 * commander's "unknown option".
 */
function runFlags(): { option: Option; model: string }[] {
  return listModels().map((entry) => {
    const dashboard = dashboardFileOf(entry.name);
    const help = dashboard ? `with --dashboard: the ${entry.name} run (→ ${dashboard.file})` : `${entry.name} has no dashboard file`;
    const option = new Option(`${dashboardRunFlag(entry.name)} <run>`, help);
    return { option: dashboard ? option : option.hideHelp(), model: entry.name };
  });
}

export function registerExportCommand(program: Command): void {
  const flags = runFlags();
  const dashboardFlags = dashboardModels().map((entry) => dashboardRunFlag(entry.name));
  const command = program
    .command('export')
    .description("export a run's best weights (.pth, .safetensors, tfjs, onnx), a browser viewer of one or more runs (web), or the files the dashboard loads")
    .option('--run <dir>', 'training run to export (repeat with --format web for an ensemble)', (dir: string, previous: string[]) => [...previous, dir], [] as string[])
    .addOption(new Option('--format <format>', 'output format').choices([...commandFormats]))
    .option('--out <dir>', 'output directory (default: RUN/export/FORMAT; required for web)')
    .addOption(new Option('--checkpoint <which>', "each run's checkpoint: best (best validation epoch) or last (a run stopped before its first epoch ended has only last)").choices([...checkpointChoices]).default('best'))
    .option('--dashboard <dir>', `write ${dashboardModels().map((entry) => entry.dashboard.file).join(', ')} here`);
  for (const { option } of flags) command.addOption(option);
  command
    .addOption(backendOption())
    .option('--json', 'print what was written as one JSON document')
    .action(async (options: ExportCommandOptions) => {
      const runs = Object.fromEntries(flags.map(({ option, model }) => [model, options[option.attributeName()] as string | undefined]));
      let result;
      if (options.dashboard !== undefined) {
        if (options.run.length > 0 || options.format !== undefined) {
          throw new UserError(`--dashboard exports one run per dashboard model: use ${dashboardFlags.join('/')}, not --run/--format`);
        }
        result = await exportDashboard({ backend: await exportBackend(options.backend), dir: options.dashboard, runs, checkpoint: options.checkpoint });
      } else {
        if (options.run.length === 0 || options.format === undefined) {
          throw new UserError(`give --run DIR --format ${commandFormats.join('|')}, or --dashboard DIR ${dashboardFlags.map((flag) => `${flag} RUN`).join(' ')}`);
        }
        if (options.format === 'web') {
          if (options.out === undefined) throw new UserError('--format web needs --out DIR: the folder of the static site');
          result = await exportWeb({ backend: await exportBackend(options.backend), runs: options.run, outDir: options.out, checkpoint: options.checkpoint });
        } else {
          if (options.run.length > 1) throw new UserError(`--format ${options.format} exports one run; several --run go with --format web`);
          result = await exportRun({ backend: await exportBackend(options.backend), run: options.run[0]!, format: options.format, outDir: options.out, checkpoint: options.checkpoint });
        }
      }
      for (const warning of result.warnings) process.stderr.write(`osteo: warning: ${printable(warning)}\n`);
      if (options.json) printJson({ dir: result.dir, files: result.files, metadata: result.metadata });
      else if (options.format === 'web') {
        console.log(`wrote the browser viewer of ${options.run.length} model${options.run.length > 1 ? 's' : ''} to ${printable(result.dir)}: open it with osteo serve ${printable(result.dir)}`);
      } else {
        const shards = result.files.filter((f) => f.endsWith('.bin'));
        const named = result.files.filter((f) => !f.endsWith('.bin'));
        const listing = shards.length > 0 ? [...named.slice(0, 1), `${shards.length} weight shard${shards.length > 1 ? 's' : ''}`, ...named.slice(1)] : named;
        console.log(`wrote ${listing.map(printable).join(', ')} to ${printable(result.dir)}`);
      }
    });
}
