/**
 * The cross-validation settings (`osteo cv` flags): one option table for the flags, their validation
 * and the docs. Training keys that a CV run commonly shrinks (epochs, image size, batch size) are
 * optional here and, when given, override every entry's recipe, as `osteo train`'s flags do.
 */
import { z } from 'zod';
import { backendPreferences } from '../backend/index.js';
import { modelNames } from '../models/index.js';
import { UserError } from '../util/index.js';
import { OptionValues, applyFlags, flagName, option, optional, required, schemaOf, validateValues, type ConfigOf } from './options.js';
import { trainOptions } from './train.js';

const registered = modelNames();
const positiveInt = z.int().min(1);

export const cvOptions = {
  model: required(z.array(z.enum(registered)).min(1), `the models to cross-validate (${registered.join(', ')}); several compare them on the same folds`, {
    flag: '--model <name...>',
  }),
  config: option(z.array(z.string().min(1)), [], "training recipe per --model, in order (default: each model's built-in recipe)", { flag: '--config <file...>' }),
  data: required(z.string().min(1), 'dataset folder (indexed first if DIR/index.csv is missing)', { flag: '--data <dir>' }),
  folds: option(z.int().min(2), 5, 'folds (K): each duplicate group is held out exactly once per repeat', { flag: '--folds <k>' }),
  repeats: option(positiveInt, 1, 'repeats of the K folds, each with its own fold assignment', { flag: '--repeats <r>' }),
  seed: option(z.int().min(0), 42, 'seeds the folds, the inner validation split, every job and the bootstrap', { flag: '--seed <n>' }),
  innerVal: option(z.number().gt(0).lt(0.5), 0.15, 'fraction of each fold’s training part held back for early stopping and the best checkpoint', {
    flag: '--inner-val <fraction>',
  }),
  out: option(z.string().min(1), 'reports/cv', 'the CV folder: plan.json, jobs/<job>/ (one per fold × model × repeat), report/', { flag: '--out <dir>' }),
  shard: optional(z.string().regex(/^[1-9]\d*\/[1-9]\d*$/, 'expected I/N, e.g. 2/3'), 'run only the I-th of N shares of the jobs (then `osteo cv collect`)', {
    flag: '--shard <I/N>',
  }),
  epochs: optional(positiveInt, 'epochs per job (default: the recipe’s)', { flag: '--epochs <n>' }),
  imageSize: optional(z.int().min(32), 'input size per job (default: the recipe’s)', { flag: '--image-size <n>' }),
  batchSize: optional(positiveInt, 'images per optimizer step (default: the recipe’s)', { flag: '--batch-size <n>' }),
  // every job's recovery checkpoints: how often a preempted shard saves, not what a job computes
  checkpointEvery: trainOptions.checkpointEvery,
  pretrained: optional(z.string().min(1), 'initial weights for every job (.pth or .safetensors); default: random, as the recipe says', { flag: '--pretrained <file>' }),
  backend: option(z.enum(backendPreferences), 'auto', 'compute backend (the OSTEO_BACKEND variable sets it too): auto trains on the best tfjs backend and validates on the best inference backend (onnxruntime where it runs); a named one computes both, and the onnxruntime ones, which only run trained models, are refused', { flag: '--backend <name>' }),
  workers: optional(positiveInt, 'data-parallel worker threads per job; fix it (e.g. 1) when shards run on machines with different core counts: it changes float rounding', {
    flag: '--workers <n>',
  }),
  resamples: option(positiveInt, 2000, 'bootstrap resamples of the pooled intervals', { flag: '--resamples <n>' }),
} as const;

export type CvConfig = ConfigOf<typeof cvOptions>;

export const cvConfigSchema = schemaOf(cvOptions);

/** The shard as numbers (1-based index, count), checked against each other. */
export function parseShard(text: string | undefined): { index: number; count: number } | undefined {
  if (text === undefined) return undefined;
  const [index, count] = text.split('/').map(Number) as [number, number];
  if (index > count) throw new UserError(`--shard ${text}: the shard index must be between 1 and ${count}`);
  return { index, count };
}

/** The CV settings from `osteo cv` flags (by key): errors name the flag. */
export function resolveCvConfig(flags: Readonly<Record<string, unknown>>): CvConfig {
  const values = new OptionValues(cvOptions);
  applyFlags(values, flags);
  const config = validateValues(values, cvConfigSchema) as CvConfig;
  if (config.config.length > 0 && config.config.length !== config.model.length) {
    throw new UserError(`${flagName('config', cvOptions.config)}: give one recipe per --model (${config.model.length}), or none; got ${config.config.length}`);
  }
  parseShard(config.shard);
  return config;
}
