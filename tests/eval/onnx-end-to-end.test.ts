/**
 * eval and predict end to end on an onnxruntime handle (cpu provider) against the tfjs path (wasm),
 * on the same tiny runs (ResNet18 and EfficientNet-B3 at 64 px): every model's and the soft vote's
 * probabilities and metrics, with TTA, to 1e-4; predict's probabilities and its Grad-CAM maps; and
 * `predict --weights model.onnx` from `export --format onnx`, refusing a damaged or foreign graph.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { classNames } from '../../src/data/index.js';
import { evaluateRuns } from '../../src/eval/evaluate.js';
import { exportRun } from '../../src/eval/export.js';
import { gradCam, type GradCamResult } from '../../src/eval/gradcam.js';
import { predictImages } from '../../src/eval/predict.js';
import { writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';
import { onnxTestHandle, type SessionCounts } from '../helpers/onnx-handle.js';
import { refusal } from '../helpers/refusal.js';

let wasm: BackendHandle;
let onnx: BackendHandle;
let counts: SessionCounts;
let root = '';
let data = '';
let r18: RunFixture;
let b3: RunFixture;
const labels = [0, 0, 1, 1, 2, 2, 1];

setupOnce(test, async () => {
  wasm = await useBackend('wasm');
  ({ handle: onnx, counts } = onnxTestHandle('cpu', 2));
  root = await mkdtemp(join(tmpdir(), 'osteo-onnx-e2e-'));
  data = join(root, 'data');
  const rows = ['path,label,split,group'];
  for (const [i, label] of labels.entries()) {
    const path = `${classNames[label]}/test-${i}.png`;
    await mkdir(join(data, classNames[label]!), { recursive: true });
    await writeTestImage(join(data, path), 80 + (i % 3) * 7, 76 + (i % 2) * 9, 300 + i);
    rows.push(`${path},${label},test,test-${i}`);
  }
  await writeFile(join(data, 'splits.csv'), rows.join('\n') + '\n');
  r18 = await writeRunFixture(join(root, 'runs', 'r18'), 'resnet18', { imageSize: 64, seed: 41 });
  b3 = await writeRunFixture(join(root, 'runs', 'b3'), 'efficientnet_b3', { imageSize: 64, seed: 42 });
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

function close(a: readonly number[], b: readonly number[], what: string): void {
  assert.is(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 1e-4, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

test('eval with TTA and the soft vote: the same probabilities and metrics on onnxruntime as on tfjs', async () => {
  const options = { runs: [r18.dir, b3.dir], dataDir: data, split: 'test' as const, outDir: null, resamples: 20, tta: true, seed: 3 };
  const created = counts.created;
  const [theirs, ours] = [(await evaluateRuns({ ...options, backend: wasm })).report, (await evaluateRuns({ ...options, backend: onnx })).report];
  assert.equal(ours.models.map((m) => m.name), theirs.models.map((m) => m.name));
  for (const [i, model] of ours.models.entries()) {
    const reference = theirs.models[i]!;
    close(Array.from(model.probabilities), Array.from(reference.probabilities), `${model.name} probabilities`);
    assert.equal(Array.from(model.predictions), Array.from(reference.predictions), `${model.name} predictions`);
    for (const [key, value] of Object.entries(reference.metrics)) if (typeof value === 'number') assert.ok(Math.abs((model.metrics as unknown as Record<string, number>)[key]! - value) <= 1e-4, `${model.name} ${key}`);
  }
  assert.is(counts.created - created, 2, 'one session per run');
  assert.is(counts.released, counts.created, 'every session released');
});

test("predict and its Grad-CAM: onnxruntime's probabilities and maps are tfjs'", async () => {
  const images = [join(data, 'Normal/test-0.png'), join(data, 'Osteoporosis/test-5.png')];
  const maps = (into: GradCamResult[]): typeof gradCam => async (...args) => {
    const result = await gradCam(...args);
    into.push(result);
    return result;
  };
  const [mine, theirs]: GradCamResult[][] = [[], []];
  const run = (backend: BackendHandle, into: GradCamResult[], dir: string) => predictImages({ backend, images, runs: [r18.dir, b3.dir], gradcamDir: join(root, dir), explain: maps(into) });
  const reference = await run(wasm, theirs, 'cams-tfjs');
  const ours = await run(onnx, mine, 'cams-onnx');
  for (const [i, image] of ours.images.entries()) {
    close(image.probabilities, reference.images[i]!.probabilities, `image ${i}`);
    assert.equal(Object.keys(image.gradcam ?? {}), ['resnet18', 'efficientnet_b3'], `image ${i} has both overlays`);
  }
  assert.is(mine.length, 4);
  for (const [i, cam] of mine.entries()) {
    assert.equal([cam.layerName, cam.height, cam.width, cam.classIndex], [theirs[i]!.layerName, theirs[i]!.height, theirs[i]!.width, theirs[i]!.classIndex]);
    close(Array.from(cam.map), Array.from(theirs[i]!.map), `map ${i} (${cam.layerName})`);
  }
  assert.is(counts.released, counts.created);
});

test('predict --weights model.onnx (export --format onnx) gives the run’s answers; a damaged or foreign graph is refused with its reason', async () => {
  const exported = await exportRun({ backend: wasm, run: r18.dir, format: 'onnx', outDir: join(root, 'onnx-r18') });
  const file = join(exported.dir, 'model.onnx');
  const image = [join(data, 'Osteopenia/test-3.png')];
  const fromRun = await predictImages({ backend: onnx, images: image, runs: [r18.dir] });
  for (const backend of [onnx, wasm]) {
    const fromFile = await predictImages({ backend, images: image, model: 'resnet18', weights: file });
    close(fromFile.images[0]!.probabilities, fromRun.images[0]!.probabilities, `model.onnx on ${backend.name}`);
  }
  const bytes = await readFile(file);
  const damaged = join(root, 'damaged.onnx');
  await writeFile(damaged, bytes.subarray(0, Math.floor(bytes.length / 3)));
  await refusal(predictImages({ backend: onnx, images: image, model: 'resnet18', weights: damaged }), /damaged\.onnx is not a readable ONNX model .*truncated, damaged or of another format/);
  const junk = join(root, 'junk.onnx');
  await writeFile(junk, Buffer.from('not a protobuf at all, just text'));
  await refusal(predictImages({ backend: onnx, images: image, model: 'resnet18', weights: junk }), /junk\.onnx (is not a readable ONNX model|holds no ONNX graph)/);
  const b3Export = await exportRun({ backend: wasm, run: b3.dir, format: 'onnx', outDir: join(root, 'onnx-b3') });
  const foreign = join(root, 'foreign', 'model.onnx');
  await mkdir(join(root, 'foreign'));
  await copyFile(join(b3Export.dir, 'model.onnx'), foreign);
  await refusal(predictImages({ backend: onnx, images: image, model: 'resnet18', weights: foreign }), /foreign\/model\.onnx is not osteo's ONNX graph of resnet18 .*: it lacks the initializers conv1\.weight/);
  assert.is(counts.released, counts.created);
});

test.run();
