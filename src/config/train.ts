/**
 * The training config: its option table (the one source of the type, the schema, the `osteo train`
 * flags and the docs) and its resolution from layers — built-in defaults → recipe file → flags →
 * `--set key=value` — into one validated, complete TrainConfig that is saved as RUN/config.json.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { backendCandidates, backendPreferences, type BackendCandidate, type WorkerThreads } from '../backend/index.js';
import { augmentConfigSchema, type AugmentConfig, type EvalTransform } from '../data/index.js';
import { monitorMetrics, type MonitorMetric } from '../report/index.js';
import { UserError, errorMessage } from '../util/index.js';
import { getModel, modelNames, transformAt, weightsTagOfFile, type ModelEntry, type ModelName, type WeightsTag } from '../models/index.js';
import { augmentPresets, loadAugmentConfig } from './augment.js';
import { dicomWindowOptions } from './dicom.js';
import { locateConfigFile, readConfigFile, shippedConfigDir } from './files.js';
import { OptionValues, applyFlags, keyAt, option, optional, optionEntries, parseSetArgument, schemaOf, validateValues, type ConfigOf, type Sourced } from './options.js';

const positiveInt = z.int().min(1);

/** Input sizes a model here is meant for, in pixels: train's bounds, and predict's --image-size's. */
export const imageSizeRange = { min: 32, max: 1024 } as const;
const registered = modelNames();

/** A run's eval transform, as RUN/config.json records it (data/image.ts applies it). */
const evalTransformSchema = z.strictObject({
  resize: z.int().min(32),
  crop: z.int().min(32),
  mean: z.tuple([z.number(), z.number(), z.number()]),
  std: z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]),
});

/** Where a run goes without --out: the one place this default is written (the option's help, the config, `osteo train --resume --model`). */
export function defaultRunDir(model: string): string {
  return join('checkpoints', model);
}

/** The validation metrics training can monitor: the report registry's records that name a monitor. */
export { monitorMetrics, type MonitorMetric };

