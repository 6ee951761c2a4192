/**
 * BatchNorm in training mode as one differentiable op, for any backend.
 *
 * tfjs composes it from tf.moments and tf.batchNorm: the forward pass leaves three activation-sized
 * intermediates on the tape and the backward pass runs some fifteen full-size elementwise ops and
 * four reductions. Here the forward is two passes (per-channel Σx and Σx², then y = a·x + b) and the
 * backward two more (Σdy and Σdy·x, then dx = A·dy + B·x + C per channel), and only x is kept for the
 * backward pass. On wasm the passes are kernels of their own (SIMD loops from simd.ts when the channel
 * count is a multiple of 4); elsewhere the same math runs as tfjs ops.
 *
 *   y  = γ·(x − μ)·s + β,  s = 1/√(σ² + ε),  μ, σ² the biased batch statistics over every axis but the last
 *   dβ = Σ dy,   dγ = s·(Σ dy·x − μ·Σ dy)
 *   dx = γ·s·dy − γ·s²·dγ/N·(x − μ) − γ·s·dβ/N
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { channelVectors, columnSums, simdKernels } from './simd.js';
import type { Info } from './wasm-util.js';

export const batchNormForwardKernel = 'OsteoBatchNormTrainForward';
export const batchNormBackwardKernel = 'OsteoBatchNormTrainBackward';

export interface BatchNormTrainingResult {
  /** the normalized, scaled and shifted activations (differentiable with respect to x, γ and β) */
  output: tf.Tensor;
  /**
   * The batch mean and the biased batch variance per channel, for the running statistics: tensors, so
   * that no backend has to read them back to the host (WebGPU cannot read synchronously).
   */
  mean: tf.Tensor1D;
  variance: tf.Tensor1D;
}

type KernelArgs = { inputs: Record<string, Info>; attrs: Record<string, unknown>; backend: BackendWasm };

function floats(backend: BackendWasm, info: Info): Float32Array {
  return backend.typedArrayFromHeap(info) as Float32Array;
}

/** inputs x [.., C], gamma [C], beta [C]; attrs epsilon → [y, mean, variance] */
export function batchNormForwardWasm({ inputs, attrs, backend }: KernelArgs): Info[] {
  const { x, gamma, beta } = inputs as { x: Info; gamma: Info; beta: Info };
  const epsilon = attrs['epsilon'] as number;
  const c = x.shape[x.shape.length - 1]!;
  const rows = tf.util.sizeFromShape(x.shape) / c;
  const y = backend.makeOutput(x.shape, 'float32');
  const meanOut = backend.makeOutput([c], 'float32');
  const varianceOut = backend.makeOutput([c], 'float32');
  const simd = c % 4 === 0 ? simdKernels(backend) : null;
  const sum = new Float64Array(c);
  const squares = new Float64Array(c);
  const xAt = backend.getMemoryOffset(x.dataId);
  if (simd) {
    columnSums(backend, simd, xAt, xAt, rows, c, sum, squares);
  } else {
    const xv = floats(backend, x);
    for (let r = 0, i = 0; r < rows; r++)
      for (let k = 0; k < c; k++, i++) {
        const v = xv[i]!;
        sum[k] += v;
        squares[k] += v * v;
      }
  }
  const scale = new Float64Array(c);
  const shift = new Float64Array(c);
  const g = floats(backend, gamma);
  const b = floats(backend, beta);
  const m = floats(backend, meanOut);
  const s2 = floats(backend, varianceOut);
  for (let k = 0; k < c; k++) {
    const mean = sum[k]! / rows;
    const variance = Math.max(0, squares[k]! / rows - mean * mean);
    m[k] = mean;
    s2[k] = variance;
    scale[k] = g[k]! / Math.sqrt(variance + epsilon);
    shift[k] = b[k]! - mean * scale[k]!;
  }
  if (simd) {
    const vectors = channelVectors(backend, [scale, shift]);
    simd.affine(xAt, backend.getMemoryOffset(y.dataId), rows, c, vectors.offsets[0]!, vectors.offsets[1]!);
    vectors.release();
    return [y, meanOut, varianceOut];
  }
  const xv = floats(backend, x);
  const yv = floats(backend, y);
  for (let r = 0, i = 0; r < rows; r++) for (let k = 0; k < c; k++, i++) yv[i] = xv[i]! * scale[k]! + shift[k]!;
  return [y, meanOut, varianceOut];
}

