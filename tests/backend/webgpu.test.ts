/**
 * The webgpu backend on whatever adapter this machine has: in CI, Mesa's lavapipe (software Vulkan,
 * installed by .ci/run from bookworm-backports). Every kernel the models rely on is checked against
 * the cpu backend, forward and gradient; a ResNet18 training step against wasm; a short `osteo train`
 * and `osteo predict` through the CLI; and the faults a GPU reports asynchronously. Without an
 * adapter the tests skip with the reason (under OSTEO_REQUIRE_REFERENCES=1 they fail instead).
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { currentBuild, osteoArgv } from '../helpers/cli.js';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../../src/backend/index.js';
import { probeAdapterInChild } from '../../src/backend/webgpu.js';
import { splitDataset, synthesizePhantom } from '../../src/data/index.js';
import { batchNormTraining } from '../../src/backend/index.js';
import { createEngine } from '../../src/engine/index.js';
import { UserError } from '../../src/util/index.js';
import { readPth } from '../../src/weights/index.js';
import { testWith, type Requirement } from '../helpers/requirements.js';
import { tempDir } from '../helpers/temp.js';
import { writeRunFixture, writeTestImage } from '../eval/fixtures.js';
import { assertClose } from '../helpers/close.js';
import { rng } from '../helpers/random.js';

const run = promisify(execFile);

const webgpuAdapter: Requirement = {
  name: 'a WebGPU adapter (the webgpu npm package on a Vulkan driver)',
  install: 'npm ci (webgpu is an optional dependency); on Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers (see .ci/run)',
  probe() {
    const probe = probeAdapterInChild();
    if (probe === undefined) return 'the webgpu package is not installed';
    return 'reason' in probe ? probe.reason : null;
  },
};

const gpuTest = (name: string, body: () => Promise<void>) => testWith(webgpuAdapter, test, name, body);

/** Mesa warns on every start without it (and it is unset in some CI shells). */
process.env['XDG_RUNTIME_DIR'] ??= '/tmp';

/** Test inputs uniform in [-0.5, 0.5), from the shared seeded generator. */
function seeded(seed: number): () => number {
  const next = rng(seed);
  return () => next() - 0.5;
}

type Case = { name: string; shapes: number[][]; f: (...xs: tf.Tensor[]) => tf.Tensor };

/**
 * value and every gradient of sum(f(xs) · w) on `backend`, from the same host-side inputs, read
 * asynchronously (webgpu cannot read synchronously).
 */
async function evaluate(backend: string, c: Case, seed: number): Promise<Float32Array[]> {
  await useBackend(backend);
  const next = seeded(seed);
  const inputs = c.shapes.map((shape) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => next() * 2), shape));
  const outShape = tf.tidy(() => c.f(...inputs).shape);
  const weight = tf.tensor(Float32Array.from({ length: outShape.reduce((a, b) => a * b, 1) }, () => next()), outShape);
  const { value, grads } = tf.tidy(() => {
    const g = tf.valueAndGrads((...xs: tf.Tensor[]) => tf.sum(tf.mul(c.f(...xs), weight)));
    return g(inputs);
  });
  const out = tf.tidy(() => c.f(...inputs));
  const results = [await out.data(), await value.data(), ...(await Promise.all(grads.map((g) => g.data())))] as Float32Array[];
  tf.dispose([...inputs, weight, value, ...grads, out]);
  return results;
}

const conv = (stride: number, pad: 'same' | 'valid' | number) => (x: tf.Tensor, w: tf.Tensor) =>
  tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, typeof pad === 'number' ? [[0, 0], [pad, pad], [pad, pad], [0, 0]] : pad);
const depthwise = (stride: number) => (x: tf.Tensor, w: tf.Tensor) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, 'same');

