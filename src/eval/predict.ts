/**
 * `osteo predict`: per-image diagnosis from one model (a weights file) or the soft-vote ensemble of
 * several runs, with each model's own probabilities (the dashboard's breakdown) and, optionally, a
 * Grad-CAM overlay per image and model.
 */
import { mkdir, readdir, realpath, stat } from 'node:fs/promises';
import { basename, extname, join, sep } from 'node:path';
import { UnreadableImageError, applyEvalTransform, classNames, decodeRgb, imageExtensions, isImageFile, maxInputPixels, type DicomWindow, type RgbImage } from '../data/index.js';
import { DataError, UserError, checkWritableFolder, environmentUserError, errorMessage, printable, writeFileAtomic } from '../util/index.js';
import { evalOptions, imageSizeRange } from '../config/index.js';
import { getModel } from '../models/index.js';
import { argmaxRows } from '../report/index.js';
import { inferenceWorkers } from '../engine/index.js';
import type { BackendHandle } from '../backend/index.js';
import type { RunCalibrationRecord } from '../runs/index.js';
import { calibrateMembers, freshCalibrations } from './calibrated.js';
import { ensembleProbabilities } from './ensemble.js';
import { formatDecisions, screeningDecisions, screeningPlan, type ScreeningPlan, type ViewDecisions } from './predict-screening.js';
import { gradCam, gradCamOverlayPng, type GradCamResult, type OverlayRegion } from './gradcam.js';
import {
  disambiguateNames,
  disposeModels,
  loadAll,
  loadRunForInference,
  loadWeightsFile,
  predictProbabilities,
  transformKey,
  type CheckpointChoice,
  type LoadedModel,
} from './inference.js';

export const researchDisclaimer = 'osteo is a research tool, not a diagnostic device. Every prediction must be reviewed by a clinician.';


export interface PredictOptions {
  /** The backend the command chose: every model's inference engine computes on it. */
  backend: BackendHandle;
  /** Image files, or folders standing for the images directly inside them. */
  images: string[];
  /** Ensemble of these runs' models (equal-weight soft vote, as the dashboard). */
  runs?: string[];
  /** Which checkpoint of each run (default best). */
  checkpoint?: CheckpointChoice;
  /** Or one architecture with a weights file (.pth / .safetensors, or an osteo model.onnx: its initializers, checked against osteo's graph). */
  model?: string;
  weights?: string;
  /** Input size; default: the size the weights were trained at when osteo knows it, else the architecture's. */
  imageSize?: number;
  tta?: boolean;
  /** Write `<image>.<model>.gradcam.png` here for every image and model. */
  gradcamDir?: string;
  /** Refuse images with more pixels than this (default maxInputPixels, the decompression-bomb guard). */
  maxPixels?: number;
  /** How DICOM inputs are windowed (default `auto`: the file's window, else min/max). */
  dicomWindow?: DicomWindow;
  /** Worker threads per model (default: inferenceWorkers' — one per core on wasm when there are images enough). */
  workers?: number;
  /** Warnings (a size mismatch, a tiny image, a Grad-CAM that could not be drawn). */
  onWarning?: (message: string) => void;
  /** Told the loaded models, before any image is read (tests check where they run: `engine.workers`). */
  onModelsLoaded?: (models: readonly LoadedModel[]) => void;
  /** The Grad-CAM computation (tests substitute one that fails). */
  explain?: typeof gradCam;
  /** Print each image's screening decision at this operating point (`sens90`, `spec90`, `youden`): the runs' calibration.json thresholds. */
  operatingPoint?: string;
  /** An osteo eval report folder of these runs: the ensemble's decision uses its thresholds (with --operating-point). */
  evalReport?: string;
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
  /** With --operating-point: each binary view's decision per model (and the ensemble's, with --eval). */
  screening?: ViewDecisions[];
}

export interface FailedImage {
  path: string;
  error: string;
}

