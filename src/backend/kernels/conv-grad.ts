/**
 * Convolution gradients for the wasm backend, built from what XNNPACK runs fast (forward
 * convolutions and GEMMs) instead of the backend's own Conv2DBackpropInput loop (≈ 4 GFLOP/s).
 *
 * Filter gradient (im2col + one GEMM): dW[(kh,kw,ci), co] = Σ_m colT[(kh,kw,ci), m]·dy[m, co] over
 * the N·OH·OW output pixels m. colT is written row by row from a channel-major copy of x, and the
 * product runs on XNNPACK's fully-connected GEMM. (A "swapped axes" forward convolution — batch ci,
 * channels n, filter dy — avoids the im2col but feeds XNNPACK only n channels per tap and measured
 * 1.5–3× slower; see BENCHMARKS.md.) Above 16,384 output pixels (the stems) the sum over m runs in
 * chunks of output rows, so that XNNPACK packs short slices of dy instead of one tall one.
 *
 * Input gradient ("sub-pixel phases"): for stride s the input rows split into s phases; the rows of
 * phase r only see the filter taps r, r+s, r+2s… so each phase is an ordinary stride-1 convolution of
 * dy with that flipped sub-filter. The s² phase results are interleaved into dx. No multiply is
 * spent on the zeros a dilated-dy formulation would insert (4× fewer for stride 2). Special cases:
 * 1×1 stride 1 is one GEMM dy·Wᵀ; ≤ 8 input channels (the stem) is a GEMM then col2im; few output
 * pixels next to the channels (ResNet's layer4) is colsᵀ = W·dyᵀ then col2im, which never copies,
 * transposes or packs the filter (each phase convolution has tfjs-wasm transpose and XNNPACK repack it).
 *
 * Depthwise: the input gradient uses the same phases with XNNPACK's depthwise convolution; the
 * filter gradient is SIMD dot products per row and tap (stride 1) or one XNNPACK depthwise
 * correlation with the batch folded into the channels (stride 2). Channel multipliers > 1 and
 * dilations, which no osteo model uses, take a direct loop.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { simdKernels, type SimdKernels } from './simd.js';
import { Scope, swapOuter, transpose2, view, type Info, type Shape4 } from './wasm-util.js';

type Pad = 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;

function channelsLast(dataFormat: string | undefined): 'channelsLast' {
  const format = tf.backend_util.convertConv2DDataFormat((dataFormat ?? 'NHWC') as 'NHWC' | 'NCHW');
  if (format !== 'channelsLast') throw new Error(`wasm training kernels support NHWC only, got ${dataFormat}`);
  return format;
}

function explicit(top: number, bottom: number, left: number, right: number): tf.backend_util.ExplicitPadding {
  return [
    [0, 0],
    [top, bottom],
    [left, right],
    [0, 0],
  ];
}

// ---------------------------------------------------------------------------------------------
// Filter gradients

interface FilterGradArgs {
  inputs: { x: Info; dy: Info };
  backend: BackendWasm;
  attrs: { strides: number | [number, number]; pad: Pad; dataFormat?: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil'; filterShape: Shape4 };
}

export function conv2DBackpropFilter({ inputs, backend, attrs }: FilterGradArgs): Info {
  const { x, dy } = inputs;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as Shape4, attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, channelsLast(attrs.dataFormat),
  );
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co, outHeight: oh, outWidth: ow } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const m = n * oh * ow;
  const rows = kh * kw * ci;
  const scope = new Scope(backend);
  try {
    // dW[(i,j,c), o] = Σ_m colT[(i,j,c), m]·dy[m, o]: one XNNPACK GEMM (the untransposed fast path)
    // whose left operand is im2col transposed, built from x in channel-major order.
    const direct = kh === 1 && kw === 1 && sh === 1 && sw === 1 && top === 0 && left === 0 && oh === h && ow === w;
    const geometry = { n, h, w, c: ci, kh, kw, sh, sw, top, left, oh, ow };
    if (!direct && m > chunkedReductionAbove) return filterGradChunked(backend, scope, x, dy, geometry, co);
    const colT = scope.output([1, rows, m]);
    if (direct) {
      transpose2(view(backend, x), m, ci, view(backend, colT));
    } else {
      const xt = scope.output([ci, n * h * w]);
      transpose2(view(backend, x), n * h * w, ci, view(backend, xt));
      im2colTransposed(view(backend, xt), view(backend, colT), geometry, 0, n * oh);
    }
    const dyMatrix = scope.reshape(dy, [1, m, co]);
    const product = scope.call('BatchMatMul', { a: colT, b: dyMatrix }, { transposeA: false, transposeB: false });
    return scope.finish(scope.reshape(product, [kh, kw, ci, co]));
  } finally {
    scope.dispose();
  }
}

/**
 * Output pixels above which the filter gradient's reduction is split into chunks (see
 * filterGradChunked). Measured (bench/ab-kernels.ts): the 224² stem (50,176 pixels) 0.51–0.75× the
 * unchunked time; ResNet18's layer1/layer2 (12,544 / 3,136 pixels) even within noise, so they keep
 * the single GEMM.
 */
