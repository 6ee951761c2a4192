/**
 * The page's preprocessing (src/eval/web/preprocess.ts) against `osteo predict`'s (src/data/image.ts,
 * sharp/libvips): the same size arithmetic exactly, the same resampled pixels (bit-exact but for
 * one libvips rounding quirk), and the page's Grad-CAM colours equal to the PNG overlay's.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as image from '../../src/data/image.js';
import { heatColor } from '../../src/eval/gradcam.js';
import { heatColor as pageHeatColor } from '../../src/eval/web/heat.js';
import * as page from '../../src/eval/web/preprocess.js';
import { writeTestImage } from './fixtures.js';

/** A PNG decodes to bytes (the page's decoder gives bytes too). */
function bytesOf(decoded: image.RgbImage): page.RgbPixels {
  assert.instance(decoded.data, Uint8Array);
  return { ...decoded, data: decoded.data as Uint8Array };
}

let root = '';
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'osteo-web-pre-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('size arithmetic: resized shape, Python rounding and crop offsets are the data room’s', () => {
  for (const [w, h, s] of [[97, 83, 73], [83, 97, 73], [300, 200, 256], [255, 1000, 256], [7, 5, 3], [2660, 1201, 239]] as const) {
    assert.equal(page.resizedShape(w, h, s), image.resizedShape(w, h, s), `${w}×${h} → ${s}`);
  }
  for (const x of [0.5, 1.5, 2.5, -0.5, 3.49, 4.5000001, 9 / 2]) assert.is(page.roundHalfEven(x), image.roundHalfEven(x), String(x));
  for (const [w, h, c] of [[73, 97, 64], [256, 265, 224], [239, 300, 224], [10, 10, 10]] as const) assert.equal(page.centerCropBox(w, h, c), image.centerCropBox(w, h, c));
  assert.throws(() => page.centerCropBox(10, 9, 10), /smaller than the 10px crop/);
});

/** Per-channel differences between the page's resize and sharp's, in grey levels. */
async function resizeDifference(width: number, height: number, shorter: number): Promise<{ max: number; mean: number }> {
  const file = join(root, `img-${width}x${height}.png`);
  await writeTestImage(file, width, height, 5);
  const decoded = bytesOf(await image.decodeRgb(file));
  const reference = await image.resizeShorter(decoded, shorter);
  const target = page.resizedShape(width, height, shorter);
  const ours = page.resizeBilinear(decoded, target.width, target.height);
  assert.is(ours.data.length, reference.data.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < ours.data.length; i++) {
    const d = Math.abs(ours.data[i]! - reference.data[i]!);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / ours.data.length };
}

test('resize: bit-exact with sharp on upscales and on downscales whose box pre-shrink is 1, 2 or 4', async () => {
  // Pre-shrink factors floor(scale / 2): 1200×900 → 256 none, 2660×1200 → 256 by 2, 900×700 → 80 by 4.
  for (const [w, h, s] of [[97, 83, 73], [83, 97, 73], [50, 61, 73], [300, 200, 256], [128, 256, 256], [100, 100, 73], [1200, 900, 256], [2660, 1200, 256], [900, 700, 80]] as const) {
    const { max, mean } = await resizeDifference(w, h, s);
    console.log(`resize ${w}×${h} → shorter ${s}: max ${max}, mean ${mean.toFixed(3)} grey levels`);
    assert.is(max, 0, `${w}×${h} → ${s}: max difference ${max}`);
  }
});

test('resize: a box pre-shrink of 3 (downscale 6–8×) stays within 2 grey levels of sharp, mean < 1', async () => {
  const { max, mean } = await resizeDifference(640, 480, 64);
  console.log(`resize 640×480 → shorter 64: max ${max}, mean ${mean.toFixed(3)} grey levels`);
  assert.ok(max <= 2 && mean < 1, `max ${max}, mean ${mean}`);
});

test('preprocessPixels equals preprocessForModel (resize, crop, normalize) to float rounding', async () => {
  const transform = { resize: 73, crop: 64, mean: [0.485, 0.456, 0.406] as const, std: [0.229, 0.224, 0.225] as const };
  for (const [w, h] of [[73, 80], [97, 83], [61, 50], [300, 310]] as const) {
    const file = join(root, `pre-${w}x${h}.png`);
    await writeTestImage(file, w, h, 8);
    const reference = await image.preprocessForModel(file, transform);
    const ours = page.preprocessPixels(bytesOf(await image.decodeRgb(file)), transform);
    assert.is(ours.length, 64 * 64 * 3);
    let max = 0;
    for (let i = 0; i < ours.length; i++) max = Math.max(max, Math.abs(ours[i]! - reference[i]!));
    assert.ok(max <= 1e-6, `${w}×${h}: max |Δ| ${max}`);
  }
});

test('rgbaToRgb drops alpha, as sharp’s removeAlpha', () => {
  const rgba = new Uint8ClampedArray([1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(Array.from(page.rgbaToRgb(rgba, 2, 1).data), [1, 2, 3, 5, 6, 7]);
});

test('the Grad-CAM colour ramp (one function for the page and the PNG overlays): its stops, linear between them, clamped outside [0, 1]', () => {
  assert.is(pageHeatColor, heatColor, 'the overlay and the page share one ramp');
  assert.equal(heatColor(0), [48, 18, 59]);
  assert.equal(heatColor(0.5), [60, 220, 120]);
  assert.equal(heatColor(1), [180, 20, 10]);
  assert.equal(heatColor(0.125), [44, 79, 147]); // halfway between the first two stops, rounded
  assert.equal(heatColor(-0.1), heatColor(0));
  assert.equal(heatColor(1.1), heatColor(1));
});

test.run();
