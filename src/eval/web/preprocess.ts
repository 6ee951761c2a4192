/**
 * The page's copy of `osteo predict`'s preprocessing (src/data/image.ts), on raw RGB pixels: resize
 * the shorter side (bilinear with antialiasing), torchvision's centre crop, ToTensor + Normalize.
 *
 * Why hand-written: predict resizes with sharp (libvips), which a browser does not have, and a
 * canvas's drawImage scaling is the browser's own unspecified filter (Chromium's differs from
 * libvips' by several grey levels on a downscale). This file runs in the page and in Node (its test
 * compares it with sharp), so it imports nothing and touches no DOM.
 */

/** Decoded 8-bit RGB pixels, row-major HWC (the shape of src/data/image.ts's RgbImage). */
export interface RgbPixels {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Pixels in 8-bit units as the image readers give them: bytes, or floats for a deep DICOM film. */
export interface PagePixels {
  data: Uint8Array | Float32Array;
  width: number;
  height: number;
}

/** The resize of float pixels (the page's DICOM reader brings `osteo predict`'s, src/data/resample.ts). */
export type FloatResize = (image: { data: Float32Array; width: number; height: number }, width: number, height: number) => Float32Array;

export interface PagePreprocessing {
  resize: number;
  crop: number;
  mean: readonly number[];
  std: readonly number[];
}

/** torchvision `Resize(size)` with an int: the shorter side becomes `size`, the longer is truncated. */
export function resizedShape(width: number, height: number, shorter: number): { width: number; height: number } {
  if (width <= height) return { width: shorter, height: Math.trunc((shorter * height) / width) };
  return { width: Math.trunc((shorter * width) / height), height: shorter };
}

/** Python 3's round(): halves go to the even neighbour (torchvision computes crop offsets with it). */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  if (x - floor !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** torchvision `CenterCrop(size)` offsets: int(round((dim - size) / 2.0)) with Python's round. */
export function centerCropBox(width: number, height: number, crop: number): { left: number; top: number } {
  if (width < crop || height < crop) throw new RangeError(`image ${width}×${height} is smaller than the ${crop}px crop`);
  return { left: roundHalfEven((width - crop) / 2), top: roundHalfEven((height - crop) / 2) };
}

/** RGBA (a canvas's ImageData) to RGB: alpha dropped, as sharp's removeAlpha does. */
export function rgbaToRgb(rgba: Uint8ClampedArray | Uint8Array, width: number, height: number): RgbPixels {
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    data[p * 3] = rgba[p * 4]!;
    data[p * 3 + 1] = rgba[p * 4 + 1]!;
    data[p * 3 + 2] = rgba[p * 4 + 2]!;
  }
  return { data, width, height };
}

/** libvips' fixed point for 8-bit resampling: coefficients in 1/4096, sub-pixel positions in 1/64. */
const coefficientScale = 4096;
const subpixelSteps = 64;

const toByte = (sum: number) => {
  const v = Math.floor((sum + coefficientScale / 2) / coefficientScale);
  return v <= 0 ? 0 : v >= 255 ? 255 : v;
};

/** One axis of a plane: `line(i)` is the i-th row (vertical pass) or column (horizontal pass). */
interface Axis {
  size: number;
  /** Distance in the data array between neighbours along the axis, and between lines. */
  step: number;
  lineStep: number;
  lines: number;
}

function axes(width: number, height: number, vertical: boolean): Axis {
  return vertical ? { size: height, step: width * 3, lineStep: 3, lines: width } : { size: width, step: 3, lineStep: width * 3, lines: height };
}

/**
 * libvips' box pre-shrink (vips_resize's default gap of 2): a downscale by `scale` first averages
 * blocks of floor(scale / 2) pixels (the last block repeating the edge), so the triangle filter
 * after it spans at most about 5 pixels.
 */
function boxShrink(data: Uint8Array, width: number, height: number, factor: number, vertical: boolean): { data: Uint8Array; width: number; height: number } {
  const outWidth = vertical ? width : Math.ceil(width / factor);
  const outHeight = vertical ? Math.ceil(height / factor) : height;
  const from = axes(width, height, vertical);
  const to = axes(outWidth, outHeight, vertical);
  const out = new Uint8Array(outWidth * outHeight * 3);
  for (let line = 0; line < from.lines; line++) {
    for (let o = 0; o < to.size; o++) {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let k = 0; k < factor; k++) sum += data[line * from.lineStep + Math.min(o * factor + k, from.size - 1) * from.step + c]!;
        out[line * to.lineStep + o * to.step + c] = Math.floor((sum + Math.floor(factor / 2)) / factor);
      }
    }
  }
  return { data: out, width: outWidth, height: outHeight };
}

/**
 * libvips' reduce along one axis by `scale` (> 1): a triangle filter widened by the scale
 * (antialiasing), centred at (o + 0.5)·scale − 0.5 rounded to 1/64 pixel, coefficients normalized
 * and truncated to 1/4096, edge pixels repeated past the border.
 */
