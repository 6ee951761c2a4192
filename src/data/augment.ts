/**
 * Training augmentation as an ordered list of ops, configured by JSON files (configs/augment/*.json).
 * An op is one record: its config key and schema, how it draws its parameters, how it applies them and
 * when they change nothing. The config schema, the parameter record and both passes are derived from
 * the list, so adding an op is adding one entry to `augmentOps`.
 *
 * The list order is the order of the random draws and of application. Each op declares the stage it
 * works on, and the stages follow one another:
 *
 *   film        the resized film as uint8, before the crop (CLAHE)
 *   crop        which box of the film is read and whether mirrored (crop, hflip): however many ops
 *               shape it, the crop is read in one resampling pass
 *   float       the crop as floats in [0, 1] (rotation, colour jitter, gaussian noise)
 *   normalized  the crop after normalisation, in its slot of the batch buffer (random erasing, where
 *               torchvision places it)
 *
 * When every float op is the identity and the crop box is exactly the output size, nothing resamples or
 * recolours: the crop is normalised straight from the bytes, exactly as the eval transform does.
 *
 * Mixup pairs images across a batch, so it is no per-image op: its key sits beside the ops' in the
 * config and the loader applies it (mixupBatch). The pixel arithmetic, torchvision's op by op, is in
 * augment-pixels.ts.
 */
import { z } from 'zod';
import { createRng, randomInt, uniform, type Rng } from '../util/index.js';
import type { Normalization, RgbImage } from './image.js';
import {
  addGaussianNoise,
  adjustBrightness,
  adjustContrast,
  centerCropSquare,
  clahe,
  eraseInto,
  normalizeCropInto,
  normalizeInto,
  randomErasingBox,
  randomResizedCropBox,
  resizedCrop,
  rotate,
  type CropBox,
  type EraseBox,
  type FloatImage,
} from './augment-pixels.js';

/** Which box of the film the crop reads, and whether it reads it mirrored. */
export interface CropPlan {
  box: CropBox;
  flip: boolean;
}

/** One image's normalised size×size×3 slot at `offset` of a batch buffer. */
export interface NormalizedImage {
  data: Float32Array;
  offset: number;
  size: number;
}

/** What an op of each stage receives and returns. */
export interface StageImages {
  film: RgbImage;
  crop: CropPlan;
  float: FloatImage;
  normalized: NormalizedImage;
}
export type Stage = keyof StageImages;
const stageOrder: readonly Stage[] = ['film', 'crop', 'float', 'normalized'];

/** What an op knows when it draws: the film as it enters augmentation (resized so its shorter side is the model's resize size) and the square output size. */
export interface SampleContext {
  width: number;
  height: number;
  size: number;
}

export interface AugmentOp<Key extends string = string, S extends Stage = Stage, Schema extends z.ZodType = z.ZodType, Params = unknown> {
  /** Its key in the config. */
  key: Key;
  stage: S;
  /** Its entry in the config: `.optional()` for an op that is off unless configured. */
  schema: Schema;
  /** Draw one image's parameters; the config is undefined when an optional op is not configured. */
  sample(config: z.output<Schema>, rng: Rng, context: SampleContext): Params;
  /** Deterministic: the same image and parameters give the same result. Float and normalized ops may work in place. */
  apply(image: StageImages[S], params: Params): StageImages[S];
  /** True when these parameters leave the image as it is. */
  isIdentity(params: Params): boolean;
}

/** Types an op record, inferring its key, stage, schema and parameters. */
export function defineOp<Key extends string, S extends Stage, Schema extends z.ZodType, Params>(op: AugmentOp<Key, S, Schema, Params>): AugmentOp<Key, S, Schema, Params> {
  return op;
}

// `any` parameters let one list hold ops whose parameters differ; each op's own record is fully typed.
type AnyAugmentOp = AugmentOp<string, Stage, z.ZodType, any>;
type StageOp<S extends Stage> = AugmentOp<string, S, z.ZodType, any>;

