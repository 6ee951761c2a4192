/**
 * A built model's ONNX graph, emitted from the model itself: the tfjs LayersModel is walked in
 * topological order and each layer is handed to the one emitter of its class (`emitters` below), so
 * no architecture is written twice. The graph takes NCHW float32 (already normalised) with a dynamic
 * batch dimension and returns logits; its weights are the torchvision state-dict keys in torch's
 * layout (the key rule of src/models/blocks.ts: a layer holding weights is named by its module path).
 *
 * Layout: tfjs computes in NHWC, torch and ONNX convolutions in NCHW. Every value carries its layout,
 * and an emitter asks for the one its op needs: convolutions, pooling and BatchNorm want NCHW;
 * LayerNorm and a Linear over a feature map act on the channel axis, so they want channels-last
 * (NHWC), exactly where torchvision's ConvNeXt block permutes. A value is transposed once per layout
 * however many layers read it.
 *
 * Padding: a ZeroPadding2D is kept pending on its value and folded into the pads of the convolution
 * or pooling that reads it. For max pooling that means ONNX's −inf padding, which is torch's (the
 * zero padding of src/models/blocks.ts equals it only because its input is a ReLU output).
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import { float, GraphBuilder, int, ints, type OnnxGraph } from './graph.js';

export type Layout = 'NCHW' | 'NHWC' | 'flat';

/** A tensor of the graph as the walk sees it. `pads` [top, left, bottom, right]: zero padding not yet applied. */
export interface Value {
  name: string;
  layout: Layout;
  pads?: readonly [number, number, number, number];
  /** [H, W] of a feature map (the model's image size is fixed), set for the layer reading it. */
  spatial?: readonly [number, number];
}

/** The input's name and the output's, as every emitted graph has them. */
export const onnxInputName = 'input';
export const onnxOutputName = 'logits';
/** The symbolic batch dimension. */
export const onnxBatchDimension = 'batch';

type Config = Record<string, unknown>;
type Emitter = (layer: tfl.layers.Layer, inputs: Value[], graph: Walk) => Value;

/**
 * Where a training graph (train.ts) replaces an emitter's inference-mode node: BatchNorm with batch
 * statistics (a name: the normalised output; undefined: the layer stays in inference mode) and the
 * dropout and stochastic-depth masks. Without hooks every emitter gives the inference graph.
 */
export interface EmitHooks {
  batchNorm?(layer: tfl.layers.Layer, x: Value, operands: readonly string[], epsilon: number, walk: Walk): string | undefined;
  mask?(layer: tfl.layers.Layer, x: Value, walk: Walk): Value;
}

/** The builder plus the layout bookkeeping shared by the emitters. */
export class Walk {
  readonly builder = new GraphBuilder();
  private readonly transposed = new Map<string, Value>();

  constructor(readonly hooks: EmitHooks = {}) {}

  /** `value` in `layout` (a cached Transpose), with any pending padding applied first. */
  as(value: Value, layout: Layout, layer: string): Value {
    const padded = this.applyPads(value, layer);
    if (padded.layout === layout) return padded;
    if (padded.layout === 'flat' || layout === 'flat') throw new Error(`${layer}: cannot turn a ${padded.layout} value into ${layout}`);
    const key = `${padded.name}->${layout}`;
    const cached = this.transposed.get(key);
    if (cached !== undefined) return cached;
    const perm = layout === 'NHWC' ? [0, 2, 3, 1] : [0, 3, 1, 2];
    const result: Value = { name: this.builder.node('Transpose', [padded.name], `${padded.name}_${layout.toLowerCase()}`, { perm: ints(perm) }), layout };
    this.transposed.set(key, result);
    return result;
  }

