/**
 * The map between a built model's weights and torchvision state-dict keys. It is one rule, because
 * layers that hold weights are named by their torchvision module path (src/models/blocks.ts):
 *
 *   key = <layer name> + '.' + torchParam[tfjs weight name]
 *
 * plus the layout transposes between NHWC tfjs and NCHW torch:
 *   conv       torch [out, in, kh, kw]  ↔ tfjs [kh, kw, in, out]
 *   depthwise  torch [c, 1, kh, kw]     ↔ tfjs [kh, kw, c, 1]
 *   linear     torch [out, in]          ↔ tfjs [in, out]
 *   BatchNorm  weight, bias, running_mean, running_var (1-D, unchanged), num_batches_tracked (int64 scalar)
 *   LayerNorm  weight, bias (1-D, unchanged)
 *
 * and one rule for a parameter torchvision hangs on a block itself rather than on a child module
 * (ConvNeXt's `layer_scale`, [C, 1, 1]): it lives in a one-weight layer named `<block>.<parameter>`,
 * and that name is the key.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { UserError } from '../util/index.js';
import { getModel, type ModelEntry, type ModelName } from '../models/index.js';
import { numel, type StateDict, type StateTensor } from './types.js';

type Layout = 'conv' | 'depthwise' | 'linear' | 'vector' | 'count' | 'channelScale';

/** One state-dict entry of a model: where its value lives and how its layout differs. */
export interface WeightSlot {
  key: string;
  layerName: string;
  layout: Layout;
  /** null: a BatchNorm counter the layer does not keep (stock tfjs BatchNormalization). */
  variable: tfl.LayerVariable | null;
  torchShape: number[];
}

/** tfjs weight name (after the layer's scope) → torch parameter name and layout, per layer class. */
const paramMaps: Record<string, Record<string, [string, Layout]>> = {
  Conv2D: { kernel: ['weight', 'conv'], bias: ['bias', 'vector'] },
  DepthwiseConv2D: { depthwise_kernel: ['weight', 'depthwise'], bias: ['bias', 'vector'] },
  Dense: { kernel: ['weight', 'linear'], bias: ['bias', 'vector'] },
  TorchBatchNorm: {
    gamma: ['weight', 'vector'],
    beta: ['bias', 'vector'],
    moving_mean: ['running_mean', 'vector'],
    moving_variance: ['running_var', 'vector'],
    num_batches_tracked: ['num_batches_tracked', 'count'],
  },
  BatchNormalization: {
    gamma: ['weight', 'vector'],
    beta: ['bias', 'vector'],
    moving_mean: ['running_mean', 'vector'],
    moving_variance: ['running_var', 'vector'],
  },
  TorchLayerNorm: { gamma: ['weight', 'vector'], beta: ['bias', 'vector'] },
  LayerNormalization: { gamma: ['weight', 'vector'], beta: ['bias', 'vector'] },
};

/**
 * Block parameters by the last segment of their layer's name, whatever the layer's class (the training
 * build's LayerScale keeps [C]; the portable build's 1×1 depthwise conv [1, 1, C, 1]: the same C values).
 */
const bareParameters: Record<string, { torchShape(channels: number): number[] }> = {
  layer_scale: { torchShape: (channels) => [channels, 1, 1] },
};

function bareParameterOf(layerName: string) {
  return bareParameters[layerName.slice(layerName.lastIndexOf('.') + 1)];
}

/** Parameter order inside one torch module, as its state_dict lists them. */
const paramOrder = ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'];

/** Permutations tfjs → torch (torch → tfjs is the inverse). */
const toTorch: Partial<Record<Layout, number[]>> = { conv: [3, 2, 0, 1], depthwise: [2, 3, 0, 1], linear: [1, 0] };
const toTfjs: Partial<Record<Layout, number[]>> = { conv: [2, 3, 1, 0], depthwise: [2, 3, 0, 1], linear: [1, 0] };

/** Orders module paths as torch registers them: numbers numerically, names by the entry's table. */
function compareModulePaths(order: readonly string[]) {
  const rank = (segment: string) => {
    const index = order.indexOf(segment);
    return index < 0 ? order.length : index;
  };
  return (a: string, b: string): number => {
    const left = a.split('.');
    const right = b.split('.');
    for (let i = 0; i < Math.min(left.length, right.length); i++) {
      const x = left[i]!;
      const y = right[i]!;
      if (x === y) continue;
      const nx = /^\d+$/.test(x) ? Number(x) : NaN;
      const ny = /^\d+$/.test(y) ? Number(y) : NaN;
      if (!Number.isNaN(nx) && !Number.isNaN(ny)) return nx - ny;
      return rank(x) - rank(y) || (x < y ? -1 : 1);
    }
    return left.length - right.length;
  };
}

