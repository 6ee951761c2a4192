/**
 * torchvision's building bricks as functional tfjs-layers helpers (symbolic tensor → symbolic tensor).
 *
 * Naming rule (the weight map depends on it): a layer that holds weights is named exactly as its
 * torchvision module path, so the state-dict key `layer1.0.conv1.weight` belongs to the layer
 * `layer1.0.conv1`. Layers without weights get descriptive names that never collide with a module
 * path that has weights.
 *
 * Padding: torch pads k//2 on every side. tfjs 'same' at stride 1 and odd k pads (k−1)/2 on each side
 * too, so it is used there; at stride 2 'same' pads 0 before and 1 after on even inputs, which shifts
 * every window by one pixel — there an explicit ZeroPadding2D + 'valid' reproduces torch exactly.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { LayerScale, SeededDropout, StochasticDepth, TorchBatchNorm, TorchLayerNorm } from './layers.js';

export type Symbolic = tfl.SymbolicTensor;

/** How a model's layers are made. `portable` uses stock tfjs-layers classes only (inference-only export). */
export interface BuildContext {
  portable: boolean;
  /** BatchNorm eps and momentum (Keras convention: torch momentum 0.1 ≙ 0.9). */
  bnEpsilon: number;
  bnMomentum: number;
  seed: number;
}

function apply(layer: tfl.layers.Layer, x: Symbolic | Symbolic[]): Symbolic {
  return layer.apply(x) as Symbolic;
}

/** The input to a k×k convolution of this stride, padded as torch pads it, and the tfjs padding mode to use. */
function torchPadded(x: Symbolic, name: string, kernel: number, stride: number): [Symbolic, 'same' | 'valid'] {
  const pad = Math.floor(kernel / 2);
  if (pad === 0) return [x, 'valid'];
  if (stride === 1) return [x, 'same'];
  return [apply(tfl.layers.zeroPadding2d({ padding: pad, name: `${name}_pad` }), x), 'valid'];
}

export interface ConvOptions {
  filters: number;
  kernel: number;
  stride?: number;
  bias?: boolean;
  /** Only 0 is given explicitly (ConvNeXt's patchify convs); otherwise torch's kernel//2. */
  padding?: 0;
}

/** nn.Conv2d(in, filters, kernel, stride, padding=kernel//2 unless 0 is given, bias). Weights start at zero: see init.ts. */
export function conv2d(x: Symbolic, name: string, { filters, kernel, stride = 1, bias = false, padding: explicit }: ConvOptions): Symbolic {
  // With no padding, torch's floor((n − k)/s) + 1 equals tfjs 'valid''s ceil((n − k + 1)/s).
  const [input, padding] = explicit === 0 ? [x, 'valid' as const] : torchPadded(x, name, kernel, stride);
  const layer = tfl.layers.conv2d({
    name,
    filters,
    kernelSize: kernel,
    strides: stride,
    padding,
    useBias: bias,
    kernelInitializer: 'zeros',
    biasInitializer: 'zeros',
  });
  return apply(layer, input);
}

/** nn.Conv2d(c, c, kernel, stride, padding=kernel//2, groups=c, bias): depthwise. */
export function depthwiseConv2d(x: Symbolic, name: string, kernel: number, stride: number, bias = false): Symbolic {
  const [input, padding] = torchPadded(x, name, kernel, stride);
  const layer = tfl.layers.depthwiseConv2d({
    name,
    kernelSize: kernel,
    strides: stride,
    padding,
    depthMultiplier: 1,
    useBias: bias,
    depthwiseInitializer: 'zeros',
    biasInitializer: 'zeros',
  });
  return apply(layer, input);
}

export function batchNorm(x: Symbolic, name: string, context: BuildContext): Symbolic {
  const { bnEpsilon: epsilon, bnMomentum: momentum } = context;
  const layer = context.portable
    ? tfl.layers.batchNormalization({ name, axis: -1, epsilon, momentum })
    : new TorchBatchNorm({ name, epsilon, momentum });
  return apply(layer, x);
}

/**
 * nn.LayerNorm(C, eps) over the channel axis: in NHWC both ConvNeXt's channels-last LayerNorm and its
 * LayerNorm2d (which permutes NCHW to channels-last and back) are this one operation.
 */