const chunkedReductionAbove = 16384;
/** Bytes of im2col rows per chunk: the chunk stays in L2 (2 MiB a core here) between im2col and the GEMM. */
const chunkBytes = 1 << 20;

/**
 * The filter gradient of a large image: one GEMM over all N·OH·OW output pixels would stream a
 * [kh·kw·Ci, M] im2col matrix of 10–30 MB through memory twice (written, then read by every row tile
 * of the GEMM, whose packed dy panel is M·Co floats). Here the pixels go in chunks of whole output
 * rows: each chunk's im2col block (≤ chunkBytes) and dy rows are written and consumed while they are
 * in cache, and the chunks' [kh·kw·Ci, Co] products are summed.
 */
function filterGradChunked(backend: BackendWasm, scope: Scope, x: Info, dy: Info, g: Im2colGeometry, co: number): Info {
  const { n, h, w, c, kh, kw, oh, ow } = g;
  const rows = kh * kw * c;
  const xt = scope.output([c, n * h * w]);
  transpose2(view(backend, x), n * h * w, c, view(backend, xt));
  const sum = new Float32Array(rows * co);
  const perChunk = Math.max(1, Math.floor(chunkBytes / (rows * ow * 4)));
  for (let g0 = 0; g0 < n * oh; g0 += perChunk) {
    const g1 = Math.min(n * oh, g0 + perChunk);
    const kc = (g1 - g0) * ow;
    const part = new Scope(backend);
    try {
      const colT = part.output([1, rows, kc]);
      const dyChunk = part.output([1, kc, co]);
      im2colTransposed(view(backend, xt), view(backend, colT), g, g0, g1);
      view(backend, dyChunk).set(view(backend, dy).subarray(g0 * ow * co, g1 * ow * co));
      const product = part.call('BatchMatMul', { a: colT, b: dyChunk }, { transposeA: false, transposeB: false });
      const values = view(backend, product);
      for (let i = 0; i < sum.length; i++) sum[i] += values[i]!;
    } finally {
      part.dispose();
    }
  }
  const out = backend.makeOutput([kh, kw, c, co], 'float32');
  view(backend, out).set(sum);
  return scope.finish(out);
}

interface Im2colGeometry {
  n: number; h: number; w: number; c: number; kh: number; kw: number; sh: number; sw: number; top: number; left: number; oh: number; ow: number;
}

/**
 * colT[(i,j,c), (b,r,q)] = x[b, r·sh+i−top, q·sw+j−left, c] (0 outside the image) for the output rows
 * (b,r) numbered g0 ≤ b·OH + r < g1, from x laid out channel-major ([C, N, H, W]) so that every row of
 * colT is written sequentially from contiguous (stride 1) or evenly strided runs of one image row.
 */
