/**
 * osteo's own wasm convolution paths (bench/BENCHMARKS.md, *In-step convolution throughput*), each against the cpu backend's
 * kernel of the same name: the forward convolution as im2col + GEMM for weight-heavy layers, the
 * input gradient as a transposed GEMM + col2im, and the filter gradient with its reduction split into
 * cache-sized chunks. Shapes are chosen on both sides of each path's threshold, with odd sizes, both
 * strides, every padding kind, and the reference-count check of kernels.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { useBackend } from '../../src/backend/index.js';
import { rng } from '../helpers/random.js';
import { assertClose } from '../helpers/close.js';

type Shape4 = [number, number, number, number];
type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
type Input = { data: Float32Array; shape: number[] };

function randomArray(size: number, next: () => number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = next() * 2 - 1;
  return out;
}

async function runOn(backend: string, kernel: string, inputs: Record<string, Input>, attrs: object, tensors?: Record<string, tf.Tensor>): Promise<{ values: Float32Array; shape: number[] }> {
  await tf.setBackend(backend);
  const own: Record<string, tf.Tensor> = {};
  for (const [name, { data, shape }] of Object.entries(inputs)) own[name] = tensors?.[name] ?? tf.tensor(data, shape);
  const before = backend === 'wasm' ? (tf.backend() as unknown as { numDataIds(): number }).numDataIds() : 0;
  const out = tf.engine().runKernel(kernel, own, attrs as tf.NamedAttrMap) as tf.Tensor;
  const values = (await out.data()) as Float32Array;
  if (backend === 'wasm') {
    const after = (tf.backend() as unknown as { numDataIds(): number }).numDataIds();
    assert.is(after, before + 1, `${kernel} must leave exactly its output on the wasm heap`);
  }
  const shape = out.shape;
  out.dispose();
  if (!tensors) tf.dispose(Object.values(own));
  return { values, shape };
}

interface ConvCase {
  n: number; h: number; w: number; ci: number; co: number; k: number | [number, number]; s: number; pad: Pad;
}

/** Few output pixels next to the output channels: the GEMM paths (forward and input gradient). */
const weightHeavy: ConvCase[] = [
  { n: 2, h: 4, w: 4, ci: 16, co: 32, k: 3, s: 1, pad: 'same' }, // ResNet layer4's shape, scaled down
  { n: 1, h: 5, w: 3, ci: 12, co: 40, k: 3, s: 1, pad: 'same' }, // odd, non-square
  { n: 2, h: 9, w: 9, ci: 10, co: 48, k: 3, s: 2, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] }, // ZeroPadding2D(1) + valid, stride 2
  { n: 1, h: 7, w: 8, ci: 9, co: 64, k: 3, s: 2, pad: 'valid' }, // the padded input itself
  { n: 1, h: 6, w: 7, ci: 11, co: 36, k: 3, s: 2, pad: 'same' }, // TF-style asymmetric same
  { n: 2, h: 5, w: 5, ci: 24, co: 40, k: 1, s: 2, pad: 'valid' }, // 1×1 downsample
  { n: 1, h: 6, w: 6, ci: 10, co: 30, k: [3, 2], s: 1, pad: 'valid' }, // non-square filter
  { n: 1, h: 6, w: 5, ci: 13, co: 64, k: 5, s: 1, pad: 2 }, // numeric padding, 5×5
  { n: 1, h: 7, w: 7, ci: 10, co: 50, k: 3, s: 1, pad: [[0, 0], [2, 0], [0, 1], [0, 0]] }, // asymmetric explicit
  { n: 1, h: 9, w: 9, ci: 10, co: 40, k: 3, s: 3, pad: 'valid' }, // stride 3
  { n: 1, h: 2, w: 2, ci: 16, co: 32, k: 3, s: 1, pad: 'same' }, // taps mostly outside the image
  { n: 2, h: 3, w: 4, ci: 24, co: 64, k: 1, s: 1, pad: 'valid' }, // 1×1 stride 1: the patches are x itself
];

/** Many output pixels: the built-in and phase paths stay in charge. */
const pixelHeavy: ConvCase[] = [
  { n: 2, h: 17, w: 15, ci: 10, co: 12, k: 3, s: 1, pad: 'same' },
  { n: 1, h: 19, w: 18, ci: 12, co: 16, k: 3, s: 2, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] },
];

