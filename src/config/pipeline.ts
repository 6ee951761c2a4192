/**
 * The pipeline config (`osteo reproduce --config`, configs/reproduce.json and configs/demo.json): one
 * option table, read by the one config-file reader and validated by the same machinery as a training
 * recipe, so an unknown or bad key is reported as `FILE: unknown key "models.0.foo"` or
 * `FILE: data.val: …`. The split and ensemble keys are the split and eval tables' own records.
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { modelNames } from '../models/index.js';
import { UserError } from '../util/index.js';
import { evalOptions } from './eval.js';
import { readConfigFile } from './files.js';
import { OptionValues, keyAt, list, option, optional, required, schemaOf, validateValues, withoutFlags, type ConfigOf } from './options.js';
import { checkSplitFractions, splitOptions } from './split.js';

const registered = modelNames();

const pipelineModel = {
  model: required(z.enum(registered), `architecture: ${registered.join(', ')}`),
  recipe: optional(z.string().min(1), "a training recipe, relative to this file (default: the model's built-in recipe)"),
  pretrained: option(z.boolean(), true, "start from torchvision's ImageNet checkpoint (fetched into --weights-dir when missing)"),
  set: option(z.array(z.string()), [], '`key=value` training overrides for this model only, as `osteo train --set`'),
  publishedSeed: optional(z.int().min(0), "--protocol published: the seed of this model's own random 70/15/15 split (the seed project's: ResNet50 123, EfficientNet-B3 42; default: data.seed)"),
} as const;

export const pipelineOptions = {
  description: optional(z.string(), 'free text: what this pipeline runs and why'),
  data: {
    source: required(z.enum(['kaggle', 'phantom']), 'kaggle: download the published dataset; phantom: generate the synthetic one'),
    dir: required(z.string().min(1), 'dataset folder (relative to the working directory): downloaded or generated when empty'),
    perClass: optional(z.int().min(6), 'phantom only: distinct images per class'),
    size: optional(z.int().min(32), 'phantom only: image width in pixels'),
    duplicateRate: optional(z.number().min(0).max(0.9), 'phantom only: fraction of Normal and Osteoporosis files that are byte-identical copies (the Kaggle set: about 0.5)'),
    // The file sets them; `osteo reproduce` has no --val/--test/--seed of its own.
    ...withoutFlags(splitOptions),
  },
  models: list(pipelineModel, 'the models to train, in order, on the one shared split', { min: 1 }),
  set: option(z.array(z.string()), [], '`key=value` training overrides for every model, applied before the per-model ones'),
  seed: option(z.int().min(0), 42, 'training seed of every model, and the bootstrap seed of the evaluation'),
  ensemble: withoutFlags({ weights: evalOptions.weights, tta: evalOptions.tta }),
} as const;

export type PipelineConfig = ConfigOf<typeof pipelineOptions>;

export const pipelineConfigSchema = schemaOf(pipelineOptions);

/** Read and validate a pipeline config file; every error names the file and the key. */
export async function loadPipelineConfig(file: string): Promise<PipelineConfig> {
  const values = new OptionValues(pipelineOptions);
  values.nextLayer();
  values.merge(await readConfigFile(file, 'pipeline config'), file);
  const config = validateValues(values, pipelineConfigSchema) as PipelineConfig;
  checkSplitFractions(config.data, values, 'data.');
  // A split may leave val or test empty; the pipeline needs both: val picks each model's best
  // checkpoint, test is what the published table is compared on.
  for (const key of ['val', 'test'] as const) {
    if (config.data[key] === 0) throw new UserError(`invalid config: ${keyAt(values.get(`data.${key}`)!.origin, `data.${key}`)}: the pipeline needs a ${key} split (got 0)`);
  }
  await checkRecipeModels(config, file);
  return config;
}

/** Each model's recipe is for that model (the training config refuses it later too, naming only the model): named here by the pipeline's own keys, before any work. */
async function checkRecipeModels(config: PipelineConfig, file: string): Promise<void> {
  for (const [i, { model, recipe }] of config.models.entries()) {
    if (recipe === undefined) continue;
    const path = resolve(dirname(file), recipe);
    const json = await readConfigFile(path, 'training config');
    const own = typeof json === 'object' && json !== null ? (json as { model?: unknown }).model : undefined;
    if (own !== undefined && own !== model) {
      throw new UserError(`invalid config: ${file}: models.${i}.recipe: ${path} is a recipe for ${JSON.stringify(own)} (its "model"), not for models.${i}.model ${JSON.stringify(model)}: give ${model} a recipe of its own, or leave out "recipe" for its built-in one`);
    }
  }
}