function im2colTransposed(xt: Float32Array, colT: Float32Array, geometry: Im2colGeometry, g0: number, g1: number): void {
  const { n, h, w, c, kh, kw, sh, sw, top, left, oh, ow } = geometry;
  const m = (g1 - g0) * ow;
  for (let j = 0; j < kw; j++) {
    // output columns q whose input column q·sw + j − left lies inside the image
    const first = Math.min(ow, Math.max(0, Math.ceil((left - j) / sw)));
    const last = Math.max(first - 1, Math.min(ow - 1, Math.floor((w - 1 + left - j) / sw)));
    for (let i = 0; i < kh; i++)
      for (let ch = 0; ch < c; ch++) {
        let dst = ((i * kw + j) * c + ch) * m;
        for (let gr = g0; gr < g1; gr++, dst += ow) {
          const b = Math.floor(gr / oh);
          const r = gr - b * oh;
          const y = r * sh + i - top;
          if (y < 0 || y >= h) {
            colT.fill(0, dst, dst + ow);
            continue;
          }
          if (first > 0) colT.fill(0, dst, dst + first);
          if (last < ow - 1) colT.fill(0, dst + last + 1, dst + ow);
          let src = ((ch * n + b) * h + y) * w + first * sw + j - left;
          if (sw === 1) {
            const count = last - first + 1;
            if (count >= 16) colT.set(xt.subarray(src, src + count), dst + first);
            else for (let q = 0; q < count; q++) colT[dst + first + q] = xt[src + q]!;
          } else {
            for (let q = first; q <= last; q++, src += sw) colT[dst + q] = xt[src]!;
          }
        }
      }
  }
}

interface DepthwiseFilterGradArgs {
  inputs: { x: Info; dy: Info };
  backend: BackendWasm;
  attrs: { strides: number | [number, number]; dilations: number | [number, number]; pad: Pad; dimRoundingMode?: 'floor' | 'round' | 'ceil'; filterShape: Shape4 };
}

/**
 * Depthwise filter gradient: a per-channel correlation whose result is tiny ([kh,kw,C,m]) and whose
 * cost is one multiply-add per tap and input element. A single pass over x and dy, accumulating in
 * float64 (the sums run over N·OH·OW terms), beats any composition of full-size wasm ops.
 */
export function depthwiseConv2dNativeBackpropFilter({ inputs, backend, attrs }: DepthwiseFilterGradArgs): Info {
  const { x, dy } = inputs;
  const info = tf.backend_util.computeConv2DInfo(x.shape as Shape4, attrs.filterShape, attrs.strides, attrs.dilations, attrs.pad, attrs.dimRoundingMode, true);
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow, outChannels: cm } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const m = cm / c;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  if (m === 1 && dh === 1 && dw === 1) {
    const simd = sw === 1 && c % 4 === 0 ? simdKernels(backend) : null;
    if (simd) return depthwiseFilterGradSimd(backend, simd, x, dy, info);
    return depthwiseFilterGradByCorrelation(backend, x, dy, info);
  }
  const out = backend.makeOutput([kh, kw, c, m], 'float32');
  const xv = view(backend, x);
  const dyv = view(backend, dy);
  const acc = new Float64Array(kh * kw * cm);
  for (let b = 0; b < n; b++)
    for (let r = 0; r < oh; r++)
      for (let i = 0; i < kh; i++) {
        const y = r * sh + i * dh - top;
        if (y < 0 || y >= h) continue;
        const xRow = (b * h + y) * w;
        const dyRow = (b * oh + r) * ow;
        for (let j = 0; j < kw; j++) {
          const a0 = (i * kw + j) * cm;
          // output columns whose input column s·col + j·d − left falls inside the image
          const first = Math.max(0, Math.ceil((left - j * dw) / sw));
          const last = Math.min(ow - 1, Math.floor((w - 1 + left - j * dw) / sw));
          if (m === 1) {
            for (let col = first; col <= last; col++) {
              let xo = (xRow + col * sw + j * dw - left) * c;
              let yo = (dyRow + col) * cm;
              for (let k = 0; k < c; k++) acc[a0 + k] += xv[xo++]! * dyv[yo++]!;
            }
          } else {
            for (let col = first; col <= last; col++) {
              const xo = (xRow + col * sw + j * dw - left) * c;
              const yo = (dyRow + col) * cm;
              for (let k = 0; k < c; k++) {
                const xval = xv[xo + k]!;
                for (let q = 0; q < m; q++) acc[a0 + k * m + q] += xval * dyv[yo + k * m + q]!;
              }
            }
          }
        }
      }
  view(backend, out).set(acc);
  return out;
}

