/**
 * The pixel arithmetic of augmentation: pure functions `(input, params) → output` that the ops in
 * augment.ts draw parameters for and call. The semantics are torchvision's, function by function, so a
 * recipe from a PyTorch notebook means the same here: RandomResizedCrop's parameter search,
 * HorizontalFlip, RandomRotation (counter-clockwise degrees, bilinear, black fill), ColorJitter's
 * brightness and contrast (contrast blending with the mean gray level), RandomErasing and mixup (Zhang
 * et al. 2018). CLAHE is OpenCV's algorithm with OpenCV's parameter names (clipLimit, tileGridSize).
 * Gaussian noise is added to the gray level, the same for all three channels, because the films are
 * monochrome.
 *
 * Pixel loops run over the crop only (≤ imageSize²), so a training batch costs milliseconds of
 * JavaScript; decoding and resizing are sharp's, off the main thread.
 */
import { randomInt, uniform, type Rng } from '../util/index.js';
import { centerCropBox, type Normalization, type RgbImage } from './image.js';

/** An RGB image as floats in [0, 1], HWC. */
export interface FloatImage {
  data: Float32Array;
  width: number;
  height: number;
}

export interface CropBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface EraseBox extends CropBox {
  value: number;
}

/** torchvision `RandomResizedCrop.get_params`: ten tries at a box of the asked area and aspect, then a centred fallback. */
export function randomResizedCropBox(width: number, height: number, scale: readonly [number, number], ratio: readonly [number, number], rng: Rng): CropBox {
  const area = width * height;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * uniform(rng, scale[0], scale[1]);
    const aspect = Math.exp(uniform(rng, logRatio[0], logRatio[1]));
    const w = Math.round(Math.sqrt(targetArea * aspect));
    const h = Math.round(Math.sqrt(targetArea / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      return { top: randomInt(rng, height - h + 1), left: randomInt(rng, width - w + 1), width: w, height: h };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(...ratio)) h = Math.round(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = Math.round(h * Math.max(...ratio));
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), width: w, height: h };
}

/** torchvision `RandomErasing.get_params` (value fixed): up to ten tries, else no erasing. */
export function randomErasingBox(size: number, scale: readonly [number, number], ratio: readonly [number, number], value: number, rng: Rng): EraseBox | null {
  const area = size * size;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])] as const;
  for (let attempt = 0; attempt < 10; attempt++) {
    const eraseArea = area * uniform(rng, scale[0], scale[1]);
    const aspect = Math.exp(uniform(rng, logRatio[0], logRatio[1]));
    const h = Math.round(Math.sqrt(eraseArea * aspect));
    const w = Math.round(Math.sqrt(eraseArea / aspect));
    if (h < size && w < size) return { top: randomInt(rng, size - h + 1), left: randomInt(rng, size - w + 1), width: w, height: h, value };
  }
  return null;
}

/**
 * Crop `box` from `image` and resize it to size×size, bilinear with half-pixel centres and edge
 * clamping inside the box (torch `interpolate(mode='bilinear', align_corners=False, antialias=False)`
 * on the cropped tensor), optionally mirrored. An exact crop (box = size) copies pixels unchanged.
 */
export function resizedCrop(image: RgbImage, box: CropBox, size: number, flip = false): FloatImage {
  const out = new Float32Array(size * size * 3);
  if (box.width === size && box.height === size) {
    // An exact crop: the bilinear weights would all be 0 or 1, so copy.
    const { data, width } = image;
    let o = 0;
    for (let y = 0; y < size; y++) {
      const row = ((box.top + y) * width + box.left) * 3;
      for (let x = 0; x < size; x++) {
        const i = row + (flip ? size - 1 - x : x) * 3;
        out[o++] = data[i]! / 255;
        out[o++] = data[i + 1]! / 255;
        out[o++] = data[i + 2]! / 255;
      }
    }
    return { data: out, width: size, height: size };
  }
  const scaleX = box.width / size;
  const scaleY = box.height / size;
  const { data, width } = image;
  const xs0 = new Int32Array(size);
  const xs1 = new Int32Array(size);
  const xw = new Float32Array(size);
  for (let x = 0; x < size; x++) {
    const sx = Math.min(Math.max((x + 0.5) * scaleX - 0.5, 0), box.width - 1);
    const x0 = Math.floor(sx);
    const column = flip ? size - 1 - x : x;
    xs0[column] = (box.left + x0) * 3;
    xs1[column] = (box.left + Math.min(x0 + 1, box.width - 1)) * 3;
    xw[column] = sx - x0;
  }
  for (let y = 0; y < size; y++) {
    const sy = Math.min(Math.max((y + 0.5) * scaleY - 0.5, 0), box.height - 1);
    const y0 = Math.floor(sy);
    const wy = sy - y0;
    const row0 = (box.top + y0) * width * 3;
    const row1 = (box.top + Math.min(y0 + 1, box.height - 1)) * width * 3;
    let o = y * size * 3;
    for (let x = 0; x < size; x++) {
      const wx = xw[x]!;
      const a = row0 + xs0[x]!;
      const b = row0 + xs1[x]!;
      const c = row1 + xs0[x]!;
      const d = row1 + xs1[x]!;
      // The four weights once per pixel, then the three channels (unrolled: this is the hot loop).
      const w00 = ((1 - wx) * (1 - wy)) / 255;
      const w10 = (wx * (1 - wy)) / 255;
      const w01 = ((1 - wx) * wy) / 255;
      const w11 = (wx * wy) / 255;
      out[o++] = w00 * data[a]! + w10 * data[b]! + w01 * data[c]! + w11 * data[d]!;
      out[o++] = w00 * data[a + 1]! + w10 * data[b + 1]! + w01 * data[c + 1]! + w11 * data[d + 1]!;
      out[o++] = w00 * data[a + 2]! + w10 * data[b + 2]! + w01 * data[c + 2]! + w11 * data[d + 2]!;
    }
  }
  return { data: out, width: size, height: size };
}

