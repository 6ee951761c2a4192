import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import sharp from 'sharp';
import { gradCam, gradCamOverlayPng, upsampleMap } from '../../src/eval/gradcam.js';
import { layersModelFeatures, splitAtLayer } from '../../src/engine/index.js';
import { imagenetNormalization, type RgbImage } from '../../src/data/image.js';

const size = 32;

/**
 * A hand-weighted network: channel 0 of the conv detects red, channel 1 green; class 0's logit is
 * the mean red response, class 1's is green minus red. Grad-CAM must find the red patch for class 0
 * and the green one for class 1 (where red counts against it).
 */
function plantedModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [size, size, 3] });
  const conv = tfl.layers.conv2d({ filters: 2, kernelSize: 3, strides: 2, padding: 'same', useBias: false, activation: 'relu', name: 'features' });
  const pool = tfl.layers.globalAveragePooling2d({ name: 'pool' });
  const dense = tfl.layers.dense({ units: 2, useBias: false, name: 'classifier' });
  const output = dense.apply(pool.apply(conv.apply(input))) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: output });
  const kernel = new Float32Array(3 * 3 * 3 * 2);
  for (let k = 0; k < 9; k++) {
    kernel[k * 6 + 0 * 2 + 0] = 1 / 9; // red → channel 0
    kernel[k * 6 + 1 * 2 + 1] = 1 / 9; // green → channel 1
  }
  conv.setWeights([tf.tensor4d(kernel, [3, 3, 3, 2])]);
  dense.setWeights([tf.tensor2d([1, -1, 0, 1], [2, 2])]);
  return model;
}

/** Red patch top-left, green patch bottom-right, black elsewhere; raw [0,1] values (the test model needs no normalization). */
function plantedImage(): Float32Array {
  const image = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      if (y >= 3 && y < 11 && x >= 3 && x < 11) image[(y * size + x) * 3] = 1;
      if (y >= 21 && y < 29 && x >= 21 && x < 29) image[(y * size + x) * 3 + 1] = 1;
    }
  return image;
}

function peak(map: Float32Array, width: number): { x: number; y: number } {
  let best = 0;
  for (let i = 1; i < map.length; i++) if (map[i]! > map[best]!) best = i;
  return { x: best % width, y: Math.floor(best / width) };
}

setupOnce(test, async () => {
  await tf.setBackend('cpu');
});

test('the cut is the named feature map and the head is the chain after it; other layers are refused', () => {
  const model = plantedModel();
  const split = splitAtLayer(model, 'features');
  assert.is(split.layerName, 'features');
  assert.equal(
    split.head.map((l: tfl.layers.Layer) => l.name),
    ['pool', 'classifier'],
  );
  assert.throws(() => splitAtLayer(model, 'layer4'), /has no layer 'layer4'/);
  assert.throws(() => splitAtLayer(model, 'pool'), /'pool' .* is not a feature map/);
  model.dispose();
});

test('Grad-CAM highlights the planted feature of the requested class, and only it', async () => {
  const model = plantedModel();
  const image = plantedImage();
  const before = tf.memory().numTensors;
  const red = await gradCam(layersModelFeatures(model), 'features', image, 0);
  const green = await gradCam(layersModelFeatures(model), 'features', image, 1);
  assert.is(tf.memory().numTensors, before, 'no tensors leak');
  assert.is(red.width, 16);
  assert.is(Math.max(...red.map), 1, 'scaled to a maximum of 1');

  const redPeak = peak(await upsampleMap(red, size), size);
  assert.ok(redPeak.x >= 2 && redPeak.x < 12 && redPeak.y >= 2 && redPeak.y < 12, `class 0 peaks in the red patch, at ${JSON.stringify(redPeak)}`);
  const greenPeak = peak(await upsampleMap(green, size), size);
  assert.ok(greenPeak.x >= 20 && greenPeak.y >= 20, `class 1 peaks in the green patch, at ${JSON.stringify(greenPeak)}`);
  // Class 1's logit falls with red, so the red patch gets nothing (the ReLU drops negative evidence).
  assert.is(green.map[5 * 16 + 3], 0);
  assert.ok(red.map[12 * 16 + 12]! === 0, 'the green patch does not support class 0');
  model.dispose();
});

