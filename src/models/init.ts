/**
 * torchvision's weight initialisation, drawn from the model seed. Layers are built with zero
 * initialisers (cheap) and filled here once, each weight from its own stream derived from the seed and
 * the weight's name, so the values do not depend on layer order or on other weights.
 *
 * - Convolutions, 'kaiming-fan-out' (ResNet, EfficientNet): kaiming_normal_(mode="fan_out",
 *   nonlinearity="relu"): N(0, 2 / fan_out), with torch's fan_out = weight.size(0) · kh · kw (for a
 *   depthwise [c, 1, kh, kw] weight that is c · kh · kw). 'kaiming-fan-in' (DenseNet's plain
 *   kaiming_normal_): N(0, 2 / fan_in), fan_in = weight.size(1) · kh · kw. 'trunc-normal' (ConvNeXt's
 *   trunc_normal_(std=0.02), bounds ±2): the bounds sit 100 σ out, so it is N(0, 0.02²) here.
 *   Conv biases start at zero (EfficientNet's squeeze-excitation, ConvNeXt).
 * - BatchNorm: weight 1, bias 0, running mean 0, running var 1 (the layer's own initialisers).
 * - Linear, 'torch-default' (nn.Linear's reset_parameters, what a freshly assigned head gets):
 *   weight and bias ~ U(−1/√fan_in, 1/√fan_in). 'efficientnet' (EfficientNet.__init__'s loop, which
 *   only touches its own classifier): weight ~ U(−1/√out, 1/√out), bias 0. 'zero-bias' (DenseNet):
 *   nn.Linear's weight, bias 0. 'trunc-normal' (ConvNeXt): weight N(0, 0.02²), bias 0.
 * - LayerNorm: weight 1, bias 0; ConvNeXt's layer_scale: its constant (the layers' own initialisers).
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { labelSeed } from '../util/index.js';
import { SeededRandom } from './random.js';

export type LinearInit = 'torch-default' | 'efficientnet' | 'zero-bias' | 'trunc-normal';
export type ConvInit = 'kaiming-fan-out' | 'kaiming-fan-in' | 'trunc-normal';
export interface InitRule {
  linear(layerName: string): LinearInit;
  /** Default 'kaiming-fan-out'. */
  conv?: ConvInit;
}

/** ConvNeXt's trunc_normal_ standard deviation. */
const truncNormalStd = 0.02;

function linearBound(rule: LinearInit, fanIn: number, fanOut: number, isKernel: boolean): number {
  if (rule === 'torch-default') return 1 / Math.sqrt(fanIn);
  if (!isKernel) return 0;
  return rule === 'efficientnet' ? 1 / Math.sqrt(fanOut) : 1 / Math.sqrt(fanIn);
}

export function initializeWeights(model: tfl.LayersModel, seed: number, rule: InitRule): void {
  for (const layer of model.layers) {
    const className = layer.getClassName();
    if (className !== 'Conv2D' && className !== 'DepthwiseConv2D' && className !== 'Dense') continue;
    for (const weight of layer.weights) {
      const shape = weight.shape as number[];
      const size = shape.reduce((a, b) => a * b, 1);
      const random = new SeededRandom(labelSeed(seed, weight.originalName));
      const isKernel = !weight.originalName.endsWith('/bias');
      let values: Float32Array | null = null;
      if (className === 'Dense') {
        const [fanIn, fanOut] = layer.weights[0]!.shape as [number, number];
        const linearRule = rule.linear(layer.name);
        if (linearRule === 'trunc-normal') {
          if (isKernel) values = random.fillNormal(new Float32Array(size), truncNormalStd);
        } else {
          const bound = linearBound(linearRule, fanIn, fanOut, isKernel);
          if (bound > 0) values = random.fillUniform(new Float32Array(size), -bound, bound);
        }
      } else if (isKernel) {
        const [kh, kw, inChannels, outChannels] = shape as [number, number, number, number];
        const depthwise = className === 'DepthwiseConv2D';
        const convRule = rule.conv ?? 'kaiming-fan-out';
        if (convRule === 'trunc-normal') {
          values = random.fillNormal(new Float32Array(size), truncNormalStd);
        } else {
          // torch's depthwise weight is [c, 1, kh, kw]: fan_in = kh·kw, fan_out = c·kh·kw.
          const fan = convRule === 'kaiming-fan-out' ? (depthwise ? inChannels : outChannels) * kh * kw : (depthwise ? 1 : inChannels) * kh * kw;
          values = random.fillNormal(new Float32Array(size), Math.sqrt(2 / fan));
        }
      }
      if (values === null) continue; // zero, as built
      const tensor = tf.tensor(values, shape, 'float32');
      weight.write(tensor);
      tensor.dispose();
    }
  }
}