function tensors(c: ConvCase, next: () => number) {
  const [kh, kw] = Array.isArray(c.k) ? c.k : [c.k, c.k];
  const xShape: Shape4 = [c.n, c.h, c.w, c.ci];
  const filterShape: Shape4 = [kh, kw, c.ci, c.co];
  const dyShape = tf.backend_util.computeConv2DInfo(xShape, filterShape, c.s, 1, c.pad).outShape;
  return {
    xShape,
    filterShape,
    x: { data: randomArray(c.n * c.h * c.w * c.ci, next), shape: xShape },
    filter: { data: randomArray(kh * kw * c.ci * c.co, next), shape: filterShape },
    dy: { data: randomArray(dyShape.reduce((a, b) => a * b, 1), next), shape: dyShape },
  };
}

test.before(async () => {
  await useBackend('wasm');
});

test('FusedConv2D (im2col + GEMM for weight-heavy layers, the built-in otherwise) matches the cpu backend', async () => {
  const next = rng(41);
  for (const c of [...weightHeavy, ...pixelHeavy]) {
    const { x, filter } = tensors(c, next);
    const attrs = { strides: c.s, pad: c.pad, dataFormat: 'NHWC', dilations: 1, activation: 'linear' };
    assertClose(await runOn('wasm', tf.FusedConv2D, { x, filter }, attrs), await runOn('cpu', tf.FusedConv2D, { x, filter }, attrs), `FusedConv2D ${JSON.stringify(c)}`);
  }
  await tf.setBackend('wasm');
});

test('FusedConv2D with bias and relu, and a filter used many times (the built-in takes over), still match', async () => {
  const next = rng(43);
  const c = weightHeavy[0]!;
  const { x, filter } = tensors(c, next);
  const bias = { data: randomArray(c.co, next), shape: [c.co] };
  const fused = { strides: c.s, pad: c.pad, dataFormat: 'NHWC', dilations: 1, activation: 'relu' };
  assertClose(await runOn('wasm', tf.FusedConv2D, { x, filter, bias }, fused), await runOn('cpu', tf.FusedConv2D, { x, filter, bias }, fused), 'FusedConv2D + bias + relu');
  const attrs = { ...fused, activation: 'linear' };
  const expected = await runOn('cpu', tf.FusedConv2D, { x, filter }, attrs);
  await tf.setBackend('wasm');
  const kept = { filter: tf.tensor(filter.data, filter.shape) };
  for (let call = 0; call < 12; call++) assertClose(await runOn('wasm', tf.FusedConv2D, { x, filter }, attrs, kept), expected, `FusedConv2D, call ${call + 1} with one filter`);
  tf.dispose(Object.values(kept));
});

test('Conv2DBackpropInput (transposed GEMM + col2im where it pays) matches the cpu backend', async () => {
  const next = rng(47);
  for (const c of [...weightHeavy, ...pixelHeavy]) {
    const { xShape, dy, filter } = tensors(c, next);
    const attrs = { strides: c.s, pad: c.pad, dataFormat: 'NHWC', inputShape: xShape };
    assertClose(await runOn('wasm', tf.Conv2DBackpropInput, { dy, filter }, attrs), await runOn('cpu', tf.Conv2DBackpropInput, { dy, filter }, attrs), `input ${JSON.stringify(c)}`);
  }
  await tf.setBackend('wasm');
});

/** More than 16,384 output pixels: the filter gradient's reduction runs in chunks of output rows (the last one short). */
const largeImages: ConvCase[] = [
  { n: 1, h: 130, w: 131, ci: 3, co: 70, k: 3, s: 1, pad: 'same' },
  { n: 2, h: 262, w: 261, ci: 3, co: 40, k: 7, s: 2, pad: [[0, 0], [3, 3], [3, 3], [0, 0]] }, // the stem
  { n: 2, h: 64, w: 64, ci: 64, co: 130, k: 1, s: 1, pad: 'valid' }, // 1×1 stride 1 (8,192 pixels): one GEMM on x transposed
];

test('Conv2DBackpropFilter matches the cpu backend on the same shapes and on large images', async () => {
  const next = rng(53);
  for (const c of [...weightHeavy, ...pixelHeavy, ...largeImages]) {
    const { x, dy, filterShape } = tensors(c, next);
    const attrs = { strides: c.s, pad: c.pad, dataFormat: 'NHWC', filterShape };
    assertClose(await runOn('wasm', tf.Conv2DBackpropFilter, { x, dy }, attrs), await runOn('cpu', tf.Conv2DBackpropFilter, { x, dy }, attrs), `filter ${JSON.stringify(c)}`);
  }
  await tf.setBackend('wasm');
});

