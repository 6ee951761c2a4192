/**
 * A training step of a built model as one ONNX graph: the forward in training mode, the loss, and
 * the backward (grad.ts), for one fixed batch size, so that onnxruntime — which has no training API —
 * runs a step as an ordinary inference session.
 *
 * Training mode: a BatchNorm whose layer trains normalises with the batch's statistics (biased
 * variance, as torch) and the graph returns its running statistics moved by momentum 0.1 towards
 * the batch's (UNBIASED variance, as torch stores it); a frozen layer's BatchNorm stays in inference
 * mode and nothing of a frozen layer gets a gradient. Dropout and stochastic depth multiply by masks
 * that are graph inputs (already scaled by 1/keep, as torch), so that osteo's seeded generator, not
 * the runtime, draws them.
 *
 * Loss: src/engine/loss.ts's −Σ A ⊙ log_softmax(logits) · s, with the coefficient matrix A and the
 * scale s = 1/D as inputs: label smoothing, class weights and soft targets are all in A and D, which
 * the engine computes from the labels, so the graph matches the tfjs engine's loss exactly.
 *
 * Inputs: `input` [B, 3, S, S] (NCHW, normalised), `coefficients` [B, C], `loss_scale` [], one
 * `mask.<layer>` per dropout or stochastic-depth layer with a non-zero rate.
 * With `weightsAsInputs`, every weight is an input named by its torchvision key as well.
 * Outputs: `loss` [], `logits` [B, C], `grad.<key>` per trained parameter (torchvision's key and
 * layout), `update.<key>` per running statistic of a BatchNorm in training mode.
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import { emitLayers, inputInfo, onnxOutputName, type EmitHooks, type Value, type Walk } from './emit.js';
import { int, ints, type GraphNode, type OnnxGraph, type ValueInfo } from './graph.js';
import { appendBackward, type GradientOverride, type RuleContext } from './grad.js';
import type { ConvFormulation } from './rule.js';
import { inferShapes } from './shapes.js';

export const stepCoefficientsName = 'coefficients';
export const stepLossScaleName = 'loss_scale';
export const stepLossName = 'loss';
export const gradientOutputName = (key: string): string => `grad.${key}`;
export const statisticOutputName = (key: string): string => `update.${key}`;
export const maskInputName = (layer: string): string => `mask.${layer}`;

/** torch's BatchNorm momentum: the running statistics move this far towards the batch's. */
const batchNormMomentum = 0.1;

/** A mask input: `element` (dropout: one draw per element) or `row` (stochastic depth: one per sample). */
export interface StepMask {
  layer: string;
  input: string;
  shape: number[];
  rate: number;
  kind: 'element' | 'row';
}

export interface StepGraph {
  graph: OnnxGraph;
  batch: number;
  classes: number;
  /** trained parameter (torchvision key) → its gradient's output */
  gradients: Map<string, string>;
  /** BatchNorm running statistic (torchvision key) → its updated value's output */
  statistics: Map<string, string>;
  masks: StepMask[];
}

/** What the hooks collect while the forward is emitted. */
interface TrainingState {
  batch: number;
  overrides: Map<string, GradientOverride>;
  statistics: Map<string, string>;
  masks: StepMask[];
}

const config = (layer: tfl.layers.Layer): Record<string, unknown> => layer.getConfig() as Record<string, unknown>;

/** The batch-statistics BatchNorm's closed-form backward: ∂x = γ/σ · (dy − (Σdy + x̂·Σdy·x̂)/n), ∂γ = Σ dy·x̂, ∂β = Σ dy. */
function batchNormBackward(parts: { x: string; gamma: string; beta: string; xHat: string; inverseStd: string; axes: string; channel: string; count: number; name: string }): GradientOverride {
  const { x, gamma, beta, xHat, inverseStd, axes, channel, count, name } = parts;
  return {
    inputs: [x, gamma, beta],
    backward(dy: string, ctx: RuleContext) {
      const b = ctx.b;
      const dBeta = b.node('ReduceSum', [dy, axes], `${name}_grad_bias`, { keepdims: int(0) });
      const dGamma = b.node('ReduceSum', [b.node('Mul', [dy, xHat], `${name}_dy_xhat`), axes], `${name}_grad_weight`, { keepdims: int(0) });
      if (!ctx.needs(x)) return [undefined, dGamma, dBeta];
      const shaped = (v: string, stem: string) => b.node('Reshape', [v, channel], stem);
      const scale = b.node('Mul', [shaped(gamma, `${name}_gamma_shaped`), inverseStd], `${name}_grad_scale`);
      const projection = b.node('Add', [shaped(dBeta, `${name}_dbeta_shaped`), b.node('Mul', [xHat, shaped(dGamma, `${name}_dgamma_shaped`)], `${name}_xhat_dgamma`)], `${name}_projection`);
      const centred = b.node('Sub', [dy, b.node('Mul', [projection, b.float32([1 / count])], `${name}_projection_mean`)], `${name}_dy_centred`);
      return [b.node('Mul', [centred, scale], `${name}_grad_input`), dGamma, dBeta];
    },
  };
}

