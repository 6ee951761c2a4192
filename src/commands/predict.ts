import type { Command } from 'commander';
import { useBackend, type BackendPreference } from '../backend/index.js';
import { formatPredictions, predictImages } from '../eval/index.js';
import { modelNames } from '../models/index.js';
import { backendOption, positiveInt, printJson } from './common.js';

interface PredictCommandOptions {
  run?: string[];
  model?: string;
  weights?: string;
  imageSize?: number;
  gradcam?: string;
  tta?: boolean;
  json?: boolean;
  backend: BackendPreference;
}

export function registerPredictCommand(program: Command): void {
  program
    .command('predict')
    .description('diagnose knee X-rays with one model or the soft-vote ensemble of runs (research use only)')
    .argument('<images...>', 'image files (PNG, JPEG, …)')
    .option('--run <dir...>', 'training runs: their best models vote (mean of softmax probabilities)')
    .option('--model <name>', `architecture of --weights: ${modelNames().join(', ')}`)
    .option('--weights <file>', 'a torchvision state dict (.pth or .safetensors) for --model')
    .option('--image-size <n>', 'input crop size (default: the run\'s, or the architecture\'s)', positiveInt('--image-size'))
    .option('--gradcam <dir>', 'write a Grad-CAM heat-map overlay PNG per image and model here')
    .option('--tta', 'average each image with its horizontal mirror')
    .addOption(backendOption())
    .option('--json', 'print {"images":[{path, prediction, confidence, probabilities, models}]}')
    .action(async (images: string[], options: PredictCommandOptions) => {
      await useBackend(options.backend);
      const result = await predictImages({
        images,
        runs: options.run,
        model: options.model,
        weights: options.weights,
        imageSize: options.imageSize,
        gradcamDir: options.gradcam,
        tta: options.tta ?? false,
      });
      if (options.json) printJson(result);
      else console.log(formatPredictions(result));
    });
}