export interface PredictResult {
  images: ImagePrediction[];
  /** Inputs that could not be predicted; the others were. */
  failed: FailedImage[];
  /**
   * Each run's temperature (RUN/calibration.json) by model name, when every run has a fresh one: the
   * probabilities are then calibrated, and the soft vote is of the calibrated members (the ensemble's
   * own temperature is fitted by `osteo eval` on val, which predict does not read).
   */
  calibration?: Record<string, number>;
  /** With --operating-point: its name, and the eval report the ensemble's thresholds came from (when there is an ensemble and one was given). */
  operatingPoint?: { name: string; ensemble: boolean; ensembleFrom?: string };
}

function describe(probabilities: ArrayLike<number>): ModelPrediction {
  const values = Array.from(probabilities, Number);
  const best = argmaxRows(values, values.length)[0]!;
  return { prediction: classNames[best] ?? String(best), confidence: values[best]!, probabilities: values };
}

async function loadModels(options: PredictOptions, workers: number): Promise<LoadedModel[]> {
  const runs = options.runs ?? [];
  if (runs.length > 0 && (options.model !== undefined || options.weights !== undefined)) {
    throw new UserError('give either --run DIR… or --model NAME --weights FILE, not both');
  }
  if (runs.length === 0) {
    if (options.model === undefined || options.weights === undefined) throw new UserError('give --run DIR (one or more), or --model NAME with --weights FILE');
    if (options.checkpoint !== undefined && options.checkpoint !== 'best') throw new UserError('--checkpoint chooses among a run\'s checkpoints: use it with --run, not --weights');
    return [await loadWeightsFile(options.model, options.weights, { backend: options.backend, imageSize: options.imageSize, onWarning: options.onWarning, workers })];
  }
  return loadAll(runs.map((run) => () => loadRunForInference(run, { backend: options.backend, imageSize: options.imageSize, checkpoint: options.checkpoint, onWarning: options.onWarning, workers })));
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
      const folder = await folderImages(input);
      if (folder.files.length === 0 && folder.failed.length === 0) failed.push({ path: input, error: `a folder with no image files directly inside it (named ${imageExtensions.join(', ')}, or with content of one of those formats)` });
      files.push(...folder.files);
      failed.push(...folder.failed);
    } else if (info.isFile()) {
      files.push(input);
    } else {
      failed.push({ path: input, error: 'not a regular file (a FIFO, socket or device cannot be read as an image)' });
    }
  }
  return { files, failed };
}

/**
 * The image files directly inside a folder, sorted by name. A symbolic link counts when it leads to
 * a regular file inside the folder; one that dangles, leads out of the folder or to something else
 * is reported with why, as is an entry named like an image that is no regular file (a FIFO).
 */
