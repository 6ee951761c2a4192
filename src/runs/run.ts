/**
 * A training run directory, as `osteo train` writes it and `osteo eval`, `predict` and `export` read it:
 *
 *   RUN/config.json        the resolved, validated TrainConfig
 *   RUN/metrics.csv        one row per epoch           RUN/events.jsonl   the event log
 *   RUN/curves.png         loss and accuracy, train vs val
 *   RUN/best/model.safetensors, RUN/best/state.json                       (the best epoch so far)
 *   RUN/last/model.safetensors, RUN/last/optimizer.safetensors, RUN/last/state.json   (the latest state: at each epoch's
 *                          end, and in mid-epoch on a stop or a --checkpoint-every recovery save)
 *   RUN/split.json (split-record.ts)   RUN/calibration.json (calibration-record.ts)   RUN/.lock (lock.ts)   RUN/export/<format>/ (`osteo export`'s default)
 *
 * Where a run stands (absent, unsaved, resumable, finished) is lifecycle.ts's question.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type * as tfl from '@tensorflow/tfjs-layers';
import { loadAugmentConfig, parseSavedTrainConfig, readConfigFile, type TrainConfig } from '../config/index.js';
import { numClasses, type EvalTransform } from '../data/index.js';
import { DataError, UserError } from '../util/index.js';
import { getModel, type ModelEntry, type ModelName } from '../models/index.js';
import { checkpointDir, checkpointFiles, type CheckpointName } from './checkpoint.js';
import { buildWithWeights, readSafetensors, type LoadReport } from '../weights/index.js';

export function runPaths(dir: string) {
  return {
    config: join(dir, 'config.json'),
    metrics: join(dir, 'metrics.csv'),
    events: join(dir, 'events.jsonl'),
    curves: join(dir, 'curves.png'),
    best: join(dir, 'best'),
    last: join(dir, 'last'),
  };
}

export function runWeightsPath(dir: string, which: CheckpointName = 'best'): string {
  return checkpointFiles(checkpointDir(dir, which)).model;
}

/** Where `osteo export --run RUN --format F` writes without --out. */
export function runExportDir(dir: string, format: string): string {
  return join(dir, 'export', format);
}

export interface RunInfo {
  dir: string;
  config: TrainConfig;
  model: ModelName;
  imageSize: number;
  transform: EvalTransform;
  numClasses: number;
}

/** The run's config.json as saved (not yet validated): the base layer of a resumed run's config. */
export async function readRunConfigJson(dir: string): Promise<{ file: string; json: unknown }> {
  const file = runPaths(dir).config;
  if (!existsSync(file)) throw new UserError(`${dir} is not a training run: ${file} is missing (runs are written by \`osteo train\`)`);
  return { file, json: await readConfigFile(file, 'run config') };
}

/** The run's config.json, validated; a missing or bad one is an error naming the file. */
export async function readRunConfig(dir: string): Promise<TrainConfig> {
  const { file, json } = await readRunConfigJson(dir);
  const input = parseSavedTrainConfig(file, json);
  if (input.model === undefined) throw new DataError(file, 'has no "model"');
  // The preprocessing the weights were trained with: eval and predict must apply the same.
  if (input.transform === undefined) throw new DataError(file, 'has no "transform" (the preprocessing `osteo train` records for every run)');
  const entry = getModel(input.model);
  const augment = typeof input.augment === 'string' ? await loadAugmentConfig(input.augment) : input.augment;
  return {
    ...input,
    model: entry.name,
    data: input.data ?? '',
    out: input.out ?? dir,
    imageSize: input.imageSize ?? entry.defaultImageSize,
    transform: input.transform,
    augment,
  };
}

/**
 * A run to read weights from: its config and the preprocessing it recorded; the `which` checkpoint must exist (a run
 * stopped before its first epoch ended has only `last`, and the error says so).
 */
export async function openRun(dir: string, which: CheckpointName = 'best'): Promise<RunInfo> {
  const config = await readRunConfig(dir);
  const weights = runWeightsPath(dir, which);
  if (!existsSync(weights)) {
    const other: CheckpointName = which === 'best' ? 'last' : 'best';
    const hint = existsSync(runWeightsPath(dir, other))
      ? `it has a ${other} checkpoint: add --checkpoint ${other}`
      : 'it has no checkpoint at all: train it (`osteo train --resume`) until it saves one';
    throw new UserError(`run ${dir} has no ${which} checkpoint (${weights}): ${hint}`);
  }
  return { dir: resolve(dir), config, model: config.model, imageSize: config.imageSize, transform: config.transform, numClasses };
}

export interface RunModel {
  model: tfl.LayersModel;
  entry: ModelEntry;
  transform: EvalTransform;
  info: RunInfo;
  report: LoadReport;
}

/** A run's weights built into its architecture (strictly: every key must fit). The caller disposes the model. */
export async function loadRunModel(dir: string, which: CheckpointName = 'best'): Promise<RunModel> {
  const info = await openRun(dir, which);
  const entry = getModel(info.model);
  const { model, report } = buildWithWeights(entry, await readSafetensors(runWeightsPath(dir, which)), { numClasses: info.numClasses, imageSize: info.imageSize });
  return { model, entry, transform: info.transform, info, report };
}
