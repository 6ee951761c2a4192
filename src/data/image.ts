/**
 * The eval transform, composed once: torchvision's `Resize(shorter) → CenterCrop(crop) → ToTensor →
 * Normalize(mean, std)` as the dashboard runs it, with torchvision's size arithmetic (long side
 * truncated, crop offset rounded). It has two stages because the resize cache (cache.ts) stores the
 * first: `resizeShorter`, then `cropAndNormalizeInto`. `applyEvalTransform` is both, and
 * `evalTransformSpec` is the same transform as the words and numbers an export writes beside a model.
 * Decoding a file into the RGB pixels it starts from is readers.ts's.
 */
import sharp from 'sharp';
import { decodeRgb, type ReadOptions, type RgbImage } from './readers.js';
import { resampleBilinear } from './resample.js';

export { decodeRgb, maxInputPixels, type RgbImage } from './readers.js';

export type ImageSource = string | Buffer;
export type DecodeOptions = ReadOptions;

/** torchvision `Resize(size)` with an int: the shorter side becomes `size`, the longer is truncated. */
export function resizedShape(width: number, height: number, shorter: number): { width: number; height: number } {
  if (width <= height) return { width: shorter, height: Math.trunc((shorter * height) / width) };
  return { width: Math.trunc((shorter * width) / height), height: shorter };
}

/**
 * Resize so the shorter side is `shorter` pixels, bilinear with antialiasing (as PIL's BILINEAR): bytes
 * through sharp, as always; floats (a deep DICOM) through resample.ts, PIL's algorithm for float
 * images, because sharp's raw float input is cast to 8 bits on the way in.
 */
export async function resizeShorter(image: RgbImage, shorter: number): Promise<RgbImage> {
  const target = resizedShape(image.width, image.height, shorter);
  if (target.width === image.width && target.height === image.height) return image;
  if (image.data instanceof Float32Array) return { data: resampleBilinear(image.data, image.width, image.height, 3, target.width, target.height), ...target };
  const data = await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .resize(target.width, target.height, { kernel: 'linear', fit: 'fill' })
    .raw()
    .toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), ...target };
}

/**
 * The image as 8-bit RGB for display (an overlay, a contact sheet): bytes as they are, float levels
 * rounded. Never on the way to the model.
 */
export function displayBytes(image: RgbImage): Uint8Array {
  if (image.data instanceof Uint8Array) return image.data;
  return Uint8Array.from(image.data, (level) => Math.min(255, Math.max(0, Math.round(level))));
}

/** Python 3's round(): halves go to the even neighbour (torchvision computes crop offsets with it). */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * torchvision `CenterCrop(size)` offsets: int(round((dim - size) / 2.0)) with Python's round, so an odd
 * margin of 9 puts the crop at 4, not 5. Images smaller than the crop are an error.
 */
export function centerCropBox(width: number, height: number, crop: number): { left: number; top: number } {
  if (width < crop || height < crop) throw new RangeError(`image ${width}×${height} is smaller than the ${crop}px crop`);
  return { left: roundHalfEven((width - crop) / 2), top: roundHalfEven((height - crop) / 2) };
}

export function centerCrop(image: RgbImage, crop: number): RgbImage {
  const { left, top } = centerCropBox(image.width, image.height, crop);
  const out = image.data instanceof Float32Array ? new Float32Array(crop * crop * 3) : new Uint8Array(crop * crop * 3);
  for (let y = 0; y < crop; y++) {
    const from = ((top + y) * image.width + left) * 3;
    out.set(image.data.subarray(from, from + crop * 3), y * crop * 3);
  }
  return { data: out, width: crop, height: crop };
}

export interface Normalization {
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

export const imagenetNormalization: Normalization = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/** ToTensor + Normalize, in HWC order: (x / 255 - mean[c]) / std[c]. */
export function normalize(image: RgbImage, { mean, std }: Normalization = imagenetNormalization): Float32Array {
  const out = new Float32Array(image.data.length);
  for (let i = 0; i < image.data.length; i += 3) {
    for (let c = 0; c < 3; c++) out[i + c] = (image.data[i + c]! / 255 - mean[c]!) / std[c]!;
  }
  return out;
}

export interface EvalTransform extends Normalization {
  resize: number;
  crop: number;
}

/**
 * The transform's second stage, on an image whose shorter side is already `transform.resize`: the
 * centre crop, scaled to [0, 1] and normalised, written as crop×crop×3 floats at `offset` of `out`.
 */
export function cropAndNormalizeInto(resized: RgbImage, { crop, mean, std }: Pick<EvalTransform, 'crop' | 'mean' | 'std'>, out: Float32Array, offset = 0): void {
  const { left, top } = centerCropBox(resized.width, resized.height, crop);
  let o = offset;
  for (let y = 0; y < crop; y++) {
    const row = ((top + y) * resized.width + left) * 3;
    // normalize()'s arithmetic, sample for sample, so a cached batch equals preprocessForModel's crop.
    for (let i = row; i < row + crop * 3; i += 3) for (let c = 0; c < 3; c++) out[o++] = (resized.data[i + c]! / 255 - mean[c]!) / std[c]!;
  }
}

/** The whole eval transform on decoded pixels: a normalised crop×crop×3 array. */
export async function applyEvalTransform(image: RgbImage, transform: EvalTransform): Promise<Float32Array> {
  const out = new Float32Array(transform.crop * transform.crop * 3);
  cropAndNormalizeInto(await resizeShorter(image, transform.resize), transform, out);
  return out;
}

/** The dashboard's transform from an image file to a normalized crop×crop×3 array. */
export async function preprocessForModel(source: ImageSource, transform: EvalTransform): Promise<Float32Array> {
  return applyEvalTransform(await decodeRgb(source), transform);
}

/** The eval transform as an export describes it to other software (metadata.json's `preprocessing`). */
export interface EvalTransformSpec {
  steps: string;
  resize: number;
  crop: number;
  interpolation: 'bilinear';
  /** What a decoded sample (in 8-bit units) is multiplied by before Normalize. */
  scale: number;
  mean: number[];
  std: number[];
}

export function evalTransformSpec(transform: EvalTransform): EvalTransformSpec {
  return {
    steps: `RGB; resize shorter side to ${transform.resize} (bilinear); center crop ${transform.crop}; scale to [0,1]; normalize (x - mean) / std`,
    resize: transform.resize,
    crop: transform.crop,
    interpolation: 'bilinear',
    scale: 1 / 255,
    mean: [...transform.mean],
    std: [...transform.std],
  };
}