function reduce(data: Uint8Array, width: number, height: number, outSize: number, scale: number, vertical: boolean): Uint8Array {
  const from = axes(width, height, vertical);
  const to = axes(vertical ? width : outSize, vertical ? outSize : height, vertical);
  const taps = Math.ceil(scale) * 2 + 1;
  const index = new Int32Array(taps);
  const weights = new Int32Array(taps);
  const raw = new Float64Array(taps);
  const out = new Uint8Array(to.lines * outSize * 3);
  for (let o = 0; o < outSize; o++) {
    const exact = (o + 0.5) * scale - 0.5;
    const centre = Math.floor(exact) + Math.round((exact - Math.floor(exact)) * subpixelSteps) / subpixelSteps;
    const first = Math.ceil(centre - scale);
    let total = 0;
    for (let k = 0; k < taps; k++) {
      raw[k] = Math.max(0, 1 - Math.abs(first + k - centre) / scale);
      total += raw[k]!;
      index[k] = Math.min(Math.max(first + k, 0), from.size - 1) * from.step;
    }
    for (let k = 0; k < taps; k++) weights[k] = Math.trunc((raw[k]! / total) * coefficientScale);
    for (let line = 0; line < from.lines; line++) {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let k = 0; k < taps; k++) sum += weights[k]! * data[line * from.lineStep + index[k]! + c]!;
        out[line * to.lineStep + o * to.step + c] = toByte(sum);
      }
    }
  }
  return out;
}

/** libvips' upscale (vips_affine with its bilinear interpolator): output o samples o·scale − 0.5, edges repeated, weights in 1/4096. */
function enlarge(image: RgbPixels, width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  const xScale = image.width / width;
  const yScale = image.height / height;
  const clamp = (v: number, size: number) => (v < 0 ? 0 : v >= size ? size - 1 : v);
  for (let y = 0; y < height; y++) {
    const sy = y * yScale - 0.5;
    const iy = Math.floor(sy);
    const fy = Math.trunc((sy - iy) * coefficientScale);
    const row0 = clamp(iy, image.height) * image.width;
    const row1 = clamp(iy + 1, image.height) * image.width;
    for (let x = 0; x < width; x++) {
      const sx = x * xScale - 0.5;
      const ix = Math.floor(sx);
      const fx = Math.trunc((sx - ix) * coefficientScale);
      const c4 = (fy * fx) >> 12;
      const c2 = ((coefficientScale - fy) * fx) >> 12;
      const c3 = fy - c4;
      const c1 = coefficientScale - fy - c2;
      const x0 = clamp(ix, image.width);
      const x1 = clamp(ix + 1, image.width);
      for (let c = 0; c < 3; c++) {
        const sum = c1 * image.data[(row0 + x0) * 3 + c]! + c2 * image.data[(row0 + x1) * 3 + c]! + c3 * image.data[(row1 + x0) * 3 + c]! + c4 * image.data[(row1 + x1) * 3 + c]!;
        out[(y * width + x) * 3 + c] = toByte(sum);
      }
    }
  }
  return out;
}

/** Downscale one axis as vips_resize does: box pre-shrink by floor(scale / 2), then the triangle reduce by what remains. */
function downscaleAxis(image: RgbPixels, outSize: number, vertical: boolean): RgbPixels {
  const inSize = vertical ? image.height : image.width;
  if (outSize === inSize) return image;
  const scale = inSize / outSize;
  const factor = Math.max(1, Math.floor(scale / 2));
  const shrunk = factor > 1 ? boxShrink(image.data, image.width, image.height, factor, vertical) : image;
  const data = reduce(shrunk.data, shrunk.width, shrunk.height, outSize, scale / factor, vertical);
  return vertical ? { data, width: shrunk.width, height: outSize } : { data, width: outSize, height: shrunk.height };
}

/**
 * Resize to exactly width×height as sharp's `resize(…, { kernel: 'linear' })` (libvips 8.17) does:
 * bit-exact on upscales and on downscales where the box pre-shrink factor is 1, 2 or 4 (measured in
 * tests/eval/web-preprocess.test.ts); other pre-shrink factors round the block means differently in
 * libvips, leaving a grey level or two on some pixels.
 */
export function resizeBilinear(image: RgbPixels, width: number, height: number): RgbPixels {
  if (width === image.width && height === image.height) return image;
  if (width >= image.width && height >= image.height) return { data: enlarge(image, width, height), width, height };
  // Vertical first, as vips_resize reduces.
  return downscaleAxis(downscaleAxis(image, height, true), width, false);
}

/**
 * Resize the shorter side to `transform.resize`, centre-crop `transform.crop`, normalize: a
 * crop×crop×3 HWC array. Bytes are resized as sharp resizes them; floats (a deep DICOM film) by
 * `resizeFloat`, as `osteo predict` resizes them (src/data/image.ts `resizeShorter`).
 */
export function preprocessPixels(image: PagePixels, transform: PagePreprocessing, resizeFloat?: FloatResize): Float32Array {
  const target = resizedShape(image.width, image.height, transform.resize);
  let resized: PagePixels;
  if (image.data instanceof Uint8Array) resized = resizeBilinear({ ...image, data: image.data }, target.width, target.height);
  else if (resizeFloat === undefined) throw new Error('float pixels need the float resize');
  else if (target.width === image.width && target.height === image.height) resized = image;
  else resized = { data: resizeFloat({ ...image, data: image.data }, target.width, target.height), ...target };
  const { left, top } = centerCropBox(resized.width, resized.height, transform.crop);
  const size = transform.crop;
  const out = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const from = ((top + y) * resized.width + left + x) * 3;
      for (let c = 0; c < 3; c++) out[(y * size + x) * 3 + c] = (resized.data[from + c]! / 255 - transform.mean[c]!) / transform.std[c]!;
    }
  }
  return out;
}
