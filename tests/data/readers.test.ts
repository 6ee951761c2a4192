/**
 * The image-reader seam (src/data/readers.ts): the reader is chosen by content, the one extension
 * list is what index, preview and predict accept, refusals name the file and the reason, and 8-bit
 * PNG/JPEG pixels through the seam and the eval transform are sharp's own.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DataError } from '../../src/util/index.js';
import {
  UnreadableImageError,
  applyEvalTransform,
  centerCropBox,
  evalTransformSpec,
  imageExtensions,
  imageReaders,
  imagenetNormalization,
  indexDataset,
  isImageFile,
  previewAugmentations,
  preprocessForModel,
  readImage,
  readerFor,
  resizedShape,
  sniffBytes,
  type EvalTransform,
} from '../../src/data/index.js';
import { noAugmentation } from '../../src/data/augment.js';
import { writeDicom } from '../../src/data/dicom-write.js';
import { expandInputs } from '../../src/eval/predict.js';
import { rejection } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';

const w = 41;
const h = 29;
/** Deterministic RGB noise with structure, so resizing and cropping move real values. */
function pattern(width = w, height = h): Buffer {
  const rgb = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) rgb[(y * width + x) * 3 + c] = (x * 37 + y * 11 + c * 71 + ((x * y) % 13) * 9) % 256;
  return rgb;
}
const raw = { raw: { width: w, height: h, channels: 3 as const } };

/** One file's bytes per reader, written by sharp (an encoder independent of the seam's sniffing). */
async function encoded(): Promise<Record<string, Buffer>> {
  const image = () => sharp(pattern(), raw);
  return {
    png: await image().png().toBuffer(),
    jpeg: await image().jpeg({ quality: 90 }).toBuffer(),
    webp: await image().webp({ lossless: true }).toBuffer(),
    tiff: await image().tiff({ compression: 'lzw' }).toBuffer(),
    gif: await image().gif().toBuffer(),
    avif: await image().avif({ lossless: true }).toBuffer(),
    // osteo's own writer (the phantom's), here only as a file the DICOM reader claims.
    dicom: writeDicom({ values: Uint8Array.from({ length: w * h }, (_, i) => pattern()[i * 3]!), width: w, height: h, bitsStored: 8, photometric: 'MONOCHROME2', seed: 'readers' }),
  };
}

/** A 1×1 24-bit BMP: the format has a signature but no decoder in the bundled libvips. */
function bmp(): Buffer {
  const file = Buffer.alloc(58);
  file.write('BM', 0, 'latin1');
  file.writeUInt32LE(58, 2);
  file.writeUInt32LE(54, 10);
  file.writeUInt32LE(40, 14); // BITMAPINFOHEADER
  file.writeInt32LE(1, 18);
  file.writeInt32LE(1, 22);
  file.writeUInt16LE(1, 26);
  file.writeUInt16LE(24, 28);
  return file;
}

/** The 128-byte preamble, "DICM" and the start of a meta element: recognised as DICOM, then cut short. */
function dicomPreamble(): Buffer {
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), Buffer.from([0x02, 0x00, 0x00, 0x00, 0x55, 0x4c, 0x04, 0x00])]);
}

