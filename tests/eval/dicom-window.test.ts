/**
 * --dicom-window, one option record with one meaning wherever an image is read: a run records the
 * window it trained with (config.json, its own resize cache), and eval, predict and their Grad-CAM
 * overlays of that run read DICOM files through it unless the flag overrides it; the index records,
 * row by row, the window its hashes were made under, so eval checks a film under the index's window
 * while the model sees it under the run's; `data preview` draws DICOM films through the window.
 */
import { copyFile, readFile, readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useBackend } from '../../src/backend/index.js';
import { cacheDir, indexDataset, readIndex, splitDataset, synthesizePhantom } from '../../src/data/index.js';
import { evaluateRuns, predictImages } from '../../src/eval/index.js';
import { trainModel } from '../../src/train/index.js';
import { parseCsvRecords } from '../../src/util/index.js';
import { captureMain } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp.js';
import { memo, tinyConfig } from '../train/helpers.js';

const runWindow = { center: 1000, width: 3000 };
let cleanup: (() => Promise<void>) | undefined;

/** A DICOM phantom, indexed under auto and split, and a run trained on it under runWindow. */
const fixture = memo(async () => {
  const dir = await tempDir('osteo-dicom-window-');
  cleanup = dir.cleanup;
  const data = join(dir.path, 'phantom');
  await synthesizePhantom({ dest: data, perClass: 9, size: 32, seed: 5, format: 'dicom' });
  await splitDataset({ dataDir: data, val: 0.3, test: 0.3 });
  const run = join(dir.path, 'run');
  const config = await tinyConfig(data, run, { epochs: '1', dicomWindow: '1000,3000' });
  const backend = await useBackend('wasm');
  await trainModel(config, { backend });
  const rows = await readIndex(data);
  const films = rows.filter((r) => r.format === 'dicom' && r.status === 'ok');
  return { dir, data, run, backend, config, films };
});

test.after(async () => {
  await cleanup?.();
});

const largestDifference = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!)));

test('train records the window in config.json (auto when not given) and caches its films apart from auto', async () => {
  const { data, run, config } = await fixture();
  assert.is(config.dicomWindow, '1000,3000');
  assert.is((JSON.parse(await readFile(join(run, 'config.json'), 'utf8')) as { dicomWindow?: string }).dicomWindow, '1000,3000');
  assert.ok(existsSync(cacheDir(data, config.transform.resize, undefined, runWindow)), 'the run window has its own resize cache');
  assert.is.not(cacheDir(data, 224, undefined, runWindow), cacheDir(data, 224));
  assert.is((await tinyConfig(data, join(run, 'x'))).dicomWindow, 'auto');
});

test("predict of the run uses the run's window unless --dicom-window overrides it; the Grad-CAM overlay is drawn on that film", async () => {
  const { dir, run, backend, films, data } = await fixture();
  const images = [films.find((r) => r.depth === 12)!, films.find((r) => r.depth === 8)!].map((r) => join(data, r.path));
  const predict = (dicomWindow: typeof runWindow | 'auto' | undefined, cam: string) => predictImages({ backend, images, runs: [run], dicomWindow, gradcamDir: join(dir.path, cam) });
  const [recorded, explicit, auto] = [await predict(undefined, 'recorded'), await predict(runWindow, 'explicit'), await predict('auto', 'auto')];
  for (const [i, image] of recorded.images.entries()) {
    assert.equal(image.probabilities, explicit.images[i]!.probabilities, `${image.path}: the recorded window is the run's window`);
    assert.ok(largestDifference(image.probabilities, auto.images[i]!.probabilities) > 1e-5, `${image.path}: auto is another input`);
  }
  const overlay = async (cam: string) => {
    const [name] = (await readdir(join(dir.path, cam))).filter((file) => file.startsWith(`${images[0]!.split('/').pop()!.replace('.dcm', '')}.`));
    return readFile(join(dir.path, cam, name!));
  };
  assert.ok((await overlay('recorded')).equals(await overlay('explicit')), 'the same film under the same window: the same overlay');
  assert.not.ok((await overlay('recorded')).equals(await overlay('auto')), 'the overlay shows the windowed film');
});

