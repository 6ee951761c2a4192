/**
 * `osteo bench train|infer|data`: throughput of the training engine (synthetic batches, warm-up
 * excluded, median step) and of the data loader. bench/compare.ts runs the same engine workload
 * beside PyTorch and prints the ratio.
 */
import { Argument, type Command } from 'commander';
import { useBackend, type BackendPreference } from '../backend/index.js';
import { loadAugmentConfig } from '../config/index.js';
import { benchData } from '../data/index.js';
import { modelNames } from '../models/index.js';
import { runBench, type BenchResult } from '../engine/index.js';
import { backendOption, positiveInt, printJson } from './common.js';

interface BenchCliOptions {
  model: string;
  imageSize?: number;
  batchSize: number;
  steps: number;
  warmup: number;
  backend: BackendPreference;
  workers?: number;
  microBatch?: number;
  data?: string;
  augment: string;
  json?: boolean;
}

export function formatBench(result: BenchResult): string {
  const lines = [
    `${result.mode} ${result.model} ${result.imageSize}² batch ${result.batchSize} (micro-batch ${result.microBatch}) on ${result.backend}, ${result.workers} worker${result.workers === 1 ? '' : 's'}`,
    `  median step ${result.medianStepMs.toFixed(0)} ms over ${result.stepsTimed} timed step${result.stepsTimed === 1 ? '' : 's'}: ${result.imagesPerSec.toFixed(2)} images/s`,
    `  tensors per thread after the first timed step ${result.tensorsBefore.join('/')}, after the last ${result.tensorsAfter.join('/')}`,
  ];
  return lines.join('\n');
}

export function registerBenchCommands(program: Command): void {
  program
    .command('bench')
    .description('throughput: a training step or inference on synthetic images, or the data loader')
    .addArgument(new Argument('<what>', 'what to time').choices(['train', 'infer', 'data']))
    .option('--model <name>', modelNames().join(' | '), modelNames()[0])
    .option('--image-size <n>', "input size (default: the model's)", positiveInt('--image-size'))
    .option('--batch-size <n>', 'images per step (the logical batch)', positiveInt('--batch-size'), 8)
    .option('--steps <n>', 'timed steps', positiveInt('--steps'), 5)
    .option('--warmup <n>', 'untimed steps first', (v) => (v === '0' ? 0 : positiveInt('--warmup')(v)), 1)
    .addOption(backendOption())
    .option('--workers <n>', 'worker threads (default: one per core on wasm)', positiveInt('--workers'))
    .option('--micro-batch <n>', 'images per forward/backward pass (default: the whole shard, capped to fit the wasm heap)', positiveInt('--micro-batch'))
    .option('--data <dir>', 'bench data: a dataset folder (default: a generated phantom)')
    .option('--augment <preset>', 'bench data: augmentation preset or file', 'seed')
    .option('--json', 'print one JSON object')
    .action(async (what: 'train' | 'infer' | 'data', options: BenchCliOptions) => {
      if (what === 'data') {
        const result = await benchData({
          dataDir: options.data,
          imageSize: options.imageSize,
          batchSize: options.batchSize,
          augment: { name: options.augment, config: await loadAugmentConfig(options.augment) },
          log: options.json ? undefined : (line) => console.error(line),
        });
        if (options.json) printJson(result);
        else console.log(`data loader: ${result.imagesPerSec.cold.toFixed(1)} images/s cold, ${result.imagesPerSec.disk.toFixed(1)} from the disk cache, ${result.imagesPerSec.memory.toFixed(1)} from memory`);
        return;
      }
      const result = await runBench({
        mode: what,
        model: options.model,
        imageSize: options.imageSize,
        batchSize: options.batchSize,
        steps: options.steps,
        warmup: options.warmup,
        backend: await useBackend(options.backend, what),
        workers: options.workers,
        microBatch: options.microBatch,
        onStep: options.json
          ? undefined
          : (index, ms, warmup, timing) =>
              console.error(
                `  step ${index + 1}: ${ms.toFixed(0)} ms${timing ? ` (forward/backward ${timing.gradientsMs.toFixed(0)}, gradient sum + optimizer ${timing.updateMs.toFixed(0)})` : ''}${warmup ? ' (warm-up)' : ''}`,
              ),
      });
      if (options.json) {
        printJson({
          model: result.model,
          backend: result.backend,
          workers: result.workers,
          imageSize: result.imageSize,
          batchSize: result.batchSize,
          stepsTimed: result.stepsTimed,
          medianStepMs: result.medianStepMs,
          imagesPerSec: result.imagesPerSec,
          mode: result.mode,
          microBatch: result.microBatch,
          stepMs: result.stepMs,
          tensorsBefore: result.tensorsBefore,
          tensorsAfter: result.tensorsAfter,
        });
      } else console.log(formatBench(result));
    });
}
