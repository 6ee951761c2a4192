/**
 * Export round trips: the dashboard's three files load strictly in PyTorch (weights_only=True) and
 * give the probabilities `osteo predict` gives; the tfjs export reloads with stock tfjs only and
 * predicts the same; pth/safetensors exports reload into our models unchanged.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { preprocessForModel } from '../../src/data/image.js';
import { UserError, sha256Of } from '../../src/util/index.js';
import { refusal } from '../helpers/refusal.js';
import { dashboardFiles, dashboardModels, dashboardTransform, exportDashboard, exportRecordFile, exportRun } from '../../src/eval/export.js';
import { loadWeightsFile } from '../../src/eval/inference.js';
import { predictImages } from '../../src/eval/predict.js';
import { readPth, readSafetensors, readStateDict } from '../../src/weights/index.js';
import { writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';
import { referenceTest, runPython } from '../fixtures/torch/python.js';

/** The backend the tests run on, as a command passes it down. */
let backend: BackendHandle;

const run = promisify(execFile);

let root = '';
let runs: Record<'resnet18' | 'resnet50' | 'efficientnet_b3', RunFixture>;
/** A 64 px ResNet18 run for the format round trips, which do not depend on the input size. */
let small: RunFixture;
let image73 = '';
let image256 = '';
let image232 = '';
let image239 = '';

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-export-'));
  runs = {
    resnet18: await writeRunFixture(join(root, 'r18'), 'resnet18', { imageSize: 224, seed: 11 }),
    resnet50: await writeRunFixture(join(root, 'r50'), 'resnet50', { imageSize: 224, seed: 12 }),
    efficientnet_b3: await writeRunFixture(join(root, 'b3'), 'efficientnet_b3', { imageSize: 224, seed: 13 }),
  };
  // Images already at each run's resize size: both sides skip the resize, so preprocessing is exact
  // and any difference is the network's (ResNet18: 256 → crop 224, the dashboard's own transform;
  // ResNet50's V2 weights: 232 → 224; B3 at 224: resize round(224·320/300) = 239 → crop 224).
  small = await writeRunFixture(join(root, 'small'), 'resnet18', { imageSize: 64, seed: 14 });
  image73 = join(root, 'knee73.png');
  await writeTestImage(image73, 73, 73, 3);
  image256 = join(root, 'knee256.png');
  image232 = join(root, 'knee232.png');
  image239 = join(root, 'knee239.png');
  await writeTestImage(image256, 256, 256, 1);
  await writeTestImage(image232, 232, 232, 4);
  await writeTestImage(image239, 239, 239, 2);
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

referenceTest(test, 'dashboard export: exact file names, strict weights_only load in PyTorch, probabilities match osteo predict to 1e-4', async () => {
  const dir = join(root, 'dashboard');
  const result = await exportDashboard({ backend, dir, runs: { resnet18: runs.resnet18.dir, resnet50: runs.resnet50.dir, efficientnet_b3: runs.efficientnet_b3.dir } });
  assert.equal(result.files, ['sydney_best_model.pth', 'resnet50_best_model.pth', 'best_osteoporosis_model.pth', 'metadata.json', 'model-card.json', 'model-card.md']);
  const metadata = JSON.parse(await readFile(join(dir, 'metadata.json'), 'utf8'));
  assert.equal(metadata.classes, ['Normal', 'Osteopenia', 'Osteoporosis']);
  assert.is(metadata.models['sydney_best_model.pth'].preprocessing.resize, 256);
  assert.equal(metadata.models['sydney_best_model.pth'].notes, [], 'ResNet18 trained on the dashboard transform: nothing to note');
  assert.is(metadata.models['resnet50_best_model.pth'].preprocessing.resize, 232, "the run's own transform, from torchvision's V2 weights");
  assert.ok(metadata.models['resnet50_best_model.pth'].notes[0].includes('trained on resize 232 / crop 224, but the dashboard feeds resize 256 / crop 224'), 'the ResNet50 resize is noted');
  assert.is(metadata.models['best_osteoporosis_model.pth'].preprocessing.resize, 239);
  assert.ok(metadata.models['best_osteoporosis_model.pth'].notes[0].includes('dashboard feeds resize 256'), 'the B3 size mismatch is noted');
  assert.match(metadata.models['best_osteoporosis_model.pth'].architecture, /nn\.Linear\(1536, 512\), nn\.ReLU\(\)/);
  assert.is(metadata.models['resnet50_best_model.pth'].metrics.epoch, 3);
  assert.match(metadata.models['resnet50_best_model.pth'].source.sha256, /^[0-9a-f]{64}$/);

  const imageFor: Record<string, string> = { resnet18: image256, resnet50: image232, efficientnet_b3: image239 };
  const stdout = runPython(join(import.meta.dirname, 'scripts', 'dashboard_probabilities.py'), [
    dir,
    ...dashboardModels().map((entry) => `${entry.dashboard.file}=${imageFor[entry.name]!}`),
  ]);
  const torchProbabilities = JSON.parse(stdout) as Record<string, number[]>;
  const report: string[] = [];
  for (const entry of dashboardModels()) {
    const file = entry.dashboard.file;
    const ours = await predictImages({ backend, images: [imageFor[entry.name]!], model: entry.name, weights: join(dir, file), imageSize: 224 });
    const theirs = torchProbabilities[file]!;
    const diff = Math.max(...ours.images[0]!.probabilities.map((p, c) => Math.abs(p - theirs[c]!)));
    report.push(`${file}: max |Δp| = ${diff.toExponential(2)}`);
    assert.ok(diff <= 1e-4, `${file}: osteo ${ours.images[0]!.probabilities} vs torch ${theirs}`);
    assert.ok(Math.max(...theirs) < 0.99, `${file}: probabilities are not saturated (${theirs}), so the comparison is meaningful`);
  }
  console.log(report.join('\n'));
});