export const trainOptions = {
  description: optional(z.string(), 'free text: what this recipe is and where its numbers come from'),
  model: optional(z.enum(registered), `architecture: ${registered.join(', ')}`, { flag: '--model <name>' }),
  data: optional(z.string().min(1), 'dataset folder holding a split manifest (splits.csv from `osteo data split`)', { flag: '--data <dir>' }),
  out: optional(z.string().min(1), `run directory (default: ${defaultRunDir('<model>')})`, { flag: '--out <dir>', runtime: true }),
  pretrained: optional(z.string().min(1), 'initial weights, .pth or .safetensors in torchvision keys; an ImageNet head is replaced by a fresh 3-class head', {
    flag: '--pretrained <file>',
  }),
  seed: option(z.int().min(0), 0, 'seeds weight init, sample order, augmentation and dropout', { flag: '--seed <n>' }),
  epochs: option(positiveInt, 25, 'epochs to train', { flag: '--epochs <n>', runtime: true }),
  maxSteps: optional(positiveInt, 'stop after this many optimizer steps in this invocation (a resumed run takes up to this many more); `last` is saved', { flag: '--max-steps <n>', runtime: true }),
  checkpointEvery: optional(
    z.union([positiveInt, z.string().regex(/^(\d+\.?\d*|\.\d+)m$/, 'expected a step count (50) or minutes (10m)').refine((text) => Number.parseFloat(text) > 0, 'the minutes must be more than 0')]),
    'recovery checkpoints: also save `last` in mid-epoch every N optimizer steps (50) or every N minutes (10m), so a kill that gives no warning (SIGKILL, a lost node) loses at most that much; resuming from one is exact',
    { flag: '--checkpoint-every <n|Nm>', runtime: true },
  ),
  batchSize: option(positiveInt, 16, 'images per optimizer step', { flag: '--batch-size <n>' }),
  microBatch: optional(positiveInt, 'images per forward/backward pass (gradient accumulation; BatchNorm statistics are per micro-batch)', {
    flag: '--micro-batch <n>',
  }),
  imageSize: optional(z.int().min(imageSizeRange.min), "input size in pixels (default: the crop of the initial weights' eval transform: 224 for most, 300 for EfficientNet-B3)", { flag: '--image-size <n>' }),
  transform: optional(
    evalTransformSchema,
    "preprocessing for training and evaluation, {resize, crop, mean, std}: resize the shorter side (bilinear), centre-crop to imageSize, normalize (default: the initial weights' tag — the model's default weights unless pretrained is another tag's file — at imageSize)",
  ),
  ...dicomWindowOptions,
  backend: option(z.enum(backendPreferences), 'auto', 'compute backend (the OSTEO_BACKEND variable sets it too): auto trains on the best tfjs backend and validates on the best inference backend (onnxruntime where it runs); a named one computes both, and the onnxruntime ones, which only run trained models, are refused', { flag: '--backend <name>', runtime: true }),
  workers: optional(positiveInt, 'data-parallel worker threads (default: one per core on wasm, 1 elsewhere)', { flag: '--workers <n>', runtime: true }),
  augment: option(
    z.union([z.string().min(1), augmentConfigSchema]),
    'seed',
    `training augmentation: a preset (${augmentPresets.join(', ')}), a JSON file (relative to the recipe), or the config inline`,
  ),
  freezeUntil: optional(z.string().min(1), 'freeze this stage and every stage before it (their BatchNorms in inference mode), e.g. layer3'),
  headEpochs: option(z.int().min(0), 0, 'two-stage fine-tuning: train only the classifier for this many epochs, then unfreeze down to freezeUntil'),
  optimizer: {
    type: option(z.enum(['adam', 'adamw', 'sgd']), 'adam', 'adam (L2 in the gradient, as torch.optim.Adam), adamw (decoupled decay), sgd'),
    lr: option(z.number().positive(), 1e-4, 'peak learning rate'),
    weightDecay: option(z.number().min(0), 0, 'adam, sgd: L2 added to the gradient; adamw: decoupled decay'),
    beta1: option(z.number().min(0).lt(1), 0.9, 'adam, adamw'),
    beta2: option(z.number().min(0).lt(1), 0.999, 'adam, adamw'),
    eps: option(z.number().positive(), 1e-8, 'adam, adamw'),
    momentum: option(z.number().min(0).lt(1), 0.9, 'sgd'),
    nesterov: option(z.boolean(), false, 'sgd'),
  },
  schedule: {
    type: option(z.enum(['constant', 'step', 'cosine']), 'step', 'learning-rate schedule, evaluated every step'),
    stepSize: option(positiveInt, 7, 'step: epochs between decays'),
    gamma: option(z.number().positive().max(1), 0.1, 'step: factor applied at each decay'),
    warmupEpochs: option(z.number().min(0), 0, 'linear warm-up from 0 over this many epochs (fractions allowed), counted in steps'),
    minLr: option(z.number().min(0), 0, 'cosine: the learning rate it decays to'),
  },
  labelSmoothing: option(z.number().min(0).lt(1), 0, 'label smoothing of the training loss'),
  classBalance: option(z.enum(['none', 'loss', 'sampler']), 'none', 'loss: cross-entropy weighted 1/class count; sampler: the class-weighted sampler'),
  clipGradNorm: optional(z.number().positive(), 'clip gradients to this global L2 norm'),
  earlyStopping: {
    metric: option(z.enum(monitorMetrics), 'valBalancedAccuracy', 'validation metric that picks `best` and drives early stopping'),
    patience: optional(positiveInt, 'stop after this many epochs without improvement (default: never)'),
  },
} as const;

/** What a config file or the flags may say (every key optional where the table has no default). */
export type TrainConfigInput = ConfigOf<typeof trainOptions>;

/** A resolved config: model, data, run directory, image size, transform and augmentation are known. */
export type TrainConfig = Omit<TrainConfigInput, 'model' | 'data' | 'out' | 'imageSize' | 'transform' | 'augment' | 'dicomWindow'> & {
  model: ModelName;
  /** Recorded in RUN/config.json even when it is the default, so eval and predict of the run read DICOM files as it did. */
  dicomWindow: string;
  data: string;
  out: string;
  imageSize: number;
  transform: EvalTransform;
  augment: AugmentConfig;
};

export const trainConfigSchema = schemaOf(trainOptions);

/** Where the built-in recipes live: configs/ at the package root. */
export const recipeDir = shippedConfigDir;

/** The built-in recipe of a model (its registry entry names the file in configs/). */
export function defaultRecipe(model: string): string {
  const file = join(recipeDir, getModel(model).recipe);
  if (!existsSync(file)) throw new Error(`${model}: its registered recipe ${file} is missing from the package`);
  return file;
}

