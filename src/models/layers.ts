/**
 * The layers tfjs-layers lacks to behave like torchvision's modules in training:
 *
 * - `TorchBatchNorm`: BatchNorm2d as PyTorch computes it. tfjs-layers' BatchNormalization updates the
 *   moving variance with the biased batch variance and ignores `trainable`; PyTorch updates
 *   `running_var` with the unbiased one and counts `num_batches_tracked`. Here a layer with
 *   `trainable = false` (a frozen stage) always normalises with its running statistics, even when the
 *   model is applied with `training: true` — and never updates them.
 * - `SeededDropout`, `StochasticDepth`: tfjs' dropout with a fixed seed draws the same mask at every
 *   step; these draw a fresh mask per call from the layer's own seeded stream (see seedModelRandomness).
 *
 * - `TorchLayerNorm`: nn.LayerNorm over the last axis. tfjs-layers' LayerNormalization tiles its mean,
 *   variance, scale and offset to the full activation shape (four extra activation-sized tensors kept
 *   for the backward pass of every ConvNeXt block); this one broadcasts, and its gradient is the closed
 *   form, keeping only the normalised input and the per-position 1/σ.
 * - `LayerScale`: ConvNeXt's per-channel `layer_scale` parameter, multiplied into the block's branch.
 *
 * All of them are registered with tf.serialization, so a saved LayersModel reloads with
 * tf.loadLayersModel in any process that imported this module.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { LayerArgs } from '@tensorflow/tfjs-layers/dist/engine/topology.js';
import type { Kwargs } from '@tensorflow/tfjs-layers/dist/types.js';
import { batchNormTraining } from '../backend/index.js';
import { labelSeed } from '../util/index.js';
import { SeededRandom } from './random.js';

type Shape = (number | null)[];

function onlyTensor(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  if (Array.isArray(inputs)) {
    if (inputs.length !== 1) throw new Error(`expected one input tensor, got ${inputs.length}`);
    return inputs[0]!;
  }
  return inputs;
}

function isTraining(kwargs: Kwargs | undefined): boolean {
  return kwargs?.['training'] === true;
}

export interface TorchBatchNormArgs extends LayerArgs {
  /** Added to the variance (PyTorch `eps`). */
  epsilon: number;
  /** Keras convention: running = running·momentum + batch·(1 − momentum); PyTorch's momentum 0.1 is 0.9 here. */
  momentum: number;
}

/** The channel count (last axis) of a per-channel layer's input; the layers here need it known. */
function channelsOf(layerName: string, inputShape: Shape | Shape[]): number {
  const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
  const channels = shape[shape.length - 1];
  if (channels == null) throw new Error(`${layerName}: the channel dimension must be known`);
  return channels;
}

/** BatchNorm over the last (channel) axis with PyTorch's training semantics; see the file comment. */
export class TorchBatchNorm extends tfl.layers.Layer {
  static className = 'TorchBatchNorm';
  readonly epsilon: number;
  /** Mutable, like torch's `module.momentum`: 0 makes one training-mode batch set the running statistics. */
  momentum: number;
  gamma!: tfl.LayerVariable;
  beta!: tfl.LayerVariable;
  movingMean!: tfl.LayerVariable;
  movingVariance!: tfl.LayerVariable;
  /** A float32 scalar: exact up to 2^24 batches, which no training run here approaches. */
  numBatchesTracked!: tfl.LayerVariable;

  constructor(args: TorchBatchNormArgs) {
    super(args);
    this.epsilon = args.epsilon;
    this.momentum = args.momentum;
    this.supportsMasking = true;
  }