/** The layer shapes of the registry's models in miniature, with odd sizes, strides and paddings. */
const cases: Case[] = [
  { name: 'conv 7×7 stride 2 pad 3 (ResNet stem), odd input', shapes: [[2, 33, 33, 3], [7, 7, 3, 8]], f: conv(2, 3) },
  { name: 'conv 3×3 stride 1 same', shapes: [[2, 15, 15, 16], [3, 3, 16, 16]], f: conv(1, 'same') },
  { name: 'conv 3×3 stride 2 same, odd input', shapes: [[2, 15, 15, 16], [3, 3, 16, 32]], f: conv(2, 'same') },
  { name: 'conv 3×3 stride 2 pad 1, even input', shapes: [[2, 16, 16, 8], [3, 3, 8, 12]], f: conv(2, 1) },
  { name: 'conv 1×1 stride 2 (downsample)', shapes: [[2, 15, 15, 16], [1, 1, 16, 32]], f: conv(2, 'valid') },
  { name: 'conv 1×1 stride 1 (bottleneck)', shapes: [[2, 8, 8, 32], [1, 1, 32, 24]], f: conv(1, 'valid') },
  { name: 'conv 4×4 stride 4 (ConvNeXt stem)', shapes: [[1, 18, 18, 3], [4, 4, 3, 8]], f: conv(4, 'valid') },
  { name: 'depthwise 3×3 stride 1', shapes: [[2, 9, 9, 8], [3, 3, 8, 1]], f: depthwise(1) },
  { name: 'depthwise 5×5 stride 2, odd input', shapes: [[2, 11, 11, 8], [5, 5, 8, 1]], f: depthwise(2) },
  { name: 'depthwise 7×7 stride 1 (ConvNeXt)', shapes: [[1, 9, 9, 4], [7, 7, 4, 1]], f: depthwise(1) },
  { name: 'max pool 3×3 stride 2 same', shapes: [[2, 15, 15, 4]], f: (x) => tf.maxPool(x as tf.Tensor4D, 3, 2, 'same') },
  { name: 'average pool 2×2 stride 2 (DenseNet transition)', shapes: [[2, 10, 10, 4]], f: (x) => tf.avgPool(x as tf.Tensor4D, 2, 2, 'valid') },
  { name: 'global average pool', shapes: [[2, 7, 7, 16]], f: (x) => tf.mean(x, [1, 2]) },
  { name: 'linear (matMul with bias)', shapes: [[4, 64], [64, 3], [3]], f: (x, w, b) => tf.add(tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D), b!) },
  { name: 'linear with transposed weight', shapes: [[4, 32], [48, 32]], f: (x, w) => tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D, false, true) },
  { name: 'fused training BatchNorm (composed on webgpu)', shapes: [[2, 5, 5, 8], [8], [8]], f: (x, g, b) => batchNormTraining(x!, g as tf.Tensor1D, b as tf.Tensor1D, 1e-5).output },
  { name: 'swish and sigmoid (EfficientNet)', shapes: [[2, 6, 6, 8]], f: (x) => tf.mul(x, tf.sigmoid(x)) },
  { name: 'exact GELU (ConvNeXt)', shapes: [[2, 6, 6, 8]], f: (x) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))) },
  { name: 'log-softmax cross-entropy', shapes: [[4, 3]], f: (x) => tf.logSoftmax(x) },
  { name: 'concat on channels (DenseNet)', shapes: [[2, 4, 4, 8], [2, 4, 4, 4]], f: (a, b) => tf.concat([a!, b!], 3) },
];

for (const [index, c] of cases.entries()) {
  gpuTest(`webgpu matches cpu to 1e-4: ${c.name} (forward and every gradient)`, async () => {
    const expected = await evaluate('cpu', c, 17 + index);
    const actual = await evaluate('webgpu', c, 17 + index);
    const labels = ['output', 'value', ...c.shapes.map((_, i) => `d/dinput${i}`)];
    expected.forEach((e, i) => assertClose(actual[i]!, e, `${c.name} ${labels[i]}`));
  });
}