const probability = z.number().min(0).max(1);
function range(min: number, max: number) {
  return z
    .tuple([z.number().min(min).max(max), z.number().min(min).max(max)])
    .refine(([low, high]) => low <= high, { message: 'a range is [low, high] with low ≤ high' });
}

/** An op with probability p fires when a draw falls below p; p = 0 or no config draws nothing. */
function chance(p: number | undefined, rng: Rng): boolean {
  return p !== undefined && p > 0 && rng.next() < p;
}

export const claheOp = defineOp({
  key: 'clahe',
  stage: 'film',
  schema: z
    .strictObject({ p: probability.default(1), clipLimit: z.number().min(1).max(100).default(2), tileGridSize: z.int().min(1).max(64).default(8) })
    .optional(),
  sample: (config, rng): { clipLimit: number; tileGridSize: number } | null =>
    chance(config?.p, rng) ? { clipLimit: config!.clipLimit, tileGridSize: config!.tileGridSize } : null,
  apply: (image, params) => (params === null ? image : clahe(image, params.clipLimit, params.tileGridSize)),
  isIdentity: (params) => params === null,
});

export const cropOp = defineOp({
  key: 'crop',
  stage: 'crop',
  /** How the imageSize crop is taken from the image resized to the model's resize size. */
  schema: z
    .discriminatedUnion('type', [
      z.strictObject({ type: z.literal('center') }),
      z.strictObject({ type: z.literal('random') }),
      z.strictObject({
        type: z.literal('randomResized'),
        scale: range(0.01, 1).default([0.08, 1]),
        ratio: range(0.05, 20).default([3 / 4, 4 / 3]),
      }),
    ])
    .default({ type: 'center' }),
  sample: (config, rng, { width, height, size }): CropBox => {
    if (config.type === 'randomResized') return randomResizedCropBox(width, height, config.scale, config.ratio, rng);
    if (config.type === 'random') {
      if (width < size || height < size) throw new RangeError(`image ${width}×${height} is smaller than the ${size}px crop`);
      return { top: randomInt(rng, height - size + 1), left: randomInt(rng, width - size + 1), width: size, height: size };
    }
    return centerCropSquare(width, height, size);
  },
  apply: (plan, box) => ({ ...plan, box }),
  // Choosing the box is never a no-op: even the centre box decides which pixels are read.
  isIdentity: () => false,
});

export const hflipOp = defineOp({
  key: 'hflip',
  stage: 'crop',
  schema: z.strictObject({ p: probability }).optional(),
  sample: (config, rng): boolean => chance(config?.p, rng),
  apply: (plan, flip) => (flip ? { ...plan, flip: !plan.flip } : plan),
  isIdentity: (flip) => !flip,
});

export const rotationOp = defineOp({
  key: 'rotation',
  stage: 'float',
  schema: z.strictObject({ p: probability.default(1), degrees: z.number().min(0).max(180) }).optional(),
  /** Counter-clockwise degrees. */
  sample: (config, rng): number => (chance(config?.p, rng) ? uniform(rng, -config!.degrees, config!.degrees) : 0),
  apply: (image, degrees) => rotate(image, degrees),
  isIdentity: (degrees) => degrees === 0,
});

export const colorJitterOp = defineOp({
  key: 'colorJitter',
  stage: 'float',
  schema: z
    .strictObject({ p: probability.default(1), brightness: z.number().min(0).max(1).default(0), contrast: z.number().min(0).max(1).default(0) })
    .optional(),
  /** torchvision ColorJitter: factors uniform in [max(0, 1 − x), 1 + x], applied in random order. */
  sample: (config, rng): { brightness: number; contrast: number; contrastFirst: boolean } => {
    const params = { brightness: 1, contrast: 1, contrastFirst: false };
    if (chance(config?.p, rng)) {
      const jitter = config!;
      if (jitter.brightness > 0) params.brightness = uniform(rng, Math.max(0, 1 - jitter.brightness), 1 + jitter.brightness);
      if (jitter.contrast > 0) params.contrast = uniform(rng, Math.max(0, 1 - jitter.contrast), 1 + jitter.contrast);
      params.contrastFirst = rng.next() < 0.5;
    }
    return params;
  },
  apply: (image, { brightness, contrast, contrastFirst }) =>
    contrastFirst ? adjustBrightness(adjustContrast(image, contrast), brightness) : adjustContrast(adjustBrightness(image, brightness), contrast),
  isIdentity: ({ brightness, contrast }) => brightness === 1 && contrast === 1,
});