  /** An explicit Pad node for a consumer that cannot absorb pending padding. */
  private applyPads(value: Value, layer: string): Value {
    if (value.pads === undefined) return value;
    const [top, left, bottom, right] = value.pads;
    const pads = this.builder.int64([0, 0, top, left, 0, 0, bottom, right]);
    // Pad's default mode is 'constant' with zeros.
    return { name: this.builder.node('Pad', [value.name, pads], `${layer}_pad`), layout: 'NCHW' };
  }
}

const config = (layer: tfl.layers.Layer): Config => layer.getConfig() as Config;
const pair = (value: unknown): [number, number] => (Array.isArray(value) ? [Number(value[0]), Number(value[1])] : [Number(value), Number(value)]);

function only(layer: tfl.layers.Layer, inputs: Value[]): Value {
  if (inputs.length !== 1) throw new Error(`${layer.name}: expected one input, got ${inputs.length}`);
  return inputs[0]!;
}

/** tfjs' padding mode as explicit [top, left, bottom, right], plus whatever padding is pending on the input. */
function windowPads(layer: tfl.layers.Layer, input: Value, kernel: [number, number], strides: [number, number], dilation: [number, number] = [1, 1]): number[] {
  const pending = input.pads ?? [0, 0, 0, 0];
  if (config(layer)['padding'] === 'valid') return [...pending];
  if (config(layer)['padding'] !== 'same') throw new Error(`${layer.name}: padding '${String(config(layer)['padding'])}' has no ONNX emitter`);
  if (input.pads !== undefined) throw new Error(`${layer.name}: 'same' padding after explicit padding has no ONNX emitter`);
  // tfjs 'same' (TensorFlow's rule): total = max((ceil(n/s) − 1)·s + effective k − n, 0), the smaller half before.
  if (input.spatial === undefined) throw new Error(`${layer.name}: the spatial size must be known to emit 'same' padding`);
  const [h, w] = input.spatial;
  const total = [h, w].map((n, axis) => Math.max((Math.ceil(n / strides[axis]!) - 1) * strides[axis]! + (kernel[axis]! - 1) * dilation[axis]! + 1 - n, 0));
  const before = total.map((t) => Math.floor(t / 2));
  return [before[0]!, before[1]!, total[0]! - before[0]!, total[1]! - before[1]!];
}

function requireLinearActivation(layer: tfl.layers.Layer): void {
  const activation = config(layer)['activation'];
  if (activation !== undefined && activation !== 'linear') throw new Error(`${layer.name}: a fused '${String(activation)}' activation has no ONNX emitter`);
}

function conv(layer: tfl.layers.Layer, inputs: Value[], walk: Walk, depthwise: boolean): Value {
  const input = only(layer, inputs);
  const c = config(layer);
  requireLinearActivation(layer);
  const kernelShape = layer.weights[0]!.shape as number[]; // tfjs [kh, kw, in, out] or [kh, kw, c, multiplier]
  const [kh, kw, inChannels, last] = kernelShape as [number, number, number, number];
  if (depthwise && last !== 1) throw new Error(`${layer.name}: depth multiplier ${last} has no ONNX emitter`);
  const outChannels = depthwise ? inChannels : last;
  const strides = pair(c['strides']);
  const dilation = pair(c['dilationRate'] ?? 1);
  const pads = windowPads(layer, input, [kh, kw], strides, dilation);
  const weight = walk.builder.weight(`${layer.name}.weight`, depthwise ? [inChannels, 1, kh, kw] : [outChannels, inChannels, kh, kw]);
  const operands = [walk.as({ ...input, pads: undefined }, 'NCHW', layer.name).name, weight];
  if (c['useBias'] === true) operands.push(walk.builder.weight(`${layer.name}.bias`, [outChannels]));
  const attributes = { kernel_shape: ints([kh, kw]), strides: ints(strides), pads: ints(pads), dilations: ints(dilation), group: int(depthwise ? inChannels : 1) };
  return { name: walk.builder.node('Conv', operands, layer.name, attributes), layout: 'NCHW' };
}