test('pth and safetensors exports round-trip the run weights exactly, with metadata', async () => {
  const source = await readSafetensors(join(small.dir, 'best', 'model.safetensors'));
  for (const format of ['pth', 'safetensors'] as const) {
    const out = join(root, `export-${format}`);
    const result = await exportRun({ backend, run: small.dir, format, outDir: out });
    assert.equal(result.files, [`resnet18.${format}`, 'metadata.json', 'model-card.json', 'model-card.md']);
    const dict = format === 'pth' ? await readPth(join(out, 'resnet18.pth')) : await readStateDict(join(out, 'resnet18.safetensors'));
    assert.equal([...dict.keys()], [...source.keys()], 'same keys, same order');
    for (const [key, tensor] of source) {
      assert.equal(dict.get(key)!.shape, tensor.shape, key);
      assert.ok(Buffer.from(dict.get(key)!.data.buffer).equals(Buffer.from(tensor.data.buffer)), `${key} bytes`);
    }
    const metadata = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8'));
    assert.is(metadata.model, 'resnet18');
    assert.is(metadata.preprocessing.crop, 64);
    assert.is(metadata.preprocessing.resize, 73);
    assert.ok(typeof metadata.osteoVersion === 'string' && metadata.osteoVersion.length > 0);
  }
});

test('a run with only last/ exports with --checkpoint last; without it the error points to the flag', async () => {
  const early = join(root, 'early');
  await cp(small.dir, early, { recursive: true });
  await rename(join(early, 'best'), join(early, 'last'));
  try {
    await exportRun({ backend, run: early, format: 'safetensors', outDir: join(root, 'early-export') });
    assert.unreachable('best/ is missing');
  } catch (error) {
    assert.instance(error, UserError);
    assert.match((error as Error).message, /has no best checkpoint .*add --checkpoint last/);
  }
  const result = await exportRun({ backend, run: early, format: 'safetensors', outDir: join(root, 'early-export'), checkpoint: 'last' });
  const exported = await readStateDict(join(result.dir, 'resnet18.safetensors'));
  const source = await readSafetensors(join(early, 'last', 'model.safetensors'));
  for (const [key, tensor] of source) assert.ok(Buffer.from(exported.get(key)!.data.buffer).equals(Buffer.from(tensor.data.buffer)), key);
});

test('tfjs export: stock tfjs (no osteo layer classes) loads model.json and predicts what osteo predicts', async () => {
  const out = join(root, 'export-tfjs');
  const result = await exportRun({ backend, run: small.dir, format: 'tfjs', outDir: out });
  assert.ok(result.files.includes('model.json') && result.files.includes('metadata.json'));
  const topology = await readFile(join(out, 'model.json'), 'utf8');
  assert.not.match(topology, /TorchBatchNorm|SeededDropout|StochasticDepth/);

  const input = await preprocessForModel(image73, { resize: 73, crop: 64, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
  const inputFile = join(root, 'input.f32');
  await writeFile(inputFile, Buffer.from(input.buffer, input.byteOffset, input.byteLength));
  // A separate process that imports only tfjs packages and the directory loader: if the export
  // needed osteo's custom layers, deserialization would fail there.
  const { stdout } = await run(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'scripts', 'stock-tfjs-predict.ts'), out, inputFile, '64'], {
    cwd: join(import.meta.dirname, '..', '..'),
  });
  const stock = JSON.parse(stdout) as number[];
  const ours = (await predictImages({ backend, images: [image73], runs: [small.dir] })).images[0]!.probabilities;
  const diff = Math.max(...ours.map((p, c) => Math.abs(p - stock[c]!)));
  console.log(`tfjs export vs osteo predict: max |Δp| = ${diff.toExponential(2)}`);
  assert.ok(diff <= 1e-5, `stock tfjs ${stock} vs osteo ${ours}`);
});

