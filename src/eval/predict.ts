/**
 * `osteo predict`: per-image diagnosis from one model (a weights file) or the soft-vote ensemble of
 * several runs, with each model's own probabilities (the dashboard's breakdown) and, optionally, a
 * Grad-CAM overlay per image and model.
 */
import { mkdir } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { classNames, preprocessForModel } from '../data/index.js';
import { UserError, writeFileAtomic } from '../util/index.js';
import { getModel } from '../models/index.js';
import { argmaxRows } from '../report/index.js';
import { ensembleProbabilities } from './ensemble.js';
import { gradCam, gradCamOverlayPng } from './gradcam.js';
import { disambiguateNames, disposeModels, loadRunForInference, loadWeightsFile, predictProbabilities, transformKey, type LoadedModel } from './inference.js';

export const researchDisclaimer = 'osteo is a research tool, not a diagnostic device. Every prediction must be reviewed by a clinician.';

export interface PredictOptions {
  images: string[];
  /** Ensemble of these runs' best models (equal-weight soft vote, as the dashboard). */
  runs?: string[];
  /** Or one architecture with a weights file (.pth / .safetensors). */
  model?: string;
  weights?: string;
  /** Input size; default: the run's, or the architecture's default. */
  imageSize?: number;
  tta?: boolean;
  /** Write `<image>.<model>.gradcam.png` here for every image and model. */
  gradcamDir?: string;
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
}

export interface PredictResult {
  images: ImagePrediction[];
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
    return [await loadWeightsFile(options.model, options.weights, options.imageSize)];
  }
  const models: LoadedModel[] = [];
  try {
    for (const run of runs) models.push(await loadRunForInference(run, { imageSize: options.imageSize }));
  } catch (error) {
    disposeModels(models);
    throw error;
  }
  return models;
}

/** Unique, readable Grad-CAM file stems even when two inputs share a file name. */
function gradcamStems(images: string[]): string[] {
  const stems = images.map((p) => basename(p, extname(p)));
  const counts = new Map<string, number>();
  for (const s of stems) counts.set(s, (counts.get(s) ?? 0) + 1);
  return stems.map((s, i) => (counts.get(s)! > 1 ? `${i + 1}-${s}` : s));
}

export async function predictImages(options: PredictOptions): Promise<PredictResult> {
  if (options.images.length === 0) throw new UserError('give at least one IMAGE to predict');
  const models = await loadModels(options);
  try {
    disambiguateNames(models);
    const numClasses = models[0]!.numClasses;
    if (models.some((m) => m.numClasses !== numClasses)) throw new UserError('the models disagree on the number of classes; they cannot be ensembled');
    if (options.gradcamDir !== undefined) await mkdir(options.gradcamDir, { recursive: true });
    const stems = gradcamStems(options.images);
    const results: ImagePrediction[] = [];
    for (const [index, path] of options.images.entries()) {
      // One decode + transform per distinct preprocessing, shared by the models that use it.
      const inputs = new Map<string, Float32Array>();
      for (const m of models) {
        const key = transformKey(m.transform);
        if (!inputs.has(key)) inputs.set(key, await preprocessForModel(path, m.transform));
      }
      const perModel = models.map((m) => predictProbabilities(m, inputs.get(transformKey(m.transform))!, 1, { tta: options.tta }));
      const combined = describe(ensembleProbabilities(perModel));
      const result: ImagePrediction = {
        path,
        ...combined,
        models: Object.fromEntries(models.map((m, i) => [m.name, describe(perModel[i]!)])),
      };
      if (options.gradcamDir !== undefined) {
        const classIndex = argmaxRows(combined.probabilities, numClasses)[0]!;
        result.gradcam = {};
        for (const m of models) {
          const input = inputs.get(transformKey(m.transform))!;
          const cam = gradCam(m.model, getModel(m.modelName).gradCamLayer, input, m.transform.crop, classIndex);
          const file = join(options.gradcamDir, `${stems[index]}.${m.name.replace(/[^A-Za-z0-9_.-]+/g, '_')}.gradcam.png`);
          await writeFileAtomic(file, await gradCamOverlayPng(input, m.transform, cam));
          result.gradcam[m.name] = file;
        }
      }
      results.push(result);
    }
    return { images: results };
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
    for (const [name, file] of Object.entries(image.gradcam ?? {})) lines.push(`  Grad-CAM ${name}: ${file}`);
  }
  lines.push('', researchDisclaimer);
  return lines.join('\n');
}