/** ConvNeXt's layer scale: x · γ, γ the [C, 1, 1] parameter named by the layer itself (src/weights/keymap.ts). */
function layerScale(layer: tfl.layers.Layer, inputs: Value[], walk: Walk): Value {
  const input = only(layer, inputs);
  const channels = (layer.weights[0]!.shape as number[]).reduce((a, b) => a * b, 1);
  const scale = walk.builder.weight(layer.name, [channels, 1, 1]);
  const x = walk.as(input, input.layout === 'flat' ? 'flat' : input.layout, layer.name);
  // [C, 1, 1] broadcasts over NCHW as torch applies it; channels-last and flat values take it as [C].
  const factor = x.layout === 'NCHW' ? scale : walk.builder.node('Reshape', [scale, walk.builder.int64([channels])], `${layer.name}_vector`);
  return { name: walk.builder.node('Mul', [x.name, factor], `${layer.name}_mul`), layout: x.layout };
}

function isBlockParameterLayer(layer: tfl.layers.Layer): boolean {
  return layer.name.endsWith('.layer_scale');
}

function batchNorm(layer: tfl.layers.Layer, inputs: Value[], walk: Walk): Value {
  const input = only(layer, inputs);
  const channels = layer.weights[0]!.shape[0] as number;
  const epsilon = Number((layer as unknown as { epsilon: number }).epsilon ?? config(layer)['epsilon']);
  const axis = config(layer)['axis'];
  if (axis !== undefined && axis !== -1 && !(Array.isArray(axis) && axis.length === 1 && (axis[0] === -1 || axis[0] === 3))) {
    throw new Error(`${layer.name}: BatchNorm over axis ${JSON.stringify(axis)} has no ONNX emitter`);
  }
  const x = walk.as(input, input.layout === 'flat' ? 'flat' : 'NCHW', layer.name);
  const operands = ['weight', 'bias', 'running_mean', 'running_var'].map((param) => walk.builder.weight(`${layer.name}.${param}`, [channels]));
  const trained = walk.hooks.batchNorm?.(layer, x, operands, epsilon, walk);
  if (trained !== undefined) return { name: trained, layout: x.layout };
  return { name: walk.builder.node('BatchNormalization', [x.name, ...operands], layer.name, { epsilon: float(epsilon) }), layout: x.layout };
}

function layerNorm(layer: tfl.layers.Layer, inputs: Value[], walk: Walk): Value {
  const input = only(layer, inputs);
  const channels = layer.weights[0]!.shape[0] as number;
  const epsilon = Number((layer as unknown as { epsilon: number }).epsilon ?? config(layer)['epsilon']);
  // tfjs' channel axis is the last: -1, or resolved to 3 on a feature map and 1 on [N, C].
  const lastAxis = input.layout === 'flat' ? 1 : 3;
  const axis = config(layer)['axis'];
  const axes = axis === undefined ? [-1] : Array.isArray(axis) ? axis : [axis];
  if (axes.length !== 1 || (axes[0] !== -1 && axes[0] !== lastAxis)) {
    throw new Error(`${layer.name}: LayerNorm over axis ${JSON.stringify(axis)} has no ONNX emitter`);
  }
  const x = walk.as(input, input.layout === 'flat' ? 'flat' : 'NHWC', layer.name);
  const operands = ['weight', 'bias'].map((param) => walk.builder.weight(`${layer.name}.${param}`, [channels]));
  return { name: walk.builder.node('LayerNormalization', [x.name, ...operands], layer.name, { axis: int(-1), epsilon: float(epsilon) }), layout: x.layout };
}

