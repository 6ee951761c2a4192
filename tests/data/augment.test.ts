import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { z } from 'zod';
import { parseAugmentConfig, loadAugmentConfig } from '../../src/config/index.js';
import { createRng } from '../../src/util/index.js';
import {
  addGaussianNoise,
  adjustBrightness,
  adjustContrast,
  clahe,
  eraseInto,
  mixupBatch,
  mixupPartners,
  normalizeInto,
  randomErasingBox,
  randomResizedCropBox,
  resizedCrop,
  rotate,
  type FloatImage,
} from '../../src/data/augment-pixels.js';
import { applyAugmentation, augmentOps, createAugmentation, cropOp, defineOp, identityParams, rotationOp, sampleAugmentation, type AugmentConfig } from '../../src/data/augment.js';
import { centerCrop, imagenetNormalization, normalize, type RgbImage } from '../../src/data/image.js';
import { referenceTest, runPython } from '../fixtures/torch/python.js';

function testImage(width: number, height: number, seed = 1): RgbImage {
  const rng = createRng(seed);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(rng.next() * 256);
  return { data, width, height };
}

function toFloat(image: RgbImage): FloatImage {
  return { data: Float32Array.from(image.data, (v) => v / 255), width: image.width, height: image.height };
}

/** Run torchvision on the same inputs: the independent reference for the geometric and colour ops. */
function torchvisionReference(cases: unknown[]): number[][] {
  const code = String.raw`
import json, sys
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode
out = []
for case in json.load(sys.stdin):
    w, h = case["width"], case["height"]
    img = torch.tensor(case["data"], dtype=torch.float64).reshape(h, w, 3).permute(2, 0, 1)
    if case["op"] == "resized_crop":
        b = case["box"]
        r = TF.resized_crop(img, b["top"], b["left"], b["height"], b["width"], [case["size"], case["size"]], InterpolationMode.BILINEAR, antialias=False)
        if case["flip"]:
            r = TF.hflip(r)
    elif case["op"] == "rotate":
        r = TF.rotate(img, case["angle"], InterpolationMode.BILINEAR)
    elif case["op"] == "brightness":
        r = TF.adjust_brightness(img, case["factor"])
    elif case["op"] == "contrast":
        r = TF.adjust_contrast(img, case["factor"])
    out.append(r.permute(1, 2, 0).reshape(-1).tolist())
print(json.dumps(out))
`;
  return JSON.parse(runPython({ code }, [], { input: JSON.stringify(cases) })) as number[][];
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.is(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

referenceTest(test, 'crop/resize/flip, rotation, brightness and contrast match torchvision on tensors', () => {
  const image = testImage(20, 16);
  const float = toFloat(image);
  const plain = Array.from(float.data);
  const box = { top: 2, left: 3, width: 13, height: 11 };
  const cases = [
    { op: 'resized_crop', width: 20, height: 16, data: Array.from(image.data, (v) => v / 255), box, size: 8, flip: false },
    { op: 'resized_crop', width: 20, height: 16, data: Array.from(image.data, (v) => v / 255), box, size: 24, flip: true },
    { op: 'rotate', width: 20, height: 16, data: plain, angle: 12.5 },
    { op: 'rotate', width: 20, height: 16, data: plain, angle: -33 },
    { op: 'brightness', width: 20, height: 16, data: plain, factor: 1.3 },
    { op: 'contrast', width: 20, height: 16, data: plain, factor: 0.6 },
  ];
  const reference = torchvisionReference(cases);
  const ours = [
    resizedCrop(image, box, 8).data,
    resizedCrop(image, box, 24, true).data,
    rotate(toFloat(image), 12.5).data,
    rotate(toFloat(image), -33).data,
    adjustBrightness(toFloat(image), 1.3).data,
    adjustContrast(toFloat(image), 0.6).data,
  ];
  ours.forEach((data, i) => {
    const diff = maxAbsDiff(data, reference[i]!);
    assert.ok(diff < 1e-5, `${cases[i]!.op} #${i}: max |Δ| = ${diff}`);
  });
});

test('an exact centre crop with no other op is the eval transform, bit for bit', () => {
  const image = testImage(30, 26);
  const config = parseAugmentConfig({ crop: { type: 'center' } });
  const params = sampleAugmentation(config, createRng(3), 30, 26, 24);
  const out = new Float32Array(24 * 24 * 3);
  applyAugmentation(image, params, 24, imagenetNormalization, out, 0);
  assert.equal(Array.from(out), Array.from(normalize(centerCrop(image, 24))));
  // "No augmentation" is the same: every op but the crop is the identity on the empty config.
  const identity = identityParams(30, 26, 24);
  for (const op of augmentOps) if (op !== cropOp) assert.ok(op.isIdentity(identity[op.key] as never), `${op.key} is the identity`);
  const none = new Float32Array(24 * 24 * 3);
  applyAugmentation(image, identity, 24, imagenetNormalization, none, 0);
  assert.equal(Array.from(none), Array.from(out));
});

test('same seed → same parameters and pixels; different seeds differ', async () => {
  const config = await loadAugmentConfig('strong');
  const image = testImage(40, 36);
  const run = (seed: number) => {
    const params = sampleAugmentation(config, createRng(seed), 40, 36, 32);
    const out = new Float32Array(32 * 32 * 3);
    applyAugmentation(image, params, 32, imagenetNormalization, out, 0);
    return { params, out };
  };
  const a = run(5);
  const b = run(5);
  assert.equal(a.params, b.params);
  assert.ok(Buffer.from(a.out.buffer).equals(Buffer.from(b.out.buffer)));
  let differing = 0;
  for (let seed = 6; seed < 12; seed++) if (!Buffer.from(run(seed).out.buffer).equals(Buffer.from(a.out.buffer))) differing++;
  assert.is(differing, 6);
});

test('parameter draws respect the config: probabilities, ranges, crop boxes', () => {
  const config = parseAugmentConfig({
    crop: { type: 'randomResized', scale: [0.3, 0.9], ratio: [0.75, 1.333] },
    hflip: { p: 0.5 },
    rotation: { p: 1, degrees: 10 },
    colorJitter: { brightness: 0.2, contrast: 0.2 },
  });
  const rng = createRng(7);
  let flips = 0;
  const n = 4000;
  for (let i = 0; i < n; i++) {
    const p = sampleAugmentation(config, rng, 300, 256, 224);
    if (p.hflip) flips++;
    assert.ok(Math.abs(p.rotation) <= 10);
    const { brightness, contrast } = p.colorJitter;
    assert.ok(brightness >= 0.8 && brightness <= 1.2 && contrast >= 0.8 && contrast <= 1.2);
    const { crop } = p;
    assert.ok(crop.left >= 0 && crop.top >= 0 && crop.left + crop.width <= 300 && crop.top + crop.height <= 256);
    const area = (crop.width * crop.height) / (300 * 256);
    assert.ok(area > 0.28 && area < 0.92, `area ${area}`);
  }
  assert.ok(Math.abs(flips / n - 0.5) < 0.03, `flip rate ${flips / n}`);
  // Impossible requests fall back to a centred box of the clamped aspect, as torchvision does.
  const fallback = randomResizedCropBox(100, 10, [0.9, 1], [1, 1], createRng(1));
  assert.equal(fallback, { top: 0, left: 45, width: 10, height: 10 });
  assert.is(randomErasingBox(10, [0.99, 1], [5, 6], 0, createRng(1)), null);
});

test('CLAHE: clipping and redistribution by hand, one tile without clipping is histogram equalisation', () => {
  const gray = (values: number[], width: number): RgbImage => {
    const data = new Uint8Array(values.length * 3);
    values.forEach((v, i) => data.fill(v, i * 3, i * 3 + 3));
    return { data, width, height: values.length / width };
  };
  // 16×16, one tile, clipLimit 2 → bins clip at 2·256/256 = 2. 200 pixels of 10 and 56 of 200 lose
  // 198 + 54 = 252 counts, which go one each to bins 0…251. CDF(10) = 11 + 2 = 13 → 13·255/256 → 13;
  // CDF(200) = 201 + 4 = 205 → 204.
  const clipped = clahe(gray([...Array(200).fill(10), ...Array(56).fill(200)], 16), 2, 1);
  assert.equal([clipped.data[0], clipped.data[200 * 3]], [13, 204]);
  // A limit above every bin: plain histogram equalisation, round(CDF(v) · 255 / N).
  const rng = createRng(8);
  const values = Array.from({ length: 20 * 12 }, () => Math.floor(rng.next() * rng.next() * 256));
  const equalised = clahe(gray(values, 20), 1000, 1);
  const cdf = (v: number) => values.filter((u) => u <= v).length;
  values.forEach((v, i) => assert.is(equalised.data[i * 3], Math.round((cdf(v) * 255) / values.length)));
  // A flat image stays flat; a dim textured one gains contrast.
  const flat = clahe(gray(Array(64 * 64).fill(90), 64), 3, 4);
  assert.ok(flat.data.every((v) => v === flat.data[0]));
  const dim = Array.from({ length: 64 * 64 }, (_, i) => 100 + ((i % 64) * 7 + Math.floor(i / 64) * 3) % 16);
  const std = (d: ArrayLike<number>, stride: number) => {
    let s = 0;
    let s2 = 0;
    let n = 0;
    for (let i = 0; i < d.length; i += stride, n++) {
      s += d[i]!;
      s2 += d[i]! ** 2;
    }
    return Math.sqrt(s2 / n - (s / n) ** 2);
  };
  assert.ok(std(clahe(gray(dim, 64), 3, 4).data, 3) > 1.5 * std(dim, 1));
});

test('mixup: images and targets are the same convex mix; targets sum to 1', () => {
  const images = Float32Array.from([1, 1, 2, 2, 10, 10]);
  const labels = Int32Array.from([0, 2, 1]);
  const targets = mixupBatch(images, labels, 3, 0.75, [2, 0, 1]);
  assert.equal(Array.from(images), [0.75 * 1 + 0.25 * 10, 0.75 * 1 + 0.25 * 10, 0.75 * 2 + 0.25 * 1, 0.75 * 2 + 0.25 * 1, 0.75 * 10 + 0.25 * 2, 0.75 * 10 + 0.25 * 2]);
  // Row i: λ on its own label, 1 − λ on the label of image perm(i) (labels 0, 2, 1 → perm labels 1, 0, 2).
  assert.equal(Array.from(targets), [0.75, 0.25, 0, 0.25, 0, 0.75, 0, 0.75, 0.25]);
});

test('gaussian noise: gray-level N(0, σ²), the same on all three channels; erasing fills its box', () => {
  const size = 128;
  const image: FloatImage = { data: new Float32Array(size * size * 3).fill(0.5), width: size, height: size };
  addGaussianNoise(image, 0.05, createRng(4));
  let sum = 0;
  let sumSquares = 0;
  for (let i = 0; i < image.data.length; i += 3) {
    assert.ok(image.data[i] === image.data[i + 1] && image.data[i] === image.data[i + 2]);
    sum += image.data[i]! - 0.5;
    sumSquares += (image.data[i]! - 0.5) ** 2;
  }
  const n = size * size;
  assert.ok(Math.abs(sum / n) < 0.002, `mean ${sum / n}`);
  assert.ok(Math.abs(Math.sqrt(sumSquares / n) - 0.05) < 0.0015, `σ ${Math.sqrt(sumSquares / n)}`);

  const out = new Float32Array(2 * 8 * 8 * 3).fill(1);
  eraseInto(out, 8 * 8 * 3, 8, { top: 2, left: 3, width: 4, height: 5, value: -2 });
  assert.ok(out.subarray(0, 192).every((v) => v === 1), 'the first image is untouched');
  const erased = out.subarray(192);
  for (let y = 0; y < 8; y++) {
    for (let x = 0; x < 8; x++) {
      const inside = y >= 2 && y < 7 && x >= 3 && x < 7;
      assert.is(erased[(y * 8 + x) * 3], inside ? -2 : 1);
    }
  }
  const rng = createRng(2);
  for (let i = 0; i < 500; i++) {
    const box = randomErasingBox(64, [0.02, 0.33], [0.3, 3.3], 0, rng);
    if (box === null) continue;
    const area = (box.width * box.height) / 64 ** 2;
    assert.ok(area > 0.01 && area < 0.36 && box.left + box.width <= 64 && box.top + box.height <= 64, JSON.stringify(box));
  }
});

test('mixup partners form a permutation without fixed points', () => {
  const rng = createRng(9);
  for (let n = 2; n < 40; n++) {
    const partners = mixupPartners(n, rng);
    assert.equal([...partners].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
    assert.ok(partners.every((p, i) => p !== i));
  }
  assert.equal(mixupPartners(1, rng), [0]);
});

/**
 * Pinned from the implementation before augmentation became a list of ops: a seed must keep giving the
 * batches it gave, so a change that reorders, adds or drops a random draw fails here. Hashes are the
 * first 16 hex digits of sha256 over the augmented Float32 pixels of a 40×36 film, 32 px crops, seeds 1–4.
 */
const pinnedConfigs: Record<string, { config: unknown; hashes: string[] }> = {
  strong: {
    config: {
      crop: { type: 'randomResized', scale: [0.6, 1], ratio: [0.8, 1.25] },
      hflip: { p: 0.5 },
      rotation: { p: 1, degrees: 15 },
      colorJitter: { p: 0.8, brightness: 0.3, contrast: 0.3 },
      clahe: { p: 0.5, clipLimit: 2, tileGridSize: 8 },
      gaussianNoise: { p: 0.3, sigma: [0.005, 0.03] },
      randomErasing: { p: 0.25, scale: [0.02, 0.15], ratio: [0.3, 3.3], value: 0 },
      mixup: { p: 0.5, alpha: 0.2 },
    },
    hashes: ['13d627d25a97f4cf', '711f05f9bba53e5e', '2e80cfd46920179c', '4b564db586fd254f'],
  },
  seed: {
    config: { crop: { type: 'center' }, hflip: { p: 0.5 }, rotation: { p: 1, degrees: 10 }, colorJitter: { p: 1, brightness: 0.2, contrast: 0.2 } },
    hashes: ['ed564f77e1b88606', '210de23c1675acc2', 'eacf56a894f3d421', 'edc6bfc0e908ef17'],
  },
  everything: {
    config: {
      crop: { type: 'random' },
      hflip: { p: 1 },
      rotation: { degrees: 20 },
      colorJitter: { brightness: 0.3, contrast: 0.3 },
      clahe: { clipLimit: 3, tileGridSize: 4 },
      gaussianNoise: { p: 1, sigma: [0.01, 0.05] },
      randomErasing: { p: 1, value: -1 },
    },
    hashes: ['056550fbe59fce9f', '8cea4c3942f4cb7f', '31e4b9b11e3f30ba', 'c582568569e0a178'],
  },
  // The fast path (exact crop, nothing recoloured) with the mirror fused into it.
  flipOnly: { config: { hflip: { p: 1 } }, hashes: Array(4).fill('5ed112c2248bdad8') },
  // Erasing's box is drawn after the noise seed, which is drawn even with noise off.
  erasingOnly: { config: { randomErasing: { p: 1 } }, hashes: ['06b63249922d0ee4', '7fba17cb36fd079d', '74c90be6b8fbbbab', '1f399c8dfb84982b'] },
  // One jitter factor drawn, the other not.
  brightnessOnly: { config: { crop: { type: 'random' }, colorJitter: { brightness: 0.2 } }, hashes: ['4ef45e0b20a1768a', '11280d917e7b9273', '7d7c603b1fab985b', '3bb1c1cfb1298310'] },
};

test('the random stream is pinned: the same seeds give the same parameters and pixels as before', () => {
  const augmentSeed = (config: AugmentConfig, seed: number) => {
    const params = sampleAugmentation(config, createRng(seed), 40, 36, 32);
    const out = new Float32Array(32 * 32 * 3);
    applyAugmentation(testImage(40, 36), params, 32, imagenetNormalization, out, 0);
    return { params, hash: createHash('sha256').update(Buffer.from(out.buffer)).digest('hex').slice(0, 16) };
  };
  for (const [name, { config, hashes }] of Object.entries(pinnedConfigs)) {
    const parsed = parseAugmentConfig(config, name);
    assert.equal([1, 2, 3, 4].map((seed) => augmentSeed(parsed, seed).hash), hashes, name);
  }
  const everything = parseAugmentConfig(pinnedConfigs['everything']!.config);
  assert.equal(augmentSeed(everything, 1).params, {
    clahe: { clipLimit: 3, tileGridSize: 4 },
    crop: { top: 3, left: 0, width: 32, height: 32 },
    hflip: true,
    rotation: -17.460505394265056,
    colorJitter: { brightness: 0.852265756810084, contrast: 1.117087630322203, contrastFirst: false },
    gaussianNoise: { sigma: 0.03145521831698716, seed: 857606240 },
    randomErasing: { top: 13, left: 4, width: 22, height: 15, value: -1 },
  });
  const strong = parseAugmentConfig(pinnedConfigs['strong']!.config);
  assert.equal(augmentSeed(strong, 2).params, {
    clahe: null,
    crop: { top: 0, left: 10, width: 30, height: 32 },
    hflip: true,
    rotation: -13.411850512493402,
    colorJitter: { brightness: 1.1868662093766034, contrast: 0.8159700361080467, contrastFirst: true },
    gaussianNoise: { sigma: 0, seed: 3382526845 },
    randomErasing: null,
  });
  assert.equal(augmentSeed(parseAugmentConfig({ randomErasing: { p: 1 } }), 1).params.randomErasing, { top: 13, left: 1, width: 8, height: 4, value: 0 });
});

test('an op is one list entry: its key joins the schema, its draw and pass run in list order, and it turns off the fast path', () => {
  // A float-stage op that inverts the gray level, recording what it was applied to.
  const seen: FloatImage[] = [];
  const invertOp = defineOp({
    key: 'invert',
    stage: 'float',
    schema: z.strictObject({ p: z.number().min(0).max(1) }).optional(),
    sample: (config, rng): boolean => config !== undefined && rng.next() < config.p,
    apply: (image, invert) => {
      seen.push(image);
      if (invert) for (let i = 0; i < image.data.length; i++) image.data[i] = 1 - image.data[i]!;
      return image;
    },
    isIdentity: (invert) => !invert,
  });
  const pipeline = createAugmentation([cropOp, rotationOp, invertOp]);
  assert.equal(Object.keys(pipeline.schema.shape), ['description', 'crop', 'rotation', 'invert', 'mixup']);
  assert.not.ok(pipeline.schema.safeParse({ invert: { p: 2 } }).success);
  assert.not.ok(pipeline.schema.safeParse({ hflip: { p: 1 } }).success, 'ops not in the list are unknown keys');

  const image = testImage(30, 26);
  const render = (config: unknown, seed: number) => {
    const parsed = pipeline.schema.parse(config);
    const params = pipeline.sample(parsed, createRng(seed), 30, 26, 24);
    const out = new Float32Array(24 * 24 * 3);
    pipeline.apply(image, params, 24, imagenetNormalization, out, 0);
    return { params, out: Array.from(out) };
  };
  // Drawn after the rotation, as listed: the rotation's draws are those of the built-in list.
  const drawn = render({ rotation: { degrees: 10 }, invert: { p: 1 } }, 4);
  assert.is(drawn.params.rotation, sampleAugmentation(parseAugmentConfig({ rotation: { degrees: 10 } }), createRng(4), 30, 26, 24).rotation);
  assert.is(drawn.params.invert, true);

  // Configured and drawn: it runs on the resampled float crop, so the bytes-to-batch fast path is off.
  seen.length = 0;
  const inverted = render({ invert: { p: 1 } }, 1);
  assert.is(seen.length, 1);
  const box = { top: 1, left: 3, width: 24, height: 24 };
  const expected = resizedCrop(image, box, 24);
  for (let i = 0; i < expected.data.length; i++) expected.data[i] = 1 - expected.data[i]!;
  const expectedOut = new Float32Array(24 * 24 * 3);
  normalizeInto(expected, imagenetNormalization, expectedOut, 0);
  assert.equal(inverted.out, Array.from(expectedOut));

  // Drawn as the identity: skipped, and the fast path gives the eval transform bit for bit.
  seen.length = 0;
  assert.equal(render({ invert: { p: 0 } }, 1).out, Array.from(normalize(centerCrop(image, 24))));
  assert.is(seen.length, 0);

  assert.throws(() => createAugmentation([cropOp, invertOp, invertOp]), /"invert" is listed twice/);
  assert.throws(() => createAugmentation([invertOp, cropOp]), /list ops in stage order/);
});

test.run();