export const gaussianNoiseOp = defineOp({
  key: 'gaussianNoise',
  stage: 'float',
  schema: z.strictObject({ p: probability.default(0.5), sigma: range(0, 1) }).optional(),
  sample: (config, rng): { sigma: number; seed: number } => {
    const sigma = chance(config?.p, rng) ? uniform(rng, config!.sigma[0], config!.sigma[1]) : 0;
    // The noise has a generator of its own, seeded from one draw, so a crop of any size consumes one
    // draw here. The draw is made even when noise is off: that is the stream every seed has given
    // since this op existed, and the draws after it (erasing) depend on it.
    return { sigma, seed: rng.nextUint32() };
  },
  apply: (image, { sigma, seed }) => addGaussianNoise(image, sigma, createRng(seed)),
  isIdentity: ({ sigma }) => sigma === 0,
});

export const randomErasingOp = defineOp({
  key: 'randomErasing',
  stage: 'normalized',
  schema: z
    .strictObject({
      p: probability.default(0.5),
      scale: range(0, 1).default([0.02, 0.33]),
      ratio: range(0.01, 100).default([0.3, 3.3]),
      value: z.number().default(0),
    })
    .optional(),
  sample: (config, rng, { size }): EraseBox | null => (chance(config?.p, rng) ? randomErasingBox(size, config!.scale, config!.ratio, config!.value, rng) : null),
  apply: (image, box) => {
    if (box !== null) eraseInto(image.data, image.offset, image.size, box);
    return image;
  },
  isIdentity: (box) => box === null,
});

/** The training augmentation, in the order its draws are made and its ops applied. */
export const augmentOps = [claheOp, cropOp, hflipOp, rotationOp, colorJitterOp, gaussianNoiseOp, randomErasingOp] as const;

/** Mixup (applied by the loader across a batch, after the per-image ops): λ ~ Beta(α, α), fired with probability p per batch. */
const mixupSchema = z.strictObject({ p: probability.default(1), alpha: z.number().positive() }).optional();

type OpShape<Ops extends readonly AnyAugmentOp[]> = { [Op in Ops[number] as Op['key']]: Op['schema'] };

/** Everything random about one image's augmentation, drawn up front: each op's parameters under its key. */
export type AugmentParamsOf<Ops extends readonly AnyAugmentOp[]> = {
  [Op in Ops[number] as Op['key']]: Op extends AugmentOp<string, Stage, z.ZodType, infer Params> ? Params : never;
};

/** The config schema of a list of ops: their keys, plus the free-text description and the batch-level mixup. */
function configSchemaOf<const Ops extends readonly AnyAugmentOp[]>(ops: Ops) {
  const shape = Object.fromEntries(ops.map((op) => [op.key, op.schema])) as OpShape<Ops>;
  return z.strictObject({
    /** Free text: what the config is for. */
    description: z.string().optional(),
    ...shape,
    mixup: mixupSchema,
  });
}

/**
 * A pipeline from an ordered list of ops: its config schema, the sampler that draws every op's
 * parameters in list order, and the deterministic pass that applies them. Keys must be unique and
 * the stages in order (film, crop, float, normalized), since list order is application order.
 */
