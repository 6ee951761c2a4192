/**
 * The forward convolution for weight-heavy layers, where tfjs-backend-wasm's own FusedConv2D spends
 * more time preparing the filter than convolving.
 *
 * The built-in caches one XNNPACK convolution operator per filter tensor; a training step writes new
 * filter tensors every step, so every forward convolution first transposes the filter with a generic
 * index-walking transpose ([kh,kw,Ci,Co] → [Co,kh,kw,Ci], ≈ 2.6 ns an element) and then lets XNNPACK
 * repack it (≈ 10 ns an element). For ResNet18's layer4 (a 3×3×512×512 filter, 7×7 outputs) that is
 * 28 ms before a 26 ms convolution (bench/BENCHMARKS.md, *In-step convolution throughput*). Here such a layer runs as im2col
 * (the output pixels' patches, rows of kh·kw·Ci copied in runs of kw·Ci) and one XNNPACK GEMM
 * col·W whose right operand is the filter itself, [kh·kw·Ci, Co]: the fully-connected operator packs
 * it once in a single pass (≈ 3 ns an element) and caches the packed copy on the filter tensor, so a
 * second micro-batch of the same step reuses it.
 *
 * Taken when the patches are fewer floats than ~6× the filter (im2col writes M·K floats; the built-in
 * spends ≈ 13 ns per filter element): layer3 and layer4 of a ResNet at 224², not layer1/layer2. Only
 * linear, bias-free convolutions (what osteo's models train) take it; inference keeps the built-in
 * once a filter has been seen often enough for its cached operator to pay off.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { Fallback } from './fast-ops.js';
import { Scope, view, type Info, type Shape4 } from './wasm-util.js';

interface FusedConvArgs {
  inputs: { x: Info; filter: Info; bias?: Info; preluActivationWeights?: Info };
  backend: BackendWasm;
  attrs: {
    strides: number | [number, number];
    pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
    dataFormat?: 'NHWC' | 'NCHW';
    dilations?: number | [number, number];
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    activation?: string;
    leakyreluAlpha?: number;
  };
}

/** How many times each filter buffer went through the GEMM path (a WeakMap: disposed filters drop out). */
const sightings = new WeakMap<object, number>();

/**
 * After this many calls with the same filter tensor the built-in takes over, where its cached
 * operator (no im2col) is a little faster: layer4 25.8 vs ≈ 35 ms. Inference keeps one set of filters
 * for every batch: the built-in from the third batch on. A training step (a tape being recorded) uses
 * each filter tensor once per micro-batch: EfficientNet-B3 at batch 16 runs 4 passes of 2 images per
 * worker, and switching at its third pass paid the built-in's operator creation on top of two GEMM
 * passes (B3 step 8.0 → 8.3–9.3 s; with the training threshold 7,187 / 7,115 → 6,739 / 7,029 ms).
 */
const reuseBeforeBuiltIn = { inference: 2, training: 8 };

/** im2col + GEMM when its overhead (patch floats) is below the built-in's (≈ 6 × filter floats). */
export function gemmConvPays(m: number, k: number, co: number): boolean {
  return m * k < 6 * k * co && co >= 16;
}

export function fusedConv2D(args: FusedConvArgs, fallback: Fallback): Info | Info[] {
  const { inputs, backend, attrs } = args;
  const { x, filter, bias, preluActivationWeights } = inputs;
  const plain = () => fallback(args as never);
  if (bias || preluActivationWeights || (attrs.activation ?? 'linear') !== 'linear') return plain();
  if (x.dtype !== 'float32' || filter.dtype !== 'float32' || (attrs.dataFormat ?? 'NHWC') !== 'NHWC') return plain();
  const info = tf.backend_util.computeConv2DInfo(x.shape as Shape4, filter.shape as Shape4, attrs.strides, attrs.dilations ?? 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
  if (info.dilationHeight !== 1 || info.dilationWidth !== 1) return plain();
  const m = info.batchSize * info.outHeight * info.outWidth;
  const k = info.filterHeight * info.filterWidth * info.inChannels;
  if (!gemmConvPays(m, k, info.outChannels)) return plain();
  const seen = sightings.get(filter.dataId) ?? 0;
  const training = tf.engine().state.gradientDepth > 0;
  if (seen >= (training ? reuseBeforeBuiltIn.training : reuseBeforeBuiltIn.inference)) return plain();
  sightings.set(filter.dataId, seen + 1);
  return convByGemm(backend, x, filter, info);
}

/** y[m, co] = col[m, (i,j,c)] · W[(i,j,c), co]: im2col then one XNNPACK GEMM with the filter as its weights. */
export function convByGemm(backend: BackendWasm, x: Info, filter: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { batchSize: n, outHeight: oh, outWidth: ow, outChannels: co, filterHeight: kh, filterWidth: kw, inChannels: ci } = info;
  const m = n * oh * ow;
  const k = kh * kw * ci;
  const scope = new Scope(backend);
  try {
    const pointwise = kh === 1 && kw === 1 && info.strideHeight === 1 && info.strideWidth === 1 && info.padInfo.top === 0 && info.padInfo.left === 0 && oh === info.inHeight && ow === info.inWidth;
    // a 1×1 stride-1 convolution's patches are x itself
    const col = pointwise ? scope.reshape(x, [1, m, k]) : scope.output([1, m, k]);
    if (!pointwise) im2col(view(backend, x), view(backend, col), info);
    const weights = scope.reshape(filter, [1, k, co]);
    const product = scope.call('BatchMatMul', { a: col, b: weights }, { transposeA: false, transposeB: false });
    return scope.finish(scope.reshape(product, [n, oh, ow, co]));
  } finally {
    scope.dispose();
  }
}

/**
 * col[(b,r,q), (i,j,c)] = x[b, r·sh+i−top, q·sw+j−left, c], 0 outside the image. For a fixed output
 * pixel and filter row i the kw taps are consecutive input pixels, so each (pixel, i) is one copy of
 * up to kw·Ci contiguous floats.
 */
export function im2col(x: Float32Array, col: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const rowLength = kw * ci;
  let dst = 0;
  for (let b = 0; b < n; b++)
    for (let r = 0; r < oh; r++)
      for (let q = 0; q < ow; q++) {
        const x0 = q * sw - left;
        const j0 = Math.max(0, -x0); // first tap inside the image
        const j1 = Math.min(kw, w - x0); // one past the last
        for (let i = 0; i < kh; i++, dst += rowLength) {
          const y = r * sh + i - top;
          if (y < 0 || y >= h || j1 <= j0) {
            col.fill(0, dst, dst + rowLength);
            continue;
          }
          if (j0 > 0) col.fill(0, dst, dst + j0 * ci);
          if (j1 < kw) col.fill(0, dst + j1 * ci, dst + rowLength);
          const src = ((b * h + y) * w + x0 + j0) * ci;
          const count = (j1 - j0) * ci;
          if (count >= 32) col.set(x.subarray(src, src + count), dst + j0 * ci);
          else for (let t = 0; t < count; t++) col[dst + j0 * ci + t] = x[src + t]!;
        }
      }
}