/**
 * The depthwise filter gradient for stride 1 and channels in multiples of 4: for every output row and
 * tap, one SIMD dot-product pass over the row's pixels (x shifted by the tap against dy), float32
 * within a row and float64 across rows.
 */
function depthwiseFilterGradSimd(backend: BackendWasm, simd: SimdKernels, x: Info, dy: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const taps = kh * kw;
  const out = backend.makeOutput([kh, kw, c, 1], 'float32');
  const heap = backend.wasm as unknown as { _malloc(bytes: number): number; _free(p: number): void; HEAPF32: Float32Array };
  const scratch = heap._malloc(taps * c * 4) >>> 0; // a heap past 2 GiB hands out negative i32 pointers
  const total = new Float64Array(taps * c);
  const xAt = backend.getMemoryOffset(x.dataId);
  const dyAt = backend.getMemoryOffset(dy.dataId);
  try {
    for (let b = 0; b < n; b++)
      for (let r = 0; r < oh; r++) {
        new Float32Array(heap.HEAPF32.buffer, scratch, taps * c).fill(0);
        for (let i = 0; i < kh; i++) {
          const y = r * sh + i - top;
          if (y < 0 || y >= h) continue;
          for (let j = 0; j < kw; j++) {
            const first = Math.max(0, left - j);
            const last = Math.min(ow - 1, w - 1 + left - j);
            if (last < first) continue;
            const xPixel = (b * h + y) * w + first + j - left;
            const dyPixel = (b * oh + r) * ow + first;
            simd.dot(xAt + xPixel * c * 4, dyAt + dyPixel * c * 4, last - first + 1, c, scratch + (i * kw + j) * c * 4);
          }
        }
        const partial = new Float32Array(heap.HEAPF32.buffer, scratch, taps * c);
        for (let k = 0; k < total.length; k++) total[k] += partial[k]!;
      }
  } finally {
    heap._free(scratch);
  }
  view(backend, out).set(total);
  return out;
}

/**
 * The depthwise filter gradient as one XNNPACK depthwise convolution: with the batch folded into the
 * channels (x as [1, H, W, N·C], dy as the filter [OH, OW, N·C, 1], dilation = the stride) the output
 * [1, kh, kw, N·C] holds each image's contribution, summed over N afterwards. For N = 1 both
 * re-layouts are free. 2–3× faster than a JavaScript loop over the taps.
 */
