/**
 * WebGPU gradient kernels: tfjs-backend-webgpu's own against osteo's (src/backend/kernels/webgpu), in
 * one run, on the shapes of a ResNet step. Median of --repeats timed calls after one warm-up, each
 * ending in an awaited read (the only way to know the GPU finished).
 *
 *   XDG_RUNTIME_DIR=/tmp node --import tsx bench/webgpu-grad.ts [--batch 4] [--repeats 3]
 */
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/backend/index.js';
import { replacedWebgpuKernels } from '../src/backend/kernels/webgpu/index.js';

const { values } = parseArgs({ options: { batch: { type: 'string', default: '4' }, repeats: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } } });
const n = Number(values.batch);
const repeats = Number(values.repeats);
const selection = await useBackend('webgpu');
const adapter = selection.candidates.find((c) => c.candidate === 'webgpu')?.details ?? {};

/** [name, x shape (NHWC), filter [kh, kw, cin, cout], stride] — ResNet18 at 224² except the batch */
const shapes: Array<[string, [number, number, number, number], [number, number, number, number], number]> = [
  ['layer1 3×3 s1', [n, 56, 56, 64], [3, 3, 64, 64], 1],
  ['layer2 3×3 s2', [n, 56, 56, 64], [3, 3, 64, 128], 2],
  ['layer3 3×3 s1', [n, 14, 14, 256], [3, 3, 256, 256], 1],
  ['downsample 1×1 s2', [n, 28, 28, 128], [1, 1, 128, 256], 2],
];

async function time(run: () => tf.Tensor): Promise<number> {
  const warm = run();
  await warm.data();
  warm.dispose();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    const out = run();
    await out.data();
    times.push(performance.now() - start);
    out.dispose();
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
}

const rows: Array<Record<string, unknown>> = [];
for (const [name, xShape, filterShape, stride] of shapes) {
  const x = tf.randomNormal(xShape, 0, 1, 'float32', 1) as tf.Tensor4D;
  const out = Math.ceil(xShape[1]! / stride);
  const dy = tf.randomNormal([n, out, out, filterShape[3]], 0, 1, 'float32', 2) as tf.Tensor4D;
  const w = tf.randomNormal(filterShape, 0, 1, 'float32', 3) as tf.Tensor4D;
  const attrs = { strides: stride, pad: 'same', dataFormat: 'NHWC', filterShape, dilations: 1 };
  const flops = 2 * n * out * out * filterShape.reduce((a, b) => a * b, 1);
  const filterGrad = () => tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
  const ours = await time(filterGrad);
  // the backend's own kernel, registered again for the comparison
  const builtin = replacedWebgpuKernels.get(tf.Conv2DBackpropFilter)!;
  const osteoKernel = tf.getKernel(tf.Conv2DBackpropFilter, 'webgpu')!;
  tf.unregisterKernel(tf.Conv2DBackpropFilter, 'webgpu');
  tf.registerKernel(builtin);
  const naiveFilter = await time(filterGrad);
  tf.unregisterKernel(tf.Conv2DBackpropFilter, 'webgpu');
  tf.registerKernel(osteoKernel);
  tf.env().set('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE', true);
  const naiveInput = await time(() => tf.engine().runKernel(tf.Conv2DBackpropInput, { dy, filter: w }, { ...attrs, inputShape: xShape } as unknown as tf.NamedAttrMap) as tf.Tensor);
  tf.env().set('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE', false);
  const mmInput = await time(() => tf.engine().runKernel(tf.Conv2DBackpropInput, { dy, filter: w }, { ...attrs, inputShape: xShape } as unknown as tf.NamedAttrMap) as tf.Tensor);
  const forward = await time(() => tf.conv2d(x, w, stride, 'same'));
  rows.push({ name, forwardMs: forward, filterGradNaiveMs: naiveFilter, filterGradMatmulMs: ours, inputGradNaiveMs: naiveInput, inputGradMatmulMs: mmInput, gflop: flops / 1e9 });
  tf.dispose([x, dy, w]);
}
if (values.json) console.log(JSON.stringify({ adapter, batch: n, rows }, null, 2));
else {
  console.log(`adapter: ${adapter['description'] ?? '?'} (${adapter['kind'] ?? '?'}), batch ${n}, median of ${repeats}`);
  for (const r of rows) console.log(Object.entries(r).map(([k, v]) => `${k}=${typeof v === 'number' ? v.toFixed(k === 'gflop' ? 3 : 0) : v}`).join('  '));
}
process.exit(0);
