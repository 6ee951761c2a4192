/**
 * The DICOM reader against pydicom: every fixture (written by pydicom and dcmtk at test time, see
 * tests/fixtures/dicom/fixtures.ts) decodes to pydicom's pixel array after apply_modality_lut and
 * apply_voi_lut (MONOCHROME1 inverted after VOI), on [0, 1], within 1e-6 for the lossless syntaxes and
 * within the codec's error for the lossy ones; the bad inputs are refused with their reasons.
 */
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readImage, UnreadableImageError, type DicomWindow, type RgbImage } from '../../src/data/index.js';
import { writeDicom } from '../../src/data/dicom-write.js';
import { compressed, dicomFixtures, dicomTools, pydicomReference } from '../fixtures/dicom/fixtures.js';
import { pydicom, runPython } from '../fixtures/torch/python.js';
import { rejection } from '../helpers/refusal.js';
import { testWith } from '../helpers/requirements.js';
import { tempDir } from '../helpers/temp.js';

/** The largest difference between the seam's pixels (on [0, 1]) and a reference (gray or RGB). */
function maxDifference(pixels: RgbImage, values: number[], channels: number): number {
  assert.is(pixels.data.length, channels === 3 ? values.length : values.length * 3);
  let max = 0;
  for (let i = 0; i < values.length; i++) {
    const sample = channels === 3 ? pixels.data[i]! : pixels.data[i * 3]!;
    max = Math.max(max, Math.abs(sample / 255 - values[i]!));
    if (channels === 1) assert.ok(pixels.data[i * 3 + 1] === sample && pixels.data[i * 3 + 2] === sample, 'gray replicated to three channels');
  }
  return max;
}

async function decodes(name: string, window?: DicomWindow) {
  return readImage(join(dicomFixtures().dir, name), window === undefined ? {} : { dicomWindow: window });
}

testWith(dicomTools, test, 'uncompressed films (8/10/12/16-bit, signed, MONOCHROME1/2, slope ≠ 1 and < 0, window, modality and VOI LUT sequences, LINEAR_EXACT, SIGMOID, planar RGB) equal pydicom within 1e-6', async () => {
  const { dir, native } = dicomFixtures();
  for (const name of ['u12-modlut-window.dcm', 'u12-modlut.dcm', 'u12-linear-exact.dcm', 's12-mono1-sigmoid.dcm', 's12-voilut-signed.dcm', 'u10-voilut.dcm']) assert.ok(native.includes(name), name);
  for (const name of native) {
    const { pixels, facts } = await decodes(name);
    const reference = pydicomReference(join(dir, name));
    assert.equal([pixels.width, pixels.height], [reference.columns, reference.rows], name);
    const difference = maxDifference(pixels, reference.values, facts.channels);
    assert.ok(difference <= 1e-6, `${name}: ${difference}`);
  }
});

testWith(dicomTools, test, 'each LUT step changes the film: the Modality LUT Sequence is not a rescale, LINEAR_EXACT is not LINEAR, SIGMOID is not a ramp', async () => {
  const { dir } = dicomFixtures();
  const lut = await decodes('u12-modlut.dcm');
  assert.ok(maxDifference(lut.pixels, pydicomReference(join(dir, 'u12-mono2.dcm')).values, 1) > 0.05, 'the LUT curve reshapes the min/max-stretched film of the same stored values');
  // LINEAR_EXACT against C.11.2.1.2.1's LINEAR with the same centre and width: a half-level apart at most, but apart.
  const exact = await decodes('u12-linear-exact.dcm');
  const linear = await decodes('u12-linear-exact.dcm', { center: 1800.5, width: 1700 });
  const apart = maxDifference(exact.pixels, Array.from({ length: linear.pixels.data.length / 3 }, (_, i) => linear.pixels.data[3 * i]! / 255), 1);
  assert.ok(apart > 1e-6 && apart < 1 / 1000, `LINEAR_EXACT vs LINEAR: ${apart}`);
  // SIGMOID never reaches 0 or 1 and is smooth: no sample is clipped.
  const sigmoid = await decodes('s12-mono1-sigmoid.dcm');
  const levels = Array.from({ length: sigmoid.pixels.data.length / 3 }, (_, i) => sigmoid.pixels.data[3 * i]!);
  assert.ok(levels.every((v) => v > 0 && v < 255), 'a sigmoid clips nothing');
});

