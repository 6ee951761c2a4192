/**
 * Grad-CAM's ONNX graph: the model's own forward graph (emit.ts) read at the Grad-CAM layer A, plus
 * the backward of the head after A, emitted as ONNX ops, giving ∂logit_c/∂A for every class c.
 *
 * The head after every registered model's CAM layer is short and sequential: global average pooling,
 * then on the pooled [N, C] vector only dropouts (identities), linears, ReLUs and — ConvNeXt's
 * LayerNorm2d — LayerNorms. Each has its backward rule below; the seed is the identity matrix over
 * the classes, so the backward runs once with the classes as its batch and yields the whole Jacobian
 * (a handful of classes: as cheap as one row). Global pooling spreads each class's gradient evenly
 * over the H×W positions (÷ H·W), so the spatial gradient is Expand of the pooled one.
 *
 * One input, one output, as every osteo session has (src/backend/onnxruntime.ts): the image [1, 3, S, S]
 * in, and out one row [1, H·W·C · (1 + classes)]: A channels-last (H, W, C), then for each class c
 * its gradient in the same layout. `camFromOutput` (src/engine/) cuts it apart.
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import { emitLayers, inputInfo, type Value, type Walk } from './emit.js';
import { int, ints, type OnnxGraph } from './graph.js';

export const onnxCamOutputName = 'cam';

/** What the CAM graph's one output row holds: A is height×width×channels, then one such block per class. */
export interface CamGraph {
  graph: OnnxGraph;
  layer: string;
  height: number;
  width: number;
  channels: number;
  classes: number;
}

interface InboundNode {
  inboundLayers: tfl.layers.Layer[];
  inputTensors: tfl.SymbolicTensor[];
  outputTensors: tfl.SymbolicTensor[];
}
type LayerWithNodes = tfl.layers.Layer & { inboundNodes: InboundNode[] };

const config = (layer: tfl.layers.Layer): Record<string, unknown> => layer.getConfig() as Record<string, unknown>;

/** The CAM layer and the chain of layers after it to the output (each fed by the one before alone); a wrong name is a bug. */
function splitHead(model: tfl.LayersModel, name: string, layerName: string): { cut: LayerWithNodes; head: LayerWithNodes[] } {
  const layers = model.layers as LayerWithNodes[];
  const index = layers.findIndex((layer) => layer.name === layerName);
  if (index < 0) throw new Error(`${name} has no layer '${layerName}' for Grad-CAM`);
  const cut = layers[index]!;
  const shape = cut.outputShape as (number | null)[];
  if (!Array.isArray(shape) || shape.length !== 4) throw new Error(`Grad-CAM layer '${layerName}' of ${name} is not a feature map: its output shape is ${JSON.stringify(shape)}`);
  const head = layers.slice(index + 1);
  let previous: tfl.layers.Layer = cut;
  for (const layer of head) {
    const inbound = layer.inboundNodes.flatMap((node) => node.inboundLayers);
    if (inbound.length !== 1 || inbound[0] !== previous) throw new Error(`Grad-CAM needs a sequential head after '${layerName}', but '${layer.name}' is not fed by '${previous.name}' alone`);
    previous = layer;
  }
  if (head.length === 0 || model.outputs[0]!.sourceLayer !== previous) throw new Error(`Grad-CAM could not trace a head from '${layerName}' to the output of ${name}`);
  return { cut, head };
}

/** A backward rule: the gradient [classes, in] of a flat layer's input from its output's [classes, out]. */
type Backward = (layer: tfl.layers.Layer, input: Value, grad: string, walk: Walk) => string;

/** y = x·Wᵀ + b: ∂/∂x = g·W (W in torch's [out, in] layout, as the forward emitter declared it). */
const linearBackward: Backward = (layer, input, grad, walk) => {
  if (input.layout !== 'flat') throw new Error(`${layer.name}: Grad-CAM's backward handles a linear on pooled features only`);
  const [inFeatures, outFeatures] = layer.weights[0]!.shape as [number, number];
  const weight = walk.builder.weight(`${layer.name}.weight`, [outFeatures, inFeatures]);
  return walk.builder.node('MatMul', [grad, weight], `${layer.name}_grad`);
};

/** ReLU: the gradient where the forward input was positive (0 at 0, as tfjs and torch take it). */
const activationBackward: Backward = (layer, input, grad, walk) => {
  const kind = String(config(layer)['activation']);
  if (kind === 'linear') return grad;
  if (kind !== 'relu') throw new Error(`${layer.name}: Grad-CAM's backward has no rule for a '${kind}' activation in the head`);
  const b = walk.builder;
  const positive = b.node('Greater', [input.name, b.float32([0])], `${layer.name}_positive`);
  const mask = b.node('Cast', [positive], `${layer.name}_mask`, { to: int(1) /* FLOAT */ });
  return b.node('Mul', [grad, mask], `${layer.name}_grad`);
};

