/**
 * Grad-CAM (Selvaraju et al. 2017): where in the image the model looked for a class.
 *
 * The model is cut after a named spatial feature map A (the registry entry's `gradCamLayer`:
 * ResNet's last layer4 block, EfficientNet's final 1×1 conv stage); the rest is the head (pooling,
 * classifier). The class score's gradient with respect to A, averaged over space, weights A's
 * channels; the ReLU of the weighted sum is the map.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import sharp from 'sharp';
import { centerCropBox, resizedShape, type EvalTransform, type RgbImage } from '../data/index.js';
import { UserError } from '../util/index.js';
import { heatColor } from './web/heat.js';

interface CamSplit {
  features: tfl.LayersModel;
  head: tfl.layers.Layer[];
  layerName: string;
}

// Sub-models share the original's layers (no new weights), so they are cached, never disposed:
// disposing one would release the shared weights. Keyed by model, then by layer name.
const splits = new WeakMap<tfl.LayersModel, Map<string, CamSplit>>();

type LayerWithNodes = tfl.layers.Layer & { inboundNodes: { inboundLayers: tfl.layers.Layer[] }[] };

/**
 * The model cut after `layerName`, whose output must be a feature map [n, h, w, c], and the chain of
 * layers after it. The name comes from the registry, so a wrong one is a bug (Error, not UserError).
 */
export function splitAtLayer(model: tfl.LayersModel, layerName: string): CamSplit {
  const cached = splits.get(model)?.get(layerName);
  if (cached) return cached;
  const layers = model.layers as LayerWithNodes[];
  const cut = layers.findIndex((layer) => layer.name === layerName);
  if (cut < 0) throw new Error(`model ${model.name} has no layer '${layerName}' for Grad-CAM`);
  const shape = layers[cut]!.outputShape as (number | null)[];
  if (!Array.isArray(shape) || shape.length !== 4) throw new Error(`Grad-CAM layer '${layerName}' of ${model.name} is not a feature map: its output shape is ${JSON.stringify(shape)}`);
  const head = layers.slice(cut + 1);
  // The head must be a plain chain (pool → flatten/dropout → dense…), each layer fed by the one before.
  let previous: tfl.layers.Layer = layers[cut]!;
  for (const layer of head) {
    const inbound = layer.inboundNodes.flatMap((node) => node.inboundLayers);
    if (inbound.length !== 1 || inbound[0] !== previous) {
      throw new Error(`Grad-CAM needs a sequential head after '${layerName}', but '${layer.name}' is not fed by '${previous.name}' alone`);
    }
    previous = layer;
  }
  if (head.length === 0 || previous !== layers[layers.length - 1] || model.outputs.length !== 1 || model.outputs[0]!.sourceLayer !== previous) {
    throw new Error(`Grad-CAM could not trace a head from '${layerName}' to the model output`);
  }
  const features = tfl.model({ inputs: model.inputs, outputs: layers[cut]!.output as tfl.SymbolicTensor });
  const split = { features, head, layerName };
  const forModel = splits.get(model) ?? new Map<string, CamSplit>();
  forModel.set(layerName, split);
  splits.set(model, forModel);
  return split;
}

export interface GradCamResult {
  /** Non-negative map on the feature grid, scaled so its maximum is 1 (all zeros if nothing supports the class). */
  map: Float32Array;
  height: number;
  width: number;
  classIndex: number;
  layerName: string;
}

/** Grad-CAM at `layerName` of one preprocessed image (size×size×3, NHWC) for `classIndex`. */
export async function gradCam(model: tfl.LayersModel, layerName: string, image: Float32Array, imageSize: number, classIndex: number): Promise<GradCamResult> {
  const split = splitAtLayer(model, layerName);
  const [map, height, width] = tf.tidy(() => {
    const x = tf.tensor4d(image, [1, imageSize, imageSize, 3]);
    const activations = split.features.predict(x) as tf.Tensor4D;
    const score = (a: tf.Tensor): tf.Tensor => {
      let y: tf.Tensor = a;
      for (const layer of split.head) y = layer.apply(y, { training: false }) as tf.Tensor;
      const classes = y.shape[1]!;
      if (classIndex < 0 || classIndex >= classes) throw new UserError(`class ${classIndex} is outside the model's ${classes} classes`);
      return tf.sum(tf.slice(y, [0, classIndex], [1, 1]));
    };
    const gradients = tf.grad(score)(activations) as tf.Tensor4D;
    const channelWeights = tf.mean(gradients, [1, 2], true); // [1,1,1,C]
    const cam = tf.squeeze(tf.relu(tf.sum(tf.mul(activations, channelWeights), 3)), [0]) as tf.Tensor2D; // [h,w]
    const max = tf.max(cam);
    const scaled = tf.where(tf.greater(max, 0), tf.div(cam, tf.maximum(max, 1e-12)), tf.zerosLike(cam));
    return [scaled, activations.shape[1], activations.shape[2]] as [tf.Tensor2D, number, number];
  });
  try {
    return { map: (await map.data()) as Float32Array, height, width, classIndex, layerName: split.layerName };
  } finally {
    map.dispose();
  }
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

/**
 * The heat map over the whole input image, at its own resolution (at least minOverlaySide on the
 * shorter side, so a 32 px crop's map is still readable): the model's centre crop carries the map,
 * colour weight growing with it so unimportant regions keep the radiograph readable; what the model
 * never saw (cut off by the centre crop) is dimmed and the crop is outlined.
 */
export async function gradCamOverlayPng(original: RgbImage, transform: EvalTransform, result: GradCamResult): Promise<GradCamOverlay> {
  const resized = resizedShape(original.width, original.height, transform.resize);
  const box = centerCropBox(resized.width, resized.height, transform.crop);
  const scale = Math.max(1, minOverlaySide / Math.min(original.width, original.height));
  const width = Math.round(original.width * scale);
  const height = Math.round(original.height * scale);
  const base =
    width === original.width && height === original.height
      ? Buffer.from(original.data.buffer, original.data.byteOffset, original.data.byteLength)
      : await sharp(Buffer.from(original.data.buffer, original.data.byteOffset, original.data.byteLength), { raw: { width: original.width, height: original.height, channels: 3 } })
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