function depthwiseFilterGradByCorrelation(backend: BackendWasm, x: Info, dy: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const scope = new Scope(backend);
  try {
    let xs: Info;
    let dys: Info;
    if (n === 1) {
      xs = x;
      dys = scope.reshape(dy, [oh, ow, c, 1]);
    } else {
      xs = scope.output([1, h, w, n * c]);
      dys = scope.output([oh, ow, n * c, 1]);
      swapOuter(view(backend, x), n, h * w, c, view(backend, xs));
      swapOuter(view(backend, dy), n, oh * ow, c, view(backend, dys));
    }
    const bottom = Math.max(0, kh + sh * (oh - 1) - h - top);
    const right = Math.max(0, kw + sw * (ow - 1) - w - left);
    const taps = scope.call('DepthwiseConv2dNative', { x: xs, filter: dys }, { strides: [1, 1], pad: explicit(top, bottom, left, right), dataFormat: 'NHWC', dilations: [sh, sw], dimRoundingMode: undefined });
    const fw = taps.shape[2]!;
    const out = backend.makeOutput([kh, kw, c, 1], 'float32');
    const dst = view(backend, out);
    const src = view(backend, taps);
    for (let i = 0; i < kh; i++)
      for (let j = 0; j < kw; j++) {
        const to = (i * kw + j) * c;
        const from = (i * fw + j) * n * c;
        for (let k = 0; k < c; k++) {
          let total = 0;
          for (let b = 0; b < n; b++) total += src[from + b * c + k]!;
          dst[to + k] = total;
        }
      }
    return out;
  } finally {
    scope.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Input gradients

/** How one spatial axis of a transposed convolution splits into stride phases. */
interface AxisPlan {
  /** taps per phase (0 when the filter is shorter than the stride) */
  taps: number[];
  /** first phase row that lands inside the input */
  q0: number;
  /** rows each phase convolution produces (≥ the rows the interleave reads) */
  length: number;
  padTop: number[];
  padBottom: number[];
}

function planAxis(k: number, s: number, pad0: number, inSize: number, outSize: number): AxisPlan | null {
  const taps = Array.from({ length: s }, (_, r) => (r < k ? Math.ceil((k - r) / s) : 0));
  let q0 = Math.floor(pad0 / s);
  for (const t of taps) if (t > 0) q0 = Math.min(q0, t - 1);
  const rows = Math.ceil((inSize + pad0) / s) - q0;
  const bottom = Math.max(0, rows - outSize + q0);
  const length = outSize - q0 + bottom;
  if (length < rows) return null;
  return { taps, q0, length, padTop: taps.map((t) => t - 1 - q0), padBottom: taps.map(() => bottom) };
}

type PhaseConv = (scope: Scope, dy: Info, filter: Info, pad: tf.backend_util.ExplicitPadding) => Info;

/**
 * dx for a stride-(sh, sw) correlation with filter taps given by `subFilter(ry, rx, jy, jx)`: each
 * phase is a stride-1 convolution of dy, then the phases are interleaved and cropped into dx.
 * `subFilter` fills the flipped sub-filter of a phase; `filterShape(jy, jx)` gives its shape.
 */
function phasedBackpropInput(
  backend: BackendWasm,
  dy: Info,
  info: tf.backend_util.Conv2DInfo,
  makeSubFilter: (scope: Scope, ry: number, rx: number, jy: number, jx: number) => Info,
  conv: PhaseConv,
): Info {
  const inShape = info.inShape as Shape4;
  const [n, h, w, c] = inShape;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow } = info;
  const { top, left } = info.padInfo;
  const py = planAxis(kh, sh, top, h, oh);
  const px = planAxis(kw, sw, left, w, ow);
  if (!py || !px) throw new Error('unsupported padding for the phased transposed convolution');
  const scope = new Scope(backend);
  try {
    if (sh === 1 && sw === 1 && py.q0 === top && px.q0 === left) {
      // one phase, already aligned with dx: the convolution output is dx itself
      const filter = makeSubFilter(scope, 0, 0, kh, kw);
      const out = conv(scope, dy, filter, explicit(py.padTop[0]!, py.padBottom[0]!, px.padTop[0]!, px.padBottom[0]!));
      if (out.shape[1] === h && out.shape[2] === w) return scope.finish(out);
    }
    const phases: (Info | null)[] = [];
    for (let ry = 0; ry < sh; ry++)
      for (let rx = 0; rx < sw; rx++) {
        const jy = py.taps[ry]!;
        const jx = px.taps[rx]!;
        if (jy === 0 || jx === 0) {
          phases.push(null);
          continue;
        }
        const filter = makeSubFilter(scope, ry, rx, jy, jx);
        phases.push(conv(scope, dy, filter, explicit(py.padTop[ry]!, py.padBottom[ry]!, px.padTop[rx]!, px.padBottom[rx]!)));
      }
    const dx = backend.makeOutput(inShape, 'float32');
    const out = view(backend, dx);
    const sources = phases.map((p) => (p ? view(backend, p) : null));
    const lh = py.length;
    const lw = px.length;
    for (let b = 0; b < n; b++)
      for (let y = 0; y < h; y++) {
        const yy = y + top;
        const ry = yy % sh;
        const q = Math.floor(yy / sh) - py.q0;
        for (let x = 0; x < w; x++) {
          const xx = x + left;
          const rx = xx % sw;
          const p = Math.floor(xx / sw) - px.q0;
          const src = sources[ry * sw + rx];
          const o = ((b * h + y) * w + x) * c;
          if (!src) {
            out.fill(0, o, o + c);
            continue;
          }
          let i = ((b * lh + q) * lw + p) * c;
          for (let k = 0; k < c; k++) out[o + k] = src[i++]!;
        }
      }
    return dx;
  } finally {
    scope.dispose();
  }
}

interface InputGradArgs {
  inputs: { dy: Info; filter: Info };
  backend: BackendWasm;
  attrs: { strides: number | [number, number]; pad: Pad; dataFormat?: 'NHWC' | 'NCHW'; dimRoundingMode?: 'floor' | 'round' | 'ceil'; inputShape: Shape4 };
}

export function conv2DBackpropInput({ inputs, backend, attrs }: InputGradArgs): Info {
  const { dy, filter } = inputs;
  const info = tf.backend_util.computeConv2DInfo(
    attrs.inputShape, filter.shape as Shape4, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, channelsLast(attrs.dataFormat),
  );
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, inChannels: ci, outChannels: co } = info;
  if (ci <= smallInputChannels) return backpropInputByCol2im(backend, dy, filter, info);
  if (kh === 1 && kw === 1 && sh === 1 && sw === 1 && info.padInfo.top === 0 && info.padInfo.left === 0 && info.outHeight === info.inHeight && info.outWidth === info.inWidth) {
    return pointwiseBackpropInput(backend, dy, filter, info);
  }
  if (transposedGemmPays(info)) return backpropInputByTransposedGemm(backend, dy, filter, info);
  // sub-filter of phase (ry, rx), flipped and with in/out channels swapped: [jy, jx, Co, Ci]
  const makeSubFilter = (scope: Scope, ry: number, rx: number, jy: number, jx: number): Info => {
    const sub = scope.output([jy, jx, co, ci]);
    const dst = view(backend, sub);
    const src = view(backend, filter);
    const block = ci * co;
    for (let a = 0; a < jy; a++)
      for (let b = 0; b < jx; b++) {
        // tap (i, j) of the flipped sub-filter, its [Ci, Co] matrix transposed to [Co, Ci]
        const from = ((ry + (jy - 1 - a) * sh) * kw + rx + (jx - 1 - b) * sw) * block;
        const to = (a * jx + b) * block;
        transpose2(src.subarray(from, from + block), ci, co, dst.subarray(to, to + block));
      }
    return sub;
  };
  const conv: PhaseConv = (scope, x, f, pad) =>
    scope.call('Conv2D', { x, filter: f }, { strides: [1, 1], pad, dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined });
  return phasedBackpropInput(backend, dy, info, makeSubFilter, conv);
}

