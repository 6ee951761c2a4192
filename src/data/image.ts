/**
 * Image decoding and the dashboard's preprocessing, with sharp.
 *
 * Every image becomes 8-bit RGB: EXIF orientation applied, alpha dropped, grayscale replicated to
 * three channels, CMYK converted, 16-bit scaled to 8. The model transform is torchvision's
 * `Resize(shorter) → CenterCrop(crop) → ToTensor → Normalize(mean, std)` as the dashboard runs it,
 * with torchvision's size arithmetic (long side truncated, crop offset rounded).
 */
import sharp from 'sharp';
import { DataError } from '../util/index.js';

/** Decoded 8-bit RGB pixels, row-major HWC. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Images above this many pixels are refused (a decompression-bomb guard; the largest real film is ~7 Mpx). */
export const maxInputPixels = 64_000_000;

export type ImageSource = string | Buffer;

function describe(source: ImageSource): string {
  return typeof source === 'string' ? source : '<buffer>';
}

export interface DecodeOptions {
  /** Refuse images with more pixels than this (default maxInputPixels). */
  maxPixels?: number;
}

/** Decode any supported image to 8-bit RGB (EXIF-rotated). Errors are DataErrors naming the file. */
export async function decodeRgb(source: ImageSource, options: DecodeOptions = {}): Promise<RgbImage> {
  try {
    const { data, info } = await sharp(source, { limitInputPixels: options.maxPixels ?? maxInputPixels, failOn: 'error' })
      .rotate() // apply EXIF orientation
      .toColourspace('srgb') // CMYK, grayscale and 16-bit all land in 8-bit sRGB
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels after conversion, got ${info.channels}`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (error) {
    if (error instanceof DataError) throw error;
    throw new DataError(describe(source), `cannot decode image: ${(error as Error).message}`);
  }
}

/** torchvision `Resize(size)` with an int: the shorter side becomes `size`, the longer is truncated. */
export function resizedShape(width: number, height: number, shorter: number): { width: number; height: number } {
  if (width <= height) return { width: shorter, height: Math.trunc((shorter * height) / width) };
  return { width: Math.trunc((shorter * width) / height), height: shorter };
}

/** Resize so the shorter side is `shorter` pixels, bilinear with antialiasing (as PIL's BILINEAR). */
export async function resizeShorter(image: RgbImage, shorter: number): Promise<RgbImage> {
  const target = resizedShape(image.width, image.height, shorter);
  if (target.width === image.width && target.height === image.height) return image;
  const data = await sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .resize(target.width, target.height, { kernel: 'linear', fit: 'fill' })
    .raw()
    .toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), ...target };
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
  const out = new Uint8Array(crop * crop * 3);
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

/** The dashboard's transform from an image file to a normalized crop×crop×3 array. */
export async function preprocessForModel(source: ImageSource, transform: EvalTransform): Promise<Float32Array> {
  const decoded = await decodeRgb(source);
  const resized = await resizeShorter(decoded, transform.resize);
  return normalize(centerCrop(resized, transform.crop), transform);
}