/** BatchNorm with the batch's statistics, its running statistics' update as outputs, and its own backward. */
function trainingBatchNorm(state: TrainingState, layer: tfl.layers.Layer, x: Value, operands: readonly string[], epsilon: number, walk: Walk): string | undefined {
  if (!layer.trainable) return undefined;
  const b = walk.builder;
  const n = layer.name;
  const [gamma, beta, runningMean, runningVar] = operands as [string, string, string, string];
  const shape = layer.outputShape as (number | null)[]; // BatchNorm keeps its input's shape
  const spatial = x.layout === 'flat' ? 1 : Number(shape[1]) * Number(shape[2]);
  const count = state.batch * spatial;
  if (count < 2) throw new Error(`${n}: BatchNorm in training mode needs more than one value per channel (batch ${state.batch})`);
  const axisList = x.layout === 'flat' ? [0] : [0, 2, 3];
  const channel = b.int64(x.layout === 'flat' ? [-1] : [-1, 1, 1]);
  const mean = b.node('ReduceMean', [x.name], `${n}_batch_mean`, { axes: ints(axisList), keepdims: int(1) });
  const centred = b.node('Sub', [x.name, mean], `${n}_centred`);
  const variance = b.node('ReduceMean', [b.node('Mul', [centred, centred], `${n}_squares`)], `${n}_batch_var`, { axes: ints(axisList), keepdims: int(1) });
  const inverseStd = b.node('Reciprocal', [b.node('Sqrt', [b.node('Add', [variance, b.float32([epsilon])], `${n}_var_eps`)], `${n}_sigma`)], `${n}_inverse_std`);
  const xHat = b.node('Mul', [centred, inverseStd], `${n}_xhat`);
  const scaled = b.node('Mul', [xHat, b.node('Reshape', [gamma, channel], `${n}_gamma`)], `${n}_scaled`);
  const y = b.node('Add', [scaled, b.node('Reshape', [beta, channel], `${n}_beta`)], `${n}_train`);
  const row = b.int64([-1]);
  const moved = (running: string, batchValue: string, factor: number, key: string) => {
    const step = b.node('Mul', [b.node('Reshape', [batchValue, row], `${n}_${key}_row`), b.float32([batchNormMomentum * factor])], `${n}_${key}_step`);
    const kept = b.node('Mul', [running, b.float32([1 - batchNormMomentum])], `${n}_${key}_kept`);
    state.statistics.set(running, b.node('Add', [kept, step], statisticOutputName(running), {}, { exact: true }));
  };
  moved(runningMean, mean, 1, 'mean');
  moved(runningVar, variance, count / (count - 1), 'var');
  state.overrides.set(y, batchNormBackward({ x: x.name, gamma, beta, xHat, inverseStd, axes: b.int64(axisList), channel, count, name: n }));
  return y;
}

/** Dropout (a mask per element of a pooled vector) or stochastic depth (one per sample) as a mask input. */
function trainingMask(state: TrainingState, layer: tfl.layers.Layer, x: Value, walk: Walk): Value {
  const rate = Number(config(layer)['rate'] ?? 0);
  if (!(rate > 0)) return x;
  const value = walk.as(x, x.layout, layer.name);
  const row = layer.getClassName() === 'StochasticDepth';
  const outputShape = layer.outputShape as (number | null)[];
  if (!row && value.layout !== 'flat') throw new Error(`${layer.name}: element-wise dropout on a feature map has no training-graph rule`);
  const shape = row ? [state.batch, ...outputShape.slice(1).map(() => 1)] : [state.batch, Number(outputShape[1])];
  const input = maskInputName(layer.name);
  walk.builder.fresh(input);
  state.masks.push({ layer: layer.name, input, shape, rate, kind: row ? 'row' : 'element' });
  return { name: walk.builder.node('Mul', [value.name, input], `${layer.name}_masked`), layout: value.layout };
}

/** The weights that train: parameters (not running statistics) of layers whose `trainable` is set. */
function trainedWeights(model: tfl.LayersModel, graph: OnnxGraph): string[] {
  const layers = new Map(model.layers.map((layer) => [layer.name, layer]));
  return graph.weights
    .filter((ref) => !/\.running_(mean|var)$/.test(ref.name))
    .filter((ref) => {
      const owner = layers.get(ref.name) ?? layers.get(ref.name.slice(0, ref.name.lastIndexOf('.')));
      if (owner === undefined) throw new Error(`weight ${ref.name} belongs to no layer of the model`);
      return owner.trainable;
    })
    .map((ref) => ref.name);
}