export function layerNorm(x: Symbolic, name: string, epsilon: number, context: BuildContext): Symbolic {
  const layer = context.portable ? tfl.layers.layerNormalization({ name, axis: -1, epsilon }) : new TorchLayerNorm({ name, epsilon });
  return apply(layer, x);
}

/**
 * ConvNeXt's `layer_scale`, a [C, 1, 1] nn.Parameter of the block multiplied into its branch. The layer
 * is named `<block>.layer_scale`, which is the state-dict key itself (src/weights/keymap.ts). The
 * portable build has no custom class, so there it is a bias-free 1×1 depthwise conv: the same product.
 */
export function layerScale(x: Symbolic, name: string, initialValue: number, context: BuildContext): Symbolic {
  const layer = context.portable
    ? tfl.layers.depthwiseConv2d({ name, kernelSize: 1, depthMultiplier: 1, useBias: false, depthwiseInitializer: 'zeros' })
    : new LayerScale({ name, initialValue });
  return apply(layer, x);
}

/** nn.AvgPool2d(2, stride=2): torch floors odd sizes, as tfjs 'valid' does. */
export function averagePool2x2(x: Symbolic, name: string): Symbolic {
  return apply(tfl.layers.averagePooling2d({ name, poolSize: 2, strides: 2, padding: 'valid' }), x);
}

/** torch.cat(inputs, 1) in NCHW: the channel axis, last in NHWC. */
export function concatenate(inputs: Symbolic[], name: string): Symbolic {
  return apply(tfl.layers.concatenate({ name, axis: -1 }), inputs);
}

export type ActivationName = 'relu' | 'silu' | 'sigmoid' | 'gelu';

export function activation(x: Symbolic, name: string, kind: ActivationName): Symbolic {
  // tfjs' 'swish' is x·sigmoid(x), i.e. torch's SiLU; its 'gelu' is the exact x·Φ(x) with erf, as nn.GELU() by default.
  const identifier = kind === 'silu' ? 'swish' : kind;
  return apply(tfl.layers.activation({ name, activation: identifier }), x);
}

/** nn.MaxPool2d(3, 2, padding=1) after a ReLU. */
export function maxPoolAfterRelu(x: Symbolic, name: string): Symbolic {
  // torch pads max-pooling with −inf; zero padding gives the same result here only because the input
  // is a ReLU output (≥ 0) and every 3×3 window with padding 1 still covers at least one real pixel,
  // so a zero can never exceed the true maximum. tfjs 'same' would pad −inf but asymmetrically.
  const padded = apply(tfl.layers.zeroPadding2d({ padding: 1, name: `${name}_pad` }), x);
  return apply(tfl.layers.maxPooling2d({ name, poolSize: 3, strides: 2, padding: 'valid' }), padded);
}

/** nn.AdaptiveAvgPool2d(1) + flatten: the mean over all spatial positions, for any input size. */
export function globalAveragePool(x: Symbolic, name: string): Symbolic {
  return apply(tfl.layers.globalAveragePooling2d({ name }), x);
}

export function linear(x: Symbolic, name: string, units: number): Symbolic {
  return apply(tfl.layers.dense({ name, units, kernelInitializer: 'zeros', biasInitializer: 'zeros' }), x);
}

export function dropout(x: Symbolic, name: string, rate: number, context: BuildContext): Symbolic {
  const layer = context.portable ? tfl.layers.dropout({ name, rate }) : new SeededDropout({ name, rate, seed: context.seed });
  return apply(layer, x);
}

/** StochasticDepth(p, "row"); a portable (inference-only) model leaves it out, as it is the identity there. */
export function stochasticDepth(x: Symbolic, name: string, rate: number, context: BuildContext): Symbolic {
  if (context.portable || rate === 0) return x;
  return apply(new StochasticDepth({ name, rate, seed: context.seed }), x);
}

export function add(inputs: Symbolic[], name: string): Symbolic {
  return apply(tfl.layers.add({ name }), inputs);
}

export function multiply(inputs: Symbolic[], name: string): Symbolic {
  return apply(tfl.layers.multiply({ name }), inputs);
}

export function reshape(x: Symbolic, name: string, targetShape: number[]): Symbolic {
  return apply(tfl.layers.reshape({ name, targetShape }), x);
}
