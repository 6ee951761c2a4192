/**
 * `osteo export --format web`: the static site's files and metadata.json, the bundled viewer with no
 * network address in it, and the folder switched in whole (no stale shards, previous export intact
 * on failure, a folder with foreign files refused). The page itself runs in web-browser.test.ts.
 */
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { captureMain } from '../helpers/cli.js';
import { getModel } from '../../src/models/index.js';
import { UserError, sha256Of } from '../../src/util/index.js';
import { exportRecordFile, writeFolderStaged } from '../../src/eval/export.js';
import { predictImages } from '../../src/eval/predict.js';
import { loadLayersModelFromDir } from '../../src/eval/tfjs-io.js';
import { defaultEvalOutDir, evaluateRuns } from '../../src/eval/evaluate.js';
import { evaluationOf, exportWeb, wasmBinaries } from '../../src/eval/web-export.js';
import type { WebMetadata } from '../../src/eval/web/metadata.js';
import { checkpointWeightsSha256, writeRunCalibration } from '../../src/runs/index.js';
import { writeHashedDataset, writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';

/** The backend the tests run on, as a command passes it down. */
let backend: BackendHandle;

let root = '';
let runA: RunFixture;
let runB: RunFixture;

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-web-export-'));
  runA = await writeRunFixture(join(root, 'run-a'), 'resnet18', { imageSize: 32, seed: 21 });
  runB = await writeRunFixture(join(root, 'run-b'), 'resnet18', { imageSize: 32, seed: 22 });
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Siblings the staging left behind (`.NAME.staging-…` / `.NAME.old-…`). */
async function leftovers(target: string): Promise<string[]> {
  return (await readdir(dirname(target))).filter((name) => name.startsWith(`.${basename(target)}.`));
}

test('a two-run export: page, bundle, wasm binaries, one LayersModel per run, metadata with predict’s names', async () => {
  const out = join(root, 'site');
  const result = await exportWeb({ backend, runs: [runA.dir, runB.dir], outDir: out });
  const codecBinaries = ['libjpegturbowasm_decode.wasm', 'charlswasm_decode.wasm', 'openjpegwasm_decode.wasm'];
  for (const file of ['index.html', 'viewer.js', ...wasmBinaries, ...codecBinaries, 'metadata.json']) assert.ok(result.files.includes(file) && existsSync(join(out, file)), file);
  const metadata = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8')) as WebMetadata;
  assert.is(metadata.format, 'osteo-web');
  assert.equal(metadata.classes, ['Normal', 'Osteopenia', 'Osteoporosis']);
  assert.equal(metadata.backends, ['webgpu', 'webgl', 'wasm']);
  assert.equal(metadata.ensemble.weights, [0.5, 0.5]);
  assert.match(metadata.disclaimer, /not a diagnostic device/);
  // The names osteo predict gives the same two runs, so the page's #result reads the same.
  const probe = join(root, 'probe.png');
  await writeTestImage(probe, 40, 37, 3);
  const predicted = await predictImages({ backend, images: [probe], runs: [runA.dir, runB.dir] });
  const names = metadata.models.map((m) => m.name);
  assert.equal(names, ['resnet18:run-a', 'resnet18:run-b']);
  assert.equal(Object.keys(predicted.images[0]!.models), names);
  for (const [i, entry] of metadata.models.entries()) {
    assert.is(entry.model, 'resnet18');
    assert.is(entry.path, `models/${i + 1}-resnet18-run-${'ab'[i]}`);
    assert.is(entry.gradCamLayer, getModel('resnet18').gradCamLayer);
    assert.is(entry.dicomWindow, 'auto', "the run's recorded DICOM window");
    assert.equal({ resize: entry.preprocessing.resize, crop: entry.preprocessing.crop }, { resize: 37, crop: 32 });
    assert.equal(entry.preprocessing.mean, [0.485, 0.456, 0.406]);
    assert.is((entry.metrics as { epoch: number }).epoch, 3);
    assert.match(entry.source.sha256, /^[0-9a-f]{64}$/);
    const model = await loadLayersModelFromDir(join(out, entry.path));
    assert.ok(model.getLayer(entry.gradCamLayer) !== undefined, 'the Grad-CAM layer is in the exported model');
    model.dispose();
  }
  assert.equal(metadata.files, result.files.filter((file) => !['metadata.json', 'model-card.json', 'model-card.md'].includes(file)));
  const viewer = await readFile(join(out, 'viewer.js'), 'utf8');
  assert.not.match(viewer, /cdn\.|unpkg|jsdelivr|googleapis|tfhub/, 'no CDN in the bundle');
  assert.match(viewer, /has no decoder in osteo/, "the data room's DICOM reader is bundled");
  assert.match(viewer, /charlswasm_decode\.wasm/, 'with its codecs');
  const html = await readFile(join(out, 'index.html'), 'utf8');
  assert.match(html, /<script src="viewer\.js"><\/script>/);
  assert.match(html, /id="result"/);
  assert.match(html, /default-src 'self'/, 'the page may not reach the network');
  assert.equal(await leftovers(out), []);
});

test('metadata.json carries each run’s temperature and the hash it was fitted on, applied only to the weights it was fitted on; the card comes along', async () => {
  const calibrated = await writeRunFixture(join(root, 'run-calibrated'), 'resnet18', { imageSize: 32, seed: 23 });
  const stale = await writeRunFixture(join(root, 'run-stale'), 'resnet18', { imageSize: 32, seed: 24 });
  const fitted = { split: 'val' as const, data: root, manifestSha256: 'f'.repeat(64), images: 9, tta: false };
  const record = (weightsSha256: string, temperature: number) => ({ format: 'osteo-calibration' as const, version: 1 as const, method: 'temperature' as const, temperature, checkpoint: 'best' as const, weightsSha256, fittedOn: fitted, nllBefore: 1.1, nllAfter: 1.0 });
  await writeRunCalibration(calibrated.dir, record(await checkpointWeightsSha256(calibrated.dir, 'best'), 1.75));
  await writeRunCalibration(stale.dir, record('e'.repeat(64), 0.5));
  const out = join(root, 'site-calibrated');
  const result = await exportWeb({ backend, runs: [calibrated.dir, stale.dir], outDir: out });
  const metadata = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8')) as WebMetadata;
  const [good, old] = metadata.models;
  assert.equal([good!.calibration!.applied, good!.calibration!.temperature, good!.calibration!.weightsSha256], [true, 1.75, good!.source.sha256]);
  assert.equal([old!.calibration!.applied, old!.calibration!.temperature, old!.calibration!.weightsSha256], [false, 0.5, 'e'.repeat(64)]);
  assert.match(old!.calibration!.reason!, /fitted on weights of SHA-256 eeeeeeeeeeee…, not on the exported ones/);
  assert.not.match(JSON.stringify(metadata), new RegExp(root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'no machine path in the shared metadata');
  assert.ok(result.files.includes('model-card.md') && existsSync(join(out, 'model-card.json')), 'the card is part of the site');
  const owned = JSON.parse(await readFile(join(out, exportRecordFile), 'utf8')) as { files: Record<string, string> };
  assert.is(owned.files['model-card.md'], sha256Of(await readFile(join(out, 'model-card.md'))));
  assert.match(await readFile(join(out, 'index.html'), 'utf8'), /id="calibration"/, 'the page has a place for its calibration note');
});

test('metadata.json carries osteo eval’s test metrics of exactly these runs and weights, and none of other runs', async () => {
  const hashes = await Promise.all([runA, runB].map(async (run) => sha256Of(await readFile(join(run.dir, 'best', 'model.safetensors')))));
  assert.is(await evaluationOf([runA.dir, runB.dir], 'best', hashes), null, 'no report yet');
  const report = defaultEvalOutDir([runA.dir, runB.dir], 'test');
  await mkdir(report, { recursive: true });
  const record = { format: 'osteo-evaluation', version: 2, split: 'test', data: 'phantom', runs: [runA.dir, runB.dir], checkpoint: 'best', weightsSha256: hashes };
  await writeFile(join(report, 'evaluation.json'), JSON.stringify(record));
  await writeFile(join(report, 'results.csv'), 'model,accuracy\nresnet18:run-a,0.5\nensemble (soft vote),0.6\n');
  const evaluation = await evaluationOf([runA.dir, runB.dir], 'best', hashes);
  assert.equal(evaluation, { split: 'test', report, rows: [{ model: 'resnet18:run-a', accuracy: '0.5' }, { model: 'ensemble (soft vote)', accuracy: '0.6' }] });
  await writeFile(join(report, 'evaluation.json'), JSON.stringify({ ...record, runs: [runB.dir, runA.dir] }));
  assert.is(await evaluationOf([runA.dir, runB.dir], 'best', hashes), null, 'a report of the runs in another order is another ensemble');
  await writeFile(join(report, 'evaluation.json'), JSON.stringify({ ...record, weightsSha256: [hashes[0], 'f'.repeat(64)] }));
  assert.is(await evaluationOf([runA.dir, runB.dir], 'best', hashes), null, 'a report of other weights of run-b');
  await writeFile(join(report, 'evaluation.json'), JSON.stringify({ ...record, weightsSha256: undefined }));
  assert.is(await evaluationOf([runA.dir, runB.dir], 'best', hashes), null, 'a record that does not say which weights');
  await rm(report, { recursive: true });
});

test('the page shows the evaluation of the weights it exports: not after resume improves best, not for --checkpoint last', async () => {
  const data = join(root, 'eval-data');
  await writeHashedDataset(data, ['val', 'test', 'test']);
  const run = join(root, 'resumed');
  await cp(runA.dir, run, { recursive: true });
  const evaluated = await evaluateRuns({ backend, runs: [run], dataDir: data, resamples: 10 });
  const exported = async (checkpoint: 'best' | 'last') => {
    const out = join(root, `site-resumed-${checkpoint}`);
    await exportWeb({ backend, runs: [run], outDir: out, checkpoint });
    return JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8')) as WebMetadata;
  };
  const first = await exported('best');
  assert.is(first.checkpoint, 'best');
  assert.equal(first.evaluation?.rows.map((row) => row.model), evaluated.report.models.map((m) => m.name), 'the evaluation of these weights');
  // --checkpoint last: the same run's other checkpoint (here, other weights) has no evaluation of its own.
  await cp(join(runB.dir, 'best'), join(run, 'last'), { recursive: true });
  const last = await exported('last');
  assert.is(last.checkpoint, 'last');
  assert.is(last.evaluation, null);
  // train --resume found a better epoch: best/ holds other weights now, and the report is of the old ones.
  await cp(join(runB.dir, 'best', 'model.safetensors'), join(run, 'best', 'model.safetensors'));
  assert.is((await exported('best')).evaluation, null);
});

test('re-export switches the folder whole: stale shards of the previous export are gone', async () => {
  const out = join(root, 'site-again');
  await exportWeb({ backend, runs: [runA.dir], outDir: out });
  const folder = join(out, 'models', '1-resnet18');
  // A shard of an older, larger export: named in the folder's record of what osteo wrote.
  await writeFile(join(folder, 'group1-shard99of99.bin'), 'a shard of an older, larger export');
  const record = JSON.parse(await readFile(join(out, exportRecordFile), 'utf8'));
  record.files['models/1-resnet18/group1-shard99of99.bin'] = sha256Of('a shard of an older, larger export');
  await writeFile(join(out, exportRecordFile), JSON.stringify(record));
  await exportWeb({ backend, runs: [runB.dir], outDir: out });
  assert.not.ok(existsSync(join(folder, 'group1-shard99of99.bin')));
  const metadata = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8')) as WebMetadata;
  assert.match(metadata.models[0]!.source.run, /^\.\.\/run-b$/, 'the run, named from the export folder');
  assert.not.ok((await readFile(join(out, 'metadata.json'), 'utf8')).includes(root), 'no absolute path of this machine');
  assert.equal(await leftovers(out), []);
  // A file no export wrote, even one level down, is never switched away.
  await writeFile(join(folder, 'mine.txt'), 'not osteo’s');
  await exportWeb({ backend, runs: [runB.dir], outDir: out }).then(
    () => assert.unreachable('exported over a foreign file'),
    (e: unknown) => assert.ok(e instanceof UserError && /models\/1-resnet18\/mine\.txt/.test(e.message), String(e)),
  );
  assert.ok(existsSync(join(folder, 'mine.txt')));
});

test('a folder holding files osteo did not write is refused and left untouched', async () => {
  const out = join(root, 'user-folder');
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'notes.txt'), 'mine');
  await exportWeb({ backend, runs: [runA.dir], outDir: out }).then(
    () => assert.unreachable('exported over a user folder'),
    (e: unknown) => assert.ok(e instanceof UserError && /notes\.txt/.test(e.message) && /did not write/.test(e.message), String(e)),
  );
  assert.equal(await readdir(out), ['notes.txt']);
  assert.equal(await leftovers(out), []);
});

test('a failure while writing leaves the previous export whole and no staging folder', async () => {
  const out = join(root, 'site-fail');
  await exportWeb({ backend, runs: [runA.dir], outDir: out });
  const before = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8')) as WebMetadata;
  await writeFolderStaged(out, async (staging) => {
    await writeFile(join(staging, 'metadata.json'), '{}');
    throw new Error('disk full (simulated)');
  }).then(
    () => assert.unreachable('the failure was swallowed'),
    (e: unknown) => assert.match(String(e), /simulated/),
  );
  const after = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8')) as WebMetadata;
  assert.equal(after, before);
  assert.equal(await leftovers(out), []);
});

test('the CLI: --format web needs --out; several --run only with web', async () => {
  const noOut = await captureMain(['export', '--run', runA.dir, '--format', 'web', '--backend', 'wasm']);
  assert.is(noOut.code, 1);
  assert.match(noOut.stderr, /--format web needs --out DIR/);
  const several = await captureMain(['export', '--run', runA.dir, '--run', runB.dir, '--format', 'pth', '--backend', 'wasm']);
  assert.is(several.code, 1);
  assert.match(several.stderr, /several --run go with --format web/);
});

test.run();