  override build(inputShape: Shape | Shape[]): void {
    const channels = channelsOf(this.name, inputShape);
    const ones = tfl.initializers.ones();
    const zeros = tfl.initializers.zeros();
    this.gamma = this.addWeight('gamma', [channels], 'float32', ones, undefined, true);
    this.beta = this.addWeight('beta', [channels], 'float32', zeros, undefined, true);
    this.movingMean = this.addWeight('moving_mean', [channels], 'float32', zeros, undefined, false);
    this.movingVariance = this.addWeight('moving_variance', [channels], 'float32', ones, undefined, false);
    this.numBatchesTracked = this.addWeight('num_batches_tracked', [], 'float32', zeros, undefined, false);
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = onlyTensor(inputs);
      const gamma = this.gamma.read();
      const beta = this.beta.read();
      // A frozen layer (trainable = false) is a fixed affine map: never batch statistics.
      if (!isTraining(kwargs) || !this.trainable) {
        return tf.batchNorm(x, this.movingMean.read(), this.movingVariance.read(), beta, gamma, this.epsilon);
      }
      // One fused op: the composed tf.moments + tf.batchNorm keeps three activation-sized tensors per layer for the backward pass.
      const fused = batchNormTraining(x, gamma as tf.Tensor1D, beta as tf.Tensor1D, this.epsilon);
      const output = fused.output;
      const { mean, variance } = fused;
      const count = x.size / x.shape[x.shape.length - 1]!;
      // PyTorch normalises with the biased variance but tracks the unbiased one.
      const unbiased = count > 1 ? tf.mul(variance, count / (count - 1)) : variance;
      const keep = this.momentum;
      this.movingMean.write(tf.add(tf.mul(this.movingMean.read(), keep), tf.mul(mean, 1 - keep)));
      this.movingVariance.write(tf.add(tf.mul(this.movingVariance.read(), keep), tf.mul(unbiased, 1 - keep)));
      this.numBatchesTracked.write(tf.add(this.numBatchesTracked.read(), 1));
      return output;
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), epsilon: this.epsilon, momentum: this.momentum };
  }
}

/** Layers whose draws come from a seeded stream; seedModelRandomness re-seeds them. */
export interface SeededLayer {
  reseed(seed: number): void;
}

export function isSeededLayer(layer: unknown): layer is tfl.layers.Layer & SeededLayer {
  return layer instanceof SeededDropout || layer instanceof StochasticDepth;
}

export interface SeededLayerArgs extends LayerArgs {
  rate: number;
  /** The model seed; the layer's stream is derived from it and the layer's name. */
  seed: number;
}

abstract class SeededMaskLayer extends tfl.layers.Layer implements SeededLayer {
  readonly rate: number;
  seed: number;
  private random: SeededRandom;

  constructor(args: SeededLayerArgs) {
    super(args);
    if (!(args.rate >= 0 && args.rate < 1)) throw new Error(`${this.name}: rate must be in [0, 1), got ${args.rate}`);
    this.rate = args.rate;
    this.seed = args.seed;
    this.random = new SeededRandom(labelSeed(args.seed, this.name));
  }

  reseed(seed: number): void {
    this.seed = seed;
    this.random = new SeededRandom(labelSeed(seed, this.name));
  }

  /** The mask's shape for an input shape: which elements share one keep/drop draw. */
  protected abstract maskShape(shape: number[]): number[];

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const x = onlyTensor(inputs);
    if (!isTraining(kwargs) || this.rate === 0) return x;
    return tf.tidy(() => {
      const shape = this.maskShape(x.shape);
      const keep = 1 - this.rate;
      const mask = new Float32Array(shape.reduce((a, b) => a * b, 1));
      // Scaled by 1/keep at training time, as torch does, so inference is the identity.
      for (let i = 0; i < mask.length; i++) mask[i] = this.random.next() < keep ? 1 / keep : 0;
      return tf.mul(x, tf.tensor(mask, shape, 'float32'));
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), rate: this.rate, seed: this.seed };
  }
}

/** torch.nn.Dropout: every element kept with probability 1 − rate. */
export class SeededDropout extends SeededMaskLayer {
  static className = 'SeededDropout';
  protected maskShape(shape: number[]): number[] {
    return shape;
  }
}