/**
 * Rotate counter-clockwise by `degrees` about the image centre, bilinear, zeros outside (torchvision
 * `rotate(tensor, angle, BILINEAR)`, whose grid_sample pads with zeros).
 */
export function rotate(image: FloatImage, degrees: number): FloatImage {
  if (degrees === 0) return image;
  const { width, height, data } = image;
  const out = new Float32Array(data.length);
  const radians = (degrees * Math.PI) / 180;
  const cos = Math.cos(radians);
  const sin = Math.sin(radians);
  const cx = width / 2;
  const cy = height / 2;
  for (let y = 0; y < height; y++) {
    const dy = y + 0.5 - cy;
    for (let x = 0; x < width; x++) {
      const dx = x + 0.5 - cx;
      // Inverse map: where in the input does this output pixel come from (y axis points down).
      const sx = cos * dx - sin * dy + cx - 0.5;
      const sy = sin * dx + cos * dy + cy - 0.5;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      if (x0 < -1 || y0 < -1 || x0 >= width || y0 >= height) continue;
      const wx = sx - x0;
      const wy = sy - y0;
      // Taps outside the image count as zero (grid_sample's zero padding): give them weight 0.
      const inX0 = x0 >= 0;
      const inX1 = x0 + 1 < width;
      const inY0 = y0 >= 0;
      const inY1 = y0 + 1 < height;
      const w00 = inX0 && inY0 ? (1 - wx) * (1 - wy) : 0;
      const w10 = inX1 && inY0 ? wx * (1 - wy) : 0;
      const w01 = inX0 && inY1 ? (1 - wx) * wy : 0;
      const w11 = inX1 && inY1 ? wx * wy : 0;
      const cx0 = inX0 ? x0 : 0;
      const cx1 = inX1 ? x0 + 1 : 0;
      const row0 = (inY0 ? y0 : 0) * width;
      const row1 = (inY1 ? y0 + 1 : 0) * width;
      const i00 = (row0 + cx0) * 3;
      const i10 = (row0 + cx1) * 3;
      const i01 = (row1 + cx0) * 3;
      const i11 = (row1 + cx1) * 3;
      const o = (y * width + x) * 3;
      out[o] = w00 * data[i00]! + w10 * data[i10]! + w01 * data[i01]! + w11 * data[i11]!;
      out[o + 1] = w00 * data[i00 + 1]! + w10 * data[i10 + 1]! + w01 * data[i01 + 1]! + w11 * data[i11 + 1]!;
      out[o + 2] = w00 * data[i00 + 2]! + w10 * data[i10 + 2]! + w01 * data[i01 + 2]! + w11 * data[i11 + 2]!;
    }
  }
  return { data: out, width, height };
}