testWith(dicomTools, test, 'deep films stay floats (no 8-bit step); an 8-bit film whose levels are whole is bytes', async () => {
  const deep = await decodes('u12-mono2-window.dcm');
  assert.instance(deep.pixels.data, Float32Array);
  const fractional = Array.from(deep.pixels.data).filter((v) => Math.abs(v - Math.round(v)) > 1e-3).length;
  assert.ok(fractional > deep.pixels.data.length / 4, `${fractional} of ${deep.pixels.data.length} samples between 8-bit levels`);
  assert.is(deep.facts.bitDepth, 12);
  const byte = await decodes('u8-mono2.dcm');
  assert.instance(byte.pixels.data, Uint8Array);
});

testWith(dicomTools, test, 'each compressed syntax decodes: lossless ones to the source film within 1e-6, lossy within the codec error', async () => {
  const { dir } = dicomFixtures();
  // pydicom decodes RLE, deflate, big endian and JPEG baseline itself (its RLE handler, zlib, Pillow);
  // for the JPEG lossless, JPEG-LS and JPEG 2000 files (no decoder in Debian's pydicom) the lossless
  // reference is the uncompressed source the encoder was given.
  const selfDecoded = new Set(['rle.dcm', 'rle-signed.dcm', 'rle-rgb.dcm', 'rle-8bit.dcm', 'deflated.dcm', 'big-endian.dcm', 'jpeg-baseline.dcm']);
  for (const { name, from, lossy } of [...compressed, { name: 'jpeg2000.dcm', from: 'u12-mono2-window.dcm', lossy: false }]) {
    const { pixels, facts } = await decodes(name);
    const reference = pydicomReference(join(dir, selfDecoded.has(name) ? name : from));
    const difference = maxDifference(pixels, reference.values, facts.channels);
    // JPEG-LS near-lossless (NEAR = 2 of a 2600-wide window); JPEG baseline: another IDCT may differ by a level or two.
    const tolerance = !lossy ? 1e-6 : name === 'jpeg-ls-near.dcm' ? 2.5 / 2599 : 3 / 255;
    assert.ok(difference <= tolerance, `${name}: ${difference} > ${tolerance}`);
    if (name === 'jpeg-ls-near.dcm') assert.ok(difference > 0, 'near-lossless really is lossy (the check can see a difference)');
  }
});

testWith(dicomTools, test, 'the window choice: auto (file window, else min/max), file (else the stored range), C,W override — against pydicom', async () => {
  const { dir } = dicomFixtures();
  // No window in the file: auto is min/max (pydicomReference's fallback).
  const auto = await decodes('u12-mono2.dcm', 'auto');
  assert.ok(maxDifference(auto.pixels, pydicomReference(join(dir, 'u12-mono2.dcm')).values, 1) <= 1e-6);
  // file: the whole 12-bit range, a window of centre 2048 and width 4096 in C.11.2.1.2's terms.
  const file = await decodes('u12-mono2.dcm', 'file');
  const stored = pydicomReference(join(dir, 'u12-mono2.dcm'), '2048,4096');
  assert.ok(maxDifference(file.pixels, stored.values, 1) <= 1 / 4095 + 1e-6, 'the stored range');
  // An override replaces the file's own window (and its second window is never the first).
  const override = await decodes('s12-mono1-slope-window.dcm', { center: -300, width: 400 });
  assert.ok(maxDifference(override.pixels, pydicomReference(join(dir, 's12-mono1-slope-window.dcm'), '-300,400').values, 1) <= 1e-6);
  const own = await decodes('s12-mono1-slope-window.dcm');
  assert.ok(maxDifference(own.pixels, pydicomReference(join(dir, 's12-mono1-slope-window.dcm'), '-300,400').values, 1) > 0.05, 'the override changed the image');
});

