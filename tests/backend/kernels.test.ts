/**
 * Each wasm training kernel against the cpu backend's kernel of the same name, on random shapes
 * (odd sizes, every stride/padding kind the models use, and a few they do not), plus a reference-
 * count check: a kernel call leaves the wasm backend holding exactly one new buffer, its output.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { useBackend } from '../../src/backend/index.js';
import { wasmTrainingKernelNames } from '../../src/backend/kernels/index.js';
import { rng } from '../helpers/random.js';
import { assertClose } from '../helpers/close.js';

type Shape4 = [number, number, number, number];
type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];


function randomArray(size: number, next: () => number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = next() * 2 - 1;
  return out;
}

/** Run a kernel on one backend with the given inputs; returns its values. */
async function runOn(backend: string, kernel: string, inputs: Record<string, { data: Float32Array; shape: number[] }>, attrs: object): Promise<{ values: Float32Array; shape: number[] }> {
  await tf.setBackend(backend);
  const tensors: Record<string, tf.Tensor> = {};
  for (const [name, { data, shape }] of Object.entries(inputs)) tensors[name] = tf.tensor(data, shape);
  const before = backend === 'wasm' ? (tf.backend() as unknown as { numDataIds(): number }).numDataIds() : 0;
  const out = tf.engine().runKernel(kernel, tensors, attrs as tf.NamedAttrMap) as tf.Tensor;
  const values = (await out.data()) as Float32Array;
  if (backend === 'wasm' && kernel !== tf.Identity && kernel !== tf.Cast) {
    const after = (tf.backend() as unknown as { numDataIds(): number }).numDataIds();
    assert.is(after, before + 1, `${kernel} must leave exactly its output on the wasm heap`);
  }
  const shape = out.shape;
  out.dispose();
  tf.dispose(Object.values(tensors));
  return { values, shape };
}

function outSize(shape: Shape4, filter: Shape4, strides: number, pad: Pad, dilation = 1, depthwise = false): Shape4 {
  return tf.backend_util.computeConv2DInfo(shape, filter, strides, dilation, pad, undefined, depthwise).outShape;
}

test.before(async () => {
  await useBackend('wasm');
});

test('the training kernels are registered on wasm once the backend is active', () => {
  for (const name of wasmTrainingKernelNames) assert.ok(tf.getKernel(name, 'wasm'), name);
});

interface ConvCase {
  n: number; h: number; w: number; ci: number; co: number; k: number | [number, number]; s: number; pad: Pad;
}

const convCases: ConvCase[] = [
  { n: 2, h: 9, w: 9, ci: 5, co: 7, k: 3, s: 1, pad: 'same' }, // ResNet 3×3 stride 1
  { n: 2, h: 11, w: 11, ci: 4, co: 6, k: 3, s: 2, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] }, // ZeroPadding2D(1) + valid, stride 2
  { n: 1, h: 10, w: 10, ci: 3, co: 4, k: 3, s: 2, pad: 'valid' }, // the padded input itself, valid, stride 2
  { n: 2, h: 19, w: 17, ci: 3, co: 8, k: 7, s: 2, pad: [[0, 0], [3, 3], [3, 3], [0, 0]] }, // the 7×7 stem
  { n: 3, h: 8, w: 8, ci: 6, co: 5, k: 1, s: 2, pad: 'valid' }, // 1×1 downsample, even size
  { n: 2, h: 7, w: 7, ci: 6, co: 5, k: 1, s: 2, pad: 'valid' }, // 1×1 downsample, odd size
  { n: 2, h: 6, w: 5, ci: 9, co: 3, k: 1, s: 1, pad: 'valid' }, // pointwise
  { n: 1, h: 13, w: 12, ci: 3, co: 5, k: 3, s: 2, pad: 'same' }, // TF-style same (asymmetric) stride 2
  { n: 2, h: 8, w: 9, ci: 2, co: 3, k: [3, 2], s: 1, pad: 'valid' }, // non-square filter
  { n: 2, h: 9, w: 8, ci: 3, co: 4, k: 5, s: 1, pad: 2 }, // numeric padding
  { n: 1, h: 12, w: 12, ci: 2, co: 3, k: 3, s: 3, pad: 'valid' }, // stride 3
  { n: 2, h: 15, w: 15, ci: 4, co: 4, k: 3, s: 1, pad: [[0, 0], [2, 0], [0, 1], [0, 0]] }, // asymmetric explicit
  // more than 8 input channels: the input gradient takes the phase-convolution path
  { n: 2, h: 11, w: 11, ci: 12, co: 6, k: 3, s: 2, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] },
  { n: 1, h: 13, w: 12, ci: 10, co: 5, k: 3, s: 2, pad: 'same' },
  { n: 2, h: 19, w: 17, ci: 9, co: 4, k: 7, s: 2, pad: [[0, 0], [3, 3], [3, 3], [0, 0]] },
  { n: 2, h: 7, w: 7, ci: 10, co: 5, k: 1, s: 2, pad: 'valid' },
  { n: 1, h: 12, w: 12, ci: 9, co: 3, k: 3, s: 3, pad: 'valid' },
  { n: 2, h: 9, w: 8, ci: 11, co: 7, k: 3, s: 1, pad: 'same' },
  { n: 2, h: 10, w: 9, ci: 9, co: 4, k: 5, s: 1, pad: 'valid' },
];