/** Every state-dict entry of the model, in torchvision's key order. */
export function weightSlots(model: tfl.LayersModel, entry: ModelEntry): WeightSlot[] {
  const layers = model.layers.filter((layer) => layer.weights.length > 0);
  layers.sort((a, b) => compareModulePaths(entry.moduleOrder)(a.name, b.name));
  const slots: WeightSlot[] = [];
  for (const layer of layers) {
    const bare = bareParameterOf(layer.name);
    if (bare !== undefined) {
      if (layer.weights.length !== 1) throw new Error(`${layer.name}: a block parameter's layer must hold exactly one weight`);
      const variable = layer.weights[0]!;
      const channels = (variable.shape as number[]).reduce((a, b) => a * b, 1);
      slots.push({ key: layer.name, layerName: layer.name, layout: 'channelScale', variable, torchShape: bare.torchShape(channels) });
      continue;
    }
    const className = layer.getClassName();
    const params = paramMaps[className];
    if (params === undefined) throw new Error(`${layer.name}: no torchvision mapping for a ${className} layer`);
    const layerSlots: WeightSlot[] = [];
    for (const variable of layer.weights) {
      const tfjsName = variable.originalName.slice(variable.originalName.lastIndexOf('/') + 1);
      const mapped = params[tfjsName];
      if (mapped === undefined) throw new Error(`${layer.name}: no torchvision name for weight ${variable.originalName}`);
      const [param, layout] = mapped;
      const shape = variable.shape as number[];
      const permutation = toTorch[layout];
      layerSlots.push({
        key: `${layer.name}.${param}`,
        layerName: layer.name,
        layout,
        variable,
        torchShape: permutation ? permutation.map((axis) => shape[axis]!) : shape,
      });
    }
    if (className === 'BatchNormalization') {
      layerSlots.push({ key: `${layer.name}.num_batches_tracked`, layerName: layer.name, layout: 'count', variable: null, torchShape: [] });
    }
    const position = (slot: WeightSlot) => paramOrder.indexOf(slot.key.slice(layer.name.length + 1));
    layerSlots.sort((a, b) => position(a) - position(b));
    slots.push(...layerSlots);
  }
  return slots;
}

/** Reorders a row-major array of `shape` by `permutation` (output axis i is input axis permutation[i]). */
export function permute(data: Float32Array, shape: readonly number[], permutation: readonly number[]): Float32Array {
  const rank = shape.length;
  const inStrides = new Array<number>(rank);
  let stride = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = stride;
    stride *= shape[i]!;
  }
  const outShape = permutation.map((axis) => shape[axis]!);
  const strideOf = permutation.map((axis) => inStrides[axis]!);
  const out = new Float32Array(data.length);
  if (rank === 2) {
    const [rows, cols] = outShape as [number, number];
    const [s0, s1] = strideOf as [number, number];
    let o = 0;
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[o++] = data[i * s0 + j * s1]!;
    return out;
  }
  if (rank === 4) {
    const [d0, d1, d2, d3] = outShape as [number, number, number, number];
    const [s0, s1, s2, s3] = strideOf as [number, number, number, number];
    let o = 0;
    for (let a = 0; a < d0; a++)
      for (let b = 0; b < d1; b++)
        for (let c = 0; c < d2; c++) {
          const base = a * s0 + b * s1 + c * s2;
          for (let d = 0; d < d3; d++) out[o++] = data[base + d * s3]!;
        }
    return out;
  }
  throw new Error(`permute supports rank 2 and 4, got ${rank}`);
}

/**
 * The model's weights as a torchvision state dict. BatchNorm's `num_batches_tracked` is the count of
 * training-mode batches the layer has seen (0 for a stock tfjs BatchNormalization, which does not count).
 */
export async function modelToStateDict(model: tfl.LayersModel, name: ModelName): Promise<StateDict> {
  const slots = weightSlots(model, getModel(name));
  // every read in flight at once: a GPU backend reads only asynchronously
  const values = await Promise.all(slots.map((slot) => (slot.variable === null ? null : slot.variable.read().data())));
  const dict: StateDict = new Map();
  slots.forEach((slot, i) => {
    const read = values[i] as Float32Array | null;
    if (slot.layout === 'count') {
      const count = read === null ? 0 : Math.round(read[0]!);
      dict.set(slot.key, { dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(count)) });
      return;
    }
    const permutation = toTorch[slot.layout];
    const data = permutation ? permute(read!, slot.variable!.shape as number[], permutation) : Float32Array.from(read!);
    dict.set(slot.key, { dtype: 'float32', shape: slot.torchShape, data });
  });
  return dict;
}

export interface LoadReport {
  loaded: string[];
  missing: string[];
  unexpected: string[];
  mismatched: string[];
  headReinitialised: string[];
}

export interface LoadOptions {
  /** Default true: any missing / unexpected / mismatched key is a UserError naming them, and nothing is loaded. */
  strict?: boolean;
  /** A checkpoint head of another shape (the 1000-class ImageNet head) is dropped; the model's head keeps its init. */
  allowHeadSwap?: boolean;
}

const shapeText = (shape: readonly number[]) => `[${shape.join(', ')}]`;

function listKeys(keys: string[], limit = 8): string {
  return keys.length <= limit ? keys.join(', ') : `${keys.slice(0, limit).join(', ')} … and ${keys.length - limit} more`;
}

