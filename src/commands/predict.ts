import { Option, type Command } from 'commander';
import { useBackend, type BackendPreference } from '../backend/index.js';
import { checkpointChoices, formatPredictions, predictImages, type CheckpointChoice } from '../eval/index.js';
import { maxInputPixels, parseDicomWindow, type DicomWindow } from '../data/index.js';
import { evalOptions, predictScreeningOptions, resolvePredictScreening, workersProblem } from '../config/index.js';
import { modelNames } from '../models/index.js';
import { UserError, printable } from '../util/index.js';
import { addTableOptions, backendOption, positiveInt, printJson } from './common.js';

interface PredictCommandOptions {
  run?: string[];
  checkpoint: CheckpointChoice;
  model?: string;
  weights?: string;
  imageSize?: number;
  gradcam?: string;
  tta?: boolean;
  maxPixels: number;
  dicomWindow: DicomWindow;
  workers?: number;
  json?: boolean;
  backend: BackendPreference;
  [attribute: string]: unknown;
}

function dicomWindowOption(text: string): DicomWindow {
  const window = parseDicomWindow(text);
  if (window === undefined) throw new UserError(`--dicom-window: expected auto, file, or a centre and a width ≥ 1 as C,W (e.g. 2048,4096); got "${printable(text)}"`);
  return window;
}

export function registerPredictCommand(program: Command): void {
  const command = program
    .command('predict')
    .description('diagnose knee X-rays with one model or the soft-vote ensemble of runs (research use only)')
    .argument('<images...>', 'image files (PNG, JPEG, …), or folders: the images directly inside them')
    .option('--run <dir...>', 'training runs: their models vote (mean of softmax probabilities)')
    .addOption(new Option('--checkpoint <which>', "each run's checkpoint: best (best validation epoch) or last (a run stopped before its first epoch ended has only last)").choices(checkpointChoices).default('best'))
    .option('--model <name>', `architecture of --weights: ${modelNames().join(', ')}`)
    .option('--weights <file>', 'a torchvision state dict (.pth or .safetensors), or the model.onnx of osteo export --format onnx, for --model')
    .option('--image-size <n>', "input crop size (default: the size the weights were trained at: the run's, or an osteo export's metadata.json beside --weights, else the architecture's)", positiveInt('--image-size'))
    .option('--gradcam <dir>', 'write a Grad-CAM heat-map overlay PNG per image and model here (the whole image; the region the model saw is outlined)')
    .option('--tta', 'average each image with its horizontal mirror')
    .option('--max-pixels <n>', 'refuse images with more pixels than this (a guard against decompression bombs)', positiveInt('--max-pixels'), maxInputPixels)
    .option(
      '--dicom-window <auto|file|C,W>',
      "how DICOM inputs become gray levels: auto (the file's first window or VOI LUT, else the image's min/max), file (the file's, else the whole stored range), or a centre,width (docs/data.md, DICOM)",
      dicomWindowOption,
      'auto' as DicomWindow,
    )
    .addOption(backendOption())
    .option('--workers <n>', evalOptions.workers.help, positiveInt('--workers'))
    .option('--json', 'print {"images":[{path, prediction, confidence, probabilities, models, screening?}], "failed":[{path, error}]}');
  const screeningFlags = addTableOptions(command, predictScreeningOptions);
  command.action(async (images: string[], options: PredictCommandOptions) => {
      const screening = resolvePredictScreening(screeningFlags(options));
      const problem = options.workers === undefined ? undefined : workersProblem(options.workers, options.backend);
      if (problem !== undefined) throw new UserError(`--workers: ${problem}`);
      const backend = await useBackend(options.backend, 'infer');
      const result = await predictImages({
        backend,
        images,
        runs: options.run,
        checkpoint: options.checkpoint,
        model: options.model,
        weights: options.weights,
        imageSize: options.imageSize,
        gradcamDir: options.gradcam,
        tta: options.tta ?? false,
        maxPixels: options.maxPixels,
        dicomWindow: options.dicomWindow,
        workers: options.workers,
        operatingPoint: screening.operatingPoint,
        evalReport: screening.eval,
        onWarning: (message) => process.stderr.write(`osteo: warning: ${printable(message)}\n`),
      });
      if (options.json) printJson(result);
      else console.log(formatPredictions(result));
      // Every readable image was predicted and printed above; the exit status still says some were not.
      if (result.failed.length > 0) {
        const total = result.failed.length + result.images.length;
        throw new UserError(`${result.failed.length} of ${total} inputs could not be predicted: ${result.failed.map((f) => `${printable(f.path)} (${printable(f.error)})`).join('; ')}`);
      }
    });
}