/** torchvision.ops.StochasticDepth(p, "row"): the whole residual branch of a sample dropped with probability p. */
export class StochasticDepth extends SeededMaskLayer {
  static className = 'StochasticDepth';
  protected maskShape(shape: number[]): number[] {
    return shape.map((size, axis) => (axis === 0 ? size : 1));
  }
}

export interface TorchLayerNormArgs extends LayerArgs {
  /** Added to the variance (PyTorch `eps`; ConvNeXt uses 1e-6). */
  epsilon: number;
}

/** nn.LayerNorm(C, eps) over the last axis (biased variance, as torch); see the file comment. */
export class TorchLayerNorm extends tfl.layers.Layer {
  static className = 'TorchLayerNorm';
  readonly epsilon: number;
  gamma!: tfl.LayerVariable;
  beta!: tfl.LayerVariable;

  constructor(args: TorchLayerNormArgs) {
    super(args);
    this.epsilon = args.epsilon;
  }

  override build(inputShape: Shape | Shape[]): void {
    const channels = channelsOf(this.name, inputShape);
    this.gamma = this.addWeight('gamma', [channels], 'float32', tfl.initializers.ones(), undefined, true);
    this.beta = this.addWeight('beta', [channels], 'float32', tfl.initializers.zeros(), undefined, true);
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = onlyTensor(inputs);
    const epsilon = this.epsilon;
    const axis = x.rank - 1;
    const layerNorm = tf.customGrad(((input: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, save: tf.GradSaveFunc) => {
      const centred = tf.sub(input, tf.mean(input, axis, true));
      const inverseStd = tf.rsqrt(tf.add(tf.mean(tf.square(centred), axis, true), epsilon));
      const normalised = tf.mul(centred, inverseStd);
      save([normalised, inverseStd, gamma]);
      return {
        value: tf.add(tf.mul(normalised, gamma), beta),
        // d/dx of (x − μ)/σ over one row: (1/σ)·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ.
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [xHat, invStd, scale] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
          const reduceAxes = dy.shape.slice(0, -1).map((_, i) => i);
          const g = tf.mul(dy, scale);
          const dx = tf.mul(invStd, tf.sub(tf.sub(g, tf.mean(g, axis, true)), tf.mul(xHat, tf.mean(tf.mul(g, xHat), axis, true))));
          return [dx, tf.sum(tf.mul(dy, xHat), reduceAxes), tf.sum(dy, reduceAxes)];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    return layerNorm(x, this.gamma.read(), this.beta.read());
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), epsilon: this.epsilon };
  }
}

export interface LayerScaleArgs extends LayerArgs {
  /** The value every channel's scale starts at (torchvision's ConvNeXt: 1e-6). */
  initialValue: number;
}

/** x · γ with one γ per channel (the last axis): ConvNeXt's `layer_scale`. */
export class LayerScale extends tfl.layers.Layer {
  static className = 'LayerScale';
  readonly initialValue: number;
  scale!: tfl.LayerVariable;

  constructor(args: LayerScaleArgs) {
    super(args);
    this.initialValue = args.initialValue;
  }

  override build(inputShape: Shape | Shape[]): void {
    const channels = channelsOf(this.name, inputShape);
    const init = tfl.initializers.constant({ value: this.initialValue });
    this.scale = this.addWeight('layer_scale', [channels], 'float32', init, undefined, true);
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => tf.mul(onlyTensor(inputs), this.scale.read()));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), initialValue: this.initialValue };
  }
}

tf.serialization.registerClass(TorchBatchNorm, 'osteo');
tf.serialization.registerClass(TorchLayerNorm, 'osteo');
tf.serialization.registerClass(LayerScale, 'osteo');
tf.serialization.registerClass(SeededDropout, 'osteo');
tf.serialization.registerClass(StochasticDepth, 'osteo');