test('the signature picks the reader: each reader claims its own format and no other', async () => {
  const files = await encoded();
  assert.equal(Object.keys(files).sort(), imageReaders.map((r) => r.name).sort(), 'one fixture per reader');
  for (const [format, bytes] of Object.entries(files)) {
    const head = bytes.subarray(0, sniffBytes);
    assert.equal(
      imageReaders.filter((reader) => reader.sniff(head)).map((reader) => reader.name),
      [format],
      `${format} is claimed by exactly its reader`,
    );
    assert.is(readerFor(head)?.name, format);
  }
  for (const stranger of [Buffer.from('this is not a picture\n'), bmp(), Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'), Buffer.from('%PDF-1.7\n')]) {
    assert.is(readerFor(stranger), undefined, stranger.subarray(0, 8).toString('latin1'));
  }
});

test('a misnamed or extensionless file is read by the reader its content names, with its facts', async () => {
  const dir = await tempDir();
  try {
    const files = await encoded();
    for (const [format, bytes] of Object.entries(files)) {
      // Every format under the wrong name (another reader's extension), and under no extension.
      const wrong = imageReaders.find((reader) => reader.name !== format)!.extensions[0]!;
      for (const name of [`as-${format}${wrong}`, `as-${format}`]) {
        const file = join(dir.path, name);
        await writeFile(file, bytes);
        assert.ok(await isImageFile(file), name);
        const { pixels, facts } = await readImage(file);
        assert.is(facts.format, format, name);
        assert.equal([facts.width, facts.height, facts.bitDepth, facts.frames], [w, h, 8, 1], name);
        assert.equal([pixels.width, pixels.height, pixels.data.length], [w, h, w * h * 3], name);
      }
    }
    // Lossless formats decode to the very pixels that were written.
    for (const format of ['png', 'webp', 'tiff']) {
      assert.ok(Buffer.from((await readImage(files[format]!)).pixels.data).equals(pattern()), format);
    }
    // 16-bit gray is reported as such; its pixels are 8-bit RGB like every image's.
    const deep = await sharp(new Uint16Array([0, 65535, 32768, 1000]), { raw: { width: 2, height: 2, channels: 1 } }).toColourspace('grey16').png().toBuffer();
    const deepRead = await readImage(deep);
    assert.equal([deepRead.facts.bitDepth, deepRead.facts.channels], [16, 1]);
    assert.equal(Array.from(deepRead.pixels.data.filter((_, i) => i % 3 === 0)), [0, 255, 128, 3]);
    // An animated GIF: its frame count is a fact, and the first frame is the image.
    const frame = (level: number) => sharp({ create: { width: w, height: h, channels: 3, background: { r: level, g: level, b: level } } }).png().toBuffer();
    const animated = await sharp([await frame(17), await frame(230)], { join: { animated: true } }).gif().toBuffer();
    const read = await readImage(animated);
    assert.is(read.facts.frames, 2);
    assert.equal([read.pixels.width, read.pixels.height], [w, h], 'one frame');
    assert.ok(read.pixels.data.every((v) => v === 17), 'the first frame');
  } finally {
    await dir.cleanup();
  }
});

test('refusals are UnreadableImageErrors naming the file: empty, not an image, a known format osteo does not read, named like one it does not hold, truncated, too large, too narrow', async () => {
  const dir = await tempDir();
  try {
    const files = await encoded();
    const cases: [string, Buffer, string, RegExp][] = [
      ['empty.png', Buffer.alloc(0), 'zero-byte', /empty file \(0 bytes\)/],
      ['text.png', Buffer.from('this is not a picture\n'), 'not-an-image', /not a recognised image format \(osteo reads PNG, JPEG, WEBP, TIFF, GIF, AVIF, DICOM\)/],
      ['film.bmp', bmp(), 'unsupported-format', /a BMP file, which osteo does not read/],
      ['film.dcm', dicomPreamble(), 'unreadable', /cannot parse the DICOM data set/],
      ['drawing.svg', Buffer.from('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'), 'unsupported-format', /an SVG file, which osteo does not read \(a vector drawing/],
      // A file named like a format it does not hold is told so, DICOM's missing signature by name.
      ['empty.dcm', Buffer.alloc(0), 'zero-byte', /an empty file \(0 bytes\) named \.dcm: no DICOM image in it/],
      ['short.dcm', Buffer.alloc(100), 'not-an-image', /a file named \.dcm without DICOM's signature \("DICM" at byte 128; it has 100 bytes\): a truncated or damaged DICOM file/],
      ['strip.png', await sharp({ create: { width: 60000, height: 2, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png().toBuffer(), 'extreme-aspect-ratio', /60000×2 px, 30000 times as wide as it is high, beyond the 10:1 osteo reads/],
      ['tower.png', await sharp({ create: { width: 3, height: 31, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png().toBuffer(), 'extreme-aspect-ratio', /3×31 px, 10 times as high as it is wide/],
      ['cut.jpg', files.jpeg!.subarray(0, Math.floor(files.jpeg!.length * 0.6)), 'truncated', /cannot decode image/],
      ['cut.png', files.png!.subarray(0, 60), 'truncated', /cannot decode image/],
    ];
    for (const [name, bytes, kind, message] of cases) {
      const file = join(dir.path, name);
      await writeFile(file, bytes);
      const error = await rejection(() => readImage(file), (e: Error) => e instanceof UnreadableImageError);
      assert.ok(error instanceof DataError);
      assert.is((error as UnreadableImageError).kind, kind, name);
      assert.is((error as UnreadableImageError).file, file, name);
      assert.ok(error.message.startsWith(`${file}: `), error.message);
      assert.match(error.message, message);
    }
    const tenToOne = await readImage(await sharp({ create: { width: 3, height: 30, channels: 3, background: { r: 9, g: 9, b: 9 } } }).png().toBuffer());
    assert.equal([tenToOne.pixels.width, tenToOne.pixels.height], [3, 30], 'exactly 10:1 is read');
    const large = await rejection(() => readImage(files.png!, { maxPixels: 100 }), (e: Error) => e instanceof UnreadableImageError && e.kind === 'too-large');
    assert.match(large.message, /41×29 = 1,189 pixels, above the limit of 100 \(a guard against decompression bombs\)/);
    assert.equal((large as UnreadableImageError).facts?.format, 'png', 'what the header said is kept');
  } finally {
    await dir.cleanup();
  }
});

test('one extension list: index, preview and predict accept exactly the files the seam calls images', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'data');
    for (const name of ['Normal', 'Osteopenia', 'Osteoporosis']) await mkdir(join(dataDir, name), { recursive: true });
    const folder = join(dataDir, 'Normal');
    const files = await encoded();
    const byExtension = Object.fromEntries(imageReaders.flatMap((reader) => reader.extensions.map((extension) => [extension, files[reader.name]!])));
    assert.equal(Object.keys(byExtension).sort(), [...imageExtensions].sort());
    const images: string[] = [];
    for (const [extension, bytes] of Object.entries(byExtension)) {
      await writeFile(join(folder, `film${extension}`), bytes);
      images.push(`film${extension}`);
    }
    // Found by content: no extension, and an extension no reader claims.
    await writeFile(join(folder, 'IM000001'), files.png!);
    await writeFile(join(folder, 'scan.dat'), files.jpeg!);
    images.push('IM000001', 'scan.dat');
    // Not images by either rule.
    await writeFile(join(folder, 'notes.txt'), 'labels checked by hand');
    images.sort();

    const predicted = await expandInputs([folder]);
    assert.equal(predicted.failed, []);
    assert.equal(predicted.files, images.map((name) => join(folder, name)));

    const preview = await previewAugmentations({ dataDir, augment: noAugmentation, n: images.length, imageSize: 32, out: join(dir.path, 'sheet.png') });
    assert.equal([...new Set(preview.tiles.map((tile) => tile.path))].sort(), images.map((name) => `Normal/${name}`));

    const { rows, report } = await indexDataset({ dataDir, write: false });
    assert.equal(rows.filter((row) => row.status === 'ok').map((row) => row.path.slice('Normal/'.length)).sort(), images);
    assert.equal(report.bad.map((b) => [b.path, b.reason]).sort(), [
      ['Normal/notes.txt', 'not-an-image'],
    ]);
    const row = (name: string) => rows.find((r) => r.path === `Normal/${name}`)!;
    // (The fixtures share pixels, so the notes go on to name the duplicates.)
    assert.is(row('IM000001').format, 'png');
    assert.match(row('IM000001').note, /^no extension; the content is png(;|$)/);
    assert.is(row('scan.dat').format, 'jpeg');
    assert.match(row('scan.dat').note, /^extension \.dat but the content is jpeg(;|$)/);
    assert.not.match(row('film.jpeg').note, /content is/);
    assert.equal([row('film.tif').format, row('film.avif').format], ['tiff', 'avif']);
  } finally {
    await dir.cleanup();
  }
});

test("8-bit PNG and JPEG through the seam are sharp's raw decode, and the eval transform is sharp's resize and crop, normalised", async () => {
  const dir = await tempDir();
  try {
    const transform: EvalTransform = { resize: 37, crop: 32, ...imagenetNormalization };
    const gray = Buffer.from(Array.from({ length: w * h }, (_, i) => (i * 29) % 256));
    const sources: Record<string, Buffer> = {
      'rgb.png': await sharp(pattern(), raw).png().toBuffer(),
      'rgb.jpg': await sharp(pattern(), raw).jpeg({ quality: 85 }).toBuffer(),
      'gray.png': await sharp(gray, { raw: { width: w, height: h, channels: 1 } }).png().toBuffer(),
      'gray.jpg': await sharp(gray, { raw: { width: w, height: h, channels: 1 } }).jpeg({ quality: 85 }).toBuffer(),
    };
    for (const [name, bytes] of Object.entries(sources)) {
      const file = join(dir.path, name);
      await writeFile(file, bytes);
      // The reference: sharp's own decode of the file, gray replicated to RGB as torchvision's convert('RGB').
      const decoded = await sharp(file).raw().toBuffer({ resolveWithObject: true });
      const reference = Buffer.alloc(w * h * 3);
      for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) reference[i * 3 + c] = decoded.data[i * decoded.info.channels + (decoded.info.channels === 1 ? 0 : c)]!;
      const { pixels } = await readImage(file);
      assert.ok(Buffer.from(pixels.data).equals(reference), `${name}: decoded pixels`);

      // The transform against sharp's resize and extract of those pixels, normalised by hand.
      const size = resizedShape(w, h, transform.resize);
      const box = centerCropBox(size.width, size.height, transform.crop);
      const crop = await sharp(reference, raw)
        .resize(size.width, size.height, { kernel: 'linear', fit: 'fill' })
        .extract({ left: box.left, top: box.top, width: transform.crop, height: transform.crop })
        .raw()
        .toBuffer();
      const expected = Float32Array.from(crop, (v, i) => (v / 255 - transform.mean[i % 3]!) / transform.std[i % 3]!);
      const ours = await preprocessForModel(file, transform);
      assert.ok(Buffer.from(ours.buffer).equals(Buffer.from(expected.buffer)), `${name}: the eval transform`);
      assert.ok(Buffer.from((await applyEvalTransform(pixels, transform)).buffer).equals(Buffer.from(expected.buffer)), `${name}: applyEvalTransform`);
    }
    // What an export writes beside the model is this transform, in words and numbers.
    const spec = evalTransformSpec(transform);
    assert.equal([spec.resize, spec.crop, spec.scale, spec.mean, spec.std], [37, 32, 1 / 255, [...transform.mean], [...transform.std]]);
    assert.match(spec.steps, /resize shorter side to 37 \(bilinear\); center crop 32/);
  } finally {
    await dir.cleanup();
  }
});

test.run();
