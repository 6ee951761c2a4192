/**
 * `osteo export`: a run's best weights as a PyTorch `.pth`, a `.safetensors`, or a tfjs LayersModel,
 * and the three files the dashboard loads. Every export validates the weights by loading them
 * strictly into the architecture first and writes `metadata.json` beside them.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { classNames, type EvalTransform } from '../data/index.js';
import { UserError, osteoVersion } from '../util/index.js';
import { getModel, type ModelName } from '../models/index.js';
import { loadRunModel, openRun, runWeightsPath } from '../runs/index.js';
import { buildWithWeights, modelToStateDict, readStateDict, writePth, writeSafetensors } from '../weights/index.js';
import { saveLayersModelToDir } from './tfjs-io.js';

export const exportFormats = ['pth', 'safetensors', 'tfjs'] as const;
export type ExportFormat = (typeof exportFormats)[number];

/** The dashboard's file per architecture and the module it builds to load it (DESIGN.md, "Contracts"). */
export const dashboardFiles: Record<ModelName, { file: string; architecture: string }> = {
  resnet18: { file: 'sydney_best_model.pth', architecture: 'torchvision.models.resnet18(weights=None); fc = nn.Linear(512, 3)' },
  resnet50: { file: 'resnet50_best_model.pth', architecture: 'torchvision.models.resnet50(weights=None); fc = nn.Linear(2048, 3)' },
  efficientnet_b3: {
    file: 'best_osteoporosis_model.pth',
    architecture:
      'torchvision.models.efficientnet_b3(weights=None); classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(1536, 512), nn.ReLU(), nn.Dropout(0.3), nn.Linear(512, 3))',
  },
};

/** The preprocessing the dashboard applies to every model. */
export const dashboardTransform = { resize: 256, crop: 224 } as const;