gpuTest("webgpu's Conv2DBackpropFilter is osteo's matrix-product kernel, and it leaks nothing", async () => {
  await useBackend('webgpu');
  const before = tf.memory().numTensors;
  const x = tf.randomNormal([2, 13, 13, 6], 0, 1, 'float32', 1) as tf.Tensor4D;
  const dy = tf.randomNormal([2, 7, 7, 5], 0, 1, 'float32', 2) as tf.Tensor4D;
  const dataIds = (tf.backend() as unknown as { numDataIds(): number }).numDataIds();
  const dw = tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, { strides: 2, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 6, 5] }) as tf.Tensor;
  assert.equal(dw.shape, [3, 3, 6, 5]);
  await dw.data();
  // only the result is new: every pad, tap window and per-tap product was released
  assert.is((tf.backend() as unknown as { numDataIds(): number }).numDataIds(), dataIds + 1);
  tf.dispose([x, dy, dw]);
  assert.is(tf.memory().numTensors, before);
});

/** One SGD step at lr 1 from the same weights: the weight change is minus the gradient. */
async function oneStep(backend: 'webgpu' | 'wasm'): Promise<{ loss: number; norm: number; weights: Map<string, Float32Array>; start: Map<string, Float32Array> }> {
  const engine = await createEngine({ model: 'resnet18', build: { imageSize: 32, numClasses: 3 }, backend: await useBackend(backend), workers: 1, optimizer: { type: 'sgd' }, seed: 5 });
  try {
    const floats = async () => new Map([...(await engine.getState()).weights].filter(([, t]) => t.dtype === 'float32').map(([k, t]) => [k, t.data as Float32Array]));
    const start = await floats();
    const next = seeded(9);
    const images = Float32Array.from({ length: 4 * 32 * 32 * 3 }, () => next() * 2);
    const result = await engine.step({ images, labels: Int32Array.from([0, 1, 2, 1]), size: 4 }, 1);
    return { loss: result.loss, norm: result.gradNorm, weights: await floats(), start };
  } finally {
    await engine.dispose();
  }
}

gpuTest('a ResNet18 training step at 32 px on webgpu gives the loss, the gradients and the BatchNorm statistics of wasm', async () => {
  const wasm = await oneStep('wasm');
  const webgpu = await oneStep('webgpu');
  assert.ok(Math.abs(webgpu.loss - wasm.loss) <= 1e-4 * Math.abs(wasm.loss), `loss ${webgpu.loss} vs ${wasm.loss}`);
  assert.ok(Math.abs(webgpu.norm - wasm.norm) <= 1e-3 * wasm.norm, `gradient norm ${webgpu.norm} vs ${wasm.norm}`);
  let compared = 0;
  for (const [key, after] of wasm.weights) {
    const start = wasm.start.get(key)!;
    assert.equal(webgpu.start.get(key), start, `${key}: same initial weights`);
    // gradients (weights) and running statistics (buffers) alike: the change over the step
    const change = (values: Float32Array) => Float32Array.from(values, (v, i) => v - start[i]!);
    // a whole network's gradient sums thousands of products per value, in another order on each backend: 1e-3
    assertClose(change(webgpu.weights.get(key)!), change(after), key, 1e-3);
    compared++;
  }
  assert.ok(compared > 100, `${compared} tensors compared`);
});

