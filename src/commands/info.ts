import type { Command } from 'commander';
import { environmentInfo, formatEnvironmentInfo, type BackendPreference } from '../backend/index.js';
import { backendOption, printJson } from './common.js';

export function registerInfoCommand(program: Command): void {
  program
    .command('info')
    .description('versions, the compute backend chosen and why, and every backend candidate')
    .addOption(backendOption())
    .option('--json', 'print one JSON object')
    .action(async (options: { backend: BackendPreference; json?: boolean }, command: Command) => {
      // commander knows whether --backend or OSTEO_BACKEND supplied the value: the reason names that one.
      const info = await environmentInfo(options.backend, command.getOptionValueSource('backend') === 'env' ? 'environment' : 'flag');
      if (options.json) printJson(info);
      else console.log(formatEnvironmentInfo(info));
    });
}