export interface TrainConfigSources {
  /** A recipe file; without it the model's built-in recipe (configs/<model>.json) applies, when there is one. */
  configFile?: string;
  /** The run's saved config when resuming: the base layer, and non-runtime keys may not change. */
  resumeFrom?: { file: string; config: unknown };
  /** Values from command-line flags by dotted key: strings are coerced as --set values are. */
  flags?: Record<string, unknown>;
  /** `key=value` strings, applied last, in order. */
  sets?: readonly string[];
}

function modelNamedBy(values: OptionValues): string | undefined {
  const value = values.get('model')?.value;
  return typeof value === 'string' ? value : undefined;
}

/** Checks across keys that the schema cannot express; each names its key and where it was set. */
function crossCheck(config: TrainConfigInput, values: OptionValues): void {
  const fail = (key: string, message: string): never => {
    throw new UserError(`invalid config: ${keyAt(values.get(key)?.origin ?? 'default', key)}: ${message}`);
  };
  // A key that does not apply is an error when it was set in the same layer as the choice that makes
  // it moot, or later; a recipe's stepSize is simply unused when the command line switches to cosine.
  const layerOf = (key: string) => values.get(key)?.layer ?? 0;
  const moot = (key: string, choice: string) => layerOf(key) > 0 && layerOf(key) >= layerOf(choice);
  if (config.model === undefined) throw new UserError(`no model: give --model NAME (${registered.join(', ')}) or a config file with "model"`);
  if (config.data === undefined) throw new UserError('no dataset: give --data DIR (a folder prepared with `osteo data split`)');
  const entry = getModel(config.model);
  if (config.freezeUntil !== undefined) {
    const index = entry.stages.indexOf(config.freezeUntil);
    if (index < 0) fail('freezeUntil', `${config.model} has no stage '${config.freezeUntil}'; its stages are ${entry.stages.join(', ')}`);
    if (index === entry.stages.length - 1) fail('freezeUntil', `freezing '${config.freezeUntil}' (the classifier) leaves nothing to train`);
  }
  const optimizerOnly: [string, string[]][] = [['sgd', ['momentum', 'nesterov']], ['adam adamw', ['beta1', 'beta2', 'eps']]];
  for (const [types, keys] of optimizerOnly) {
    if (types.split(' ').includes(config.optimizer.type)) continue;
    for (const key of keys) if (moot(`optimizer.${key}`, 'optimizer.type')) fail(`optimizer.${key}`, `applies to ${types.replace(' ', ' and ')} only, not ${config.optimizer.type}`);
  }
  const scheduleOnly: [string, string[]][] = [['step', ['stepSize', 'gamma']], ['cosine', ['minLr']]];
  for (const [type, keys] of scheduleOnly) {
    if (config.schedule.type === type) continue;
    for (const key of keys) if (moot(`schedule.${key}`, 'schedule.type')) fail(`schedule.${key}`, `applies to the ${type} schedule only, not ${config.schedule.type}`);
  }
  if (config.imageSize !== undefined && config.imageSize > imageSizeRange.max) fail('imageSize', `is larger than any model here is meant for (≤ ${imageSizeRange.max})`);
  if (config.transform !== undefined) {
    const { resize, crop } = config.transform;
    if (config.imageSize !== undefined && crop !== config.imageSize) fail('transform', `crops ${crop} px but imageSize is ${config.imageSize}: the crop is the model's input, so they must agree`);
    if (resize < crop) fail('transform', `resizes to ${resize} px, smaller than its ${crop} px crop`);
  }
  checkLengths(config, fail);
  checkWorkers(config, fail);
}

/** Values that each pass the schema but contradict one another. */
function checkLengths(config: TrainConfigInput, fail: (key: string, message: string) => never): void {
  const { optimizer, schedule, epochs } = config;
  if (schedule.type === 'cosine' && schedule.minLr >= optimizer.lr) {
    fail('schedule.minLr', `${schedule.minLr} is not below optimizer.lr ${optimizer.lr}: the cosine schedule decays from optimizer.lr down to minLr, so minLr must be smaller`);
  }
  if (config.microBatch !== undefined && config.microBatch > config.batchSize) {
    fail('microBatch', `${config.microBatch} is larger than batchSize ${config.batchSize}: a micro-batch is a part of one batch (use at most ${config.batchSize})`);
  }
  // headEpochs = epochs would never unfreeze the backbone: that is freezeUntil's job, said plainly
  if (config.headEpochs >= epochs) {
    fail('headEpochs', `${config.headEpochs} head-only epochs leave none of the ${epochs} epochs for the whole network: use fewer than ${epochs} (to train only the classifier, set freezeUntil to the last backbone stage)`);
  }
  if (schedule.warmupEpochs > epochs) fail('schedule.warmupEpochs', `a ${schedule.warmupEpochs}-epoch warm-up is longer than the ${epochs} epochs of training (use at most ${epochs})`);
}

