/**
 * Training kernels for the wasm backend. tfjs-backend-wasm 4.22 ships no filter gradients at all, an
 * input gradient that runs at a tenth of a forward convolution's speed, and slow versions of the
 * memory-bound kernels a training step calls most; these replacements are built from what XNNPACK
 * does fast, or are single streaming passes. The forward convolution of weight-heavy layers is
 * replaced too (conv-forward.ts: the built-in re-transposes and repacks every new filter tensor, i.e.
 * every training step), and inference's FusedBatchNorm. Registered once the wasm backend is live
 * (select.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  conv2DBackpropFilter,
  conv2DBackpropInput,
  depthwiseConv2dNativeBackpropFilter,
  depthwiseConv2dNativeBackpropInput,
} from './conv-grad.js';
import { batchNormBackwardKernel, batchNormBackwardWasm, batchNormForwardKernel, batchNormForwardWasm } from './batch-norm.js';
import { fusedBatchNorm } from './batch-norm-inference.js';
import { fusedConv2D } from './conv-forward.js';
import { cast, identity, maxPoolGrad, mean, slice, sum, tile, type Fallback } from './fast-ops.js';
import { batchMatMul } from './matmul.js';

type Replacement = (args: never, fallback: Fallback) => unknown;

const kernels: Array<{ kernelName: string; kernelFunc: Replacement }> = [
  { kernelName: tf.FusedConv2D, kernelFunc: fusedConv2D },
  { kernelName: tf.Conv2DBackpropFilter, kernelFunc: conv2DBackpropFilter },
  { kernelName: tf.Conv2DBackpropInput, kernelFunc: conv2DBackpropInput },
  { kernelName: tf.DepthwiseConv2dNativeBackpropFilter, kernelFunc: depthwiseConv2dNativeBackpropFilter },
  { kernelName: tf.DepthwiseConv2dNativeBackpropInput, kernelFunc: depthwiseConv2dNativeBackpropInput },
  { kernelName: tf.Tile, kernelFunc: tile },
  { kernelName: tf.Identity, kernelFunc: identity },
  { kernelName: tf.Cast, kernelFunc: cast },
  { kernelName: tf.Sum, kernelFunc: sum },
  { kernelName: tf.Mean, kernelFunc: mean },
  { kernelName: tf.MaxPoolGrad, kernelFunc: maxPoolGrad },
  { kernelName: tf.Slice, kernelFunc: slice },
  { kernelName: tf.BatchMatMul, kernelFunc: batchMatMul },
  { kernelName: tf.FusedBatchNorm, kernelFunc: fusedBatchNorm },
  { kernelName: batchNormForwardKernel, kernelFunc: batchNormForwardWasm },
  { kernelName: batchNormBackwardKernel, kernelFunc: batchNormBackwardWasm },
];

export { batchNormTraining, type BatchNormTrainingResult } from './batch-norm.js';

/** Names of the kernels osteo registers (or replaces) on the wasm backend. */
export const wasmTrainingKernelNames: readonly string[] = kernels.map((k) => k.kernelName);

let registered = false;

/**
 * Register the training kernels for 'wasm'; idempotent. A replaced built-in stays reachable as the
 * fallback for the cases its replacement does not handle.
 */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  for (const { kernelName, kernelFunc } of kernels) {
    const previous = tf.getKernel(kernelName, 'wasm');
    const fallback: Fallback = (args) => {
      if (!previous) throw new Error(`no wasm '${kernelName}' kernel to fall back to`);
      return previous.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as ReturnType<Fallback>;
    };
    if (previous) tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({
      kernelName,
      backendName: 'wasm',
      kernelFunc: ((args: never) => kernelFunc(args, fallback)) as unknown as tf.KernelFunc,
    });
  }
  registered = true;
}