/**
 * Loads torchvision-keyed weights into a built model. `num_batches_tracked` may be absent (checkpoints
 * saved before BatchNorm counted batches lack it; torch fills in 0 too). With `allowHeadSwap`, when any
 * classifier key is missing, unexpected or mis-shaped, all the checkpoint's classifier keys are dropped
 * and the model's classifier keeps its initialisation; the caller logs `headReinitialised`.
 */
export function loadStateDict(model: tfl.LayersModel, name: ModelName, dict: StateDict, options: LoadOptions = {}): LoadReport {
  const entry = getModel(name);
  const strict = options.strict ?? true;
  const slots = weightSlots(model, entry);
  const isHead = (key: string) => key.startsWith(`${entry.classifierName}.`);
  const expected = new Set(slots.map((slot) => slot.key));
  const rename = entry.renameCheckpointKey;
  if (rename !== undefined) dict = new Map([...dict].map(([key, tensor]) => [rename(key), tensor]));

  const missing: string[] = [];
  const mismatched: string[] = [];
  const mismatchDetails: string[] = [];
  const ready: [WeightSlot, StateTensor | null][] = [];
  for (const slot of slots) {
    const tensor = dict.get(slot.key);
    if (tensor === undefined) {
      if (slot.layout === 'count') ready.push([slot, null]);
      else missing.push(slot.key);
      continue;
    }
    const dtypeOk = slot.layout === 'count' ? true : tensor.dtype === 'float32';
    const shapeOk = slot.layout === 'count' ? numel(tensor.shape) === 1 : shapeText(tensor.shape) === shapeText(slot.torchShape);
    if (!dtypeOk || !shapeOk) {
      mismatched.push(slot.key);
      mismatchDetails.push(`${slot.key} (checkpoint ${tensor.dtype} ${shapeText(tensor.shape)}, model ${slot.layout === 'count' ? 'int64' : 'float32'} ${shapeText(slot.torchShape)})`);
      continue;
    }
    ready.push([slot, tensor]);
  }
  let unexpected = [...dict.keys()].filter((key) => !expected.has(key));

  let headReinitialised: string[] = [];
  let missingOut = missing;
  let mismatchedOut = mismatched;
  let details = mismatchDetails;
  if (options.allowHeadSwap && [...missing, ...mismatched, ...unexpected].some(isHead)) {
    headReinitialised = slots.filter((slot) => isHead(slot.key)).map((slot) => slot.key);
    missingOut = missing.filter((key) => !isHead(key));
    mismatchedOut = mismatched.filter((key) => !isHead(key));
    details = mismatchDetails.filter((text) => !isHead(text));
    unexpected = unexpected.filter((key) => !isHead(key));
    for (let i = ready.length - 1; i >= 0; i--) if (isHead(ready[i]![0].key)) ready.splice(i, 1);
  }

  if (strict && dict.size === 0) {
    throw new UserError(`these weights do not fit ${name}: the file holds no tensors at all (an empty state dict), so it is no checkpoint of any model: give the weights file that training or export wrote`);
  }
  if (strict && missingOut.length + mismatchedOut.length + unexpected.length > 0) {
    const problems: string[] = [];
    if (missingOut.length > 0) problems.push(`missing keys: ${listKeys(missingOut)}`);
    if (unexpected.length > 0) problems.push(`unexpected keys: ${listKeys(unexpected)}`);
    if (details.length > 0) problems.push(`mis-shaped keys: ${listKeys(details, 4)}`);
    // Only when the classifier is all that differs: weights of another architecture miss the head too, and a head swap would not help them.
    const differing = [...missing, ...mismatched, ...unexpected];
    const headHint =
      !options.allowHeadSwap && differing.some(isHead) && differing.every(isHead)
        ? ` (the classifier '${entry.classifierName}' differs: to allow a head swap, fine-tune from these weights with \`osteo train --pretrained FILE\`, which replaces the head with a fresh 3-class one; predict, eval and export need weights with a 3-class head)`
        : '';
    throw new UserError(`these weights do not fit ${name}: ${problems.join('; ')}${headHint}`);
  }

  const loaded: string[] = [];
  for (const [slot, tensor] of ready) {
    if (slot.variable === null) continue; // a stock BatchNormalization keeps no batch counter
    const value = tf.tidy(() => {
      if (slot.layout === 'count') return tf.scalar(tensor === null ? 0 : Number(tensor.data[0]!), 'float32');
      const data = tensor!.data as Float32Array;
      const permutation = toTfjs[slot.layout];
      // Always a fresh array: the cpu backend adopts the array it is given, and the dict stays the caller's.
      const values = permutation ? permute(data, tensor!.shape, permutation) : data.slice();
      return tf.tensor(values, slot.variable!.shape as number[], 'float32');
    });
    slot.variable.write(value);
    value.dispose();
    if (tensor !== null) loaded.push(slot.key);
  }
  return { loaded, missing: missingOut, unexpected, mismatched: mismatchedOut, headReinitialised };
}