test('Conv2DBackpropFilter and Conv2DBackpropInput match the cpu backend', async () => {
  const next = rng(7);
  for (const c of convCases) {
    const [kh, kw] = Array.isArray(c.k) ? c.k : [c.k, c.k];
    const xShape: Shape4 = [c.n, c.h, c.w, c.ci];
    const filterShape: Shape4 = [kh, kw, c.ci, c.co];
    const dyShape = outSize(xShape, filterShape, c.s, c.pad);
    const x = { data: randomArray(c.n * c.h * c.w * c.ci, next), shape: xShape };
    const filter = { data: randomArray(kh * kw * c.ci * c.co, next), shape: filterShape };
    const dy = { data: randomArray(dyShape.reduce((a, b) => a * b, 1), next), shape: dyShape };
    const label = JSON.stringify(c);
    const filterAttrs = { strides: c.s, pad: c.pad, dataFormat: 'NHWC', filterShape };
    assertClose(await runOn('wasm', tf.Conv2DBackpropFilter, { x, dy }, filterAttrs), await runOn('cpu', tf.Conv2DBackpropFilter, { x, dy }, filterAttrs), `filter ${label}`);
    const inputAttrs = { strides: c.s, pad: c.pad, dataFormat: 'NHWC', inputShape: xShape };
    assertClose(await runOn('wasm', tf.Conv2DBackpropInput, { dy, filter }, inputAttrs), await runOn('cpu', tf.Conv2DBackpropInput, { dy, filter }, inputAttrs), `input ${label}`);
  }
  await tf.setBackend('wasm');
});

interface DepthwiseCase {
  n: number; h: number; w: number; c: number; m: number; k: number; s: number; d: number; pad: Pad;
}

