/**
 * Memory-bound kernels that a training step calls hundreds of times and that tfjs-backend-wasm
 * implements slowly for the shapes training produces (profiles in bench/BENCHMARKS.md):
 *
 * - Tile: the BatchNorm gradient tiles a [1,1,1,C] vector to a full activation; wasm's generic Tile
 *   walks every element through index arithmetic. Here: one copy of the source, then doubling
 *   memcpys (copyWithin).
 * - Sum / Mean over a contiguous run of axes (BatchNorm statistics reduce N,H,W; global pooling
 *   reduces H,W): wasm transposes the reduced axes innermost first, a full extra pass. Here: one
 *   streaming pass with float64 accumulators.
 * - Identity, and Cast to the same dtype: wasm copies; tfjs tensors are immutable, so sharing the
 *   buffer (as the cpu backend and wasm's own Reshape do) is enough.
 * - MaxPoolGrad: wasm's runs ~10× slower than a forward pass; here one pass that finds, per window
 *   and channel, the first pixel equal to the forward pass's maximum (the cpu backend's tie rule)
 *   and adds dy there (≈ 40 → 18–20 ms per ResNet18 224² pass of 4 images).
 * - Slice: the ZeroPadding2D gradient; copied in the longest contiguous runs (6× faster).
 *
 * Any case outside what a function handles goes to the kernel it replaced.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { columnSums, simdKernels } from './simd.js';
import type { Info } from './wasm-util.js';

type KernelArgs = { inputs: Record<string, Info>; attrs: Record<string, unknown>; backend: BackendWasm };
export type Fallback = (args: KernelArgs) => Info | Info[];

type Typed = Float32Array | Int32Array | Uint8Array;

function heap(backend: BackendWasm, info: Info): Typed {
  return backend.typedArrayFromHeap(info) as Typed;
}

export function tile(args: KernelArgs, fallback: Fallback): Info | Info[] {
  const { inputs, attrs, backend } = args;
  const x = inputs['x']!;
  if (x.dtype === 'string') return fallback(args);
  const reps = attrs['reps'] as number[];
  const shape = x.shape;
  const rank = shape.length;
  if (rank === 0 || reps.length !== rank) return fallback(args);
  const outShape = shape.map((d, i) => d * reps[i]!);
  const out = backend.makeOutput(outShape, x.dtype);
  if (tf.util.sizeFromShape(outShape) === 0) return out;
  const src = heap(backend, x);
  const dst = heap(backend, out);
  const inStrides = tf.util.computeStrides(shape).concat([1]);
  const outStrides = tf.util.computeStrides(outShape).concat([1]);
  const fill = (d: number, inOffset: number, outOffset: number): void => {
    const n = shape[d]!;
    if (d === rank - 1) {
      if (n >= 16) dst.set(src.subarray(inOffset, inOffset + n), outOffset);
      else for (let i = 0; i < n; i++) dst[outOffset + i] = src[inOffset + i]!;
    } else {
      for (let i = 0; i < n; i++) fill(d + 1, inOffset + i * inStrides[d]!, outOffset + i * outStrides[d]!);
    }
    // the block just written, repeated reps[d] − 1 times by doubling
    const block = n * outStrides[d]!;
    const total = block * reps[d]!;
    for (let done = block; done < total; done *= 2) dst.copyWithin(outOffset + done, outOffset, outOffset + Math.min(done, total - done));
  };
  fill(0, 0, 0);
  return out;
}

/** Cast to the dtype a tensor already has (tf.moments casts its input to float32): share the buffer. */
export function cast(args: KernelArgs, fallback: Fallback): Info | Info[] {
  const x = args.inputs['x']!;
  const dtype = args.attrs['dtype'];
  if (x.dtype === 'string') return fallback(args);
  if (dtype === x.dtype) return identity(args);
  if (dtype === 'bool') {
    // the built-in stores the number's low byte (−2 → 254); bool means "is nonzero", as on cpu
    const out = args.backend.makeOutput(x.shape, 'bool');
    const src = heap(args.backend, x);
    const dst = heap(args.backend, out);
    for (let i = 0; i < src.length; i++) dst[i] = src[i] !== 0 ? 1 : 0;
    return out;
  }
  return fallback(args);
}

