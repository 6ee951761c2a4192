/**
 * Grad-CAM (Selvaraju et al. 2017): where in the image the model looked for a class.
 *
 * The inference engine cuts the model after a named spatial feature map A (the registry entry's
 * `gradCamLayer`: ResNet's last layer4 block, EfficientNet's final 1×1 conv stage) and gives A with
 * the gradient of the class's logit with respect to it (InferenceEngine.features). The gradient,
 * averaged over space, weights A's channels; the ReLU of the weighted sum is the map.
 */
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { centerCropBox, displayBytes, resizedShape, type EvalTransform, type RgbImage } from '../data/index.js';
import type { CamFeatures, InferenceEngine } from '../engine/index.js';
import { heatColor } from './web/heat.js';

export interface GradCamResult {
  /** Non-negative map on the feature grid, scaled so its maximum is 1 (all zeros if nothing supports the class). */
  map: Float32Array;
  height: number;
  width: number;
  classIndex: number;
  layerName: string;
}

/** What Grad-CAM needs of a model: an inference engine's `features`. */
export type FeatureSource = Pick<InferenceEngine, 'features'>;

/** The map from a feature map and its gradient: ReLU(Σ_c mean_space(∂y/∂A_c) · A_c), scaled to a maximum of 1. */
export function camFromFeatures(features: CamFeatures, classIndex: number): GradCamResult {
  const { height, width, channels, activations, gradients } = features;
  const cells = height * width;
  const channelWeights = new Float64Array(channels);
  for (let p = 0; p < cells; p++) for (let c = 0; c < channels; c++) channelWeights[c] += gradients[p * channels + c]!;
  for (let c = 0; c < channels; c++) channelWeights[c] /= cells;
  const map = new Float32Array(cells);
  let max = 0;
  for (let p = 0; p < cells; p++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += activations[p * channels + c]! * channelWeights[c]!;
    map[p] = Math.max(0, sum);
    max = Math.max(max, map[p]!);
  }
  // a map whose maximum is below 1e-12 stays below 1 rather than blowing noise up to full scale
  if (max > 0) for (let p = 0; p < cells; p++) map[p] = map[p]! / Math.max(max, 1e-12);
  return { map, height, width, classIndex, layerName: features.layer };
}

/** Grad-CAM at `layerName` of one preprocessed image (crop×crop×3, NHWC) for `classIndex`. */
export async function gradCam(source: FeatureSource, layerName: string, image: Float32Array, classIndex: number): Promise<GradCamResult> {
  return camFromFeatures(await source.features(image, { layer: layerName, classIndex }), classIndex);
}

/** The colour ramp, shared with the browser page (web/heat.ts has no imports, so the page bundles it as is). */
export { heatColor };

/** The map bilinearly upsampled to width×height (half-pixel centres, as cv2.resize / torch align_corners=False). */
export async function upsampleMap(result: GradCamResult, width: number, height = width): Promise<Float32Array> {
  const upsampled = tf.tidy(() => tf.image.resizeBilinear(tf.tensor4d(result.map, [1, result.height, result.width, 1]), [height, width], false, true));
  try {
    return (await upsampled.data()) as Float32Array;
  } finally {
    upsampled.dispose();
  }
}

/** A rectangle in pixels of the overlay. */
export interface OverlayRegion {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface GradCamOverlay {
  png: Buffer;
  width: number;
  height: number;
  /** Where the model's centre crop lies in the overlay: the only part the model saw. */
  region: OverlayRegion;
}

/** Overlays are drawn at the input's own resolution, enlarged so the shorter side is at least this. */
export const minOverlaySide = 256;

/** Enlarging stops before the longer side passes this: a long strip is drawn as it is, not blown up to millions of pixels a side. */
export const maxEnlargedSide = 4096;

/** How much the overlay enlarges an image of this size: to minOverlaySide on the shorter side, never past maxEnlargedSide on the longer, never shrinking. */
export function overlayScale(width: number, height: number): number {
  return Math.max(1, Math.min(minOverlaySide / Math.min(width, height), maxEnlargedSide / Math.max(width, height)));
}

/**
 * The heat map over the whole input image, at its own resolution (enlarged to minOverlaySide on the
 * shorter side, so a 32 px crop's map is still readable, as far as maxEnlargedSide allows): the model's centre crop carries the map,
 * colour weight growing with it so unimportant regions keep the radiograph readable; what the model
 * never saw (cut off by the centre crop) is dimmed and the crop is outlined.
 */
export async function gradCamOverlayPng(original: RgbImage, transform: EvalTransform, result: GradCamResult): Promise<GradCamOverlay> {
  const resized = resizedShape(original.width, original.height, transform.resize);
  const box = centerCropBox(resized.width, resized.height, transform.crop);
  const scale = overlayScale(original.width, original.height);
  const width = Math.round(original.width * scale);
  const height = Math.round(original.height * scale);
  // Drawn on the decoded image as the model saw it (a DICOM after its window), rounded for display.
  const bytes = displayBytes(original);
  const base =
    width === original.width && height === original.height
      ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      : await sharp(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { raw: { width: original.width, height: original.height, channels: 3 } })
          .resize(width, height, { kernel: 'linear', fit: 'fill' })
          .raw()
          .toBuffer();
  // Crop box from resized-image pixels to overlay pixels.
  const fx = width / resized.width;
  const fy = height / resized.height;
  const left = Math.round(box.left * fx);
  const top = Math.round(box.top * fy);
  const region = { left, top, width: Math.max(1, Math.min(width - left, Math.round(transform.crop * fx))), height: Math.max(1, Math.min(height - top, Math.round(transform.crop * fy))) };
  const heat = await upsampleMap(result, region.width, region.height);
  const out = Buffer.alloc(width * height * 3);
  const border = Math.max(1, Math.round(Math.min(width, height) / 256));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      const rx = x - region.left;
      const ry = y - region.top;
      const inside = rx >= 0 && ry >= 0 && rx < region.width && ry < region.height;
      const edge = inside && (rx < border || ry < border || rx >= region.width - border || ry >= region.height - border);
      if (!inside || (edge && (region.width < width || region.height < height))) {
        for (let c = 0; c < 3; c++) out[p * 3 + c] = edge ? 255 : Math.round(base[p * 3 + c]! * 0.45);
        continue;
      }
      const t = heat[ry * region.width + rx]!;
      const color = heatColor(t);
      const alpha = 0.25 + 0.5 * t;
      for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.round((1 - alpha) * base[p * 3 + c]! + alpha * color[c]!);
    }
  }
  const png = await sharp(out, { raw: { width, height, channels: 3 } }).png().toBuffer();
  return { png, width, height, region };
}