export function createAugmentation<const Ops extends readonly AnyAugmentOp[]>(ops: Ops) {
  const seen = new Set<string>(['description', 'mixup']);
  let lastStage = 0;
  for (const op of ops) {
    if (seen.has(op.key)) throw new Error(`augmentation op "${op.key}" is listed twice or shadows a config key (${[...seen].join(', ')})`);
    seen.add(op.key);
    const stage = stageOrder.indexOf(op.stage);
    if (stage < lastStage) throw new Error(`augmentation op "${op.key}" works on the ${op.stage} stage after an op on the ${stageOrder[lastStage]} stage: list ops in stage order (${stageOrder.join(', ')})`);
    lastStage = stage;
  }
  const schema = configSchemaOf(ops);
  type Config = z.output<typeof schema>;
  type Params = AugmentParamsOf<Ops>;
  const onStage = <S extends Stage>(stage: S) => ops.filter((op): op is StageOp<S> => op.stage === stage);
  const filmOps = onStage('film');
  const cropOps = onStage('crop');
  const floatOps = onStage('float');
  const normalizedOps = onStage('normalized');

  /** Draw one image's parameters. `width`×`height` is the film as it enters augmentation; `size` the square output. */
  function sample(config: Config, rng: Rng, width: number, height: number, size: number): Params {
    const context: SampleContext = { width, height, size };
    const byKey = config as Record<string, unknown>;
    return Object.fromEntries(ops.map((op) => [op.key, op.sample(byKey[op.key], rng, context)])) as Params;
  }

  /** Apply drawn parameters to one film and write the normalised size×size×3 result into `out` at `offset`. */
  function apply(image: RgbImage, params: Params, size: number, normalization: Normalization, out: Float32Array, offset: number): void {
    const byKey = params as Record<string, unknown>;
    const active = <S extends Stage>(list: StageOp<S>[]) => list.filter((op) => !op.isIdentity(byKey[op.key]));
    const film = active(filmOps).reduce<RgbImage>((current, op) => op.apply(current, byKey[op.key]), image);
    // Before any crop op, the plan is the eval transform's centre crop.
    const plan = cropOps.reduce<CropPlan>((current, op) => op.apply(current, byKey[op.key]), { box: centerCropSquare(film.width, film.height, size), flip: false });
    const floatSteps = active(floatOps);
    if (floatSteps.length === 0 && plan.box.width === size && plan.box.height === size) {
      // Nothing resamples or recolours: normalise straight from the bytes, exactly as the eval transform does.
      normalizeCropInto(film, plan.box, plan.flip, normalization, out, offset);
    } else {
      const float = floatSteps.reduce<FloatImage>((current, op) => op.apply(current, byKey[op.key]), resizedCrop(film, plan.box, size, plan.flip));
      normalizeInto(float, normalization, out, offset);
    }
    for (const op of active(normalizedOps)) op.apply({ data: out, offset, size }, byKey[op.key]);
  }

  return { ops, schema, sample, apply };
}

const augmentation = createAugmentation(augmentOps);

export const augmentConfigSchema = augmentation.schema;
export type AugmentConfig = z.output<typeof augmentConfigSchema>;
export type AugmentParams = AugmentParamsOf<typeof augmentOps>;

/** Draw one image's parameters for the training augmentation (see `createAugmentation`). */
export const sampleAugmentation: (config: AugmentConfig, rng: Rng, width: number, height: number, size: number) => AugmentParams = augmentation.sample;

/** Apply drawn parameters to one (resized, cached) film, writing the normalised result into `out` at `offset`. */
export const applyAugmentation: (image: RgbImage, params: AugmentParams, size: number, normalization: Normalization, out: Float32Array, offset: number) => void =
  augmentation.apply;

/** The config of "no augmentation": every op absent and the centre crop, i.e. the eval transform. */
export const noAugmentation: AugmentConfig = augmentConfigSchema.parse({});

/** The parameters of "no augmentation". The draws do not matter: on the empty config only the noise seed is drawn, and no noise is added. */
export function identityParams(width: number, height: number, size: number): AugmentParams {
  return sampleAugmentation(noAugmentation, createRng(0), width, height, size);
}