const depthwiseCases: DepthwiseCase[] = [
  { n: 2, h: 9, w: 9, c: 5, m: 1, k: 3, s: 1, d: 1, pad: 'same' }, // MBConv 3×3 stride 1
  { n: 2, h: 11, w: 11, c: 6, m: 1, k: 5, s: 1, d: 1, pad: 'same' }, // MBConv 5×5 stride 1
  { n: 2, h: 13, w: 13, c: 4, m: 1, k: 3, s: 2, d: 1, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] }, // 3×3 stride 2, explicit
  { n: 1, h: 14, w: 14, c: 3, m: 1, k: 5, s: 2, d: 1, pad: [[0, 0], [2, 2], [2, 2], [0, 0]] }, // 5×5 stride 2, explicit
  { n: 2, h: 12, w: 11, c: 3, m: 1, k: 3, s: 2, d: 1, pad: 'valid' }, // padded input, valid
  { n: 1, h: 10, w: 10, c: 4, m: 1, k: 5, s: 2, d: 1, pad: 'same' }, // asymmetric same
  { n: 2, h: 8, w: 9, c: 3, m: 2, k: 3, s: 1, d: 1, pad: 'same' }, // channel multiplier 2
  { n: 1, h: 11, w: 11, c: 2, m: 1, k: 3, s: 1, d: 2, pad: 'same' }, // dilation 2
  { n: 1, h: 75, w: 75, c: 8, m: 1, k: 3, s: 1, d: 1, pad: 'same' }, // a long reduction (5,625 terms per tap), SIMD
  { n: 2, h: 13, w: 11, c: 12, m: 1, k: 5, s: 1, d: 1, pad: 'same' }, // 5×5 stride 1, SIMD
  { n: 2, h: 9, w: 9, c: 8, m: 1, k: 3, s: 1, d: 1, pad: 'valid' }, // valid, SIMD
  { n: 2, h: 14, w: 13, c: 12, m: 1, k: 7, s: 1, d: 1, pad: 'same' }, // ConvNeXt's 7×7 stride 1, SIMD
  { n: 2, h: 13, w: 13, c: 8, m: 1, k: 3, s: 2, d: 1, pad: [[0, 0], [1, 1], [1, 1], [0, 0]] }, // stride 2, channels of 4: XNNPACK correlation
];

test('DepthwiseConv2dNative backprop (filter and input) match the cpu backend', async () => {
  const next = rng(11);
  for (const c of depthwiseCases) {
    const xShape: Shape4 = [c.n, c.h, c.w, c.c];
    const filterShape: Shape4 = [c.k, c.k, c.c, c.m];
    const dyShape = outSize(xShape, filterShape, c.s, c.pad, c.d, true);
    const x = { data: randomArray(c.n * c.h * c.w * c.c, next), shape: xShape };
    const filter = { data: randomArray(c.k * c.k * c.c * c.m, next), shape: filterShape };
    const dy = { data: randomArray(dyShape.reduce((a, b) => a * b, 1), next), shape: dyShape };
    const label = JSON.stringify(c);
    const filterAttrs = { strides: c.s, dilations: c.d, pad: c.pad, filterShape };
    const inputAttrs = { strides: c.s, dilations: c.d, pad: c.pad, inputShape: xShape };
    const wasmFilterGrad = await runOn('wasm', tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, filterAttrs);
    const wasmInputGrad = await runOn('wasm', tf.DepthwiseConv2dNativeBackpropInput, { dy, filter }, inputAttrs);
    if (c.d === 1) {
      assertClose(wasmFilterGrad, await runOn('cpu', tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, filterAttrs), `filter ${label}`);
      assertClose(wasmInputGrad, await runOn('cpu', tf.DepthwiseConv2dNativeBackpropInput, { dy, filter }, inputAttrs), `input ${label}`);
      continue;
    }
    // The cpu kernels ignore dilation (tfjs never asks for a dilated gradient), so the reference is
    // the same correlation with the filter spread out by zeros: K = d·(k−1)+1 taps, dilation 1.
    const spread = c.d * (c.k - 1) + 1;
    const spreadShape: Shape4 = [spread, spread, c.c, c.m];
    const spreadFilter = new Float32Array(spread * spread * c.c * c.m);
    for (let i = 0; i < c.k; i++)
      for (let j = 0; j < c.k; j++)
        spreadFilter.set(filter.data.subarray((i * c.k + j) * c.c * c.m, (i * c.k + j + 1) * c.c * c.m), (i * c.d * spread + j * c.d) * c.c * c.m);
    const spreadAttrs = { strides: c.s, dilations: 1, pad: c.pad };
    const spreadGrad = await runOn('cpu', tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, { ...spreadAttrs, filterShape: spreadShape });
    const picked = new Float32Array(filter.data.length);
    for (let i = 0; i < c.k; i++)
      for (let j = 0; j < c.k; j++)
        picked.set(spreadGrad.values.subarray((i * c.d * spread + j * c.d) * c.c * c.m, (i * c.d * spread + j * c.d + 1) * c.c * c.m), (i * c.k + j) * c.c * c.m);
    assertClose(wasmFilterGrad, { values: picked, shape: filterShape }, `filter ${label}`);
    const spreadInput = await runOn('cpu', tf.DepthwiseConv2dNativeBackpropInput, { dy, filter: { data: spreadFilter, shape: spreadShape } }, { ...spreadAttrs, inputShape: xShape });
    assertClose(wasmInputGrad, spreadInput, `input ${label}`);
  }
  await tf.setBackend('wasm');
});

