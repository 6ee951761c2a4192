/**
 * `osteo predict`: per-image diagnosis from one model (a weights file) or the soft-vote ensemble of
 * several runs, with each model's own probabilities (the dashboard's breakdown) and, optionally, a
 * Grad-CAM overlay per image and model.
 */
import { mkdir, readdir, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import sharp from 'sharp';
import { centerCrop, classNames, decodeRgb, maxInputPixels, normalize, resizeShorter, type RgbImage } from '../data/index.js';
import { DataError, UserError, checkWritableFolder, environmentUserError, errorMessage, writeFileAtomic } from '../util/index.js';
import { getModel } from '../models/index.js';
import { argmaxRows } from '../report/index.js';
import { ensembleProbabilities } from './ensemble.js';
import { gradCam, gradCamOverlayPng, type GradCamResult, type OverlayRegion } from './gradcam.js';
import {
  disambiguateNames,
  disposeModels,
  loadRunForInference,
  loadWeightsFile,
  predictProbabilities,
  transformKey,
  type CheckpointChoice,
  type LoadedModel,
} from './inference.js';

export const researchDisclaimer = 'osteo is a research tool, not a diagnostic device. Every prediction must be reviewed by a clinician.';

/** What a folder argument contributes: its files with these extensions (sharp decodes them), sorted. */
export const imageExtensions = ['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.gif', '.avif'] as const;

export interface PredictOptions {
  /** Image files, or folders standing for the images directly inside them. */
  images: string[];
  /** Ensemble of these runs' models (equal-weight soft vote, as the dashboard). */
  runs?: string[];
  /** Which checkpoint of each run (default best). */
  checkpoint?: CheckpointChoice;
  /** Or one architecture with a weights file (.pth / .safetensors). */
  model?: string;
  weights?: string;
  /** Input size; default: the size the weights were trained at when osteo knows it, else the architecture's. */
  imageSize?: number;
  tta?: boolean;
  /** Write `<image>.<model>.gradcam.png` here for every image and model. */
  gradcamDir?: string;
  /** Refuse images with more pixels than this (default maxInputPixels, the decompression-bomb guard). */
  maxPixels?: number;
  /** Warnings (a size mismatch, a tiny image, a Grad-CAM that could not be drawn). */
  onWarning?: (message: string) => void;
  /** The Grad-CAM computation (tests substitute one that fails). */
  explain?: typeof gradCam;
}

export interface ModelPrediction {
  prediction: string;
  confidence: number;
  probabilities: number[];
}

export interface ImagePrediction extends ModelPrediction {
  path: string;
  /** Per model, by display name. */
  models: Record<string, ModelPrediction>;
  /** Grad-CAM overlay files per model (for the final prediction's class), when asked for. */
  gradcam?: Record<string, string>;
  /** Per model whose Grad-CAM could not be drawn: why (its prediction above still stands). */
  gradcamFailed?: Record<string, string>;
  /** Where, in the overlay's pixels, each model's centre crop lies: the only region it saw. */
  gradcamRegion?: Record<string, OverlayRegion>;
}

export interface FailedImage {
  path: string;
  error: string;
}

export interface PredictResult {
  images: ImagePrediction[];
  /** Inputs that could not be predicted; the others were. */
  failed: FailedImage[];
}

function describe(probabilities: ArrayLike<number>): ModelPrediction {
  const values = Array.from(probabilities, Number);
  const best = argmaxRows(values, values.length)[0]!;
  return { prediction: classNames[best] ?? String(best), confidence: values[best]!, probabilities: values };
}

async function loadModels(options: PredictOptions): Promise<LoadedModel[]> {
  const runs = options.runs ?? [];
  if (runs.length > 0 && (options.model !== undefined || options.weights !== undefined)) {
    throw new UserError('give either --run DIR… or --model NAME --weights FILE, not both');
  }
  if (runs.length === 0) {
    if (options.model === undefined || options.weights === undefined) throw new UserError('give --run DIR (one or more), or --model NAME with --weights FILE');
    if (options.checkpoint !== undefined && options.checkpoint !== 'best') throw new UserError('--checkpoint chooses among a run\'s checkpoints: use it with --run, not --weights');
    return [await loadWeightsFile(options.model, options.weights, options.imageSize, 3, options.onWarning)];
  }
  const models: LoadedModel[] = [];
  try {
    for (const run of runs) models.push(await loadRunForInference(run, { imageSize: options.imageSize, checkpoint: options.checkpoint, onWarning: options.onWarning }));
  } catch (error) {
    disposeModels(models);
    throw error;
  }
  return models;
}

/**
 * The inputs as image files: a folder stands for the image files directly inside it. Entries that
 * cannot be images (missing, not a regular file: a FIFO would block the decoder forever) are
 * returned as failures so the rest still run.
 */
export async function expandInputs(inputs: string[]): Promise<{ files: string[]; failed: FailedImage[] }> {
  const files: string[] = [];
  const failed: FailedImage[] = [];
  for (const input of inputs) {
    let info;
    try {
      info = await stat(input);
    } catch (error) {
      failed.push({ path: input, error: (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or folder' : `cannot read it: ${errorMessage(error)}` });
      continue;
    }
    if (info.isDirectory()) {
      const names = (await readdir(input, { withFileTypes: true }))
        .filter((entry) => entry.isFile() && (imageExtensions as readonly string[]).includes(extname(entry.name).toLowerCase()))
        .map((entry) => entry.name)
        .sort();
      if (names.length === 0) failed.push({ path: input, error: `a folder with no image files (${imageExtensions.join(', ')}) directly inside it` });
      files.push(...names.map((name) => join(input, name)));
    } else if (info.isFile()) {
      files.push(input);
    } else {
      failed.push({ path: input, error: 'not a regular file (a FIFO, socket or device cannot be read as an image)' });
    }
  }
  return { files, failed };
}

/** Decode an input, with the pixel limit explained in terms of the flag that raises it. */
async function decodeInput(path: string, maxPixels: number): Promise<RgbImage> {
  try {
    return await decodeRgb(path, { maxPixels });
  } catch (error) {
    if (!(error instanceof DataError) || !/pixel limit/i.test(error.reason)) throw error;
    const meta = await sharp(path).metadata().catch(() => undefined);
    const size = meta?.width && meta.height ? `${meta.width}×${meta.height} = ${(meta.width * meta.height).toLocaleString('en-US')} pixels` : 'more pixels than allowed';
    throw new DataError(path, `${size}, above the limit of ${maxPixels.toLocaleString('en-US')} (a guard against decompression bombs): if the image is genuine, raise it with --max-pixels N`);
  }
}

/** A file-system condition of the --gradcam folder is the user's to fix, and the same for every image. */
function unwritableGradcamDir(dir: string, error: unknown): unknown {
  const environment = environmentUserError(error);
  return environment === undefined ? error : new UserError(`cannot write Grad-CAM overlays into --gradcam ${dir}: ${environment.message}`);
}

/** Unique, readable Grad-CAM file stems even when two inputs share a file name. */
function gradcamStems(images: string[]): string[] {
  const stems = images.map((p) => basename(p, extname(p)));
  const counts = new Map<string, number>();
  for (const s of stems) counts.set(s, (counts.get(s) ?? 0) + 1);
  return stems.map((s, i) => (counts.get(s)! > 1 ? `${i + 1}-${s}` : s));
}

/** One image through every model (and Grad-CAM); errors about the image propagate to the caller. */
async function predictOne(path: string, stem: string, models: LoadedModel[], options: PredictOptions): Promise<ImagePrediction> {
  const warn = options.onWarning ?? (() => undefined);
  const decoded = await decodeInput(path, options.maxPixels ?? maxInputPixels);
  const largestCrop = Math.max(...models.map((m) => m.transform.crop));
  if (Math.min(decoded.width, decoded.height) * 2 < largestCrop) {
    warn(`${path} is only ${decoded.width}×${decoded.height} px, enlarged more than 2× to the model's ${largestCrop} px input: its prediction rests on little detail`);
  }
  // One resize + crop per distinct preprocessing, shared by the models that use it.
  const inputs = new Map<string, Float32Array>();
  for (const m of models) {
    const key = transformKey(m.transform);
    if (!inputs.has(key)) inputs.set(key, normalize(centerCrop(await resizeShorter(decoded, m.transform.resize), m.transform.crop), m.transform));
  }
  const perModel = models.map((m) => predictProbabilities(m, inputs.get(transformKey(m.transform))!, 1, { tta: options.tta }));
  const combined = describe(ensembleProbabilities(perModel));
  const result: ImagePrediction = { path, ...combined, models: Object.fromEntries(models.map((m, i) => [m.name, describe(perModel[i]!)])) };
  if (options.gradcamDir === undefined) return result;
  const classIndex = argmaxRows(combined.probabilities, combined.probabilities.length)[0]!;
  const explain = options.explain ?? gradCam;
  result.gradcam = {};
  result.gradcamRegion = {};
  for (const m of models) {
    // A map that cannot be drawn costs that overlay only: the predictions above stand.
    try {
      const cam: GradCamResult = explain(m.model, getModel(m.modelName).gradCamLayer, inputs.get(transformKey(m.transform))!, m.transform.crop, classIndex);
      const overlay = await gradCamOverlayPng(decoded, m.transform, cam);
      const file = join(options.gradcamDir, `${stem}.${m.name.replace(/[^A-Za-z0-9_.-]+/g, '_')}.gradcam.png`);
      await writeFileAtomic(file, overlay.png);
      result.gradcam[m.name] = file;
      result.gradcamRegion[m.name] = overlay.region;
    } catch (error) {
      if (environmentUserError(error) !== undefined) throw unwritableGradcamDir(options.gradcamDir, error);
      result.gradcamFailed ??= {};
      result.gradcamFailed[m.name] = errorMessage(error);
      warn(`Grad-CAM of ${m.name} for ${path} could not be drawn: ${errorMessage(error)}`);
    }
  }
  return result;
}

/**
 * Predict every input; an input that cannot be read or decoded is reported in `failed` and the
 * others go on. Model problems (missing run, non-finite outputs) stop everything: they would fail
 * every image alike.
 */
export async function predictImages(options: PredictOptions): Promise<PredictResult> {
  if (options.images.length === 0) throw new UserError('give at least one IMAGE to predict');
  const models = await loadModels(options);
  try {
    disambiguateNames(models);
    const numClasses = models[0]!.numClasses;
    if (models.some((m) => m.numClasses !== numClasses)) throw new UserError('the models disagree on the number of classes; they cannot be ensembled');
    const { files, failed } = await expandInputs(options.images);
    if (options.gradcamDir !== undefined && files.length > 0) {
      const dir = options.gradcamDir;
      // An overlay of a large film is a few MB of PNG: refuse a full disk before the first prediction.
      await checkWritableFolder(dir, files.length * models.length * 4 * 2 ** 20);
      await mkdir(dir, { recursive: true }).catch((error: unknown) => {
        throw unwritableGradcamDir(dir, error);
      });
    }
    const stems = gradcamStems(files);
    const results: ImagePrediction[] = [];
    for (const [index, path] of files.entries()) {
      try {
        results.push(await predictOne(path, stems[index]!, models, options));
      } catch (error) {
        // A DataError names an input file that cannot be used; anything else is about the models.
        if (!(error instanceof DataError) || error.file !== path) throw error;
        failed.push({ path, error: error.reason });
      }
    }
    return { images: results, failed };
  } finally {
    disposeModels(models);
  }
}

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

/** Human output: the diagnosis per image, each model's breakdown, and the research-use disclaimer. */
export function formatPredictions(result: PredictResult): string {
  const lines: string[] = [];
  for (const image of result.images) {
    const names = Object.keys(image.models);
    const ensemble = names.length > 1 ? ` — soft vote of ${names.length} models` : '';
    lines.push(`${image.path}: ${image.prediction} (confidence ${pct(image.confidence)}${ensemble})`);
    const width = Math.max(...names.map((n) => n.length), 5);
    for (const name of names) {
      const m = image.models[name]!;
      const breakdown = m.probabilities.map((p, c) => `${classNames[c] ?? c} ${pct(p)}`).join(', ');
      lines.push(`  ${name.padEnd(width)}  ${m.prediction.padEnd(12)} ${pct(m.confidence).padStart(6)}   [${breakdown}]`);
    }
    for (const [name, file] of Object.entries(image.gradcam ?? {})) {
      const r = image.gradcamRegion?.[name];
      const seen = r === undefined ? '' : ` (outlined: the ${r.width}×${r.height} region at ${r.left},${r.top} that the model saw)`;
      lines.push(`  Grad-CAM ${name}: ${file}${seen}`);
    }
    for (const [name, why] of Object.entries(image.gradcamFailed ?? {})) lines.push(`  Grad-CAM ${name}: not drawn (${why})`);
  }
  for (const failure of result.failed) lines.push(`${failure.path}: not predicted — ${failure.error}`);
  lines.push('', researchDisclaimer);
  return lines.join('\n');
}