/** More worker threads than the machine runs at once only contend; a backend that does not train in workers takes one. */
function checkWorkers(config: TrainConfigInput, fail: (key: string, message: string) => never): void {
  if (config.workers === undefined) return;
  const problem = workersProblem(config.workers, config.backend);
  if (problem !== undefined) fail('workers', problem);
}

/**
 * What is wrong with running `workers` worker threads on `backend` (a --backend preference), or
 * undefined: more threads than the machine runs at once only contend, and a backend that does not run
 * in worker threads takes one. The one check behind every --workers (train, eval, predict).
 */
export function workersProblem(workers: number, backend: string): string | undefined {
  const cores = availableParallelism();
  if (workers > cores) return `${workers} is more than this machine runs at once (${cores}, os.availableParallelism()): use at most ${cores}`;
  const candidate: BackendCandidate | undefined = backendCandidates.find((c) => c.backend === backend);
  // onnxruntime runs trained models only, and there --workers is its intra-op thread count
  if (candidate?.capabilities.onnxSessions) return undefined;
  const threads: WorkerThreads | undefined = candidate?.capabilities.workerThreads;
  if (threads && !threads.trainsInWorkers && workers > 1) return `the ${backend} backend trains in one process (${threads.why}): use 1, or a backend that trains in worker threads`;
  return undefined;
}

/**
 * The --workers check of the commands that run trained models (eval, calibrate): an unset value
 * passes; a value the backend cannot use is refused naming where it was set (`origin`, the value's
 * entry: absent only when nothing set it).
 */
export function checkInferenceWorkers(workers: number | undefined, backend: string, origin: string | undefined): void {
  const problem = workers === undefined ? undefined : workersProblem(workers, backend);
  if (problem !== undefined) throw new UserError(`invalid config: ${keyAt(origin ?? 'default', 'workers')}: ${problem}`);
}

/**
 * Merge the layers and validate once; every error names the key and the file or flag that set it.
 * The result is complete: defaults filled in, the image size and run directory decided, and the
 * augmentation read into an inline object so RUN/config.json alone says how the run was trained.
 */