/**
 * y = γ·x̂ + β over the last axis, x̂ = (x − μ)/σ, σ = √(var + ε) (biased variance, as torch):
 * ∂/∂x = (u − mean(u) − x̂·mean(u·x̂)) / σ with u = g·γ.
 */
const layerNormBackward: Backward = (layer, input, grad, walk) => {
  if (input.layout !== 'flat') throw new Error(`${layer.name}: Grad-CAM's backward handles a LayerNorm on pooled features only`);
  const b = walk.builder;
  const n = layer.name;
  const channels = layer.weights[0]!.shape[0] as number;
  const epsilon = Number((layer as unknown as { epsilon?: number }).epsilon ?? config(layer)['epsilon']);
  const mean = (x: string, stem: string) => b.node('ReduceMean', [x], stem, { axes: ints([1]), keepdims: int(1) });
  const centred = b.node('Sub', [input.name, mean(input.name, `${n}_mean`)], `${n}_centred`);
  const variance = mean(b.node('Mul', [centred, centred], `${n}_squares`), `${n}_variance`);
  const sigma = b.node('Sqrt', [b.node('Add', [variance, b.float32([epsilon])], `${n}_variance_eps`)], `${n}_sigma`);
  const normalized = b.node('Div', [centred, sigma], `${n}_normalized`);
  const u = b.node('Mul', [grad, b.weight(`${n}.weight`, [channels])], `${n}_u`);
  const projection = b.node('Mul', [normalized, mean(b.node('Mul', [u, normalized], `${n}_u_xhat`), `${n}_u_xhat_mean`)], `${n}_projection`);
  const numerator = b.node('Sub', [b.node('Sub', [u, mean(u, `${n}_u_mean`)], `${n}_u_centred`), projection], `${n}_numerator`);
  return b.node('Div', [numerator, sigma], `${n}_grad`);
};

const identityBackward: Backward = (_layer, _input, grad) => grad;

/** The head layer classes after global pooling that Grad-CAM's backward knows. */
const backwardRules: Record<string, Backward> = {
  Dense: linearBackward,
  Activation: activationBackward,
  TorchLayerNorm: layerNormBackward,
  LayerNormalization: layerNormBackward,
  SeededDropout: identityBackward,
  Dropout: identityBackward,
  StochasticDepth: identityBackward,
};

function valueOf(values: Map<number, Value>, tensor: tfl.SymbolicTensor, layer: string): Value {
  const value = values.get(tensor.id);
  if (value === undefined) throw new Error(`Grad-CAM: the value ${tensor.name} read by ${layer} was never emitted`);
  return value;
}

/** The graph of `model` (built at its image size) giving Grad-CAM's A at `layerName` and ∂logit_c/∂A for every class c. */
export function camGraphOf(model: tfl.LayersModel, name: string, layerName: string): CamGraph {
  const { cut, head } = splitHead(model, name, layerName);
  const [, height, width, channels] = cut.outputShape as [null, number, number, number];
  const classes = model.outputs[0]!.shape[1] as number;
  if (head[0]!.getClassName() !== 'GlobalAveragePooling2D') throw new Error(`Grad-CAM on onnxruntime needs global average pooling right after '${layerName}', ${name} has a ${head[0]!.getClassName()}`);
  const { walk, values } = emitLayers(model, name);
  const b = walk.builder;
  let grad = b.float32(Array.from({ length: classes * classes }, (_, i) => (Math.floor(i / classes) === i % classes ? 1 : 0)), [classes, classes]);
  for (const layer of head.slice(1).reverse()) {
    const rule = backwardRules[layer.getClassName()];
    if (rule === undefined) throw new Error(`${name}: Grad-CAM's backward has no rule for '${layer.name}', a ${layer.getClassName()} in the head`);
    grad = rule(layer, valueOf(values, layer.inboundNodes[0]!.inputTensors[0]!, layer.name), grad, walk);
  }
  // Global average pooling: each position gets 1/(H·W) of the pooled gradient; [classes, H, W, C] channels-last.
  const spread = b.node('Mul', [b.node('Unsqueeze', [grad, b.int64([1, 2])], 'cam_grad_pooled'), b.float32([1 / (height * width)])], 'cam_grad_spread');
  const gradients = b.node('Expand', [spread, b.int64([classes, height, width, channels])], 'cam_gradients');
  const activations = walk.as(valueOf(values, cut.inboundNodes[0]!.outputTensors[0]!, layerName), 'NHWC', 'cam');
  const row = b.int64([1, -1]);
  const parts = [b.node('Reshape', [activations.name, row], 'cam_activations_row'), b.node('Reshape', [gradients, row], 'cam_gradients_row')];
  b.node('Identity', [b.node('Concat', parts, 'cam_row', { axis: int(1) })], onnxCamOutputName, {}, { exact: true });
  const graph = b.finish(`${name}_gradcam`, [inputInfo(model, 1)], [{ name: onnxCamOutputName, shape: [1, height * width * channels * (1 + classes)] }]);
  return { graph, layer: layerName, height, width, channels, classes };
}