/** inputs dy, x, gamma, mean, variance; attrs epsilon → [dx, dgamma, dbeta] */
export function batchNormBackwardWasm({ inputs, attrs, backend }: KernelArgs): Info[] {
  const { dy, x, gamma, mean, variance } = inputs as { dy: Info; x: Info; gamma: Info; mean: Info; variance: Info };
  const epsilon = attrs['epsilon'] as number;
  const c = x.shape[x.shape.length - 1]!;
  const rows = tf.util.sizeFromShape(x.shape) / c;
  const dx = backend.makeOutput(x.shape, 'float32');
  const dgammaOut = backend.makeOutput([c], 'float32');
  const dbetaOut = backend.makeOutput([c], 'float32');
  const simd = c % 4 === 0 ? simdKernels(backend) : null;
  const sumDy = new Float64Array(c);
  const sumDyX = new Float64Array(c);
  const dyAt = backend.getMemoryOffset(dy.dataId);
  const xAt = backend.getMemoryOffset(x.dataId);
  if (simd) {
    columnSums(backend, simd, dyAt, xAt, rows, c, sumDy, sumDyX);
  } else {
    const xv = floats(backend, x);
    const dyv = floats(backend, dy);
    for (let r = 0, i = 0; r < rows; r++)
      for (let k = 0; k < c; k++, i++) {
        const d = dyv[i]!;
        sumDy[k] += d;
        sumDyX[k] += d * xv[i]!;
      }
  }
  const g = floats(backend, gamma);
  const mu = floats(backend, mean);
  const s2 = floats(backend, variance);
  const dg = floats(backend, dgammaOut);
  const db = floats(backend, dbetaOut);
  const a = new Float64Array(c);
  const bx = new Float64Array(c);
  const c0 = new Float64Array(c);
  for (let k = 0; k < c; k++) {
    const s = 1 / Math.sqrt(s2[k]! + epsilon);
    const dbeta = sumDy[k]!;
    const dgamma = s * (sumDyX[k]! - mu[k]! * dbeta);
    db[k] = dbeta;
    dg[k] = dgamma;
    a[k] = g[k]! * s;
    bx[k] = (-g[k]! * s * s * dgamma) / rows;
    c0[k] = -bx[k]! * mu[k]! - (g[k]! * s * dbeta) / rows;
  }
  if (simd) {
    const vectors = channelVectors(backend, [a, bx, c0]);
    simd.affine2(dyAt, xAt, backend.getMemoryOffset(dx.dataId), rows, c, vectors.offsets[0]!, vectors.offsets[1]!, vectors.offsets[2]!);
    vectors.release();
    return [dx, dgammaOut, dbetaOut];
  }
  const xv = floats(backend, x);
  const dyv = floats(backend, dy);
  const out = floats(backend, dx);
  for (let r = 0, i = 0; r < rows; r++) for (let k = 0; k < c; k++, i++) out[i] = a[k]! * dyv[i]! + bx[k]! * xv[i]! + c0[k]!;
  return [dx, dgammaOut, dbetaOut];
}

function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

function forward(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number): [tf.Tensor, tf.Tensor1D, tf.Tensor1D] {
  if (hasKernel(batchNormForwardKernel)) {
    return tf.engine().runKernel(batchNormForwardKernel, { x, gamma, beta }, { epsilon }) as unknown as [tf.Tensor, tf.Tensor1D, tf.Tensor1D];
  }
  return tf.tidy(() => {
    const axes = x.shape.map((_, i) => i).slice(0, -1);
    const { mean, variance } = tf.moments(x, axes);
    return [tf.batchNorm(x, mean, variance, beta as tf.Tensor1D, gamma as tf.Tensor1D, epsilon), mean as tf.Tensor1D, variance as tf.Tensor1D];
  });
}

function backward(dy: tf.Tensor, x: tf.Tensor, gamma: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor, epsilon: number): tf.Tensor[] {
  if (hasKernel(batchNormBackwardKernel)) {
    return tf.engine().runKernel(batchNormBackwardKernel, { dy, x, gamma, mean, variance }, { epsilon }) as unknown as tf.Tensor[];
  }
  return tf.tidy(() => {
    const axes = x.shape.map((_, i) => i).slice(0, -1);
    const rows = x.size / x.shape[x.shape.length - 1]!;
    const s = tf.rsqrt(tf.add(variance, epsilon));
    const centered = tf.sub(x, mean);
    const dbeta = tf.sum(dy, axes);
    const dgamma = tf.mul(s, tf.sum(tf.mul(dy, centered), axes));
    const a = tf.mul(gamma, s);
    const dx = tf.sub(tf.mul(a, dy), tf.add(tf.mul(tf.div(tf.mul(tf.mul(a, s), dgamma), rows), centered), tf.div(tf.mul(a, dbeta), rows)));
    return [dx, dgamma, dbeta];
  });
}

/**
 * Training-mode BatchNorm over the last axis, with PyTorch's arithmetic (biased variance for the
 * normalization). Only `output` carries gradients; the statistics come back as plain arrays.
 */
export function batchNormTraining(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): BatchNormTrainingResult {
  // customGrad runs the forward inside a tidy that keeps only the output: the statistics leave it kept, and are
  // handed back as clones owned by the caller's scope.
  let kept: tf.Tensor1D[] = [];
  const op = tf.customGrad(((xIn: tf.Tensor, gammaIn: tf.Tensor, betaIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const [output, m, v] = forward(xIn, gammaIn, betaIn, epsilon);
    kept = [tf.keep(m), tf.keep(v)];
    save([xIn, gammaIn, m, v]);
    return {
      value: output,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, gs, ms, vs] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
        return backward(dy, xs, gs, ms, vs, epsilon);
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  const output = op(x, gamma, beta);
  const [mean, variance] = kept.map((t) => tf.clone(t)) as [tf.Tensor1D, tf.Tensor1D];
  tf.dispose(kept);
  return { output, mean, variance };
}