testWith(dicomTools, test, 'bad inputs are per-file errors with their reasons: truncated, length ≠ rows×cols×bits, 0×0, huge, multi-frame, SR, DICOMDIR, a syntax without a decoder', async () => {
  const { dir } = dicomFixtures();
  const whole = await readFile(join(dir, 'u12-mono2-window.dcm'));
  await writeFile(join(dir, 'bad-truncated.dcm'), whole.subarray(0, whole.length - 500));
  await writeFile(join(dir, 'bad-truncated-header.dcm'), whole.subarray(0, 200));
  const rle = await readFile(join(dir, 'rle.dcm'));
  await writeFile(join(dir, 'bad-truncated-rle.dcm'), rle.subarray(0, rle.length - 400));
  const cases: [string, string, RegExp][] = [
    ['bad-truncated.dcm', 'truncated', /buffer overrun|the file ends after/],
    ['bad-truncated-header.dcm', 'truncated', /cannot parse the DICOM data set/],
    ['bad-truncated-rle.dcm', 'truncated', /cannot (parse the DICOM data set|decode image)/],
    ['bad-length.dcm', 'unreadable', /the pixel data is 1,920 bytes, but 40 rows × 48 columns × 1 samples × 16 bits need 3,840/],
    ['bad-zero.dcm', 'unreadable', /declares a 0×0 image/],
    ['bad-huge.dcm', 'too-large', /60000×60000 = 3,600,000,000 pixels, above the limit/],
    ['bad-multiframe.dcm', 'dicom-multiframe', /2 frames; osteo reads single-frame films/],
    ['bad-sr.dcm', 'dicom-no-pixels', /a structured report/],
    ['DICOMDIR', 'dicom-no-pixels', /a DICOMDIR/],
    ['bad-mpeg2.dcm', 'dicom-unsupported-syntax', /transfer syntax 1\.2\.840\.10008\.1\.2\.4\.100 \(MPEG2 Main Profile\) has no decoder/],
  ];
  for (const [name, kind, message] of cases) {
    const file = join(dir, name);
    const error = (await rejection(() => readImage(file), (e: Error) => e instanceof UnreadableImageError)) as UnreadableImageError;
    assert.is(error.kind, kind, `${name}: ${error.message}`);
    assert.ok(error.message.startsWith(`${file}: `), error.message);
    assert.match(error.message, message);
    assert.not.match(error.message, /Phantom|PID-0001|19500101/, 'no tag value in a message');
  }
});

testWith(dicomTools, test, 'the facts name the identifying attributes present, never their values', async () => {
  const { facts } = await decodes('u12-mono2-window.dcm');
  assert.equal(facts.identifyingTags, ['PatientName', 'PatientID', 'PatientBirthDate']);
  assert.not.match(JSON.stringify(facts), /Phantom|PID-0001|19500101/);
});

testWith(dicomTools, test, "osteo's own DICOM writer (the phantom's) gives files pydicom reads to the same pixels", async () => {
  const dir = await tempDir();
  try {
    const values = Uint16Array.from({ length: 30 * 20 }, (_, i) => (i * 97) % 4096);
    const variants = [
      { name: 'w-mono2.dcm', photometric: 'MONOCHROME2' as const, window: { center: 1500, width: 2000 } },
      { name: 'w-mono1.dcm', photometric: 'MONOCHROME1' as const, rescale: { slope: 2, intercept: -1024 } },
    ];
    for (const variant of variants) {
      const file = join(dir.path, variant.name);
      await writeFile(file, writeDicom({ values, width: 30, height: 20, bitsStored: 12, seed: variant.name, ...variant }));
      const { pixels, facts } = await readImage(file);
      assert.equal(facts.identifyingTags, [], 'the phantom has no patient');
      assert.ok(maxDifference(pixels, pydicomReference(file).values, 1) <= 1e-6, variant.name);
    }
  } finally {
    await dir.cleanup();
  }
});