/** dx of a 1×1, stride-1 convolution: one GEMM dy·Wᵀ, skipping a convolution operator's setup. */
function pointwiseBackpropInput(backend: BackendWasm, dy: Info, filter: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { inChannels: ci, outChannels: co } = info;
  const m = info.batchSize * info.outHeight * info.outWidth;
  const scope = new Scope(backend);
  try {
    const weightsT = scope.output([1, co, ci]);
    transpose2(view(backend, filter), ci, co, view(backend, weightsT));
    const product = scope.call('BatchMatMul', { a: scope.reshape(dy, [1, m, co]), b: weightsT }, { transposeA: false, transposeB: false });
    return scope.finish(scope.reshape(product, info.inShape));
  } finally {
    scope.dispose();
  }
}

/**
 * Whether dx is cheaper as colsT = W·dyᵀ (one GEMM whose packed operand is dyᵀ, Co·M floats) plus a
 * col2im, than as phase convolutions, each of which has tfjs-wasm transpose and XNNPACK repack a
 * flipped filter (≈ 13 ns a filter element, measured). The GEMM path writes and re-reads
 * kh·kw·Ci·M floats (≈ 3 ns each): it wins where the output pixels M are few next to Co — ResNet18's
 * layer4 and the strided conv of layer3 at 224² (layer3's stride-1 convs measured even: they stay on
 * the single phase convolution).
 */