test("wasm's own AvgPoolGrad (DenseNet's transitions) and Erf (ConvNeXt's GELU) match the cpu backend", async () => {
  const next = rng(23);
  for (const [h, w] of [[8, 8], [9, 7], [57, 56]] as const) {
    const xShape: Shape4 = [2, h, w, 6];
    const dyShape: Shape4 = [2, Math.floor(h / 2), Math.floor(w / 2), 6];
    const input = { data: randomArray(xShape.reduce((a, b) => a * b, 1), next), shape: xShape };
    const dy = { data: randomArray(dyShape.reduce((a, b) => a * b, 1), next), shape: dyShape };
    const attrs = { filterSize: [2, 2], strides: [2, 2], pad: 'valid' };
    assertClose(await runOn('wasm', tf.AvgPoolGrad, { dy, input }, attrs), await runOn('cpu', tf.AvgPoolGrad, { dy, input }, attrs), `AvgPoolGrad ${h}×${w}`);
  }
  const x = { data: Float32Array.from(randomArray(4096, next), (v) => 4 * v), shape: [4096] };
  assertClose(await runOn('wasm', tf.Erf, { x }, {}), await runOn('cpu', tf.Erf, { x }, {}), 'Erf');
  await tf.setBackend('wasm');
});

test('Tile, Sum, Mean, Identity and MaxPoolGrad match the cpu backend', async () => {
  const next = rng(13);
  const input = (shape: number[]) => ({ data: randomArray(shape.reduce((a, b) => a * b, 1), next), shape });
  const compare = async (kernel: string, inputs: Record<string, { data: Float32Array; shape: number[] }>, attrs: object) =>
    assertClose(await runOn('wasm', kernel, inputs, attrs), await runOn('cpu', kernel, inputs, attrs), `${kernel} ${JSON.stringify(attrs)} ${JSON.stringify(Object.values(inputs).map((i) => i.shape))}`);
  await compare(tf.Tile, { x: input([1, 1, 1, 5]) }, { reps: [2, 3, 7, 1] }); // the BatchNorm-gradient pattern
  await compare(tf.Tile, { x: input([2, 3, 1]) }, { reps: [3, 1, 4] });
  await compare(tf.Tile, { x: input([5]) }, { reps: [3] });
  await compare(tf.Tile, { x: input([2, 17]) }, { reps: [1, 2] });
  for (const kernel of [tf.Sum, tf.Mean]) {
    await compare(kernel, { x: input([3, 5, 7, 4]) }, { axis: [0, 1, 2], keepDims: false }); // BatchNorm statistics
    await compare(kernel, { x: input([3, 5, 7, 4]) }, { axis: [1, 2], keepDims: true }); // global pooling
    await compare(kernel, { x: input([3, 5, 7, 4]) }, { axis: [3], keepDims: false });
    await compare(kernel, { x: input([3, 5, 7, 4]) }, { axis: -1, keepDims: true });
    await compare(kernel, { x: input([3, 5, 7, 4]) }, { axis: [0, 2], keepDims: false }); // not contiguous: the built-in
    await compare(kernel, { x: input([6, 9]) }, { axis: [0, 1], keepDims: false });
    await compare(kernel, { x: input([2, 700, 8]) }, { axis: [1], keepDims: false }); // SIMD path, several flushes
  }
  await compare(tf.Identity, { x: input([4, 3]) }, {});
  await compare(tf.Cast, { x: input([4, 3]) }, { dtype: 'float32' });
  for (const [shape, filterSize, strides, pad] of [
    [[2, 9, 9, 5], 3, 2, 'same'],
    [[2, 10, 10, 3], 3, 2, 'valid'],
    [[1, 11, 8, 4], 2, 2, 'valid'],
    [[2, 7, 7, 6], 3, 1, 1],
  ] as const) {
    const x = input([...shape]);
    await tf.setBackend('cpu');
    const y = tf.maxPool(tf.tensor(x.data, [...shape]) as tf.Tensor4D, filterSize, strides, pad);
    const output = { data: (await y.data()) as Float32Array, shape: y.shape };
    y.dispose();
    const dy = input(output.shape);
    await compare(tf.MaxPoolGrad, { dy, input: x, output }, { filterSize, strides, pad });
  }
  // ties go to the first maximum in the window, as on cpu
  const flat = { data: new Float32Array(2 * 4 * 4 * 1).fill(1), shape: [2, 4, 4, 1] };
  await compare(tf.MaxPoolGrad, { dy: input([2, 2, 2, 1]), input: flat, output: { data: new Float32Array(8).fill(1), shape: [2, 2, 2, 1] } }, { filterSize: 2, strides: 2, pad: 'valid' });
  await tf.setBackend('wasm');
});

