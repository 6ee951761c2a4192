/**
 * The tfjs side of Grad-CAM (Selvaraju et al. 2017): a model cut after a named spatial feature map A
 * (ResNet's last layer4 block, EfficientNet's final 1×1 conv stage), the rest being the head
 * (pooling, classifier), and the gradient of one class's logit with respect to A. What the map is
 * made of from these two arrays is src/eval/gradcam.ts's business, whatever engine computed them.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { UserError } from '../util/index.js';
import type { CamFeatures, FeatureRequest, InferenceEngine } from './types.js';

interface CamSplit {
  features: tfl.LayersModel;
  head: tfl.layers.Layer[];
  layerName: string;
}

// Sub-models share the original's layers (no new weights), so they are cached, never disposed:
// disposing one would release the shared weights. Keyed by model, then by layer name.
const splits = new WeakMap<tfl.LayersModel, Map<string, CamSplit>>();

type LayerWithNodes = tfl.layers.Layer & { inboundNodes: { inboundLayers: tfl.layers.Layer[] }[] };

/** The head must be a plain chain (pool → flatten/dropout → dense…) from the cut to the model output, each layer fed by the one before. */
function checkSequentialHead(model: tfl.LayersModel, layers: LayerWithNodes[], cut: number, layerName: string): void {
  let previous: tfl.layers.Layer = layers[cut]!;
  for (const layer of layers.slice(cut + 1)) {
    const inbound = layer.inboundNodes.flatMap((node) => node.inboundLayers);
    if (inbound.length !== 1 || inbound[0] !== previous) {
      throw new Error(`Grad-CAM needs a sequential head after '${layerName}', but '${layer.name}' is not fed by '${previous.name}' alone`);
    }
    previous = layer;
  }
  if (cut === layers.length - 1 || model.outputs.length !== 1 || model.outputs[0]!.sourceLayer !== previous) {
    throw new Error(`Grad-CAM could not trace a head from '${layerName}' to the model output`);
  }
}

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
  checkSequentialHead(model, layers, cut, layerName);
  const features = tfl.model({ inputs: model.inputs, outputs: layers[cut]!.output as tfl.SymbolicTensor });
  const split = { features, head: layers.slice(cut + 1), layerName };
  const forModel = splits.get(model) ?? new Map<string, CamSplit>();
  forModel.set(layerName, split);
  splits.set(model, forModel);
  return split;
}

/** The feature map at `request.layer` of one preprocessed image (size×size×3, NHWC) and the gradient of the class's logit with respect to it. */
export async function layerFeatures(model: tfl.LayersModel, image: Float32Array, request: FeatureRequest): Promise<CamFeatures> {
  const split = splitAtLayer(model, request.layer);
  const size = model.inputs[0]!.shape[1] as number;
  if (image.length !== size * size * 3) throw new UserError(`Grad-CAM needs one image of ${size}×${size}×3 values, got ${image.length} values`);
  const [activations, gradients] = tf.tidy(() => {
    const x = tf.tensor4d(image, [1, size, size, 3]);
    const a = split.features.predict(x) as tf.Tensor4D;
    const score = (input: tf.Tensor): tf.Tensor => {
      let y: tf.Tensor = input;
      for (const layer of split.head) y = layer.apply(y, { training: false }) as tf.Tensor;
      const classes = y.shape[1]!;
      if (request.classIndex < 0 || request.classIndex >= classes) throw new UserError(`class ${request.classIndex} is outside the model's ${classes} classes`);
      return tf.sum(tf.slice(y, [0, request.classIndex], [1, 1]));
    };
    return [a, tf.grad(score)(a) as tf.Tensor4D];
  });
  try {
    const [, height, width, channels] = activations.shape;
    const [a, g] = (await Promise.all([activations.data(), gradients.data()])) as [Float32Array, Float32Array];
    return { layer: split.layerName, height, width, channels, activations: a, gradients: g };
  } finally {
    tf.dispose([activations, gradients]);
  }
}

/** A tfjs LayersModel held by the caller, seen through the inference engine's `features` (tests, and models built outside an engine). */
export function layersModelFeatures(model: tfl.LayersModel): Pick<InferenceEngine, 'features'> {
  return { features: (image, request) => layerFeatures(model, image, request) };
}
