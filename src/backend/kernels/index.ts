/**
 * Training kernels for the wasm backend. tfjs-backend-wasm 4.22 ships no filter gradients at all and
 * an input gradient that runs at a tenth of a forward convolution's speed; these replacements are
 * built from what XNNPACK does fast. Registered once the wasm backend is live (see select.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  conv2DBackpropFilter,
  conv2DBackpropInput,
  depthwiseConv2dNativeBackpropFilter,
  depthwiseConv2dNativeBackpropInput,
} from './conv-grad.js';

const kernels: Array<{ kernelName: string; kernelFunc: unknown }> = [
  { kernelName: tf.Conv2DBackpropFilter, kernelFunc: conv2DBackpropFilter },
  { kernelName: tf.Conv2DBackpropInput, kernelFunc: conv2DBackpropInput },
  { kernelName: tf.DepthwiseConv2dNativeBackpropFilter, kernelFunc: depthwiseConv2dNativeBackpropFilter },
  { kernelName: tf.DepthwiseConv2dNativeBackpropInput, kernelFunc: depthwiseConv2dNativeBackpropInput },
];

/** Names of the kernels osteo registers (or replaces) on the wasm backend. */
export const wasmTrainingKernelNames: readonly string[] = kernels.map((k) => k.kernelName);

let registered = false;

/** Register the training kernels for 'wasm'; idempotent. The built-in versions they replace are dropped. */
export function registerWasmTrainingKernels(): void {
  if (registered) return;
  for (const { kernelName, kernelFunc } of kernels) {
    if (tf.getKernel(kernelName, 'wasm')) tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as tf.KernelFunc });
  }
  registered = true;
}