function transposedGemmPays(info: tf.backend_util.Conv2DInfo): boolean {
  const m = info.batchSize * info.outHeight * info.outWidth;
  const k = info.filterHeight * info.filterWidth * info.inChannels;
  // a strided gradient's phases also build s² sub-filters and interleave their outputs: more to save
  const phaseCost = info.strideHeight * info.strideWidth > 1 ? 14 : 10;
  return 3 * m * k + 4 * m * info.outChannels < phaseCost * k * info.outChannels;
}

/**
 * dx as colsT[(i,j,c), m] = W[(i,j,c), co] · dyᵀ[co, m] and col2im: the filter is the GEMM's
 * unpacked left operand as it lies in memory ([kh,kw,Ci,Co] is [(i,j,c), co] row-major), so no
 * filter copy, transpose or packing happens at all; XNNPACK packs only dyᵀ.
 */
function backpropInputByTransposedGemm(backend: BackendWasm, dy: Info, filter: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co, outHeight: oh, outWidth: ow } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const m = n * oh * ow;
  const k = kh * kw * ci;
  const scope = new Scope(backend);
  try {
    const dyT = scope.output([1, co, m]);
    transpose2(view(backend, dy), m, co, view(backend, dyT));
    const weights = scope.reshape(filter, [1, k, co]);
    const colsT = scope.call('BatchMatMul', { a: weights, b: dyT }, { transposeA: false, transposeB: false });
    const dx = backend.makeOutput(info.inShape, 'float32');
    const out = view(backend, dx);
    const src = view(backend, colsT);
    out.fill(0);
    for (let i = 0; i < kh; i++)
      for (let j = 0; j < kw; j++) {
        // output columns q whose input column q·sw + j − left lies inside the image
        const first = Math.min(ow, Math.max(0, Math.ceil((left - j) / sw)));
        const last = Math.min(ow - 1, Math.floor((w - 1 + left - j) / sw));
        if (last < first) continue;
        for (let c = 0; c < ci; c++) {
          const row = ((i * kw + j) * ci + c) * m;
          for (let b = 0; b < n; b++)
            for (let r = 0; r < oh; r++) {
              const y = r * sh + i - top;
              if (y < 0 || y >= h) continue;
              let from = row + (b * oh + r) * ow + first;
              let to = ((b * h + y) * w + first * sw + j - left) * ci + c;
              const step = sw * ci;
              for (let q = first; q <= last; q++, from++, to += step) out[to] += src[from]!;
            }
        }
      }
    return dx;
  } finally {
    scope.dispose();
  }
}

/** Below this many input channels the phase convolutions give XNNPACK too few output channels to be efficient. */
const smallInputChannels = 8;

/**
 * dx for few input channels (the 3-channel stem): cols = dy·Wᵀ as one GEMM ([M, Co]·[Co, kh·kw·Ci]),
 * then col2im adds each pixel's kh·kw·Ci values back into dx.
 */