export function identity(args: KernelArgs): Info {
  const x = args.inputs['x']!;
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** Reduce a contiguous run of axes: x viewed as [outer, reduced, inner]. */
function reduceRun(args: KernelArgs, fallback: Fallback, mean: boolean): Info | Info[] {
  const { inputs, attrs, backend } = args;
  const x = inputs['x']!;
  if (x.dtype !== 'float32') return fallback(args);
  const axes = tf.util.parseAxisParam(attrs['axis'] as number | number[], x.shape).sort((a, b) => a - b);
  if (axes.length === 0) return fallback(args);
  for (let i = 1; i < axes.length; i++) if (axes[i] !== axes[i - 1]! + 1) return fallback(args);
  const first = axes[0]!;
  const last = axes[axes.length - 1]!;
  const outer = tf.util.sizeFromShape(x.shape.slice(0, first));
  const reduced = tf.util.sizeFromShape(x.shape.slice(first, last + 1));
  const inner = tf.util.sizeFromShape(x.shape.slice(last + 1));
  const keepDims = attrs['keepDims'] === true;
  const outShape = keepDims ? x.shape.map((d, i) => (i >= first && i <= last ? 1 : d)) : x.shape.filter((_, i) => i < first || i > last);
  const out = backend.makeOutput(outShape, 'float32');
  const src = heap(backend, x) as Float32Array;
  const dst = heap(backend, out) as Float32Array;
  const factor = mean && reduced > 0 ? 1 / reduced : 1;
  if (inner === 1) {
    for (let a = 0, i = 0; a < outer; a++) {
      let sum = 0;
      for (let r = 0; r < reduced; r++) sum += src[i++]!;
      dst[a] = sum * factor;
    }
    return out;
  }
  const acc = new Float64Array(inner);
  const simd = inner % 4 === 0 ? simdKernels(backend) : null;
  if (simd) {
    const base = backend.getMemoryOffset(x.dataId);
    for (let a = 0; a < outer; a++) {
      acc.fill(0);
      columnSums(backend, simd, base + a * reduced * inner * 4, null, reduced, inner, acc, null);
      const result = heap(backend, out) as Float32Array;
      for (let b = 0; b < inner; b++) result[a * inner + b] = acc[b]! * factor;
    }
    return out;
  }
  for (let a = 0, i = 0; a < outer; a++) {
    acc.fill(0);
    for (let r = 0; r < reduced; r++) for (let b = 0; b < inner; b++) acc[b] += src[i++]!;
    const o = a * inner;
    for (let b = 0; b < inner; b++) dst[o + b] = acc[b]! * factor;
  }
  return out;
}

export function sum(args: KernelArgs, fallback: Fallback): Info | Info[] {
  return reduceRun(args, fallback, false);
}

export function mean(args: KernelArgs, fallback: Fallback): Info | Info[] {
  return reduceRun(args, fallback, true);
}

export function maxPoolGrad(args: KernelArgs, fallback: Fallback): Info | Info[] {
  const { inputs, attrs, backend } = args;
  const dy = inputs['dy']!;
  const x = inputs['input']!;
  if (x.dtype !== 'float32') return fallback(args);
  const info = tf.backend_util.computePool2DInfo(
    x.shape as [number, number, number, number],
    attrs['filterSize'] as number | [number, number],
    attrs['strides'] as number | [number, number],
    1,
    attrs['pad'] as 'valid' | 'same' | number,
    attrs['dimRoundingMode'] as 'floor' | 'round' | 'ceil' | undefined,
  );
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const out = backend.makeOutput(x.shape, 'float32');
  const dx = heap(backend, out) as Float32Array;
  const xv = heap(backend, x) as Float32Array;
  const dyv = heap(backend, dy) as Float32Array;
  const y = inputs['output'];
  const yv = y && y.dtype === 'float32' && tf.util.arraysEqual(y.shape, dy.shape) ? (heap(backend, y) as Float32Array) : null;
  dx.fill(0);
  const taps = new Int32Array(kh * kw);
  for (let b = 0; b < n; b++)
    for (let r = 0; r < oh; r++)
      for (let col = 0; col < ow; col++) {
        // the window's pixels inside the image, in the cpu backend's order
        let count = 0;
        for (let i = 0; i < kh; i++) {
          const yy = r * sh - top + i * dh;
          if (yy < 0 || yy >= h) continue;
          for (let j = 0; j < kw; j++) {
            const xx = col * sw - left + j * dw;
            if (xx >= 0 && xx < w) taps[count++] = ((b * h + yy) * w + xx) * c;
          }
        }
        if (count === 0) continue;
        const d = ((b * oh + r) * ow + col) * c;
        if (yv) {
          // The forward pass's maximum is one of the window's values: the first pixel holding it
          // is where the cpu backend's "first maximum" rule sends the gradient. No match (NaN) → scan.
          for (let k = 0; k < c; k++) {
            const m = yv[d + k]!;
            let t = 0;
            while (t < count && xv[taps[t]! + k] !== m) t++;
            if (t < count) dx[taps[t]! + k] += dyv[d + k]!;
            else dx[firstMax(xv, taps, count, k)] += dyv[d + k]!;
          }
        } else {
          for (let k = 0; k < c; k++) dx[firstMax(xv, taps, count, k)] += dyv[d + k]!;
        }
      }
  return out;
}

/** Index of the first largest value of channel k among a window's pixels (a NaN first stays, as on cpu). */
function firstMax(x: Float32Array, taps: Int32Array, count: number, k: number): number {
  let where = taps[0]! + k;
  let best = x[where]!;
  for (let t = 1; t < count; t++) {
    const v = x[taps[t]! + k]!;
    if (v > best) {
      best = v;
      where = taps[t]! + k;
    }
  }
  return where;
}

/**
 * Slice (the gradient of every ZeroPadding2D: dx cropped out of the padded dx): wasm's walks the
 * elements one by one (ResNet50 224²: 4 calls, 68 ms of a training step); here the output is copied
 * in the longest contiguous runs the slice allows (whole padded rows of W·C floats for NHWC crops).
 */
export function slice(args: KernelArgs, fallback: Fallback): Info | Info[] {
  const { inputs, attrs, backend } = args;
  const x = inputs['x']!;
  if (x.dtype === 'string' || x.dtype === 'complex64' || x.shape.length === 0) return fallback(args);
  const [begin, size] = tf.slice_util.parseSliceParams(x as unknown as tf.TensorInfo & { rank: number }, attrs['begin'] as number[], attrs['size'] as number[]);
  const rank = x.shape.length;
  const out = backend.makeOutput(size, x.dtype);
  if (tf.util.sizeFromShape(size) === 0) return out;
  // the innermost axes that are taken whole join the run; the first one that is cut ends it
  let inner = rank - 1;
  let run = size[inner]!;
  while (inner > 0 && begin[inner] === 0 && size[inner] === x.shape[inner]) {
    inner--;
    run *= size[inner]!;
  }
  const src = heap(backend, x);
  const dst = heap(backend, out);
  const strides = tf.util.computeStrides(x.shape);
  const outer = size.slice(0, inner);
  const count = tf.util.sizeFromShape(outer);
  const index = new Array<number>(inner).fill(0);
  const innerStride = inner < rank - 1 ? strides[inner]! : 1;
  const start = begin[inner]! * innerStride;
  for (let o = 0, at = 0; o < count; o++, at += run) {
    let from = start;
    for (let d = 0; d < inner; d++) from += (begin[d]! + index[d]!) * strides[d]!;
    if (run >= 32) dst.set(src.subarray(from, from + run), at);
    else for (let k = 0; k < run; k++) dst[at + k] = src[from + k]!;
    for (let d = inner - 1; d >= 0; d--) {
      if (++index[d]! < outer[d]!) break;
      index[d] = 0;
    }
  }
  return out;
}
