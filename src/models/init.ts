/**
 * torchvision's weight initialisation, drawn from the model seed. Layers are built with zero
 * initialisers (cheap) and filled here once, each weight from its own stream derived from the seed and
 * the weight's name, so the values do not depend on layer order or on other weights.
 *
 * - Convolutions: kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, 2 / fan_out), with torch's
 *   fan_out = weight.size(0) · kh · kw (for a depthwise [c, 1, kh, kw] weight that is c · kh · kw).
 *   Conv biases (only the squeeze-excitation convs have them) start at zero, as EfficientNet does.
 * - BatchNorm: weight 1, bias 0, running mean 0, running var 1 (the layer's own initialisers).
 * - Linear, 'torch-default' (nn.Linear's reset_parameters, what a freshly assigned head gets):
 *   weight and bias ~ U(−1/√fan_in, 1/√fan_in). 'efficientnet' (EfficientNet.__init__'s loop, which
 *   only touches its own classifier): weight ~ U(−1/√out, 1/√out), bias 0.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { labelSeed } from '../util/index.js';
import { SeededRandom } from './random.js';

export type LinearInit = 'torch-default' | 'efficientnet';
export interface InitRule {
  linear(layerName: string): LinearInit;
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
        const bound = rule.linear(layer.name) === 'torch-default' ? 1 / Math.sqrt(fanIn) : isKernel ? 1 / Math.sqrt(fanOut) : 0;
        if (bound > 0) values = random.fillUniform(new Float32Array(size), -bound, bound);
      } else if (isKernel) {
        const [kh, kw, inChannels, outChannels] = shape as [number, number, number, number];
        const fanOut = (className === 'DepthwiseConv2D' ? inChannels : outChannels) * kh * kw;
        values = random.fillNormal(new Float32Array(size), Math.sqrt(2 / fanOut));
      }
      if (values === null) continue; // zero, as built
      const tensor = tf.tensor(values, shape, 'float32');
      weight.write(tensor);
      tensor.dispose();
    }
  }
}