function backpropInputByCol2im(backend: BackendWasm, dy: Info, filter: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co, outHeight: oh, outWidth: ow } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const taps = kh * kw * ci;
  const m = n * oh * ow;
  const scope = new Scope(backend);
  try {
    const weightsT = scope.output([1, co, taps]);
    transpose2(view(backend, filter), taps, co, view(backend, weightsT));
    const dyMatrix = scope.reshape(dy, [1, m, co]);
    const cols = scope.call('BatchMatMul', { a: dyMatrix, b: weightsT }, { transposeA: false, transposeB: false });
    const dx = backend.makeOutput(info.inShape, 'float32');
    const out = view(backend, dx);
    const src = view(backend, cols);
    out.fill(0);
    for (let b = 0, row = 0; b < n; b++)
      for (let r = 0; r < oh; r++)
        for (let q = 0; q < ow; q++, row++) {
          const base = row * taps;
          for (let i = 0; i < kh; i++) {
            const y = r * sh + i - top;
            if (y < 0 || y >= h) continue;
            for (let j = 0; j < kw; j++) {
              const x = q * sw + j - left;
              if (x < 0 || x >= w) continue;
              const o = ((b * h + y) * w + x) * ci;
              const from = base + (i * kw + j) * ci;
              for (let c = 0; c < ci; c++) out[o + c] += src[from + c]!;
            }
          }
        }
    return dx;
  } finally {
    scope.dispose();
  }
}

interface DepthwiseInputGradArgs {
  inputs: { dy: Info; filter: Info };
  backend: BackendWasm;
  attrs: { strides: number | [number, number]; dilations: number | [number, number]; pad: Pad; dimRoundingMode?: 'floor' | 'round' | 'ceil'; inputShape: Shape4 };
}

export function depthwiseConv2dNativeBackpropInput({ inputs, backend, attrs }: DepthwiseInputGradArgs): Info {
  const { dy, filter } = inputs;
  const info = tf.backend_util.computeConv2DInfo(attrs.inputShape, filter.shape as Shape4, attrs.strides, attrs.dilations, attrs.pad, attrs.dimRoundingMode, true);
  const { filterWidth: kw, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, inChannels: c } = info;
  const m = info.outChannels / c;
  if (m !== 1 || dh !== 1 || dw !== 1) return depthwiseBackpropInputDirect(backend, dy, filter, info);
  const makeSubFilter = (scope: Scope, ry: number, rx: number, jy: number, jx: number): Info => {
    const sub = scope.output([jy, jx, c, 1]);
    const dst = view(backend, sub);
    const src = view(backend, filter);
    for (let a = 0; a < jy; a++)
      for (let b = 0; b < jx; b++) {
        const from = ((ry + (jy - 1 - a) * sh) * kw + rx + (jx - 1 - b) * sw) * c;
        dst.set(src.subarray(from, from + c), (a * jx + b) * c);
      }
    return sub;
  };
  const conv: PhaseConv = (scope, x, f, pad) =>
    scope.call('DepthwiseConv2dNative', { x, filter: f }, { strides: [1, 1], pad, dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined });
  return phasedBackpropInput(backend, dy, info, makeSubFilter, conv);
}

/** The general case (channel multiplier > 1 or dilation): a direct scatter, used by no osteo model. */
function depthwiseBackpropInputDirect(backend: BackendWasm, dy: Info, filter: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow, outChannels: cm } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const m = cm / c;
  const dx = backend.makeOutput(info.inShape, 'float32');
  const out = view(backend, dx);
  out.fill(0);
  const dyv = view(backend, dy);
  const f = view(backend, filter);
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  for (let b = 0; b < n; b++)
    for (let r = 0; r < oh; r++)
      for (let col = 0; col < ow; col++) {
        const yo = ((b * oh + r) * ow + col) * cm;
        for (let i = 0; i < kh; i++) {
          const y = r * sh + i * dh - top;
          if (y < 0 || y >= h) continue;
          for (let j = 0; j < kw; j++) {
            const x = col * sw + j * dw - left;
            if (x < 0 || x >= w) continue;
            const xo = ((b * h + y) * w + x) * c;
            const fo = (i * kw + j) * cm;
            for (let k = 0; k < c; k++) {
              let sum = 0;
              for (let q = 0; q < m; q++) sum += dyv[yo + k * m + q]! * f[fo + k * m + q]!;
              out[xo + k] += sum;
            }
          }
        }
      }
  return dx;
}