/** −Σ A ⊙ log_softmax(z) · s and its gradient (s·(softmax(z)·ΣA − A)), the seed of the backward. */
function emitLoss(walk: Walk, logits: string): string {
  const b = walk.builder;
  const logProbabilities = b.node('LogSoftmax', [logits], 'log_probabilities', { axis: int(1) });
  const weighted = b.node('ReduceSum', [b.node('Mul', [stepCoefficientsName, logProbabilities], 'weighted_log_probabilities')], 'weighted_sum', { keepdims: int(0) });
  b.node('Neg', [b.node('Mul', [weighted, stepLossScaleName], 'scaled_sum')], stepLossName, {}, { exact: true });
  const rowSums = b.node('ReduceSum', [stepCoefficientsName, b.int64([1])], 'coefficient_row_sums', { keepdims: int(1) });
  const probabilities = b.node('Exp', [logProbabilities], 'probabilities');
  const difference = b.node('Sub', [b.node('Mul', [probabilities, rowSums], 'expected_coefficients'), stepCoefficientsName], 'logit_grad_unscaled');
  return b.node('Mul', [difference, stepLossScaleName], 'logit_grad');
}

export interface StepGraphOptions {
  /** How convolution gradients are written (default: by shape, as measured in bench/BENCHMARKS.md). */
  convFormulation?: (node: GraphNode) => ConvFormulation;
  /**
   * Declare the weights (parameters and running statistics) as graph inputs instead of initializers,
   * so that one session serves every step with the current weights fed in (default: initializers).
   */
  weightsAsInputs?: boolean;
}

/** The training step graph of `model` (built at its image size; `trainable` flags say what trains) for batches of `batch`. */
export function stepGraphOf(model: tfl.LayersModel, name: string, batch: number, options: StepGraphOptions = {}): StepGraph {
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`${name}: a step graph needs a positive batch size, got ${batch}`);
  const state: TrainingState = { batch, overrides: new Map(), statistics: new Map(), masks: [] };
  const hooks: EmitHooks = {
    batchNorm: (layer, x, operands, epsilon, walk) => trainingBatchNorm(state, layer, x, operands, epsilon, walk),
    mask: (layer, x, walk) => trainingMask(state, layer, x, walk),
  };
  const { walk, values } = emitLayers(model, name, undefined, hooks);
  const b = walk.builder;
  const last = values.get(model.outputs[0]!.id);
  if (last === undefined) throw new Error(`${name}: the model's output was never emitted`);
  const logits = walk.as(last, 'flat', 'output').name;
  const classes = model.outputs[0]!.shape[1] as number;
  b.fresh(stepCoefficientsName);
  b.fresh(stepLossScaleName);
  b.node('Identity', [logits], onnxOutputName, {}, { exact: true });
  const seed = emitLoss(walk, logits);
  const inputs: ValueInfo[] = [
    inputInfo(model, batch),
    { name: stepCoefficientsName, shape: [batch, classes] },
    { name: stepLossScaleName, shape: [] },
    ...state.masks.map((mask) => ({ name: mask.input, shape: mask.shape })),
  ];
  const forward = b.finish(name, inputs, []);
  const shapes = inferShapes(forward, {});
  const wrt = trainedWeights(model, forward);
  const ctx = {
    b,
    ...(options.convFormulation ? { convFormulation: options.convFormulation } : {}),
    shape: (value: string) => shapes.get(value) ?? (() => { throw new Error(`${name}: no shape for ${value}`); })(),
    constant: (value: string) => forward.constants.find((c) => c.name === value)?.values ?? (() => { throw new Error(`${name}: ${value} is not a constant`); })(),
  };
  const grads = appendBackward({ nodes: forward.nodes, ctx, wrt, seeds: [{ value: logits, grad: seed }], overrides: state.overrides });
  const gradients = new Map<string, string>();
  for (const [key, grad] of grads) gradients.set(key, b.node('Identity', [grad], gradientOutputName(key), {}, { exact: true }));
  const weightShape = new Map(forward.weights.map((ref) => [ref.name, ref.shape]));
  const outputs: ValueInfo[] = [
    { name: stepLossName, shape: [] },
    { name: onnxOutputName, shape: [batch, classes] },
    ...[...gradients].map(([key, output]) => ({ name: output, shape: [...weightShape.get(key)!] })),
    ...[...state.statistics].map(([key, output]) => ({ name: output, shape: [...weightShape.get(key)!] })),
  ];
  const graph = b.finish(`${name}_step`, inputs, outputs);
  const fed = options.weightsAsInputs ? { ...graph, inputs: [...graph.inputs, ...graph.weights.map((ref) => ({ name: ref.name, shape: ref.shape }))], weights: [] } : graph;
  return { graph: fed, batch, classes, gradients, statistics: state.statistics, masks: state.masks };
}