test("the dashboard table: its files hold the heads it names (B3's 'mlp'), and predicting a file uses the transform its metadata.json records", async () => {
  assert.equal(
    dashboardFiles.map(({ file, model, head }) => [file, model, head]),
    [
      ['sydney_best_model.pth', 'resnet18', 'torchvision'],
      ['resnet50_best_model.pth', 'resnet50', 'torchvision'],
      ['best_osteoporosis_model.pth', 'efficientnet_b3', 'mlp'],
    ],
  );
  assert.equal(dashboardTransform, { resize: 256, crop: 224, interpolation: 'bilinear', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
  const dir = join(root, 'dashboard-heads');
  await exportDashboard({ backend, dir, runs: { resnet18: runs.resnet18.dir, resnet50: runs.resnet50.dir, efficientnet_b3: runs.efficientnet_b3.dir } });
  const b3 = await readPth(join(dir, 'best_osteoporosis_model.pth'));
  assert.equal(b3.get('classifier.1.weight')!.shape, [512, 1536]);
  assert.equal(b3.get('classifier.4.weight')!.shape, [3, 512]);
  assert.equal((await readPth(join(dir, 'resnet50_best_model.pth'))).get('fc.weight')!.shape, [3, 2048]);
  const resnet50 = await loadWeightsFile('resnet50', join(dir, 'resnet50_best_model.pth'), { backend });
  try {
    assert.equal([resnet50.transform.resize, resnet50.transform.crop], [232, 224], 'the run trained at 232/224 (V2 weights), as metadata.json records');
  } finally {
    await resnet50.engine.dispose();
  }
});

test('export refuses a run of the wrong architecture for a dashboard slot', async () => {
  await exportDashboard({ backend, dir: join(root, 'wrong'), runs: { resnet18: runs.resnet50.dir, resnet50: runs.resnet50.dir, efficientnet_b3: runs.efficientnet_b3.dir } }).then(
    () => assert.unreachable('exported a resnet50 as sydney_best_model.pth'),
    (e: unknown) => assert.ok(e instanceof UserError && /--resnet18 .* is a resnet50 run/.test(e.message), String(e)),
  );
  assert.ok(tf.memory().numTensors >= 0);
});

test('dashboard export writes nothing into the folder until all three files are valid; the folder’s own files stay', async () => {
  const dir = join(root, 'dashboard-app');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'app.py'), 'import streamlit');
  // The first two slots are valid and were written into the folder before the third failed, once.
  await exportDashboard({ backend, dir, runs: { resnet18: runs.resnet18.dir, resnet50: runs.resnet50.dir, efficientnet_b3: runs.resnet18.dir } }).then(
    () => assert.unreachable('exported a resnet18 as best_osteoporosis_model.pth'),
    (e: unknown) => assert.ok(e instanceof UserError && /--efficientnet-b3 .* is a resnet18 run/.test(e.message), String(e)),
  );
  assert.equal(await readdir(dir), ['app.py']);
  assert.equal((await readdir(root)).filter((name) => name.startsWith('.dashboard-app')), [], 'no staging folder left');
});

test('tfjs re-export replaces the folder whole: no shard of the previous export survives', async () => {
  const out = join(root, 'export-tfjs-again');
  await exportRun({ backend, run: small.dir, format: 'tfjs', outDir: out });
  // Stand in for an earlier export of a larger model: one more shard, in the folder's record of what osteo wrote.
  await writeFile(join(out, 'group1-shard9of9.bin'), 'a shard of an older, larger model');
  const record = JSON.parse(await readFile(join(out, exportRecordFile), 'utf8'));
  record.files['group1-shard9of9.bin'] = sha256Of('a shard of an older, larger model');
  await writeFile(join(out, exportRecordFile), JSON.stringify(record));
  const result = await exportRun({ backend, run: small.dir, format: 'tfjs', outDir: out });
  assert.equal((await readdir(out)).sort(), [exportRecordFile, ...result.files].sort());
  // A file no export wrote is never deleted: the export is refused instead.
  await writeFile(join(out, 'mine.txt'), 'not osteo’s');
  assert.match(await refusal(exportRun({ backend, run: small.dir, format: 'tfjs', outDir: out })), /did not write \(mine\.txt\)/);
  assert.ok((await readdir(out)).includes('mine.txt'));
});