/** tfjs activation identifiers → ONNX. SiLU and exact GELU have no op before opset 20, so they are composed. */
function activation(layer: tfl.layers.Layer, inputs: Value[], walk: Walk): Value {
  const input = only(layer, inputs);
  const x = walk.as(input, input.layout, layer.name);
  const kind = String(config(layer)['activation']);
  const b = walk.builder;
  let name: string;
  if (kind === 'relu') name = b.node('Relu', [x.name], layer.name);
  else if (kind === 'sigmoid') name = b.node('Sigmoid', [x.name], layer.name);
  else if (kind === 'swish') name = b.node('Mul', [x.name, b.node('Sigmoid', [x.name], `${layer.name}_sigmoid`)], layer.name);
  else if (kind === 'gelu') {
    // nn.GELU(): x · Φ(x) = 0.5 · x · (1 + erf(x / √2)), the exact form tfjs' 'gelu' computes too.
    const erf = b.node('Erf', [b.node('Mul', [x.name, b.float32([Math.SQRT1_2])], `${layer.name}_scaled`)], `${layer.name}_erf`);
    const cdf = b.node('Mul', [b.node('Add', [erf, b.float32([1])], `${layer.name}_shifted`), b.float32([0.5])], `${layer.name}_cdf`);
    name = b.node('Mul', [x.name, cdf], layer.name);
  } else if (kind === 'linear') return x;
  else throw new Error(`${layer.name}: activation '${kind}' has no ONNX emitter`);
  return { name, layout: x.layout };
}

function pool(layer: tfl.layers.Layer, inputs: Value[], walk: Walk, opType: 'MaxPool' | 'AveragePool'): Value {
  const input = only(layer, inputs);
  const c = config(layer);
  const kernel = pair(c['poolSize']);
  const strides = pair(c['strides'] ?? c['poolSize']);
  const pads = windowPads(layer, input, kernel, strides);
  const x = walk.as({ ...input, pads: undefined }, 'NCHW', layer.name);
  const attributes: Record<string, ReturnType<typeof int>> = { kernel_shape: ints(kernel), strides: ints(strides), pads: ints(pads) };
  // Padding that a ZeroPadding2D put there is averaged as zeros, as tfjs averages it.
  if (opType === 'AveragePool' && input.pads !== undefined) attributes['count_include_pad'] = int(1);
  return { name: walk.builder.node(opType, [x.name], layer.name, attributes), layout: 'NCHW' };
}

/** nn.AdaptiveAvgPool2d(1) + flatten → [N, C]. */
function globalAveragePool(layer: tfl.layers.Layer, inputs: Value[], walk: Walk): Value {
  const input = only(layer, inputs);
  const x = walk.as(input, input.layout === 'NHWC' ? 'NHWC' : 'NCHW', layer.name);
  if (x.layout === 'NHWC') return { name: walk.builder.node('ReduceMean', [x.name], layer.name, { axes: ints([1, 2]), keepdims: int(0) }), layout: 'flat' };
  const pooled = walk.builder.node('GlobalAveragePool', [x.name], `${layer.name}_pool`);
  return { name: walk.builder.node('Flatten', [pooled], layer.name, { axis: int(1) }), layout: 'flat' };
}

/** nn.Linear: Gemm on [N, C]; on a feature map it acts on the channel axis, so there x·Wᵀ + b channels-last. */
function linear(layer: tfl.layers.Layer, inputs: Value[], walk: Walk): Value {
  const input = only(layer, inputs);
  requireLinearActivation(layer);
  const [inFeatures, outFeatures] = layer.weights[0]!.shape as [number, number];
  const b = walk.builder;
  const weight = b.weight(`${layer.name}.weight`, [outFeatures, inFeatures]);
  const useBias = config(layer)['useBias'] !== false;
  const bias = useBias ? b.weight(`${layer.name}.bias`, [outFeatures]) : undefined;
  if (input.layout === 'flat') {
    const operands = bias === undefined ? [input.name, weight] : [input.name, weight, bias];
    return { name: b.node('Gemm', operands, layer.name, { transB: int(1) }), layout: 'flat' };
  }
  const x = walk.as(input, 'NHWC', layer.name);
  const transposed = b.node('Transpose', [weight], `${layer.name}.weight_t`, { perm: ints([1, 0]) });
  const product = b.node('MatMul', [x.name, transposed], bias === undefined ? layer.name : `${layer.name}_matmul`);
  return { name: bias === undefined ? product : b.node('Add', [product, bias], layer.name), layout: 'NHWC' };
}

