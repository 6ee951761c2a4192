/**
 * Training kernels for the WebGPU backend: where tfjs-backend-webgpu 4.22's gradients are naive.
 * Registered once the webgpu backend is live (the candidate's `activated` hook).
 */
import * as tf from '@tensorflow/tfjs-core';
import { conv2DBackpropFilterWebgpu } from './conv-filter.js';

let registered = false;

/** tfjs-backend-webgpu's own kernels that osteo replaced, by name: what benchmarks and tests compare against. */
export const replacedWebgpuKernels = new Map<string, tf.KernelConfig>();

export function registerWebgpuTrainingKernels(): void {
  // Conv2DBackpropInput: the backend's matrix-product (implicit GEMM) transpose instead of its naive loop
  tf.env().set('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE', false);
  if (registered) return;
  const previous = tf.getKernel(tf.Conv2DBackpropFilter, 'webgpu');
  if (!previous) throw new Error('the webgpu backend registered no Conv2DBackpropFilter kernel');
  replacedWebgpuKernels.set(tf.Conv2DBackpropFilter, previous);
  tf.unregisterKernel(tf.Conv2DBackpropFilter, 'webgpu');
  tf.registerKernel({
    kernelName: tf.Conv2DBackpropFilter,
    backendName: 'webgpu',
    kernelFunc: ((args: Parameters<typeof conv2DBackpropFilterWebgpu>[0]) =>
      conv2DBackpropFilterWebgpu(args, (a) => previous.kernelFunc(a as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo)) as unknown as tf.KernelFunc,
  });
  registered = true;
}