function clampUnit(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

/** torchvision `adjust_brightness` on floats: scale, clamp to [0, 1]. In place. */
export function adjustBrightness(image: FloatImage, factor: number): FloatImage {
  if (factor === 1) return image;
  const { data } = image;
  for (let i = 0; i < data.length; i++) data[i] = clampUnit(data[i]! * factor);
  return image;
}

/** torchvision `adjust_contrast` on floats: blend with the mean of the ITU-R 601 gray image, clamp. In place. */
export function adjustContrast(image: FloatImage, factor: number): FloatImage {
  if (factor === 1) return image;
  const { data } = image;
  let sum = 0;
  for (let i = 0; i < data.length; i += 3) sum += 0.2989 * data[i]! + 0.587 * data[i + 1]! + 0.114 * data[i + 2]!;
  const mean = sum / (data.length / 3);
  const offset = (1 - factor) * mean;
  for (let i = 0; i < data.length; i++) data[i] = clampUnit(factor * data[i]! + offset);
  return image;
}

/** Add N(0, σ²) to each pixel's gray level (all channels alike), clamp. In place. */
export function addGaussianNoise(image: FloatImage, sigma: number, rng: Rng): FloatImage {
  if (sigma === 0) return image;
  const { data } = image;
  const pixels = data.length / 3;
  for (let p = 0; p < pixels; p += 2) {
    // Box–Muller gives two independent normals per pair of uniforms: one for each of two pixels.
    const radius = sigma * Math.sqrt(-2 * Math.log(1 - rng.next())); // 1 − u keeps the logarithm finite
    const angle = 2 * Math.PI * rng.next();
    addGray(data, p * 3, radius * Math.cos(angle));
    if (p + 1 < pixels) addGray(data, p * 3 + 3, radius * Math.sin(angle));
  }
  return image;
}

function addGray(data: Float32Array, i: number, noise: number): void {
  data[i] = clampUnit(data[i]! + noise);
  data[i + 1] = clampUnit(data[i + 1]! + noise);
  data[i + 2] = clampUnit(data[i + 2]! + noise);
}

/** (x − mean[c]) / std[c], writing into `out` at `offset` (a batch buffer). */
export function normalizeInto(image: FloatImage, { mean, std }: Normalization, out: Float32Array, offset: number): void {
  const { data } = image;
  const scale = [1 / std[0], 1 / std[1], 1 / std[2]];
  for (let i = 0; i < data.length; i += 3) {
    out[offset + i] = (data[i]! - mean[0]) * scale[0]!;
    out[offset + i + 1] = (data[i + 1]! - mean[1]) * scale[1]!;
    out[offset + i + 2] = (data[i + 2]! - mean[2]) * scale[2]!;
  }
}

/** Crop (and mirror) uint8 pixels and normalise them with the arithmetic of image.ts `normalize`. */
export function normalizeCropInto(image: RgbImage, box: CropBox, flip: boolean, { mean, std }: Normalization, out: Float32Array, offset: number): void {
  let o = offset;
  for (let y = 0; y < box.height; y++) {
    for (let x = 0; x < box.width; x++) {
      const i = ((box.top + y) * image.width + box.left + (flip ? box.width - 1 - x : x)) * 3;
      for (let c = 0; c < 3; c++) out[o++] = (image.data[i + c]! / 255 - mean[c]!) / std[c]!;
    }
  }
}

/** torchvision `erase` on a normalised size×size×3 image stored at `offset` of `out`. */
export function eraseInto(out: Float32Array, offset: number, size: number, box: EraseBox): void {
  for (let y = box.top; y < box.top + box.height; y++) {
    out.fill(box.value, offset + (y * size + box.left) * 3, offset + (y * size + box.left + box.width) * 3);
  }
}

/**
 * Contrast-limited adaptive histogram equalisation (Zuiderveld 1994) of the gray level, as OpenCV's
 * `createCLAHE(clipLimit, (n, n))` computes it: a clipped, redistributed histogram per tile, its CDF as
 * the tile's mapping, and each pixel mapped through the four nearest tiles' mappings, interpolated
 * bilinearly. Written here because sharp's `clahe` (libvips hist_local) is a per-pixel sliding window
 * whose cost grows with the window: ~100 ms per 256-pixel film against ~1 ms for this. The films
 * are monochrome, so the ITU-R 601 gray level is equalised and written to all three channels.
 * OpenCV's CLAHE bins 256 levels, so a float (deep DICOM) film is binned, and equalised, at 8 bits:
 * the one augmentation that quantises (its output is a new contrast, not the film's levels).
 */
export function clahe(image: RgbImage, clipLimit: number, tileGridSize: number): RgbImage {
  const { width, height, data } = image;
  const tileWidth = Math.ceil(width / tileGridSize);
  const tileHeight = Math.ceil(height / tileGridSize);
  const tilesX = Math.ceil(width / tileWidth);
  const tilesY = Math.ceil(height / tileHeight);
  const gray = new Uint8Array(width * height);
  for (let i = 0, j = 0; i < gray.length; i++, j += 3) gray[i] = Math.round(0.299 * data[j]! + 0.587 * data[j + 1]! + 0.114 * data[j + 2]!);

  const luts = new Uint8Array(tilesX * tilesY * 256);
  const histogram = new Int32Array(256);
  for (let ty = 0; ty < tilesY; ty++) {
    for (let tx = 0; tx < tilesX; tx++) {
      histogram.fill(0);
      const x0 = tx * tileWidth;
      const y0 = ty * tileHeight;
      const x1 = Math.min(x0 + tileWidth, width);
      const y1 = Math.min(y0 + tileHeight, height);
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) histogram[gray[y * width + x]!]!++;
      const area = (x1 - x0) * (y1 - y0);
      // Clip each bin at clipLimit × the mean bin height and spread the excess evenly (OpenCV's scheme).
      const limit = Math.max(Math.floor((clipLimit * area) / 256), 1);
      let clipped = 0;
      for (let i = 0; i < 256; i++) {
        if (histogram[i]! > limit) {
          clipped += histogram[i]! - limit;
          histogram[i] = limit;
        }
      }
      const batch = Math.floor(clipped / 256);
      let residual = clipped - batch * 256;
      for (let i = 0; i < 256; i++) histogram[i]! += batch;
      if (residual > 0) {
        const step = Math.max(Math.floor(256 / residual), 1);
        for (let i = 0; i < 256 && residual > 0; i += step, residual--) histogram[i]!++;
      }
      const lut = (ty * tilesX + tx) * 256;
      let sum = 0;
      for (let i = 0; i < 256; i++) {
        sum += histogram[i]!;
        luts[lut + i] = Math.min(255, Math.round((sum * 255) / area));
      }
    }
  }

  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const fy = y / tileHeight - 0.5;
    const ty0 = Math.max(Math.floor(fy), 0);
    const ty1 = Math.min(Math.floor(fy) + 1, tilesY - 1);
    const wy = fy < 0 ? 0 : Math.min(fy - Math.floor(fy), 1);
    for (let x = 0; x < width; x++) {
      const fx = x / tileWidth - 0.5;
      const tx0 = Math.max(Math.floor(fx), 0);
      const tx1 = Math.min(Math.floor(fx) + 1, tilesX - 1);
      const wx = fx < 0 ? 0 : Math.min(fx - Math.floor(fx), 1);
      const v = gray[y * width + x]!;
      const top = (1 - wx) * luts[(ty0 * tilesX + tx0) * 256 + v]! + wx * luts[(ty0 * tilesX + tx1) * 256 + v]!;
      const bottom = (1 - wx) * luts[(ty1 * tilesX + tx0) * 256 + v]! + wx * luts[(ty1 * tilesX + tx1) * 256 + v]!;
      const value = Math.round((1 - wy) * top + wy * bottom);
      out.fill(value, (y * width + x) * 3, (y * width + x) * 3 + 3);
    }
  }
  return { data: out, width, height };
}