test('export overwrites no file it did not write: a user’s resnet18.pth or metadata.json, an original sydney_best_model.pth, a file a foreign metadata.json lists', async () => {
  // pth/safetensors into a folder that holds the user's own files of those names.
  for (const [format, name] of [['pth', 'resnet18.pth'], ['safetensors', 'metadata.json']] as const) {
    const out = join(root, `users-${format}`);
    await mkdir(out, { recursive: true });
    await writeFile(join(out, name), 'the user’s own');
    assert.match(await refusal(exportRun({ backend, run: small.dir, format, outDir: out })), new RegExp(`did not write \\(${name.replace('.', '\\.')}\\)`));
    assert.equal(await readdir(out), [name]);
    assert.is(await readFile(join(out, name), 'utf8'), 'the user’s own');
  }
  // An export osteo wrote, then changed by the user: no longer osteo's to replace.
  const edited = join(root, 'edited-pth');
  await exportRun({ backend, run: small.dir, format: 'pth', outDir: edited });
  await writeFile(join(edited, 'metadata.json'), '{"mine": true}');
  assert.match(await refusal(exportRun({ backend, run: small.dir, format: 'pth', outDir: edited })), /metadata\.json/);
  assert.is(await readFile(join(edited, 'metadata.json'), 'utf8'), '{"mine": true}');
  // The dashboard's folder with the seed project's original weights file: refused before any model is read.
  const dashboard = join(root, 'dashboard-original');
  await mkdir(dashboard, { recursive: true });
  await writeFile(join(dashboard, 'sydney_best_model.pth'), 'original weights');
  const message = await refusal(exportDashboard({ backend, dir: dashboard, runs: { resnet18: runs.resnet18.dir, resnet50: runs.resnet50.dir, efficientnet_b3: runs.efficientnet_b3.dir } }));
  assert.match(message, /sydney_best_model\.pth/);
  assert.is(await readFile(join(dashboard, 'sydney_best_model.pth'), 'utf8'), 'original weights');
  // tfjs: a metadata.json listing data.csv does not make data.csv osteo's.
  const listed = join(root, 'listed');
  await mkdir(listed, { recursive: true });
  await writeFile(join(listed, 'data.csv'), 'a,b\n1,2\n');
  await writeFile(join(listed, 'metadata.json'), JSON.stringify({ files: ['data.csv'] }));
  assert.match(await refusal(exportRun({ backend, run: small.dir, format: 'tfjs', outDir: listed })), /data\.csv/);
  assert.equal((await readdir(listed)).sort(), ['data.csv', 'metadata.json']);
});

test('a pth and a safetensors export into one folder: its one metadata.json lists and hashes both; other weights into it are refused', async () => {
  const out = join(root, 'both-formats');
  await exportRun({ backend, run: small.dir, format: 'pth', outDir: out });
  await exportRun({ backend, run: small.dir, format: 'safetensors', outDir: out });
  const metadata = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8'));
  assert.equal(metadata.files, ['resnet18.pth', 'resnet18.safetensors']);
  for (const file of metadata.files) assert.is(metadata.sha256[file], sha256Of(await readFile(join(out, file))), `${file}'s hash`);
  const record = JSON.parse(await readFile(join(out, exportRecordFile), 'utf8'));
  assert.equal(Object.keys(record.files).sort(), ['metadata.json', 'model-card.json', 'model-card.md', 'resnet18.pth', 'resnet18.safetensors']);
  assert.is(record.files['metadata.json'], sha256Of(await readFile(join(out, 'metadata.json'))));
  // Re-exporting one format keeps describing both.
  await exportRun({ backend, run: small.dir, format: 'pth', outDir: out });
  assert.equal(JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8')).files, ['resnet18.pth', 'resnet18.safetensors']);
  // Another run's weights would need a second description: refused, nothing changed.
  const other = join(root, 'other-small');
  await cp(small.dir, other, { recursive: true });
  const weights = join(other, 'best', 'model.safetensors');
  const bytes = await readFile(weights);
  bytes[bytes.length - 1] ^= 1; // the last byte of the last tensor's data: other weights, still finite
  await writeFile(weights, bytes);
  const before = await readFile(join(out, 'metadata.json'), 'utf8');
  assert.match(await refusal(exportRun({ backend, run: other, format: 'safetensors', outDir: out })), /exported from other weights/);
  assert.is(await readFile(join(out, 'metadata.json'), 'utf8'), before);
});

test('metadata.json names the source run and weights relative to the export folder, never an absolute path', async () => {
  const out = join(root, 'relative', 'pth');
  await exportRun({ backend, run: small.dir, format: 'pth', outDir: out });
  const text = await readFile(join(out, 'metadata.json'), 'utf8');
  assert.not.ok(text.includes(root), 'no absolute path of this machine');
  const metadata = JSON.parse(text);
  assert.is(resolve(out, metadata.source.run), small.dir);
  assert.is(resolve(out, metadata.source.weights), join(small.dir, 'best', 'model.safetensors'));
});

test.run();