test('a class with no supporting evidence gives an all-zero map, not NaN', async () => {
  const model = plantedModel();
  const black = new Float32Array(size * size * 3);
  const cam = await gradCam(layersModelFeatures(model), 'features', black, 0);
  assert.ok(cam.map.every((v) => v === 0));
  model.dispose();
});

/** The planted image as the decoder gives it: 8-bit RGB. */
function plantedRgb(width = size, offset = 0): RgbImage {
  const raw = plantedImage();
  const data = new Uint8Array(width * size * 3);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) for (let c = 0; c < 3; c++) data[(y * width + x + offset) * 3 + c] = Math.round(raw[(y * size + x) * 3 + c]! * 255);
  return { data, width, height: size };
}

test('the overlay covers the whole image at >= 256 px, not blank, and hot where the map is', async () => {
  const model = plantedModel();
  // Normalize like the real pipeline so the de-normalized background is the planted image.
  const raw = plantedImage();
  const { mean, std } = imagenetNormalization;
  const image = raw.map((v, i) => (v - mean[i % 3]!) / std[i % 3]!);
  const cam = await gradCam(layersModelFeatures(model), 'features', image, 0);
  const overlay = await gradCamOverlayPng(plantedRgb(), { resize: size, crop: size, mean, std }, cam);
  const { data, info } = await sharp(overlay.png).raw().toBuffer({ resolveWithObject: true });
  // 32 px enlarged 8× so the shorter side is 256; the crop is the whole image.
  assert.equal([info.width, info.height], [256, 256]);
  assert.equal(overlay.region, { left: 0, top: 0, width: 256, height: 256 });
  const pixel = (x: number, y: number) => [...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3)];
  let min = 255;
  let max = 0;
  for (const v of data) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  assert.ok(max - min > 100, 'not blank');
  const hot = pixel(7 * 8, 7 * 8);
  const cold = pixel(16 * 8, 3 * 8);
  assert.ok(hot[0]! > hot[2]!, `hot region is red-dominant: ${hot}`);
  assert.ok(cold[2]! >= cold[0]!, `cold region is not: ${cold}`);
  model.dispose();
});

test('on a wider image the map lies on the centre crop the model saw, outlined; the cut-off sides are dimmed, not coloured', async () => {
  const model = plantedModel();
  const { mean, std } = imagenetNormalization;
  // 48×32, resize 32 (no-op) → centre crop 32 at x = 8: the planted image sits exactly there.
  const wide = plantedRgb(48, 8);
  for (let y = 0; y < size; y++) for (const x of [2, 45]) for (let c = 0; c < 3; c++) wide.data[(y * 48 + x) * 3 + c] = 200;
  const image = plantedImage().map((v, i) => (v - mean[i % 3]!) / std[i % 3]!);
  const cam = await gradCam(layersModelFeatures(model), 'features', image, 0);
  const overlay = await gradCamOverlayPng(wide, { resize: size, crop: size, mean, std }, cam);
  assert.equal([overlay.width, overlay.height], [384, 256]);
  assert.equal(overlay.region, { left: 64, top: 0, width: 256, height: 256 });
  const { data, info } = await sharp(overlay.png).raw().toBuffer({ resolveWithObject: true });
  const pixel = (x: number, y: number) => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)];
  const hot = pixel(64 + 7 * 8, 7 * 8);
  assert.ok(hot[0]! > hot[2]! + 50, `the red patch, shifted by the crop offset, is hot: ${hot}`);
  const outside = pixel(2 * 8 + 4, 100);
  assert.ok(outside[0] === outside[1] && outside[1] === outside[2] && outside[0]! > 40 && outside[0]! < 200, `outside the crop: the image, grey and dimmed: ${outside}`);
  assert.equal(pixel(64, 100), [255, 255, 255], 'the crop is outlined');
  model.dispose();
});

test.run();