export async function resolveTrainConfig(sources: TrainConfigSources = {}): Promise<TrainConfig> {
  const values = new OptionValues(trainOptions);
  if (sources.resumeFrom) {
    if (sources.configFile) throw new UserError('--config cannot be combined with --resume: a resumed run keeps its own config (RUN/config.json)');
    // Layer 0, as defaults: a saved config holds every key, including those its choices make moot.
    values.merge(withoutStepBudget(sources.resumeFrom.config), sources.resumeFrom.file);
  }
  const applyCommandLine = () => applyFlags(values, sources.flags ?? {});
  const sets = (sources.sets ?? []).map((argument) => ({ argument, ...parseSetArgument(values, argument) }));
  const applySets = () => {
    values.nextLayer();
    for (const { key, value } of sets) values.set(key, value, `--set ${key}`);
  };

  let recipe = sources.configFile === undefined ? undefined : locateConfigFile(sources.configFile);
  if (!recipe && !sources.resumeFrom) {
    // The model may come from a flag or --set: look at those first to find its built-in recipe.
    applyCommandLine();
    applySets();
    const model = modelNamedBy(values);
    // An unknown name gets no recipe here: the schema then rejects it naming the flag that set it.
    recipe = model !== undefined && (registered as readonly string[]).includes(model) ? defaultRecipe(model) : undefined;
  }
  if (recipe) {
    values.nextLayer();
    values.merge(await readConfigFile(recipe, 'training config'), recipe);
    const augment = values.get('augment');
    if (augment?.origin === recipe && typeof augment.value === 'string' && !(augmentPresets as readonly string[]).includes(augment.value)) {
      values.set('augment', resolve(dirname(recipe), augment.value), recipe);
    }
  }
  const recipeModel = recipe !== undefined && values.get('model')?.origin === recipe ? values.get('model')!.value : undefined;
  applyCommandLine();
  applySets();
  if (recipe !== undefined && recipeModel !== undefined) refuseOtherModel(recipe, recipeModel, values.get('model')!);

  const input = validateValues(values, trainConfigSchema) as TrainConfigInput;
  crossCheck(input, values);
  if (sources.resumeFrom) {
    const saved = new OptionValues(trainOptions);
    saved.merge(sources.resumeFrom.config, sources.resumeFrom.file);
    for (const [key, spec] of optionEntries(trainOptions)) {
      if (spec.runtime) continue;
      const before = JSON.stringify(saved.get(key)?.value);
      const after = JSON.stringify(values.get(key)?.value);
      if (before !== after) {
        throw new UserError(`${values.get(key)?.origin ?? key}: cannot change ${key} when resuming (the run has ${before ?? 'none'}, asked for ${after ?? 'none'}); start a new run with --out instead`);
      }
    }
  }
  const model = input.model!;
  const entry = getModel(model);
  let augment: AugmentConfig;
  if (typeof input.augment === 'string') {
    try {
      augment = await loadAugmentConfig(input.augment);
    } catch (error) {
      throw new UserError(`invalid config: ${keyAt(values.get('augment')?.origin ?? 'default', 'augment')}: ${errorMessage(error)}`);
    }
  } else {
    augment = input.augment;
  }
  const tag = initialWeightsTag(entry, input.pretrained);
  const imageSize = input.imageSize ?? input.transform?.crop ?? tag.evalTransform.crop;
  return {
    ...input,
    model,
    data: input.data!,
    out: input.out ?? defaultRunDir(model),
    imageSize,
    transform: input.transform ?? transformAt(tag.evalTransform, imageSize),
    augment,
    dicomWindow: input.dicomWindow ?? 'auto',
  };
}

/**
 * A recipe's settings are its model's (its freezeUntil names that model's stages; its learning rate,
 * schedule and augmentation were tuned for it), so a recipe is never applied to another model: the
 * model asked for on the command line must be the recipe's own, when the recipe names one.
 */
function refuseOtherModel(recipe: string, recipeModel: unknown, asked: Sourced): void {
  if (asked.value === recipeModel) return;
  const own = typeof asked.value === 'string' && (registered as readonly string[]).includes(asked.value) ? ` (its own: ${defaultRecipe(asked.value)})` : '';
  throw new UserError(
    `${asked.origin} asks for ${JSON.stringify(asked.value)}, but the recipe ${recipe} is for ${JSON.stringify(recipeModel)} (its "model"): a recipe's freeze point, learning rate and augmentation are its own model's. ` +
      `Use a recipe for ${JSON.stringify(asked.value)}${own}, or ask for ${JSON.stringify(recipeModel)}`,
  );
}

/** The tag a run starts from: the one whose file `pretrained` names, else the model's default weights (whose sizes a random start shares). */
function initialWeightsTag(entry: ModelEntry, pretrained: string | undefined): WeightsTag {
  const named = pretrained === undefined ? undefined : weightsTagOfFile(basename(pretrained));
  return named !== undefined && named.architecture === entry.name ? named : entry.weights[0];
}

/** How often `checkpointEvery` saves a recovery checkpoint: every so many steps, or every so many milliseconds. */
export type CheckpointInterval = { steps: number } | { milliseconds: number };

export function checkpointInterval(every: TrainConfig['checkpointEvery']): CheckpointInterval | undefined {
  if (every === undefined) return undefined;
  return typeof every === 'number' ? { steps: every } : { milliseconds: Number.parseFloat(every) * 60_000 };
}

/** --max-steps budgets one invocation: a resumed run does not inherit the budget of the one that saved it. */
function withoutStepBudget(saved: unknown): unknown {
  if (typeof saved !== 'object' || saved === null || Array.isArray(saved)) return saved;
  const { maxSteps: _budget, ...rest } = saved as Record<string, unknown>;
  return rest;
}

/** Validate a saved config (RUN/config.json): errors name the file and the key. */
export function parseSavedTrainConfig(file: string, json: unknown): TrainConfigInput {
  const values = new OptionValues(trainOptions);
  values.merge(json, file);
  return validateValues(values, trainConfigSchema) as TrainConfigInput;
}