test('BatchMatMul with transposed operands (every Dense gradient) matches the cpu backend', async () => {
  const next = rng(31);
  const input = (shape: number[]) => ({ data: randomArray(shape.reduce((a, b) => a * b, 1), next), shape });
  const compare = async (a: number[], b: number[], transposeA: boolean, transposeB: boolean) => {
    const inputs = { a: input(a), b: input(b) };
    const attrs = { transposeA, transposeB };
    assertClose(await runOn('wasm', tf.BatchMatMul, inputs, attrs), await runOn('cpu', tf.BatchMatMul, inputs, attrs), `BatchMatMul ${a}·${b} ${JSON.stringify(attrs)}`);
  };
  await compare([1, 70, 37], [1, 70, 45], true, false); // xᵀ·dy: a Dense kernel's gradient
  await compare([1, 70, 45], [1, 37, 45], false, true); // dy·Wᵀ: a Dense input's gradient
  await compare([1, 33, 19], [1, 40, 33], true, true);
  await compare([1, 9, 13], [1, 13, 6], false, false); // untransposed: the built-in
  await compare([3, 9, 13], [3, 9, 6], true, false); // batched: the built-in
  await tf.setBackend('wasm');
});

test('Identity shares its input buffer, and the buffer lives until both tensors are gone', async () => {
  await tf.setBackend('wasm');
  const backend = tf.backend() as unknown as { numDataIds(): number };
  const base = backend.numDataIds();
  const x = tf.tensor([1, 2, 3]);
  const y = tf.engine().runKernel(tf.Identity, { x }, {}) as tf.Tensor;
  assert.is(backend.numDataIds(), base + 1);
  x.dispose();
  assert.equal(Array.from(await y.data()), [1, 2, 3]);
  y.dispose();
  assert.is(backend.numDataIds(), base);
});

test('Cast between dtypes still converts', async () => {
  await tf.setBackend('wasm');
  const x = tf.tensor([1.7, -2.2, 0]);
  const y = tf.cast(x, 'int32');
  const z = tf.cast(x, 'bool');
  assert.equal(Array.from(await y.data()), [1, -2, 0]);
  assert.equal(Array.from(await z.data()), [1, 1, 0]);
  tf.dispose([x, y, z]);
});

test('Tile keeps int32 data exact', async () => {
  await tf.setBackend('wasm');
  const x = tf.tensor([1, 2, 3, 2147483647], [2, 2], 'int32');
  const y = tf.tile(x, [2, 3]);
  assert.equal(Array.from(await y.data()), [1, 2, 1, 2, 1, 2, 3, 2147483647, 3, 2147483647, 3, 2147483647, 1, 2, 1, 2, 1, 2, 3, 2147483647, 3, 2147483647, 3, 2147483647]);
  tf.dispose([x, y]);
});

test.run();