test("eval of the run uses its window (the index's hashes are checked under the index's window), --dicom-window overrides it, a changed film is still caught", async () => {
  const { run, backend, data, films } = await fixture();
  const evaluate = async (dicomWindow?: typeof runWindow | 'auto') => (await evaluateRuns({ backend, runs: [run], dataDir: data, outDir: null, resamples: 10, dicomWindow })).report.models[0]!.probabilities;
  const [recorded, explicit, auto] = [await evaluate(), await evaluate(runWindow), await evaluate('auto')];
  assert.equal(Array.from(recorded), Array.from(explicit));
  assert.ok(largestDifference(recorded, auto) > 1e-5, 'auto is another input');
  const manifest = parseCsvRecords(await readFile(join(data, 'splits.csv'), 'utf8'), 'splits.csv');
  const tested = manifest.find((r) => r.split === 'test' && r.path!.endsWith('.dcm'))!;
  assert.is(tested.dicomWindow, 'auto', 'splits.csv records the window of each DICOM row');
  assert.is(manifest.find((r) => !r.path!.endsWith('.dcm'))?.dicomWindow ?? '', '');
  const other = films.find((r) => r.path !== tested.path && r.depth === films.find((f) => f.path === tested.path)!.depth)!;
  const original = await readFile(join(data, tested.path));
  await copyFile(join(data, other.path), join(data, tested.path));
  try {
    const failure = await evaluateRuns({ backend, runs: [run], dataDir: data, outDir: null, resamples: 10 }).then(
      () => undefined,
      (error: Error) => error,
    );
    assert.match(failure?.message ?? '', /no longer match the content hash/);
  } finally {
    await writeFile(join(data, tested.path), original);
  }
});

test('data index and data preview take --dicom-window: index rows record it, preview draws through it; a bad value names the flag', async () => {
  const { dir, data } = await fixture();
  const preview = async (name: string, window: string[]) => {
    const out = join(dir.path, `${name}.png`);
    const result = await captureMain(['data', 'preview', '--data', data, '--augment', 'none', '--n', '6', '--image-size', '32', '--out', out, ...window]);
    assert.is(result.code, 0, result.stderr);
    return readFile(out);
  };
  assert.not.ok((await preview('auto', [])).equals(await preview('windowed', ['--dicom-window', '1000,3000'])), 'the window changes the sheet');
  assert.ok((await preview('auto-again', ['--dicom-window', 'auto'])).equals(await preview('auto', [])), 'auto is the default');
  const saved = await readFile(join(data, 'index.csv'));
  const indexed = await captureMain(['data', 'index', '--data', data, '--dicom-window', '1000,3000', '--json']);
  assert.is(indexed.code, 0, indexed.stderr);
  const rows = await readIndex(data);
  await writeFile(join(data, 'index.csv'), saved);
  assert.equal([...new Set(rows.filter((r) => r.format === 'dicom').map((r) => r.dicomWindow))], ['1000,3000']);
  assert.equal([...new Set(rows.filter((r) => r.format !== 'dicom').map((r) => r.dicomWindow))], ['']);
  const before = (await indexDataset({ dataDir: data, write: false })).rows;
  const film = rows.find((r) => r.format === 'dicom')!;
  assert.is.not(before.find((r) => r.path === film.path)!.contentHash, film.contentHash, 'the window decides the hashed pixels');
  for (const argv of [
    ['data', 'index', '--data', data, '--dicom-window', 'soft'],
    ['data', 'preview', '--data', data, '--dicom-window', '10,0'],
    ['train', '--model', 'resnet18', '--data', data, '--dicom-window', 'wide', '--print-config'],
    ['eval', '--run', join(dir.path, 'run'), '--data', data, '--dicom-window', '1,2,3'],
    ['predict', join(data, film.path), '--run', join(dir.path, 'run'), '--dicom-window', 'none'],
  ]) {
    const refused = await captureMain(argv);
    assert.is(refused.code, 1, `${argv.join(' ')}: ${refused.stderr}`);
    assert.match(refused.stderr, /--dicom-window: dicomWindow: expected auto, file, or a centre and a width ≥ 1 as C,W/, argv.join(' '));
  }
});

test.run();
