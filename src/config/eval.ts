/**
 * The evaluation settings: one option table for the `osteo eval` flags, their validation, the defaults
 * evaluateRuns falls back to when a pipeline calls it, and the docs.
 */
import { z } from 'zod';
import { UserError } from '../util/index.js';
import { OptionValues, applyFlags, keyAt, option, optional, required, schemaOf, validateValues, type ConfigOf } from './options.js';
import { dicomWindowOptions } from './dicom.js';
import { checkInferenceWorkers } from './train.js';
import { prevalenceOption, screeningTargetOptions } from './screening.js';

const positiveInt = z.int().min(1);

export const evalSplits = ['test', 'val'] as const;
export type EvalSplit = (typeof evalSplits)[number];

export const evalOptions = {
  run: required(z.array(z.string().min(1)).min(1), 'training run directories (each contributes its --checkpoint)', { flag: '--run <dir...>' }),
  data: required(z.string().min(1), 'dataset directory with splits.csv', { flag: '--data <dir>' }),
  split: option(z.enum(evalSplits), 'test', `split to evaluate: ${evalSplits.join(' or ')}`, { flag: '--split <split>' }),
  // The names of the run room's checkpoints (src/runs CheckpointName), which config cannot import.
  checkpoint: option(z.enum(['best', 'last']), 'best', "each run's checkpoint: best (best validation epoch) or last (a run stopped before its first epoch ended has only last)", {
    flag: '--checkpoint <which>',
  }),
  tta: option(z.boolean(), false, 'average each image with its horizontal mirror', { flag: '--tta' }),
  allowTrainOverlap: option(z.boolean(), false, "evaluate even when some evaluated images are training images of the runs (same content hash as an image of a run's training set); the count is reported either way", {
    flag: '--allow-train-overlap',
  }),
  ...dicomWindowOptions,
  weights: option(z.string().min(1), 'equal', "ensemble weights: 'equal', 'auto' (fitted on val), or w1,w2,… per run", { flag: '--weights <spec>' }),
  out: optional(z.string().min(1), 'report directory (default: eval-<split>-<run names> beside the first run, eval-external-<folder>-<run names> with --external); another evaluation\'s report is never overwritten', { flag: '--out <dir>' }),
  batchSize: option(positiveInt, 16, 'images per forward pass (shared out among the workers)', { flag: '--batch-size <n>' }),
  workers: optional(positiveInt, 'inference worker threads (default: one per core on wasm, fewer for too few images to repay their start, 1 elsewhere); on an onnxruntime backend, the session’s intra-op threads (default: the provider’s)', { flag: '--workers <n>' }),
  seed: option(z.int().min(0), 0, 'bootstrap seed', { flag: '--seed <n>' }),
  resamples: option(positiveInt, 2000, 'bootstrap resamples', { flag: '--resamples <n>' }),
  targetSensitivity: screeningTargetOptions.targetSensitivity,
  targetSpecificity: screeningTargetOptions.targetSpecificity,
  prevalence: prevalenceOption,
  external: option(z.boolean(), false, 'evaluate every image of --data, a folder of class folders (any of them) that was never split, after matching each against the runs\' training and validation images', {
    flag: '--external',
  }),
  metadata: optional(z.string().min(1), 'CSV of per-image attributes for subgroup metrics: a path column (relative to --data) and any of site, device, sex, age, laterality', { flag: '--metadata <file>' }),
  ageBands: option(z.string().regex(/^\d+(\.\d+)?(,\d+(\.\d+)?)*$/, 'ascending ages in years separated by commas, e.g. 50,60,70'), '50,60,70,80', 'edges of the age bands of the subgroups, ascending years: 50,60 gives <50, 50–60, ≥60', {
    flag: '--age-bands <years>',
  }),
  minSubgroup: option(positiveInt, 20, 'fewest images of a subgroup reported with numbers (a smaller one is reported as too small)', { flag: '--min-subgroup <n>' }),
} as const;

export type EvalConfig = ConfigOf<typeof evalOptions>;

export const evalConfigSchema = schemaOf(evalOptions);

/**
 * The evaluation settings from `osteo eval` flags (by key): errors name the flag. `backend` is the
 * --backend preference the workers are checked against (as `osteo train` checks them).
 */
export function resolveEvalConfig(flags: Readonly<Record<string, unknown>>, backend = 'auto'): EvalConfig {
  const values = new OptionValues(evalOptions);
  applyFlags(values, flags);
  const config = validateValues(values, evalConfigSchema) as EvalConfig;
  checkInferenceWorkers(config.workers, backend, values.get('workers')?.origin);
  if (config.external && values.get('split')!.origin !== 'default') {
    throw new UserError(`invalid config: ${keyAt(values.get('split')!.origin, 'split')}: an --external folder is never split, so every image of it is evaluated: drop --split`);
  }
  const edges = ageBandEdges(config.ageBands);
  if (edges.some((edge, i) => i > 0 && edge <= edges[i - 1]!)) throw new UserError(`invalid config: ${keyAt(values.get('ageBands')!.origin, 'ageBands')}: the age band edges must ascend, got ${config.ageBands}`);
  return config;
}

/** The edges of `--age-bands` (validated text: numbers separated by commas). */
export function ageBandEdges(text: string): number[] {
  return text.split(',').map(Number);
}
