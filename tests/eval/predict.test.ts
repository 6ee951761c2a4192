import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { UserError } from '../../src/util/index.js';
import { formatPredictions, predictImages, researchDisclaimer } from '../../src/eval/predict.js';
import { writeRunFixture, writeTestImage, type RunFixture } from './fixtures.js';

/** The backend the tests run on, as a command passes it down. */
let backend: BackendHandle;

let root = '';
let r18: RunFixture;
let b3: RunFixture;
let images: string[] = [];

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'osteo-predict-'));
  r18 = await writeRunFixture(join(root, 'r18'), 'resnet18', { imageSize: 64, seed: 21 });
  b3 = await writeRunFixture(join(root, 'b3'), 'efficientnet_b3', { imageSize: 64, seed: 22 });
  images = [join(root, 'a.png'), join(root, 'sub-b.png')];
  await writeTestImage(images[0]!, 90, 120, 3);
  await writeTestImage(images[1]!, 100, 80, 4);
});

test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('the ensemble is the mean of the members, prediction its argmax, confidence its maximum', async () => {
  const before = tf.memory().numTensors;
  const result = await predictImages({ backend, images, runs: [r18.dir, b3.dir] });
  assert.is(tf.memory().numTensors, before, 'models and intermediates are released');
  assert.is(result.images.length, 2);
  for (const image of result.images) {
    const members = Object.values(image.models);
    assert.equal(Object.keys(image.models), ['resnet18', 'efficientnet_b3']);
    for (const m of members) assert.ok(Math.abs(m.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-5);
    image.probabilities.forEach((p, c) => assert.ok(Math.abs(p - (members[0]!.probabilities[c]! + members[1]!.probabilities[c]!) / 2) < 1e-7));
    const best = image.probabilities.indexOf(Math.max(...image.probabilities));
    assert.is(image.prediction, ['Normal', 'Osteopenia', 'Osteoporosis'][best]);
    assert.is(image.confidence, image.probabilities[best]);
  }
  // The same model through --model/--weights gives the same numbers as through its run.
  const single = await predictImages({ backend, images: [images[0]!], model: 'resnet18', weights: join(r18.dir, 'best', 'model.safetensors'), imageSize: 64 });
  assert.equal(single.images[0]!.probabilities, result.images[0]!.models['resnet18']!.probabilities);
});

test('flip TTA averages the image with its mirror', async () => {
  // 74×73 needs no resize (shorter side already 73) and crops 5 px from left and right alike, so
  // the mirrored file's crop is exactly the mirror of the original's crop.
  const original = join(root, 'tta.png');
  const mirrored = join(root, 'tta-mirror.png');
  await writeTestImage(original, 74, 73, 5);
  await sharp(original).flop().toFile(mirrored);
  const plain = await predictImages({ backend, images: [original, mirrored], runs: [r18.dir] });
  const tta = await predictImages({ backend, images: [original], runs: [r18.dir], tta: true });
  assert.ok(Math.abs(plain.images[0]!.probabilities[0]! - plain.images[1]!.probabilities[0]!) > 1e-4, 'the mirror is a different input');
  const [a, b] = plain.images.map((i) => i.probabilities);
  tta.images[0]!.probabilities.forEach((p, c) => assert.ok(Math.abs(p - (a![c]! + b![c]!) / 2) < 1e-5, `class ${c}`));
});

test('Grad-CAM: one overlay per image and model, over the whole image (at least 256 px), not blank', async () => {
  const dir = join(root, 'cams');
  const before = tf.memory().numTensors;
  const result = await predictImages({ backend, images, runs: [r18.dir, b3.dir], gradcamDir: dir });
  assert.is(tf.memory().numTensors, before);
  const files = result.images.flatMap((i) => Object.values(i.gradcam ?? {}));
  assert.equal(files.sort(), [join(dir, 'a.efficientnet_b3.gradcam.png'), join(dir, 'a.resnet18.gradcam.png'), join(dir, 'sub-b.efficientnet_b3.gradcam.png'), join(dir, 'sub-b.resnet18.gradcam.png')]);
  for (const file of files) {
    const stats = await sharp(file).stats();
    const meta = await sharp(file).metadata();
    // a.png is 90×120 and sub-b.png 100×80: enlarged so the shorter side is 256, aspect kept.
    assert.equal([meta.width, meta.height], file.includes('sub-b') ? [320, 256] : [256, 341]);
    assert.ok(stats.channels.some((c) => c.stdev > 10), `${file} has contrast`);
  }
  assert.ok(result.images.every((i) => Object.keys(i.gradcamRegion ?? {}).length === 2), 'each overlay says where the model looked');
  assert.match(formatPredictions(result), /outlined: the \d+×\d+ region at \d+,\d+ that the model saw/);
});

test('human output: verdict, per-model breakdown and the research-use disclaimer', async () => {
  const result = await predictImages({ backend, images: [images[0]!], runs: [r18.dir, b3.dir] });
  const text = formatPredictions(result);
  assert.match(text, new RegExp(`a\\.png: (Normal|Osteopenia|Osteoporosis) \\(confidence \\d+\\.\\d%, soft vote of 2 models\\)`.replace(', soft', ' — soft')));
  assert.match(text, /\n  resnet18 +(Normal|Osteopenia|Osteoporosis) +\d+\.\d% +\[Normal \d+\.\d%, Osteopenia \d+\.\d%, Osteoporosis \d+\.\d%\]/);
  assert.match(text, /efficientnet_b3/);
  assert.ok(text.endsWith(researchDisclaimer));
});

test('option errors are UserErrors that say what to give', async () => {
  await predictImages({ backend, images }).then(
    () => assert.unreachable(),
    (e: unknown) => assert.ok(e instanceof UserError && /--run DIR/.test(e.message)),
  );
  await predictImages({ backend, images, runs: [r18.dir], model: 'resnet18', weights: 'x.pth' }).then(
    () => assert.unreachable(),
    (e: unknown) => assert.ok(e instanceof UserError && /not both/.test(e.message)),
  );
  await predictImages({ backend, images, model: 'resnet18' }).then(
    () => assert.unreachable(),
    (e: unknown) => assert.ok(e instanceof UserError),
  );
});

test.run();