/** Add / Multiply: every operand in the first one's layout (ONNX broadcasts [N, C, 1, 1] against [N, C, H, W]). */
function elementwise(opType: 'Add' | 'Mul'): Emitter {
  return (layer, inputs, walk) => {
    const layout = inputs[0]!.layout;
    const names = inputs.map((input) => walk.as(input, layout, layer.name).name);
    let name = names[0]!;
    for (let i = 1; i < names.length; i++) name = walk.builder.node(opType, [name, names[i]!], i === names.length - 1 ? layer.name : `${layer.name}_${i}`);
    return { name, layout };
  };
}

/** torch.cat(…, 1): the channel axis of whatever layout the first operand has. */
function concatenate(layer: tfl.layers.Layer, inputs: Value[], walk: Walk): Value {
  const axis = config(layer)['axis'];
  if (axis !== -1 && axis !== 3) throw new Error(`${layer.name}: Concatenate over axis ${String(axis)} has no ONNX emitter`);
  const layout = inputs[0]!.layout;
  const names = inputs.map((input) => walk.as(input, layout, layer.name).name);
  return { name: walk.builder.node('Concat', names, layer.name, { axis: int(layout === 'NHWC' ? 3 : 1) }), layout };
}

/** The one reshape the models use: pooled [N, C] back to a 1×1 map (squeeze-excitation), NCHW [N, C, 1, 1] here. */
function reshape(layer: tfl.layers.Layer, inputs: Value[], walk: Walk): Value {
  const input = only(layer, inputs);
  const target = config(layer)['targetShape'] as number[];
  if (input.layout !== 'flat' || target.length !== 3 || target[0] !== 1 || target[1] !== 1) {
    throw new Error(`${layer.name}: a reshape of a ${input.layout} value to [${target.join(', ')}] has no ONNX emitter`);
  }
  return { name: walk.builder.node('Unsqueeze', [input.name, walk.builder.int64([2, 3])], layer.name), layout: 'NCHW' };
}

/** torch pads k//2 with zeros: kept pending for the window op that reads it (see the file comment). */
function zeroPadding(layer: tfl.layers.Layer, inputs: Value[], walk: Walk): Value {
  const input = only(layer, inputs);
  const padding = config(layer)['padding'] as [[number, number], [number, number]];
  const [[top, bottom], [left, right]] = padding;
  const x = walk.as(input, 'NCHW', layer.name);
  return { ...x, pads: [top, left, bottom, right] };
}

/** Dropout and stochastic depth are the identity at inference; a training graph multiplies by a mask (EmitHooks). */
const identity: Emitter = (layer, inputs, walk) => walk.hooks.mask?.(layer, only(layer, inputs), walk) ?? only(layer, inputs);

/** One emitter per layer class the registered models use (the training build's and the portable build's). */
const emitters: Record<string, Emitter> = {
  Conv2D: (layer, inputs, walk) => conv(layer, inputs, walk, false),
  DepthwiseConv2D: (layer, inputs, walk) => (isBlockParameterLayer(layer) ? layerScale(layer, inputs, walk) : conv(layer, inputs, walk, true)),
  TorchBatchNorm: batchNorm,
  BatchNormalization: batchNorm,
  TorchLayerNorm: layerNorm,
  LayerNormalization: layerNorm,
  LayerScale: layerScale,
  Activation: activation,
  MaxPooling2D: (layer, inputs, walk) => pool(layer, inputs, walk, 'MaxPool'),
  AveragePooling2D: (layer, inputs, walk) => pool(layer, inputs, walk, 'AveragePool'),
  GlobalAveragePooling2D: globalAveragePool,
  Dense: linear,
  Add: elementwise('Add'),
  Multiply: elementwise('Mul'),
  Concatenate: concatenate,
  Reshape: reshape,
  ZeroPadding2D: zeroPadding,
  SeededDropout: identity,
  Dropout: identity,
  StochasticDepth: identity,
};

