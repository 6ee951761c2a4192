/**
 * predict on what users actually hand it: folders, broken and tiny files, FIFOs, damaged weights,
 * sizes the weights were not trained at, runs with only a last/ checkpoint, and Grad-CAM that fails.
 */
import { execFileSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import { setupOnce } from './helpers.js';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { DataError, UserError } from '../../src/util/index.js';
import { readSafetensors, writeSafetensors } from '../../src/weights/index.js';
import { ensembleProbabilities } from '../../src/eval/ensemble.js';
import { exportedTransform, loadWeightsFile } from '../../src/eval/inference.js';
import { exportRun } from '../../src/eval/export.js';
import { formatPredictions, predictImages } from '../../src/eval/predict.js';
import { gradCamOverlayPng } from '../../src/eval/gradcam.js';
import { imagenetNormalization } from '../../src/data/index.js';
import { captureMain } from '../helpers/cli.js';
import { writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';

/** The backend the tests run on, as a command passes it down. */
let backend: BackendHandle;

let root = '';
let r18: RunFixture;
let r18small: RunFixture;
let b3small: RunFixture;
let good = '';

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-predict-inputs-'));
  r18 = await writeRunFixture(join(root, 'r18'), 'resnet18', { imageSize: 64, seed: 51 });
  // 32 px is the documented minimum input size.
  r18small = await writeRunFixture(join(root, 'r18-32'), 'resnet18', { imageSize: 32, seed: 52 });
  b3small = await writeRunFixture(join(root, 'b3-32'), 'efficientnet_b3', { imageSize: 32, seed: 53 });
  good = join(root, 'good.png');
  await writeTestImage(good, 90, 80, 5);
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

const rejection = async (promise: Promise<unknown>): Promise<Error> =>
  promise.then(
    () => assert.unreachable('should have failed') as never,
    (error: unknown) => error as Error,
  );

test('weights that overflow are an error naming the model and the weights file, never "Normal (confidence NaN%)"', async () => {
  const broken = join(root, 'nan-run');
  await cp(r18.dir, broken, { recursive: true });
  const file = join(broken, 'best', 'model.safetensors');
  const dict = await readSafetensors(file);
  // Finite weights whose logits overflow to Infinity (a NaN weight is refused when the file is read).
  (dict.get('fc.weight')!.data as Float32Array).fill(3.4028234663852886e38);
  (dict.get('fc.bias')!.data as Float32Array).fill(3.4028234663852886e38);
  await writeSafetensors(file, dict);
  const error = await rejection(predictImages({ backend, images: [good], runs: [broken] }));
  assert.ok(error instanceof DataError, String(error));
  assert.match(error.message, /model resnet18 of run .*nan-run gives non-finite outputs/);
  assert.is((error as DataError).file, file);
  // The --model/--weights form names the file the same way.
  const single = await rejection(predictImages({ backend, images: [good], model: 'resnet18', weights: file, imageSize: 64 }));
  assert.match(single.message, /nan-run\/best\/model\.safetensors: model resnet18 gives non-finite outputs/);
  // And a soft vote never averages a NaN member into a result.
  assert.throws(() => ensembleProbabilities([new Float32Array([0.2, 0.3, 0.5]), new Float32Array([Number.NaN, 0.5, 0.5])]), /member 2 of 2 has non-finite/);
});

test('one unreadable input does not stop the others: folders mean their images, FIFOs and broken files are reported', async () => {
  const folder = join(root, 'folder');
  await mkdir(folder);
  await writeTestImage(join(folder, 'b.png'), 70, 70, 6);
  await writeTestImage(join(folder, 'a.png'), 70, 75, 7);
  await writeFile(join(folder, 'notes.txt'), 'not an image');
  const broken = join(root, 'broken.png');
  await writeFile(broken, Buffer.from('\x89PNG\r\n\x1a\nthis is not a png'));
  const fifo = join(root, 'pipe.png');
  execFileSync('mkfifo', [fifo]);
  const missing = join(root, 'missing.png');
  const result = await predictImages({ backend, images: [broken, folder, fifo, missing, good], runs: [r18.dir] });
  assert.equal(
    result.images.map((i) => i.path),
    [join(folder, 'a.png'), join(folder, 'b.png'), good],
  );
  assert.equal(
    result.failed.map((f) => f.path),
    [fifo, missing, broken],
  );
  assert.match(result.failed[0]!.error, /not a regular file/);
  assert.match(result.failed[1]!.error, /no such file/);
  assert.match(result.failed[2]!.error, /cannot decode image/);
  assert.match(formatPredictions(result), /broken\.png: not predicted — cannot decode image/);
});

test('the pixel limit names the limit and the flag that raises it; a tiny image warns', async () => {
  const result = await predictImages({ backend, images: [good], runs: [r18.dir], maxPixels: 5000 });
  assert.is(result.images.length, 0);
  assert.match(result.failed[0]!.error, /90×80 = 7,200 pixels, above the limit of 5,000 .*raise it with --max-pixels N/);
  const tiny = join(root, 'tiny.png');
  await sharp({ create: { width: 1, height: 1, channels: 3, background: { r: 120, g: 120, b: 120 } } }).png().toFile(tiny);
  const warnings: string[] = [];
  const predicted = await predictImages({ backend, images: [tiny, good], runs: [r18.dir], onWarning: (m) => warnings.push(m) });
  assert.is(predicted.images.length, 2);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /tiny\.png \(1×1 px\) has a shorter side of only 1 px, enlarged more than 2× to the model's 64 px input/);
});

test('a 60000×2 strip is refused on its own (with --gradcam too), an animated GIF says it uses frame 1, an SVG is reported named or in a folder', async () => {
  const folder = join(root, 'odd-inputs');
  await mkdir(folder);
  const strip = join(folder, 'strip.png');
  await sharp({ create: { width: 60000, height: 2, channels: 3, background: { r: 90, g: 90, b: 90 } } }).png().toFile(strip);
  const frame = (level: number) => sharp({ create: { width: 70, height: 60, channels: 3, background: { r: level, g: level, b: level } } }).png().toBuffer();
  const animated = join(folder, 'animated.gif');
  await sharp([await frame(40), await frame(200)], { join: { animated: true } }).gif().toFile(animated);
  const svg = join(root, 'drawing.svg');
  await writeFile(svg, '<svg xmlns="http://www.w3.org/2000/svg" width="90" height="80"><rect width="90" height="80"/></svg>');
  await cp(svg, join(folder, 'drawing.svg'));
  const warnings: string[] = [];
  const result = await predictImages({ backend, images: [svg, folder, good], runs: [r18.dir], gradcamDir: join(root, 'odd-cams'), onWarning: (m) => warnings.push(m) });
  assert.equal(result.images.map((i) => i.path), [animated, good]);
  assert.ok(result.images.every((i) => i.gradcam?.resnet18 !== undefined), 'the others get their overlays');
  const failed = Object.fromEntries(result.failed.map((f) => [f.path, f.error]));
  assert.equal(Object.keys(failed).sort(), [svg, join(folder, 'drawing.svg'), strip].sort());
  assert.match(failed[strip]!, /60000×2 px, 30000 times as wide as it is high, beyond the 10:1 osteo reads/);
  assert.is(failed[svg], failed[join(folder, 'drawing.svg')], 'one rule, one reason, named or in a folder');
  assert.match(failed[svg]!, /an SVG file, which osteo does not read/);
  assert.match(warnings.join('\n'), /animated\.gif holds 2 frames \(an animated GIF or a multi-page file\): only the first frame is predicted/);
});

test('one overlay path taken by a folder costs that overlay alone: every prediction stands, in --json too', async () => {
  const dir = join(root, 'blocked-cams');
  await mkdir(join(dir, 'good.resnet18.gradcam.png'), { recursive: true });
  const other = join(root, 'other.png');
  await writeTestImage(other, 80, 90, 11);
  const result = await predictImages({ backend, images: [good, other], runs: [r18.dir], gradcamDir: dir });
  assert.equal(result.images.map((i) => i.path), [good, other]);
  assert.equal(result.failed, []);
  assert.match(result.images[0]!.gradcamFailed?.resnet18 ?? '', /good\.resnet18\.gradcam\.png is in the way: a folder .* has the overlay's name/);
  assert.is(result.images[1]!.gradcam?.resnet18, join(dir, 'other.resnet18.gradcam.png'));
  const cli = await captureMain(['predict', good, other, '--run', r18.dir, '--gradcam', dir, '--backend', 'wasm', '--json']);
  assert.is(cli.code, 0, cli.stderr);
  const json = JSON.parse(cli.stdout) as { images: { path: string; gradcamFailed?: Record<string, string> }[] };
  assert.equal(json.images.map((i) => i.path), [good, other]);
  assert.ok(json.images[0]!.gradcamFailed?.resnet18 !== undefined);
});

test('overlays are enlarged to 256 px on the shorter side but never past 4096 on the longer', async () => {
  const cam = { map: new Float32Array([0, 0.5, 1, 0.25]), height: 2, width: 2, classIndex: 0, layerName: 'layer4.1' };
  const transform = { resize: 37, crop: 32, ...imagenetNormalization };
  const sizes: [number, number, number, number][] = [
    [20, 10, 512, 256], // enlarged 25.6×
    [5000, 10, 5000, 10], // drawn as it is: 25.6× would make it 128,000 px long
    [3000, 200, 3840, 256], // 1.28× still fits under 4096
    [8000, 400, 8000, 400], // large already: its own resolution
  ];
  for (const [width, height, overlayWidth, overlayHeight] of sizes) {
    const image = { data: new Uint8Array(width * height * 3).fill(100), width, height };
    const overlay = await gradCamOverlayPng(image, transform, cam);
    assert.equal([overlay.width, overlay.height], [overlayWidth, overlayHeight], `${width}×${height}`);
  }
});

test('input size: the trained size by default; another --image-size warns; a metadata.json beside --weights gives the size', async () => {
  const warnings: string[] = [];
  await predictImages({ backend, images: [good], runs: [r18.dir], imageSize: 48, onWarning: (m) => warnings.push(m) });
  assert.is(warnings.length, 1);
  assert.match(warnings[0]!, /was trained at 64px but --image-size 48 was given/);
  warnings.length = 0;
  await predictImages({ backend, images: [good], runs: [r18.dir], imageSize: 64, onWarning: (m) => warnings.push(m) });
  assert.equal(warnings, []);

  // What `osteo export --format pth` leaves beside the weights.
  const exported = join(root, 'exported');
  await mkdir(exported);
  const weights = join(exported, 'resnet18.safetensors');
  await cp(join(r18.dir, 'best', 'model.safetensors'), weights);
  await writeFile(join(exported, 'metadata.json'), JSON.stringify({ model: 'resnet18', imageSize: 64, files: ['resnet18.safetensors'] }));
  const loaded = await loadWeightsFile('resnet18', weights, { backend });
  assert.is(loaded.imageSize, 64, 'not the architecture default (224)');
  await loaded.engine.dispose();
  const fromFile = await predictImages({ backend, images: [good], model: 'resnet18', weights });
  const fromRun = await predictImages({ backend, images: [good], runs: [r18.dir] });
  assert.equal(fromFile.images[0]!.probabilities, fromRun.images[0]!.probabilities);
  await predictImages({ backend, images: [good], model: 'resnet18', weights, imageSize: 96, onWarning: (m) => warnings.push(m) });
  assert.match(warnings.join('\n'), /resnet18\.safetensors \(its metadata\.json\) was trained at 64px but --image-size 96 was given/);
});

test('a run with only last/ (stopped in its first epoch): the error points to --checkpoint last, which works', async () => {
  const early = join(root, 'early');
  await cp(r18.dir, early, { recursive: true });
  await rename(join(early, 'best'), join(early, 'last'));
  const error = await rejection(predictImages({ backend, images: [good], runs: [early] }));
  assert.ok(error instanceof UserError);
  assert.match(error.message, /has no best checkpoint .*add --checkpoint last/);
  const result = await predictImages({ backend, images: [good], runs: [early], checkpoint: 'last' });
  const reference = await predictImages({ backend, images: [good], runs: [r18.dir] });
  assert.equal(result.images[0]!.probabilities, reference.images[0]!.probabilities);
});

test('Grad-CAM at the 32 px minimum works for resnet18 and efficientnet_b3', async () => {
  const dir = join(root, 'cams-32');
  const before = tf.memory().numTensors;
  const result = await predictImages({ backend, images: [good], runs: [r18small.dir, b3small.dir], gradcamDir: dir });
  assert.is(tf.memory().numTensors, before);
  assert.equal(result.images[0]!.gradcamFailed, undefined);
  assert.equal(Object.keys(result.images[0]!.gradcam ?? {}), ['resnet18', 'efficientnet_b3']);
  for (const file of Object.values(result.images[0]!.gradcam!)) {
    const meta = await sharp(file).metadata();
    assert.equal([meta.width, meta.height], [288, 256]);
  }
});

test('a Grad-CAM that fails costs only its overlay: every prediction and the other overlays stand', async () => {
  const dir = join(root, 'cams-fail');
  const { gradCam } = await import('../../src/eval/gradcam.js');
  const warnings: string[] = [];
  const result = await predictImages({ backend,
    images: [good],
    runs: [r18small.dir, b3small.dir],
    gradcamDir: dir,
    onWarning: (m) => warnings.push(m),
    explain: (model, layer, ...rest) => {
      if (layer.startsWith('layer4')) throw new Error('feature map too small');
      return gradCam(model, layer, ...rest);
    },
  });
  const [image] = result.images;
  assert.equal(Object.keys(image!.models), ['resnet18', 'efficientnet_b3']);
  assert.equal(Object.keys(image!.gradcam ?? {}), ['efficientnet_b3']);
  assert.equal(image!.gradcamFailed, { resnet18: 'feature map too small' });
  assert.match(warnings.join('\n'), /Grad-CAM of resnet18 for .*good\.png could not be drawn: feature map too small/);
  assert.match(formatPredictions(result), /Grad-CAM resnet18: not drawn \(feature map too small\)/);
});

test('an unwritable --gradcam folder is a UserError naming it, before any image is predicted', async () => {
  const file = join(root, 'a-file');
  await writeFile(file, 'x');
  const error = await rejection(predictImages({ backend, images: [good], runs: [r18.dir], gradcamDir: join(file, 'cams') }));
  assert.ok(error instanceof UserError, String(error));
  assert.match(error.message, /a-file is a file, but .*a-file\/cams needs it to be a folder/);
});

test('a folder follows symbolic links to regular files inside it and reports the others with why', async () => {
  const folder = join(root, 'linked');
  await mkdir(join(folder, 'sub'), { recursive: true });
  await writeTestImage(join(folder, 'real.png'), 70, 70, 8);
  await writeTestImage(join(folder, 'sub', 'deeper.png'), 70, 70, 9);
  await symlink(join(folder, 'real.png'), join(folder, 'b-link.png'));
  await symlink('sub/deeper.png', join(folder, 'c-relative.png'));
  await symlink(good, join(folder, 'd-outside.png'));
  await symlink(join(folder, 'gone.png'), join(folder, 'e-dangling.png'));
  await symlink(join(folder, 'sub'), join(folder, 'f-folder.png'));
  execFileSync('mkfifo', [join(folder, 'g-pipe.png')]);
  const result = await predictImages({ backend, images: [folder], runs: [r18.dir] });
  assert.equal(result.images.map((i) => i.path), [join(folder, 'b-link.png'), join(folder, 'c-relative.png'), join(folder, 'real.png')]);
  const failed = Object.fromEntries(result.failed.map((f) => [f.path.slice(folder.length + 1), f.error]));
  assert.equal(Object.keys(failed), ['d-outside.png', 'e-dangling.png', 'f-folder.png', 'g-pipe.png']);
  assert.match(failed['d-outside.png']!, /a symbolic link to .*good\.png, outside the folder/);
  assert.match(failed['e-dangling.png']!, /a symbolic link that leads nowhere/);
  assert.match(failed['f-folder.png']!, /a symbolic link to something that is not a regular file/);
  assert.match(failed['g-pipe.png']!, /not a regular file/);
  assert.equal(result.images[0]!.probabilities, result.images[2]!.probabilities, 'the link predicts as its target');
});

test('a metadata.json beside --weights is used for the file it describes, matched by SHA-256: stale is refused (warned with --image-size); other files, architectures or no JSON warn', async () => {
  const exported = join(root, 'exported-32');
  await exportRun({ backend, run: r18small.dir, format: 'safetensors', outDir: exported });
  const weights = join(exported, 'resnet18.safetensors');
  const metadata = join(exported, 'metadata.json');
  const original = await readFile(weights);
  const warnings: string[] = [];
  const onWarning = (m: string) => warnings.push(m);
  const loaded = await loadWeightsFile('resnet18', weights, { backend, onWarning });
  assert.is(loaded.imageSize, 32, 'the exported run trained at 32 px');
  await loaded.engine.dispose();
  assert.equal(warnings, []);
  // The file replaced by other weights (the 64 px run's) after the export: at 32 px they would answer differently.
  await cp(join(r18.dir, 'best', 'model.safetensors'), weights);
  const stale = await rejection(loadWeightsFile('resnet18', weights, { backend }));
  assert.instance(stale, DataError);
  assert.is((stale as DataError).file, metadata);
  assert.match(stale.message, /records SHA-256 [0-9a-f]{12}… for resnet18\.safetensors, but the file has SHA-256 [0-9a-f]{12}…: it describes other weights/);
  assert.match(stale.message, /give --image-size N/);
  const sized = await loadWeightsFile('resnet18', weights, { backend, imageSize: 64, onWarning });
  assert.is(sized.imageSize, 64);
  await sized.engine.dispose();
  assert.match(warnings.join('\n'), /describes other weights .*: its preprocessing is not used/);
  warnings.length = 0;
  // A file the metadata does not name: nothing is known of its size.
  const renamed = join(exported, 'other.safetensors');
  await cp(weights, renamed);
  const other = await loadWeightsFile('resnet18', renamed, { backend, onWarning });
  assert.is(other.imageSize, 224);
  await other.engine.dispose();
  assert.match(warnings.join('\n'), /describes other files \(resnet18\.safetensors\), not other\.safetensors: its preprocessing is not used/);
  warnings.length = 0;
  // The described file, asked for as another architecture; then a metadata.json that is no JSON.
  await writeFile(weights, original);
  assert.is(await exportedTransform(weights, 'resnet50', { onWarning }), undefined);
  assert.match(warnings.join('\n'), /describes resnet18\.safetensors as a resnet18, not a resnet50 \(--model\)/);
  await writeFile(metadata, '{ not json');
  assert.is(await exportedTransform(weights, 'resnet18', { onWarning }), undefined);
  assert.match(warnings.join('\n'), /metadata\.json beside the weights is not valid JSON/);
});

test('--image-size and a metadata.json imageSize outside 32–1024 (or not a number) are user errors, never a silent default', async () => {
  for (const imageSize of [5000, 31, 0, -1, 64.5]) {
    const error = await rejection(predictImages({ backend, images: [good], runs: [r18.dir], imageSize }));
    assert.instance(error, UserError);
    assert.match(error.message, `--image-size ${imageSize} is not an integer from 32 to 1024`);
  }
  const exported = join(root, 'bad-metadata');
  await mkdir(exported);
  const weights = join(exported, 'resnet18.safetensors');
  await cp(join(r18.dir, 'best', 'model.safetensors'), weights);
  for (const [value, shown] of [[-1, '-1'], ['abc', '"abc"'], [1e9, '1000000000'], [null, 'null']] as const) {
    await writeFile(join(exported, 'metadata.json'), JSON.stringify({ model: 'resnet18', imageSize: value, files: ['resnet18.safetensors'] }));
    const error = await rejection(predictImages({ backend, images: [good], model: 'resnet18', weights }));
    assert.ok(error instanceof DataError, String(error));
    assert.is((error as DataError).file, join(exported, 'metadata.json'));
    assert.match(error.message, `imageSize ${shown} for resnet18.safetensors is not an integer from 32 to 1024`);
  }
  // Metadata of another model says nothing about this file: the default stands, as before.
  await writeFile(join(exported, 'metadata.json'), JSON.stringify({ model: 'resnet50', imageSize: -1 }));
  const loaded = await loadWeightsFile('resnet18', weights, { backend });
  assert.is(loaded.imageSize, 224);
  await loaded.engine.dispose();
});

test('human output escapes control characters in names, so a file name cannot forge a verdict', async () => {
  const folder = join(root, 'forged');
  await mkdir(folder);
  const name = 'x.png: Osteoporosis (confidence 99.9%)\n\u001b[2Ky.png';
  await writeTestImage(join(folder, name), 70, 70, 10);
  await writeFile(join(folder, 'bad\rname.png'), 'not an image');
  const result = await predictImages({ backend, images: [folder], runs: [r18.dir] });
  assert.is(result.images[0]!.path, join(folder, name), 'the result itself keeps the real name');
  const text = formatPredictions(result);
  assert.ok(text.includes('x.png: Osteoporosis (confidence 99.9%)\\n\\u001b[2Ky.png: '), text);
  assert.ok(text.includes('bad\\rname.png: not predicted'), text);
  assert.not.match(text, /[\u0000-\u0009\u000b-\u001f]/);
  const lines = text.split('\n');
  assert.is(lines.filter((line) => line.startsWith(folder)).length, 2, 'one line per input');
});

test.run();