gpuTest('faults the device reports on its own become a UserError naming the model, size and micro-batch, with the fix', async () => {
  const engine = await createEngine({ model: 'resnet18', build: { imageSize: 32, numClasses: 3 }, backend: await useBackend('webgpu'), workers: 1, optimizer: { type: 'sgd' }, seed: 5 });
  const images = new Float32Array(2 * 32 * 32 * 3).fill(0.5);
  try {
    const device = (tf.backend() as unknown as { device: { createBuffer(d: { size: number; usage: number }): unknown; destroy(): void } }).device;
    // a buffer past the adapter's limit: WebGPU reports it as an uncaptured validation error, not by throwing
    device.createBuffer({ size: 2 ** 52, usage: 0x80 /* STORAGE */ });
    const rejected = await engine.step({ images, labels: Int32Array.from([0, 1]), size: 2 }, 0.1).then(() => undefined, (error: unknown) => error);
    assert.instance(rejected, UserError);
    assert.match((rejected as Error).message, /the GPU rejected an operation \(GPUValidationError: .*\) while training resnet18 at 32×32 with 2 images per pass \(micro-batch\); pass a smaller --micro-batch \(at most 1\)/);
    assert.match((rejected as Error).message, /checkpoints already written are kept/);
    // a lost device: every later pass fails, and says so
    device.destroy();
    const lost = await engine.step({ images, labels: Int32Array.from([0, 1]), size: 2 }, 0.1).then(() => undefined, (error: unknown) => error);
    assert.instance(lost, UserError);
    assert.match((lost as Error).message, /the GPU device was lost .* while training resnet18 at 32×32/);
    const predicting = await engine.predict(images, 2).then(() => undefined, (error: unknown) => error);
    assert.match((predicting as Error).message, /the GPU device was lost .* while running resnet18/);
  } finally {
    await engine.dispose();
    // the next test gets a fresh device
    tf.removeBackend('webgpu');
  }
});

const cli = async (args: string[]) => run(process.execPath, osteoArgv(args), { encoding: 'utf8', env: { ...process.env, OSTEO_BACKEND: '' }, maxBuffer: 64 * 1024 * 1024 });

gpuTest('osteo train --backend webgpu runs an epoch on a phantom dataset and writes its checkpoints', async () => {
  const dir = await tempDir('osteo-webgpu-');
  try {
    const data = join(dir.path, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 6, size: 40, seed: 3 });
    await splitDataset({ dataDir: data, val: 0.25, test: 0.1 });
    const out = join(dir.path, 'run');
    const { stdout } = await cli(['train', '--model', 'resnet18', '--data', data, '--out', out, '--image-size', '32', '--epochs', '1', '--batch-size', '8', '--backend', 'webgpu', '--set', 'augment=none', '--json']);
    const result = JSON.parse(stdout) as { status: string; backend: string; history: Array<{ trainLoss: number; valAccuracy: number }> };
    assert.is(result.status, 'completed');
    assert.is(result.backend, 'webgpu');
    assert.ok(Number.isFinite(result.history[0]!.trainLoss), JSON.stringify(result.history));
    for (const file of ['best/model.safetensors', 'last/model.safetensors', 'metrics.csv']) assert.ok(existsSync(join(out, file)), file);
    const metrics = await readFile(join(out, 'metrics.csv'), 'utf8');
    assert.is(metrics.trim().split('\n').length, 2, 'a header and one epoch');
  } finally {
    await dir.cleanup();
  }
});