export interface ExportMetadata {
  osteoVersion: string;
  createdAt: string;
  classes: readonly string[];
  model: ModelName;
  architecture: string;
  numClasses: number;
  imageSize: number;
  preprocessing: {
    steps: string;
    resize: number;
    crop: number;
    interpolation: 'bilinear';
    scale: number;
    mean: readonly number[];
    std: readonly number[];
  };
  input: string;
  output: string;
  /** The training run's record of its best checkpoint (epoch, validation metrics), if it kept one. */
  metrics: unknown;
  source: { run: string; weights: string; sha256: string };
  files: string[];
  notes: string[];
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

async function readBestState(run: string): Promise<unknown> {
  const file = join(dirname(runWeightsPath(run, 'best')), 'state.json');
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch {
    return null;
  }
}

function preprocessingOf(transform: EvalTransform): ExportMetadata['preprocessing'] {
  return {
    steps: `RGB; resize shorter side to ${transform.resize} (bilinear); center crop ${transform.crop}; scale to [0,1]; normalize (x - mean) / std`,
    resize: transform.resize,
    crop: transform.crop,
    interpolation: 'bilinear',
    scale: 1 / 255,
    mean: [...transform.mean],
    std: [...transform.std],
  };
}

interface ValidatedRun {
  run: string;
  model: ModelName;
  imageSize: number;
  numClasses: number;
  transform: EvalTransform;
  weightsFile: string;
  /** Built (portable when asked) and strictly loaded; the caller disposes it. */
  layersModel: import('@tensorflow/tfjs-layers').LayersModel;
}

/**
 * Open a run and load its best weights strictly into its architecture: the weights are proven to
 * fit. `portable` builds the stock-layers variant (tfjs export) and loads the same weights into it.
 */
async function validatedRun(dir: string, options: { portable?: boolean } = {}): Promise<ValidatedRun> {
  if (!options.portable) {
    const run = await loadRunModel(dir, 'best');
    const { info } = run;
    return { run: info.dir, model: info.model, imageSize: info.imageSize, numClasses: info.numClasses, transform: run.transform, weightsFile: runWeightsPath(info.dir, 'best'), layersModel: run.model };
  }
  const info = await openRun(dir);
  const weightsFile = runWeightsPath(info.dir, 'best');
  const entry = getModel(info.model);
  const { model: layersModel } = buildWithWeights(entry, await readStateDict(weightsFile), { numClasses: info.numClasses, imageSize: info.imageSize, portable: true });
  return { run: info.dir, model: entry.name, imageSize: info.imageSize, numClasses: info.numClasses, transform: info.transform, weightsFile, layersModel };
}

async function metadataFor(run: ValidatedRun, files: string[], input: string, notes: string[] = []): Promise<ExportMetadata> {
  const architecture = dashboardFiles[run.model].architecture;
  return {
    osteoVersion,
    createdAt: new Date().toISOString(),
    classes: run.numClasses === classNames.length ? classNames : Array.from({ length: run.numClasses }, (_, i) => `class ${i}`),
    model: run.model,
    architecture: run.numClasses === 3 ? architecture : `${architecture} — but with ${run.numClasses} outputs instead of 3`,
    numClasses: run.numClasses,
    imageSize: run.imageSize,
    preprocessing: preprocessingOf(run.transform),
    input,
    output: `logits [N, ${run.numClasses}] in class order; softmax gives the probabilities`,
    metrics: await readBestState(run.run),
    source: { run: run.run, weights: resolve(run.weightsFile), sha256: await sha256(run.weightsFile) },
    files,
    notes,
  };
}

export interface ExportResult {
  dir: string;
  files: string[];
  metadata: unknown;
}

/** `osteo export --run DIR --format F [--out DIR]`; default out: RUN/export/F. */
export async function exportRun(options: { run: string; format: ExportFormat; outDir?: string }): Promise<ExportResult> {
  if (!exportFormats.includes(options.format)) throw new UserError(`unknown export format '${options.format}': choose one of ${exportFormats.join(', ')}`);
  const outDir = options.outDir ?? join(options.run, 'export', options.format);
  // tfjs exports build from stock layers only, so a web app loads them without osteo's classes.
  const run = await validatedRun(options.run, { portable: options.format === 'tfjs' });
  try {
    await mkdir(outDir, { recursive: true });
    let files: string[];
    let input: string;
    if (options.format === 'tfjs') {
      const saved = await saveLayersModelToDir(run.layersModel, outDir, `osteo ${osteoVersion}`);
      files = saved.files;
      input = `float32 [N, ${run.imageSize}, ${run.imageSize}, 3] (NHWC), preprocessed as below`;
    } else {
      const dict = modelToStateDict(run.layersModel, run.model);
      const file = `${run.model}.${options.format}`;
      if (options.format === 'pth') await writePth(join(outDir, file), dict);
      else await writeSafetensors(join(outDir, file), dict, { format: 'pt', osteo: osteoVersion, model: run.model });
      files = [file];
      input = `float32 [N, 3, ${run.imageSize}, ${run.imageSize}] (NCHW, torchvision), preprocessed as below`;
    }
    const metadata = await metadataFor(run, files, input);
    await writeFile(join(outDir, 'metadata.json'), JSON.stringify(metadata, null, 2) + '\n');
    return { dir: outDir, files: [...files, 'metadata.json'], metadata };
  } finally {
    run.layersModel.dispose();
  }
}

export interface DashboardExportOptions {
  dir: string;
  resnet18: string;
  resnet50: string;
  efficientnetB3: string;
}

/**
 * The three files the dashboard loads, under exactly its names, each validated by a strict load
 * into the dashboard's architecture (3 classes, its heads), plus one metadata.json for all three.
 */
export async function exportDashboard(options: DashboardExportOptions): Promise<ExportResult> {
  const runs: [ModelName, string][] = [
    ['resnet18', options.resnet18],
    ['resnet50', options.resnet50],
    ['efficientnet_b3', options.efficientnetB3],
  ];
  await mkdir(options.dir, { recursive: true });
  const models: Record<string, ExportMetadata> = {};
  const files: string[] = [];
  for (const [expected, dir] of runs) {
    const run = await validatedRun(dir);
    try {
      const flag = `--${expected.replace('_', '-')}`;
      if (run.model !== expected) throw new UserError(`${flag} ${dir} is a ${run.model} run; the dashboard's ${dashboardFiles[expected].file} must be a ${expected}`);
      if (run.numClasses !== 3) throw new UserError(`${flag} ${dir} has ${run.numClasses} classes; the dashboard builds 3-class heads`);
      const file = dashboardFiles[expected].file;
      await writePth(join(options.dir, file), modelToStateDict(run.layersModel, run.model));
      const notes: string[] = [];
      if (run.transform.resize !== dashboardTransform.resize || run.transform.crop !== dashboardTransform.crop) {
        notes.push(
          `trained on resize ${run.transform.resize} / crop ${run.transform.crop}, but the dashboard feeds resize ${dashboardTransform.resize} / crop ${dashboardTransform.crop}: ` +
            'the network accepts any size, its accuracy may differ from the evaluation',
        );
      }
      models[file] = await metadataFor(run, [file], 'float32 [N, 3, H, W] (NCHW), preprocessed as below', notes);
      files.push(file);
    } finally {
      run.layersModel.dispose();
    }
  }
  const metadata = {
    osteoVersion,
    createdAt: new Date().toISOString(),
    classes: classNames,
    loading: 'torch.load(path, map_location=device, weights_only=True); model.load_state_dict(state_dict, strict=True)',
    ensemble: 'mean of the three models\' softmax probabilities; argmax; confidence = that mean probability',
    models,
  };
  await writeFile(join(options.dir, 'metadata.json'), JSON.stringify(metadata, null, 2) + '\n');
  return { dir: options.dir, files: [...files, 'metadata.json'], metadata };
}
