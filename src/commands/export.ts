import { Option, type Command } from 'commander';
import { useBackend, type BackendPreference } from '../backend/index.js';
import { UserError } from '../util/index.js';
import { exportDashboard, exportFormats, exportRun, type ExportFormat } from '../eval/index.js';
import { backendOption, printJson } from './common.js';

interface ExportCommandOptions {
  run?: string;
  format?: ExportFormat;
  out?: string;
  dashboard?: string;
  resnet18?: string;
  resnet50?: string;
  efficientnetB3?: string;
  json?: boolean;
  backend: BackendPreference;
}

export function registerExportCommand(program: Command): void {
  program
    .command('export')
    .description("export a run's best weights (.pth, .safetensors, tfjs), or the three files the dashboard loads")
    .option('--run <dir>', 'training run to export')
    .addOption(new Option('--format <format>', 'output format').choices([...exportFormats]))
    .option('--out <dir>', 'output directory (default: RUN/export/FORMAT)')
    .option('--dashboard <dir>', 'write sydney_best_model.pth, resnet50_best_model.pth, best_osteoporosis_model.pth here')
    .option('--resnet18 <run>', 'with --dashboard: the ResNet18 run')
    .option('--resnet50 <run>', 'with --dashboard: the ResNet50 run')
    .option('--efficientnet-b3 <run>', 'with --dashboard: the EfficientNet-B3 run')
    .addOption(backendOption())
    .option('--json', 'print what was written as one JSON document')
    .action(async (options: ExportCommandOptions) => {
      let result;
      if (options.dashboard !== undefined) {
        if (options.run !== undefined || options.format !== undefined) throw new UserError('--dashboard exports three runs: use --resnet18/--resnet50/--efficientnet-b3, not --run/--format');
        const missing = (['resnet18', 'resnet50', 'efficientnetB3'] as const).filter((k) => options[k] === undefined);
        if (missing.length > 0) {
          throw new UserError(`--dashboard needs ${missing.map((k) => (k === 'efficientnetB3' ? '--efficientnet-b3' : `--${k}`)).join(', ')} RUN`);
        }
        await useBackend(options.backend);
        result = await exportDashboard({ dir: options.dashboard, resnet18: options.resnet18!, resnet50: options.resnet50!, efficientnetB3: options.efficientnetB3! });
      } else {
        if (options.run === undefined || options.format === undefined) {
          throw new UserError('give --run DIR --format pth|safetensors|tfjs, or --dashboard DIR --resnet18 RUN --resnet50 RUN --efficientnet-b3 RUN');
        }
        await useBackend(options.backend);
        result = await exportRun({ run: options.run, format: options.format, outDir: options.out });
      }
      if (options.json) printJson({ dir: result.dir, files: result.files, metadata: result.metadata });
      else {
        const shards = result.files.filter((f) => f.endsWith('.bin'));
        const named = result.files.filter((f) => !f.endsWith('.bin'));
        const listing = shards.length > 0 ? [...named.slice(0, 1), `${shards.length} weight shard${shards.length > 1 ? 's' : ''}`, ...named.slice(1)] : named;
        console.log(`wrote ${listing.join(', ')} to ${result.dir}`);
      }
    });
}