test("MaxPoolGrad (first pixel equal to the forward maximum) matches the cpu backend on ReLU outputs full of ties", async () => {
  const next = rng(59);
  for (const [shape, filterSize, strides, pad] of [
    [[2, 13, 13, 8], 3, 2, 'valid'], // ResNet's stem pool on its zero-padded input
    [[1, 12, 11, 5], 3, 2, 'same'],
    [[2, 9, 9, 3], 2, 2, 'valid'],
    [[1, 8, 8, 4], 3, 1, 1],
  ] as const) {
    const size = shape.reduce((a: number, b: number) => a * b, 1);
    const x = { data: Float32Array.from(randomArray(size, next), (v) => Math.max(0, v)), shape: [...shape] };
    await tf.setBackend('cpu');
    const y = tf.maxPool(tf.tensor(x.data, [...shape]) as tf.Tensor4D, filterSize, strides, pad);
    const output = { data: (await y.data()) as Float32Array, shape: y.shape };
    y.dispose();
    const dy = { data: randomArray(output.data.length, next), shape: output.shape };
    const attrs = { filterSize, strides, pad };
    const label = `MaxPoolGrad ${JSON.stringify([shape, filterSize, strides, pad])}`;
    assertClose(await runOn('wasm', tf.MaxPoolGrad, { dy, input: x, output }, attrs), await runOn('cpu', tf.MaxPoolGrad, { dy, input: x, output }, attrs), label);
  }
  await tf.setBackend('wasm');
});

test('FusedBatchNorm (inference: one SIMD affine pass) matches the cpu backend', async () => {
  const next = rng(61);
  const vector = (c: number, positive = false) => ({ data: Float32Array.from(randomArray(c, next), (v) => (positive ? 0.5 + Math.abs(v) : v)), shape: [c] });
  for (const [shape, withScale, withOffset] of [
    [[2, 5, 7, 8], true, true],
    [[1, 3, 3, 12], false, true],
    [[3, 4, 16], true, false],
    [[2, 3, 3, 6], true, true], // 6 channels: the built-in
  ] as const) {
    const c = shape[shape.length - 1]!;
    const x = { data: randomArray(shape.reduce((a: number, b: number) => a * b, 1), next), shape: [...shape] };
    const inputs: Record<string, Input> = { x, mean: vector(c), variance: vector(c, true) };
    if (withScale) inputs['scale'] = vector(c);
    if (withOffset) inputs['offset'] = vector(c);
    const attrs = { varianceEpsilon: 1e-3 };
    assertClose(await runOn('wasm', tf.FusedBatchNorm, inputs, attrs), await runOn('cpu', tf.FusedBatchNorm, inputs, attrs), `FusedBatchNorm ${JSON.stringify([shape, withScale, withOffset])}`);
  }
  await tf.setBackend('wasm');
});

test('Slice (the ZeroPadding2D gradient, copied in contiguous runs) matches the cpu backend', async () => {
  const next = rng(67);
  for (const [shape, begin, size] of [
    [[2, 9, 9, 5], [0, 1, 1, 0], [2, 7, 7, 5]], // crop a padding of 1
    [[1, 12, 11, 3], [0, 3, 2, 0], [1, 6, 9, 3]],
    [[2, 6, 7, 8], [1, 0, 0, 2], [1, 6, 7, 5]], // cut on the channel axis
    [[3, 4, 5, 6], [0, 0, 0, 0], [3, 4, 5, 6]], // everything
    [[2, 3, 40], [1, 1, 3], [1, 2, 33]],
    [[17], [4], [9]],
    [[5, 70], [2, 0], [3, 70]],
  ] as const) {
    const x = { data: randomArray(shape.reduce((a: number, b: number) => a * b, 1), next), shape: [...shape] };
    const attrs = { begin: [...begin], size: [...size] };
    assertClose(await runOn('wasm', tf.Slice, { x }, attrs), await runOn('cpu', tf.Slice, { x }, attrs), `Slice ${JSON.stringify([shape, begin, size])}`);
  }
  await tf.setBackend('wasm');
  const ints = tf.tensor3d(Int32Array.from({ length: 60 }, (_, i) => i * 1000003), [3, 4, 5], 'int32');
  const cut = tf.slice(ints, [1, 1, 0], [2, 2, 5]);
  const expected: number[] = [];
  for (let a = 1; a < 3; a++) for (let b = 1; b < 3; b++) for (let c = 0; c < 5; c++) expected.push((a * 20 + b * 5 + c) * 1000003);
  assert.equal(Array.from(await cut.data()), expected);
  tf.dispose([ints, cut]);
});

test.run();