gpuTest('osteo predict on webgpu gives the probabilities of wasm for the same weights file (1e-4), writes Grad-CAM overlays, and export writes the same .pth', async () => {
  const dir = await tempDir('osteo-webgpu-');
  await useBackend('cpu');
  try {
    const fixture = await writeRunFixture(join(dir.path, 'run'), 'resnet18', { imageSize: 48, seed: 4 });
    const images = [join(dir.path, 'a.png'), join(dir.path, 'b.png')];
    await writeTestImage(images[0]!, 80, 64, 1);
    await writeTestImage(images[1]!, 64, 96, 2);
    const probabilities = async (backend: string, extra: string[] = []) => {
      const { stdout } = await cli(['predict', '--run', fixture.dir, '--backend', backend, '--json', ...extra, ...images]);
      const parsed = JSON.parse(stdout) as { images: Array<{ probabilities: number[] }>; failed: unknown[] };
      assert.equal(parsed.failed, []);
      return Float32Array.from(parsed.images.flatMap((row) => row.probabilities));
    };
    const wasm = await probabilities('wasm');
    const webgpu = await probabilities('webgpu', ['--gradcam', join(dir.path, 'cams')]);
    assert.is(wasm.length, 6);
    assertClose(webgpu, wasm, 'predict probabilities');
    // Grad-CAM on webgpu (a gradient of the class score, read asynchronously) wrote its overlays
    assert.equal(readdirSync(join(dir.path, 'cams')).sort(), ['a.resnet18.gradcam.png', 'b.resnet18.gradcam.png']);
    // export reads the weights back from the backend: the same state dict as on wasm
    for (const backend of ['wasm', 'webgpu']) await cli(['export', '--run', fixture.dir, '--format', 'pth', '--out', join(dir.path, `export-${backend}`), '--backend', backend]);
    const exported = await Promise.all(['wasm', 'webgpu'].map((b) => readPth(join(dir.path, `export-${b}`, 'resnet18.pth'))));
    assert.equal([...exported[1]!.keys()], [...exported[0]!.keys()]);
    for (const [key, tensor] of exported[0]!) assert.equal(Array.from(exported[1]!.get(key)!.data as Float32Array), Array.from(tensor.data as Float32Array), key);
  } finally {
    await dir.cleanup();
  }
});

gpuTest('scripts/gpu-check.sh runs every step, onnxruntime WebGPU inference included, and prints osteo against PyTorch CUDA with the ratio (a stand-in PyTorch at 4 img/s)', async () => {
  await currentBuild(); // the script runs dist/cli.js
  const dir = await tempDir('osteo-gpu-check-');
  try {
    // answers the CUDA check and prints a torch_reference.py result: 4 images/s
    const python = join(dir.path, 'python');
    await writeFile(python, '#!/bin/sh\n[ "$1" = -c ] && exit 0\necho \'{"framework": "pytorch stand-in", "imagesPerSec": 4}\'\n', { mode: 0o755 });
    const { stdout } = await run('bash', ['scripts/gpu-check.sh'], {
      encoding: 'utf8',
      env: { ...process.env, PYTHON: python, NODE: process.execPath, WORKLOADS: 'resnet18 32 2', KERNEL_BATCH: '1', STEPS: '1', WARMUP: '0' },
      maxBuffer: 64 * 1024 * 1024,
    });
    for (const header of ['osteo info --json', 'osteo info --json --backend webgpu', 'PyTorch with CUDA: yes', 'onnxruntime CUDA provider installed: no', 'webgpu gradient kernels', 'osteo bench train', 'osteo bench infer', 'summary']) {
      assert.ok(stdout.includes(`== ${header}`), `${header} in:\n${stdout}`);
    }
    const summary = stdout.slice(stdout.lastIndexOf('== summary'));
    const line = summary.split('\n').find((l) => l.startsWith('train resnet18 32² batch 2'));
    const match = /osteo webgpu ([\d.]+) img\/s, PyTorch 4\.00 img\/s, ratio ([\d.]+)/.exec(line ?? '');
    assert.ok(match, summary);
    // both printed to 3 significant digits
    assert.ok(Math.abs(Number(match![2]) - Number(match![1]) / 4) <= 0.005 * Number(match![2]) + 0.0005, line);
    // inference on onnxruntime's WebGPU provider beside tfjs's webgpu (this install has no CUDA provider)
    for (const backend of ['webgpu', 'onnxruntime-webgpu']) {
      assert.ok(summary.split('\n').some((l) => l.startsWith(`infer resnet18 32² batch 2: osteo ${backend} `) && /ratio [\d.]+/.test(l)), `${backend} in:\n${summary}`);
    }
    assert.not.ok(summary.includes('onnxruntime-cuda'), summary);
  } finally {
    await dir.cleanup();
  }
});

test.after(async () => {
  if (tf.findBackendFactory('webgpu') !== null) tf.removeBackend('webgpu');
  // Dawn keeps the process alive while navigator.gpu holds it
  delete (globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu;
  await useBackend('wasm');
});

test.run();
