/**
 * `osteo export --format onnx`: model.onnx + metadata.json (classes, the run's preprocessing, the
 * graph's input/output names and layout, opset), switched in whole; the graph's initializers are the
 * run's weights under their torchvision keys, and onnxruntime-node (the Node snippet of docs/onnx.md)
 * gives the probabilities `osteo predict` gives on the same image.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as ort from 'onnxruntime-node';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { preprocessForModel } from '../../src/data/image.js';
import { exportRun } from '../../src/eval/export.js';
import { predictImages } from '../../src/eval/predict.js';

/** The backend the tests run on, as a command passes it down. */
let backend: BackendHandle;
import { getModel, modelToOnnxGraph } from '../../src/models/index.js';
import { onnxWeightsFor, readOnnx, readSafetensors } from '../../src/weights/index.js';
import { refusal } from '../helpers/refusal.js';
import { setupOnce } from './helpers.js';
import { writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';

let root = '';
let small: RunFixture;
let image = '';

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-export-onnx-'));
  small = await writeRunFixture(join(root, 'run'), 'resnet18', { imageSize: 64, seed: 21 });
  image = join(root, 'knee.png');
  await writeTestImage(image, 90, 80, 4);
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

function softmax(logits: ArrayLike<number>): number[] {
  const max = Math.max(...Array.from(logits));
  const exps = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

test('onnx export: model.onnx and metadata.json with the interface; the run weights as torchvision-keyed initializers', async () => {
  const out = join(root, 'export-onnx');
  const result = await exportRun({ backend, run: small.dir, format: 'onnx', outDir: out });
  assert.equal(result.files, ['model.onnx', 'metadata.json', 'model-card.json', 'model-card.md']);
  assert.equal((await readdir(out)).sort(), ['.osteo-export.json', 'metadata.json', 'model-card.json', 'model-card.md', 'model.onnx']);
  const metadata = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8'));
  assert.equal(metadata.classes, ['Normal', 'Osteopenia', 'Osteoporosis']);
  assert.equal(metadata.files, ['model.onnx']);
  assert.is(metadata.preprocessing.crop, 64);
  assert.is(metadata.preprocessing.resize, 73);
  assert.equal(metadata.onnx, {
    opset: 17,
    irVersion: 8,
    input: { name: 'input', shape: ['batch', 3, 64, 64], layout: 'NCHW' },
    output: { name: 'logits', shape: ['batch', 3] },
  });
  assert.match(metadata.input, /NCHW.*'input'/);
  assert.match(metadata.output, /'logits'/);

  const file = await readOnnx(join(out, 'model.onnx'));
  assert.equal(JSON.parse(file.metadata['classes']!), metadata.classes);
  assert.equal(JSON.parse(file.metadata['preprocessing']!), metadata.preprocessing);
  const model = getModel('resnet18').build({ imageSize: 64, initialize: false });
  const graph = modelToOnnxGraph(model, 'resnet18');
  model.dispose();
  const weights = onnxWeightsFor(file, graph, 'model.onnx');
  const source = await readSafetensors(join(small.dir, 'best', 'model.safetensors'));
  for (const [key, tensor] of weights) assert.equal(tensor.data, source.get(key)!.data, `${key} is the run's`);
  assert.is(weights.size, [...source.keys()].filter((key) => !key.endsWith('num_batches_tracked')).length);
});

test("onnxruntime-node on the exported model.onnx gives osteo predict's probabilities (1e-4)", async () => {
  const out = join(root, 'export-onnx');
  await exportRun({ backend, run: small.dir, format: 'onnx', outDir: out });
  const metadata = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8'));
  const hwc = await preprocessForModel(image, { resize: metadata.preprocessing.resize, crop: metadata.preprocessing.crop, mean: metadata.preprocessing.mean, std: metadata.preprocessing.std });
  const size = metadata.preprocessing.crop as number;
  const chw = new Float32Array(hwc.length);
  for (let i = 0; i < size * size; i++) for (let c = 0; c < 3; c++) chw[c * size * size + i] = hwc[i * 3 + c]!;
  // As docs/onnx.md's Node snippet does it, with the package's own API only.
  const session = await ort.InferenceSession.create(join(out, 'model.onnx'));
  let logits: Float32Array;
  try {
    const outputs = await session.run({ [metadata.onnx.input.name]: new ort.Tensor('float32', chw, [1, 3, size, size]) });
    logits = outputs[metadata.onnx.output.name]!.data as Float32Array;
  } finally {
    await session.release();
  }
  const ours = softmax(logits);
  const predicted = await predictImages({ backend, images: [image], runs: [small.dir] });
  const expected = predicted.images[0]!.probabilities;
  const diff = Math.max(...ours.map((p, c) => Math.abs(p - expected[c]!)));
  assert.ok(diff <= 1e-4, `onnxruntime ${ours} vs osteo predict ${expected}`);
  assert.ok(Math.max(...expected) < 0.99, 'probabilities are not saturated, so the comparison means something');
});

test('a second onnx export into the same folder replaces it whole; a folder with foreign files is refused', async () => {
  const out = join(root, 'again');
  await exportRun({ backend, run: small.dir, format: 'onnx', outDir: out });
  const first = await readFile(join(out, 'model.onnx'));
  await exportRun({ backend, run: small.dir, format: 'onnx', outDir: out });
  assert.ok((await readFile(join(out, 'model.onnx'))).equals(first), 'the same run exports the same bytes');
  assert.equal((await readdir(out)).sort(), ['.osteo-export.json', 'metadata.json', 'model-card.json', 'model-card.md', 'model.onnx']);
  const foreign = join(root, 'foreign');
  await mkdir(foreign, { recursive: true });
  await writeFile(join(foreign, 'notes.txt'), 'mine');
  assert.match(await refusal(exportRun({ backend, run: small.dir, format: 'onnx', outDir: foreign })), /holds files osteo export did not write \(notes\.txt\)/);
  assert.equal(await readdir(foreign), ['notes.txt']);
});

test('the default folder is RUN/export/onnx', async () => {
  const result = await exportRun({ backend, run: small.dir, format: 'onnx' });
  assert.is(result.dir, join(small.dir, 'export', 'onnx'));
  assert.equal((await readdir(result.dir)).sort(), ['.osteo-export.json', 'metadata.json', 'model-card.json', 'model-card.md', 'model.onnx']);
});

test.run();