async function folderImages(folder: string): Promise<{ files: string[]; failed: FailedImage[] }> {
  const files: string[] = [];
  const failed: FailedImage[] = [];
  const entries = (await readdir(folder, { withFileTypes: true }))
    .filter((entry) => !entry.isDirectory())
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const realFolder = await realpath(folder);
  for (const entry of entries) {
    const path = join(folder, entry.name);
    // A regular file by the image readers' rule (a reader's extension, or content a reader
    // recognises); anything else only when it is named like an image.
    if (entry.isFile()) {
      if (await isImageFile(path)) files.push(path);
      continue;
    }
    if (!(imageExtensions as readonly string[]).includes(extname(entry.name).toLowerCase())) continue;
    if (!entry.isSymbolicLink()) {
      failed.push({ path, error: 'not a regular file (a FIFO, socket or device cannot be read as an image)' });
      continue;
    }
    let target: string;
    try {
      target = await realpath(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      failed.push({ path, error: code === 'ENOENT' || code === 'ELOOP' ? 'a symbolic link that leads nowhere (its target is missing, or a loop)' : `a symbolic link that cannot be followed: ${errorMessage(error)}` });
      continue;
    }
    if (!target.startsWith(realFolder + sep)) {
      failed.push({ path, error: `a symbolic link to ${target}, outside the folder: name that file itself to predict it` });
      continue;
    }
    const info = await stat(target).catch(() => undefined);
    if (info?.isFile()) files.push(path);
    else failed.push({ path, error: 'a symbolic link to something that is not a regular file' });
  }
  return { files, failed };
}

/** Decode an input, with the pixel limit explained in terms of the flag that raises it. */
async function decodeInput(path: string, maxPixels: number, dicomWindow: DicomWindow): Promise<RgbImage> {
  try {
    return await decodeRgb(path, { maxPixels, dicomWindow });
  } catch (error) {
    if (!(error instanceof UnreadableImageError) || error.kind !== 'too-large') throw error;
    throw new DataError(path, `${error.reason}: if the image is genuine, raise it with --max-pixels N`);
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

/** An input decoded, and preprocessed once per distinct transform (shared by the models that use it). */
interface PreparedInput {
  path: string;
  stem: string;
  decoded: RgbImage;
  inputs: Map<string, Float32Array>;
}

/** Decode and preprocess one input; errors about the image propagate to the caller. */
async function prepareInput(path: string, stem: string, models: LoadedModel[], options: PredictOptions): Promise<PreparedInput> {
  const decoded = await decodeInput(path, options.maxPixels ?? maxInputPixels, options.dicomWindow ?? 'auto');
  const largestCrop = Math.max(...models.map((m) => m.transform.crop));
  if (Math.min(decoded.width, decoded.height) * 2 < largestCrop) {
    options.onWarning?.(`${path} is only ${decoded.width}×${decoded.height} px, enlarged more than 2× to the model's ${largestCrop} px input: its prediction rests on little detail`);
  }
  const inputs = new Map<string, Float32Array>();
  for (const m of models) {
    const key = transformKey(m.transform);
    if (!inputs.has(key)) inputs.set(key, await applyEvalTransform(decoded, m.transform));
  }
  return { path, stem, decoded, inputs };
}

/**
 * A batch of inputs made ready: a DataError naming an input makes that input a failure and the
 * others go on; anything else is about the models and propagates.
 */
async function prepareBatch(paths: string[], stems: string[], models: LoadedModel[], options: PredictOptions): Promise<{ prepared: PreparedInput[]; failed: FailedImage[] }> {
  const prepared: PreparedInput[] = [];
  const failed: FailedImage[] = [];
  for (const [i, path] of paths.entries()) {
    try {
      prepared.push(await prepareInput(path, stems[i]!, models, options));
    } catch (error) {
      if (!(error instanceof DataError) || error.file !== path) throw error;
      failed.push({ path, error: error.reason });
    }
  }
  return { prepared, failed };
}

/** The prepared inputs through every model at once, in order; per model, count×classes probabilities. */
async function predictBatch(prepared: PreparedInput[], models: LoadedModel[], options: PredictOptions, calibrations: RunCalibrationRecord[] | null): Promise<Float32Array[]> {
  const raw = await Promise.all(
    models.map((m) => {
      const key = transformKey(m.transform);
      const pixels = m.transform.crop * m.transform.crop * 3;
      const images = new Float32Array(prepared.length * pixels);
      prepared.forEach((input, i) => images.set(input.inputs.get(key)!, i * pixels));
      return predictProbabilities(m, images, prepared.length, { tta: options.tta });
    }),
  );
  return calibrations === null ? raw : calibrateMembers(raw, models, calibrations);
}

/**
 * A promise awaited later than it may settle: should the work before it fail first, its own failure
 * is moot and must not surface as an unhandled rejection. Awaiting it still gives its outcome.
 */
function settledLater<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/** One image's verdict from its models' probabilities, and its Grad-CAM overlays when asked. */
async function describeInput(input: PreparedInput, perModel: Float32Array[], models: LoadedModel[], options: PredictOptions, plan: ScreeningPlan | undefined): Promise<ImagePrediction> {
  const warn = options.onWarning ?? (() => undefined);
  const { path, decoded } = input;
  const combined = describe(ensembleProbabilities(perModel));
  const result: ImagePrediction = { path, ...combined, models: Object.fromEntries(models.map((m, i) => [m.name, describe(perModel[i]!)])) };
  if (plan !== undefined) result.screening = screeningDecisions(plan, models.map((m) => m.name), perModel);
  if (options.gradcamDir === undefined) return result;
  const classIndex = argmaxRows(combined.probabilities, combined.probabilities.length)[0]!;
  const explain = options.explain ?? gradCam;
  result.gradcam = {};
  result.gradcamRegion = {};
  for (const m of models) {
    // A map that cannot be drawn costs that overlay only: the predictions above stand.
    try {
      const cam: GradCamResult = await explain(m.engine, getModel(m.modelName).gradCamLayer, input.inputs.get(transformKey(m.transform))!, classIndex);
      const overlay = await gradCamOverlayPng(decoded, m.transform, cam);
      const file = join(options.gradcamDir, `${input.stem}.${m.name.replace(/[^A-Za-z0-9_.-]+/g, '_')}.gradcam.png`);
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
 * Predict every input, in order, a batch at a time (the batch is what worker threads share). An
 * input that cannot be read or decoded is reported in `failed` and the others go on. Model problems
 * (missing run, non-finite outputs) stop everything: they would fail every image alike.
 */
export async function predictImages(options: PredictOptions): Promise<PredictResult> {
  if (options.images.length === 0) throw new UserError('give at least one IMAGE to predict');
  const { min, max } = imageSizeRange;
  // Train's bounds: a larger input runs the backend out of memory (a crash, not an error message).
  if (options.imageSize !== undefined && !(Number.isInteger(options.imageSize) && options.imageSize >= min && options.imageSize <= max)) {
    throw new UserError(`--image-size ${options.imageSize} is not an integer from ${min} to ${max} px (the sizes train accepts)`);
  }
  const { files, failed } = await expandInputs(options.images);
  const models = await loadModels(options, inferenceWorkers(options.workers, files.length, options.backend.capabilities));
  try {
    disambiguateNames(models);
    options.onModelsLoaded?.(models);
    const numClasses = models[0]!.numClasses;
    if (models.some((m) => m.numClasses !== numClasses)) throw new UserError('the models disagree on the number of classes; they cannot be ensembled');
    const calibrations = await freshCalibrations(models, options.checkpoint ?? 'best', options.onWarning ?? (() => undefined));
    if (options.evalReport !== undefined && options.operatingPoint === undefined) throw new UserError('--eval gives the ensemble its screening thresholds: use it with --operating-point');
    const plan = options.operatingPoint === undefined ? undefined : await screeningPlan(models, calibrations, { operatingPoint: options.operatingPoint, evalReport: options.evalReport, checkpoint: options.checkpoint ?? 'best' });
    if (options.gradcamDir !== undefined && files.length > 0) {
      const dir = options.gradcamDir;
      // An overlay of a large film is a few MB of PNG: refuse a full disk before the first prediction.
      await checkWritableFolder(dir, files.length * models.length * 4 * 2 ** 20);
      await mkdir(dir, { recursive: true }).catch((error: unknown) => {
        throw unwritableGradcamDir(dir, error);
      });
    }
    const stems = gradcamStems(files);
    const batchSize = evalOptions.batchSize.default;
    const read = (start: number) => prepareBatch(files.slice(start, start + batchSize), stems.slice(start, start + batchSize), models, options);
    const results: ImagePrediction[] = [];
    const describeAll = async (batch: { prepared: PreparedInput[]; probabilities: Promise<Float32Array[]> }) => {
      const probabilities = await batch.probabilities;
      for (const [i, input] of batch.prepared.entries()) {
        results.push(await describeInput(input, probabilities.map((p) => p.subarray(i * numClasses, (i + 1) * numClasses)), models, options, plan));
      }
    };
    // While the models (or their worker threads) predict one batch, the one before it is described
    // (Grad-CAM runs here, in this thread) and the one after it is read.
    let next = files.length > 0 ? read(0) : undefined;
    let previous: { prepared: PreparedInput[]; probabilities: Promise<Float32Array[]> } | undefined;
    for (let start = 0; start < files.length; start += batchSize) {
      const { prepared, failed: unreadable } = await next!;
      next = start + batchSize < files.length ? settledLater(read(start + batchSize)) : undefined;
      failed.push(...unreadable);
      const current = prepared.length > 0 ? { prepared, probabilities: settledLater(predictBatch(prepared, models, options, calibrations)) } : undefined;
      if (previous) await describeAll(previous);
      previous = current;
    }
    if (previous) await describeAll(previous);
    return {
      images: results,
      failed,
      ...(calibrations === null ? {} : { calibration: Object.fromEntries(models.map((m, i) => [m.name, calibrations[i]!.temperature])) }),
      ...(plan === undefined ? {} : { operatingPoint: { name: plan.operatingPoint, ensemble: models.length > 1, ...(plan.ensemble === undefined ? {} : { ensembleFrom: plan.ensemble.report }) } }),
    };
  } finally {
    await disposeModels(models);
  }
}

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

/**
 * Human output: the diagnosis per image, each model's breakdown, and the research-use disclaimer.
 * Every name from outside (paths, run names, error texts quoting them) is printed with its control
 * characters escaped, so a file name cannot forge a line of the verdict.
 */
export function formatPredictions(result: PredictResult): string {
  const lines: string[] = [];
  for (const image of result.images) {
    const names = Object.keys(image.models);
    const ensemble = names.length > 1 ? ` — soft vote of ${names.length} models` : '';
    lines.push(`${printable(image.path)}: ${image.prediction} (confidence ${pct(image.confidence)}${ensemble})`);
    const width = Math.max(...names.map((n) => printable(n).length), 5);
    for (const name of names) {
      const m = image.models[name]!;
      const breakdown = m.probabilities.map((p, c) => `${classNames[c] ?? c} ${pct(p)}`).join(', ');
      lines.push(`  ${printable(name).padEnd(width)}  ${m.prediction.padEnd(12)} ${pct(m.confidence).padStart(6)}   [${breakdown}]`);
    }
    if (image.screening !== undefined && result.operatingPoint !== undefined) lines.push(...formatDecisions(result.operatingPoint.name, image.screening, result.operatingPoint.ensemble));
    for (const [name, file] of Object.entries(image.gradcam ?? {})) {
      const r = image.gradcamRegion?.[name];
      const seen = r === undefined ? '' : ` (outlined: the ${r.width}×${r.height} region at ${r.left},${r.top} that the model saw)`;
      lines.push(`  Grad-CAM ${printable(name)}: ${printable(file)}${seen}`);
    }
    for (const [name, why] of Object.entries(image.gradcamFailed ?? {})) lines.push(`  Grad-CAM ${printable(name)}: not drawn (${printable(why)})`);
  }
  for (const failure of result.failed) lines.push(`${printable(failure.path)}: not predicted — ${printable(failure.error)}`);
  if (result.calibration !== undefined) {
    lines.push('', `Probabilities are calibrated (temperature scaling, RUN/calibration.json: ${Object.entries(result.calibration).map(([name, t]) => `${printable(name)} T = ${t.toFixed(3)}`).join(', ')}).`);
  }
  const point = result.operatingPoint;
  if (point !== undefined) {
    const ensemble = point.ensembleFrom === undefined ? '' : `; the ensemble's (its weights and temperature) from the osteo eval report ${printable(point.ensembleFrom)}`;
    lines.push(`Screening decisions at ${point.name}: positive when the view's score (the summed calibrated probability of its positive classes) is ≥ the threshold chosen on val, each run's from its calibration.json${ensemble}.`);
  }
  lines.push('', researchDisclaimer);
  return lines.join('\n');
}
