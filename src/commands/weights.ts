import type { Command } from 'commander';
import { byteProgress, formatBytes } from '../util/index.js';
import { listWeightTags, modelNames } from '../models/index.js';
import { defaultWeightsDir, fetchPretrainedWeights, type FetchWeightsResult } from '../weights/index.js';
import { printJson } from './common.js';

export function registerWeightsCommands(program: Command): void {
  const weights = program.command('weights').description('pretrained ImageNet checkpoints (torchvision)');
  weights
    .command('fetch')
    .description("download torchvision's ImageNet checkpoint for a model (its default weights) or a weight tag, verifying the SHA-256 prefix in its file name")
    .argument('<names...>', `model name(s): ${modelNames().join(', ')}; weight tag(s): ${listWeightTags().map((tag) => tag.name).join(', ')}; or all (every model's default)`)
    .option('--dest <dir>', 'folder for the checkpoints', defaultWeightsDir)
    .option('--url <base>', 'fetch BASE/<file name> instead of the torchvision URL (default: $OSTEO_WEIGHTS_URL)')
    .option('--json', 'print one JSON document')
    .action(async (names: string[], options: { dest: string; url?: string; json?: boolean }) => {
      const wanted = names.includes('all') ? modelNames() : names;
      const results: (FetchWeightsResult & { model: string })[] = [];
      for (const name of wanted) {
        const result = await fetchPretrainedWeights(name, {
          dest: options.dest,
          urlBase: options.url,
          progress: options.json ? undefined : byteProgress(name),
          http: { onRetry: ({ attempt, delayMs, reason }) => process.stderr.write(`retry ${attempt} in ${delayMs} ms: ${reason}\n`) },
          log: (line) => process.stderr.write(`${line}\n`),
        });
        results.push({ model: name, ...result });
        if (!options.json) {
          console.log(
            result.skipped
              ? `${name}: ${result.path} already present (sha256 ${result.sha256.slice(0, 8)}… verified)`
              : `${name}: ${result.path} (${formatBytes(result.bytes)}, sha256 ${result.sha256.slice(0, 8)}… verified)`,
          );
        }
      }
      if (options.json) printJson(results);
    });
}
