/**
 * FusedBatchNorm (inference BatchNorm with the running statistics) as one SIMD per-channel affine map.
 *
 * tfjs-backend-wasm's kernel runs a scalar loop that recomputes (x − μ)·γ/√(σ² + ε) + β per element
 * with broadcasting index arithmetic: 36 ms of a 424 ms ResNet18 inference pass over 4 images at 224²
 * (≈ 3.7 ns an element, bench/BENCHMARKS.md, *In-step convolution throughput*). Here the per-channel factors are computed once
 * (C values, float64) and the pass is y = x·a + b with a = γ/√(σ² + ε), b = β − μ·a, the SIMD `affine`
 * loop of simd.ts over rows of C floats. Per-channel parameters only (each of size C or absent), C a
 * multiple of 4; anything else goes to the built-in.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { Fallback } from './fast-ops.js';
import { channelVectors, simdKernels } from './simd.js';
import { view, type Info } from './wasm-util.js';

type KernelArgs = { inputs: Record<string, Info | undefined>; attrs: Record<string, unknown>; backend: BackendWasm };

export function fusedBatchNorm(args: KernelArgs, fallback: Fallback): Info | Info[] {
  const { inputs, attrs, backend } = args;
  const { x, mean, variance, offset, scale } = inputs;
  const plain = () => fallback(args as never);
  if (!x || !mean || !variance || x.dtype !== 'float32' || x.shape.length === 0) return plain();
  const c = x.shape[x.shape.length - 1]!;
  const perChannel = (t: Info | undefined) => t === undefined || (t.dtype === 'float32' && tf.util.sizeFromShape(t.shape) === c);
  if (![mean, variance, offset, scale].every(perChannel) || c % 4 !== 0) return plain();
  const size = tf.util.sizeFromShape(x.shape);
  if (size === 0) return plain();
  const simd = simdKernels(backend);
  if (!simd) return plain();
  const epsilon = Number(attrs['varianceEpsilon'] ?? 0.001);
  const mu = view(backend, mean);
  const sigma2 = view(backend, variance);
  const gamma = scale ? view(backend, scale) : null;
  const beta = offset ? view(backend, offset) : null;
  const mul = new Float32Array(c);
  const add = new Float32Array(c);
  for (let k = 0; k < c; k++) {
    const a = (gamma ? gamma[k]! : 1) / Math.sqrt(sigma2[k]! + epsilon);
    mul[k] = a;
    add[k] = (beta ? beta[k]! : 0) - mu[k]! * a;
  }
  const out = backend.makeOutput(x.shape, 'float32');
  const vectors = channelVectors(backend, [mul, add]);
  try {
    simd.affine(backend.getMemoryOffset(x.dataId), backend.getMemoryOffset(out.dataId), size / c, c, vectors.offsets[0]!, vectors.offsets[1]!);
  } finally {
    vectors.release();
  }
  return out;
}