/** The layer classes that have an emitter (a test checks every registered model uses only these). */
export const onnxLayerClasses: readonly string[] = Object.keys(emitters);

interface InboundNode {
  inputTensors: tfl.SymbolicTensor[];
  outputTensors: tfl.SymbolicTensor[];
}

/** The walk over a model's layers so far: the builder and each emitted symbolic tensor's value. */
export interface EmittedLayers {
  walk: Walk;
  /** by tfjs SymbolicTensor id */
  values: Map<number, Value>;
}

/** The graph's NCHW input [batch, 3, S, S] (batch: the symbolic dimension, or a fixed one). */
export function inputInfo(model: tfl.LayersModel, batch: number | string): { name: string; shape: (number | string)[] } {
  const [, height, width, channels] = model.inputs[0]!.shape as [null, number, number, number];
  return { name: onnxInputName, shape: [batch, channels, height, width] };
}

/**
 * Emits `model`'s layers in topological order up to and including `lastLayer` (default: all of them),
 * each through the one emitter of its class.
 */
export function emitLayers(model: tfl.LayersModel, name: string, lastLayer?: string, hooks: EmitHooks = {}): EmittedLayers {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) throw new Error(`${name}: an ONNX graph is emitted for one input and one output`);
  const walk = new Walk(hooks);
  const values = new Map<number, Value>();
  walk.builder.fresh(onnxInputName);
  values.set(model.inputs[0]!.id, { name: onnxInputName, layout: 'NCHW' });
  for (const layer of model.layers) {
    if (layer.getClassName() === 'InputLayer') continue;
    const nodes = (layer as unknown as { inboundNodes: InboundNode[] }).inboundNodes;
    if (nodes.length !== 1) throw new Error(`${name}: layer ${layer.name} is applied ${nodes.length} times; the emitter expects each layer once`);
    const emitter = emitters[layer.getClassName()];
    if (emitter === undefined) throw new Error(`${name}: layer ${layer.name} is a ${layer.getClassName()}, which has no ONNX emitter`);
    const inputs = nodes[0]!.inputTensors.map((tensor) => {
      const value = values.get(tensor.id);
      if (value === undefined) throw new Error(`${name}: ${layer.name} reads ${tensor.name} before it is emitted`);
      const [, h, w] = tensor.shape;
      return typeof h === 'number' && typeof w === 'number' && tensor.shape.length === 4 ? { ...value, spatial: [h, w] as const } : value;
    });
    values.set(nodes[0]!.outputTensors[0]!.id, emitter(layer, inputs, walk));
    if (layer.name === lastLayer) return { walk, values };
  }
  if (lastLayer !== undefined) throw new Error(`${name}: model has no layer '${lastLayer}'`);
  return { walk, values };
}

/** The ONNX graph of a built model: NCHW float32 input [batch, 3, S, S], logits [batch, classes]. */
export function modelToOnnxGraph(model: tfl.LayersModel, name: string = model.name): OnnxGraph {
  const { walk, values } = emitLayers(model, name);
  const last = values.get(model.outputs[0]!.id);
  if (last === undefined) throw new Error(`${name}: the model's output was never emitted`);
  const flat = walk.as(last, 'flat', 'output');
  const classes = model.outputs[0]!.shape[1] as number;
  walk.builder.node('Identity', [flat.name], onnxOutputName, {}, { exact: true });
  return walk.builder.finish(name, [inputInfo(model, onnxBatchDimension)], [{ name: onnxOutputName, shape: [onnxBatchDimension, classes] }]);
}

