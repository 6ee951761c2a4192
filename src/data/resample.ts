/**
 * PIL's BILINEAR resize of a float image (`Image.resize(size, Image.BILINEAR)` on mode "F", the
 * resize torchvision runs on a PIL image), for the pixels sharp cannot take: sharp casts raw float
 * input to 8 bits, which would round a deep DICOM film to 256 levels. Written here because no npm
 * package implements PIL's separable, antialiased triangle filter on float arrays.
 *
 * The algorithm (PIL's Resample.c): per output sample, the triangle filter scaled by the reduction
 * factor (support 1 × max(scale, 1)) around the source centre (x + 0.5) × scale, weights normalised;
 * the horizontal pass first into a float32 image, then the vertical pass.
 */

interface Coefficients {
  start: Int32Array;
  size: Int32Array;
  weights: Float64Array;
  /** Weights per output sample (the longest window). */
  stride: number;
}

function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const size = new Int32Array(outSize);
  const weights = new Float64Array(outSize * stride);
  for (let x = 0; x < outSize; x++) {
    const center = (x + 0.5) * scale;
    const min = Math.max(Math.trunc(center - support + 0.5), 0);
    const count = Math.min(Math.trunc(center + support + 0.5), inSize) - min;
    let total = 0;
    for (let k = 0; k < count; k++) {
      const t = Math.abs((k + min - center + 0.5) / filterScale);
      const w = t < 1 ? 1 - t : 0;
      weights[x * stride + k] = w;
      total += w;
    }
    if (total !== 0) for (let k = 0; k < count; k++) weights[x * stride + k]! /= total;
    start[x] = min;
    size[x] = count;
  }
  return { start, size, weights, stride };
}

/** Resize an HWC float image with `channels` interleaved samples. */
export function resampleBilinear(data: Float32Array, width: number, height: number, channels: number, outWidth: number, outHeight: number): Float32Array {
  const horizontal = coefficients(width, outWidth);
  const across = new Float32Array(outWidth * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < outWidth; x++) {
      const from = horizontal.start[x]!;
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let k = 0; k < horizontal.size[x]!; k++) sum += horizontal.weights[x * horizontal.stride + k]! * data[((y * width) + from + k) * channels + c]!;
        across[(y * outWidth + x) * channels + c] = sum;
      }
    }
  }
  const vertical = coefficients(height, outHeight);
  const out = new Float32Array(outWidth * outHeight * channels);
  const row = outWidth * channels;
  for (let y = 0; y < outHeight; y++) {
    const from = vertical.start[y]!;
    for (let i = 0; i < row; i++) {
      let sum = 0;
      for (let k = 0; k < vertical.size[y]!; k++) sum += vertical.weights[y * vertical.stride + k]! * across[(from + k) * row + i]!;
      out[y * row + i] = sum;
    }
  }
  return out;
}