/** The eval transform's centre crop (torchvision's offsets) as a crop box. */
export function centerCropSquare(width: number, height: number, size: number): CropBox {
  const { left, top } = centerCropBox(width, height, size);
  return { top, left, width: size, height: size };
}

/**
 * Mixup partners: a random cycle through the batch, so no image is paired with itself (a plain
 * random permutation leaves fixed points, and an unlucky one leaves the whole batch unmixed).
 */
export function mixupPartners(n: number, rng: Rng): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = randomInt(rng, i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const partners = new Array<number>(n);
  for (let k = 0; k < n; k++) partners[order[k]!] = order[(k + 1) % n]!;
  return partners;
}

/**
 * Mixup over a prepared batch, in place: image i becomes λ·x_i + (1−λ)·x_perm(i) and its target the
 * same mix of one-hot labels. Returns the soft targets (N×C).
 */
export function mixupBatch(images: Float32Array, labels: Int32Array, numClasses: number, lambda: number, permutation: readonly number[]): Float32Array {
  const n = labels.length;
  const pixels = images.length / n;
  const original = images.slice();
  for (let i = 0; i < n; i++) {
    const j = permutation[i]!;
    const a = i * pixels;
    const b = j * pixels;
    for (let k = 0; k < pixels; k++) images[a + k] = lambda * original[a + k]! + (1 - lambda) * original[b + k]!;
  }
  const targets = new Float32Array(n * numClasses);
  for (let i = 0; i < n; i++) {
    targets[i * numClasses + labels[i]!]! += lambda;
    targets[i * numClasses + labels[permutation[i]!]!]! += 1 - lambda;
  }
  return targets;
}
