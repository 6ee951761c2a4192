/**
 * Weight tags: one record per published checkpoint, in the spirit of torchvision's `Weights` enums
 * and timm's `default_cfgs`. Preprocessing belongs to the weights, not to the architecture: the same
 * ResNet50 evaluates at resize 256 with torchvision's V1 weights and at 232 with V2. Each
 * architecture file declares its own tags beside its builder; the registry collects them.
 */
import type { EvalTransform } from '../data/index.js';
import { imagenetNormalization } from '../data/index.js';
import { UserError } from '../util/index.js';
import { minImageSize } from './common.js';

export type Interpolation = 'bilinear' | 'bicubic';

/** A tag's eval transform as its publisher states it (torchvision's `ImageClassification(crop_size, resize_size, interpolation, mean, std)`). */
export interface TagTransform extends EvalTransform {
  interpolation: Interpolation;
}

export interface WeightsTag {
  /** `<architecture>.<torchvision's enum member, lower case>`: `resnet50.imagenet1k_v2` is `ResNet50_Weights.IMAGENET1K_V2`. */
  name: string;
  architecture: string;
  fileName: string;
  /** The first hex digits of the file's SHA-256, as torchvision puts them in the file name. */
  sha256Prefix: string;
  sourceUrl: string;
  licence: string;
  evalTransform: TagTransform;
}

/**
 * torchvision publishes its checkpoints under its own licence (timm's `default_cfgs` record the same
 * for them); the ImageNet images they were trained on carry their own terms of use.
 */
const torchvisionLicence = 'BSD-3-Clause';

/** A checkpoint on download.pytorch.org, named `<stem>-<sha256 prefix>.pth` as torchvision names them. */
export function torchvisionTag(
  architecture: string,
  member: string,
  fileName: string,
  transform: { crop: number; resize: number; interpolation: Interpolation },
): WeightsTag {
  const prefix = /-([0-9a-f]{8,})\.pth$/.exec(fileName)?.[1];
  if (prefix === undefined) throw new Error(`${fileName}: a torchvision checkpoint name ends in -<sha256 prefix>.pth`);
  return {
    name: `${architecture}.${member.toLowerCase()}`,
    architecture,
    fileName,
    sha256Prefix: prefix,
    sourceUrl: `https://download.pytorch.org/models/${fileName}`,
    licence: torchvisionLicence,
    evalTransform: { ...transform, mean: imagenetNormalization.mean, std: imagenetNormalization.std },
  };
}

/**
 * A transform at another crop size, keeping its resize/crop ratio and its normalization: resize =
 * round(crop · resize / its crop), in integers so that the tag's own crop gives its own resize. This
 * is the transform osteo applies (data/image.ts resizes bilinearly, as the dashboard does), so a
 * bicubic tag contributes its sizes and normalization, not its resampler.
 */
export function transformAt(transform: EvalTransform, crop: number = transform.crop): EvalTransform {
  if (!Number.isInteger(crop) || crop < minImageSize) throw new UserError(`image size must be an integer ≥ ${minImageSize}, got ${crop}`);
  return { resize: Math.round((crop * transform.resize) / transform.crop), crop, mean: transform.mean, std: transform.std };
}