testWith(dicomTools, test, "float films resize as PIL's BILINEAR on a mode-F image (torchvision's Resize on PIL), within 1e-4 of 255", async () => {
  const { resampleBilinear } = await import('../../src/data/resample.js');
  for (const [width, height, outWidth, outHeight] of [[48, 40, 38, 32], [31, 57, 20, 36], [20, 20, 41, 41]] as const) {
    const gray = Float32Array.from({ length: width * height }, (_, i) => ((i * 7919) % 1000) * 0.255 + (i % width) * 0.01);
    const rgb = new Float32Array(gray.length * 3);
    for (let i = 0; i < gray.length; i++) rgb.fill(gray[i]!, 3 * i, 3 * i + 3);
    const ours = resampleBilinear(rgb, width, height, 3, outWidth, outHeight);
    const code = [
      'import sys, json, numpy as np',
      'from PIL import Image',
      'w, h, ow, oh = (int(v) for v in sys.argv[1:5])',
      'a = np.array(json.loads(sys.stdin.read()), dtype=np.float32).reshape(h, w)',
      'print(json.dumps(np.asarray(Image.fromarray(a, mode="F").resize((ow, oh), Image.BILINEAR)).reshape(-1).tolist()))',
    ].join('\n');
    const reference = JSON.parse(runPython({ code }, [String(width), String(height), String(outWidth), String(outHeight)], { input: JSON.stringify(Array.from(gray)), needs: pydicom })) as number[];
    let max = 0;
    for (let i = 0; i < reference.length; i++) max = Math.max(max, Math.abs(ours[3 * i]! - reference[i]!), Math.abs(ours[3 * i + 2]! - reference[i]!));
    assert.ok(max <= 1e-4, `${width}×${height} → ${outWidth}×${outHeight}: ${max}`);
  }
});

test('the resize cache keeps a deep film exactly: float gray on disk, read back bit for bit, the same as a fresh decode and resize', async () => {
  const { createResizedCache, resizeShorter } = await import('../../src/data/index.js');
  const dir = await tempDir();
  try {
    const values = Uint16Array.from({ length: 60 * 50 }, (_, i) => (i * 131) % 4096);
    const file = join(dir.path, 'Normal', 'deep.dcm');
    await mkdir(join(dir.path, 'Normal'));
    await writeFile(file, writeDicom({ values, width: 60, height: 50, bitsStored: 12, photometric: 'MONOCHROME2', window: { center: 2000, width: 3000 }, seed: 'cache' }));
    const fresh = await resizeShorter((await readImage(file)).pixels, 40);
    assert.instance(fresh.data, Float32Array);
    const first = await createResizedCache(dir.path, 40, { memoryBytes: 0 }).get('Normal/deep.dcm');
    const reread = createResizedCache(dir.path, 40, { memoryBytes: 0 });
    const second = await reread.get('Normal/deep.dcm');
    assert.equal(reread.stats(), { memory: 0, disk: 1, decoded: 0 }, 'the second cache read the file');
    for (const image of [first, second]) {
      assert.instance(image.data, Float32Array);
      assert.equal([image.width, image.height], [fresh.width, fresh.height]);
      assert.ok(image.data.every((v, i) => v === fresh.data[i]), 'bitwise');
    }
    const stored = await readdir(join(dir.path, '.cache', 'resize-40'));
    const size = (await stat(join(dir.path, '.cache', 'resize-40', stored[0]!))).size;
    assert.is(size, 32 + fresh.width * fresh.height * 4, 'one float channel per pixel');
  } finally {
    await dir.cleanup();
  }
});

test.run();
