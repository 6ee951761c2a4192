import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UserError, parseCsvRecords } from '../../src/util/index.js';
import { decodeRgb } from '../../src/data/image.js';
import { formatIndexReport, indexDataset, readIndex } from '../../src/data/indexer.js';
import { splitDataset } from '../../src/data/split.js';
import { synthesizePhantom } from '../../src/data/phantom.js';
import { rejection } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';

/** Size, mtime and bytes of every file under `dir`: proof that indexing modified nothing. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string, prefix: string) => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) await walk(path, `${prefix}${entry.name}/`);
      else {
        const info = await stat(path);
        out.set(`${prefix}${entry.name}`, `${info.size}:${info.mtimeMs}:${(await readFile(path)).toString('base64').slice(0, 64)}`);
      }
    }
  };
  await walk(dir, '');
  return out;
}

function crc32Chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body) >>> 0);
  return Buffer.concat([length, body, crc]);
}

/** A decompression bomb's header: a 30000×30000 PNG whose pixel data is absent. */
function bombPng(): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(30000, 0);
  header.writeUInt32BE(30000, 4);
  header[8] = 8; // bit depth
  header[9] = 0; // grayscale
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    crc32Chunk('IHDR', header),
    crc32Chunk('IDAT', zlib.deflateSync(Buffer.alloc(30001))),
    crc32Chunk('IEND', Buffer.alloc(0)),
  ]);
}

test('phantom: exact counts of files, duplicates, near duplicates and the one conflict; nothing modified', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'phantom');
    const synth = await synthesizePhantom({ dest: dataDir, perClass: 8, size: 64, seed: 3 });
    const before = await snapshot(dataDir);
    const { rows, report } = await indexDataset({ dataDir });
    assert.equal(report.filesPerClass, [12, 12, 13]);
    assert.is(report.files, synth.expected.files);
    assert.is(report.bad.length, 0);
    assert.is(report.exactDuplicateGroups.length, 7);
    assert.is(report.nearDuplicateGroups.length, 3);
    assert.is(report.conflicts.length, 1);
    // Each planted group is found with exactly its members.
    for (const planted of synth.planted.filter((p) => p.kind === 'exact')) {
      assert.ok(report.exactDuplicateGroups.some((g) => JSON.stringify(g.paths) === JSON.stringify([...planted.paths].sort())), planted.paths.join());
    }
    for (const planted of synth.planted.filter((p) => p.kind === 'near')) {
      assert.ok(report.nearDuplicateGroups.some((g) => JSON.stringify(g.paths) === JSON.stringify([...planted.paths].sort())), planted.paths.join());
    }
    const conflict = report.conflicts[0]!;
    assert.equal(conflict.labels, [1, 2]);
    assert.is(conflict.kind, 'exact');
    assert.equal(conflict.paths, [...synth.planted.find((p) => p.kind === 'conflict')!.paths].sort());
    // Distinct images: 8 + the near-duplicate copy per class, + the conflicting image under Osteoporosis.
    assert.equal(report.distinctPerClass, [9, 9, 10]);
    // Entering the split: one row per image, the conflicting image dropped from both classes.
    assert.equal(report.usablePerClass, [9, 8, 9]);
    assert.ok(rows.filter((r) => conflict.paths.includes(r.path)).every((r) => !r.use && /label conflict/.test(r.note)));
    // Near duplicates share a group but both enter the split.
    const near = report.nearDuplicateGroups[0]!.paths.map((p) => rows.find((r) => r.path === p)!);
    assert.is(new Set(near.map((r) => r.group)).size, 1);
    assert.ok(near.every((r) => r.use));

    const after = await snapshot(dataDir);
    after.delete('index.csv');
    assert.equal([...after.entries()], [...before.entries()], 'the dataset is untouched');
    const reread = await readIndex(dataDir);
    assert.equal(reread, rows);
  } finally {
    await dir.cleanup();
  }
});

test('conflict policies: majority breaks no tie (dropped), keep keeps both labels in one group', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'phantom');
    await synthesizePhantom({ dest: dataDir, perClass: 6, size: 48, seed: 4 });
    const majority = await indexDataset({ dataDir, conflicts: 'majority', write: false });
    assert.match(majority.report.conflicts[0]!.action, /no majority/);
    assert.equal(majority.report.usablePerClass, [7, 6, 7]);
    const keep = await indexDataset({ dataDir, conflicts: 'keep', write: false });
    assert.equal(keep.report.usablePerClass, [7, 7, 8]);
    // A third copy under Osteoporosis gives it the majority.
    const source = keep.report.conflicts[0]!.paths.find((p) => p.startsWith('Osteopenia/'))!;
    await writeFile(join(dataDir, 'Osteoporosis', 'third copy.png'), await readFile(join(dataDir, source)));
    const tipped = await indexDataset({ dataDir, conflicts: 'majority', write: false });
    assert.match(tipped.report.conflicts[0]!.action, /kept as Osteoporosis/);
    assert.equal(tipped.report.usablePerClass, [7, 6, 8]);
    await rejection(() => indexDataset({ dataDir, conflicts: 'vote' as never }), UserError, /drop, majority, keep/);
  } finally {
    await dir.cleanup();
  }
});

test('bad files are reported with reasons, odd-but-valid files are indexed, nothing is lost', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'odd');
    for (const name of ['Normal', 'Osteopenia', 'Osteoporosis']) await mkdir(join(dataDir, name), { recursive: true });
    const w = 24;
    const h = 16;
    const rgb = Buffer.alloc(w * h * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 7) % 251;
    const raw = { raw: { width: w, height: h, channels: 3 as const } };
    const jpeg = await sharp(rgb, raw).jpeg().toBuffer();
    await writeFile(join(dataDir, 'Normal', 'zero.jpg'), Buffer.alloc(0));
    await writeFile(join(dataDir, 'Normal', 'truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length * 0.6)));
    await writeFile(join(dataDir, 'Normal', 'text.jpg'), 'this is not a picture\n');
    await writeFile(join(dataDir, 'Normal', 'notes.txt'), 'labels checked by hand');
    await writeFile(join(dataDir, 'Normal', 'good.jpg'), jpeg);
    const deep = new Uint16Array([0, 65535, 32768, 1000]);
    await writeFile(join(dataDir, 'Osteopenia', 'deep16.png'), await sharp(deep, { raw: { width: 2, height: 2, channels: 1 } }).toColourspace('grey16').png().toBuffer());
    await writeFile(join(dataDir, 'Osteopenia', 'rgba.png'), await sharp(rgb, raw).ensureAlpha(0.5).png().toBuffer());
    await writeFile(join(dataDir, 'Osteopenia', 'png-named.jpg'), await sharp(rgb, raw).png().toBuffer());
    await writeFile(join(dataDir, 'Osteoporosis', 'cmyk.jpg'), await sharp(rgb, raw).toColourspace('cmyk').jpeg().toBuffer());
    // EXIF orientation 6 (rotate 90° clockwise to display), lossless: it must equal the upright copy.
    await writeFile(join(dataDir, 'Osteoporosis', 'exif.webp'), await sharp(rgb, raw).withMetadata({ orientation: 6 }).webp({ lossless: true }).toBuffer());
    await writeFile(join(dataDir, 'Osteoporosis', 'upright.png'), await sharp(rgb, raw).rotate(90).png().toBuffer());
    await writeFile(join(dataDir, 'Osteoporosis', 'bomb.png'), bombPng());
    await writeFile(join(dataDir, 'Osteoporosis', '.DS_Store'), 'finder');
    await mkdir(join(dataDir, 'extras'));

    const { rows, report } = await indexDataset({ dataDir });
    const byName = new Map(rows.map((r) => [r.path.split('/')[1]!, r]));
    assert.is(report.files, 12, 'every visible file is either indexed or reported');
    assert.equal(
      report.bad.map((b) => [b.path, b.reason]).sort(),
      [
        ['Normal/notes.txt', 'not-an-image'],
        ['Normal/text.jpg', 'not-an-image'],
        ['Normal/truncated.jpg', 'truncated'],
        ['Normal/zero.jpg', 'zero-byte'],
        ['Osteoporosis/bomb.png', 'too-large'],
      ].sort(),
    );
    assert.match(report.bad.find((b) => b.reason === 'too-large')!.detail, /30000×30000/);
    assert.equal(report.badByReason, { 'zero-byte': 1, truncated: 1, 'not-an-image': 2, 'too-large': 1 });
    assert.is(report.good, 7);
    assert.equal(report.ignored, ['extras']);

    assert.is(byName.get('deep16.png')!.depth, 16);
    assert.is(byName.get('rgba.png')!.channels, 4);
    assert.is(byName.get('cmyk.jpg')!.status, 'ok');
    assert.match(byName.get('png-named.jpg')!.note, /content is png/);
    const exif = byName.get('exif.webp')!;
    assert.equal([exif.width, exif.height], [h, w], 'EXIF orientation applied');
    assert.is(exif.contentHash, byName.get('upright.png')!.contentHash);
    assert.ok(report.exactDuplicateGroups.some((g) => g.paths.includes('Osteoporosis/exif.webp') && g.paths.includes('Osteoporosis/upright.png')));

    // The decoder's conversions, checked by hand: 16-bit to 8 by dropping the low byte (libvips'
    // rule: 1000 >> 8 = 3, 32768 >> 8 = 128), alpha dropped, CMYK → 3 channels.
    const deepDecoded = await decodeRgb(join(dataDir, 'Osteopenia', 'deep16.png'));
    assert.equal(Array.from(deepDecoded.data.filter((_, i) => i % 3 === 0)), [0, 255, 128, 3]);
    const rgbaDecoded = await decodeRgb(join(dataDir, 'Osteopenia', 'rgba.png'));
    assert.ok(Buffer.from(rgbaDecoded.data).equals(rgb));
    assert.is((await decodeRgb(join(dataDir, 'Osteoporosis', 'cmyk.jpg'))).data.length, w * h * 3);
    // A lower pixel limit makes ordinary images "too large" too.
    const strict = await indexDataset({ dataDir, maxPixels: 100, write: false });
    assert.ok(strict.report.bad.some((b) => b.path === 'Normal/good.jpg' && b.reason === 'too-large'));
  } finally {
    await dir.cleanup();
  }
});

test('a folder without class folders is a clear error', async () => {
  const dir = await tempDir();
  try {
    await rejection(() => indexDataset({ dataDir: dir.path }), UserError, /Normal\/.*osteo data synth/);
    await rejection(() => readIndex(dir.path), UserError, /osteo data index/);
  } finally {
    await dir.cleanup();
  }
});

/** A small PNG of seeded noise: distinct seeds give images far apart in perceptual hash. */
async function noisePng(seed: number): Promise<Buffer> {
  const size = 16;
  const pixels = Buffer.alloc(size * size * 3);
  let state = seed * 2654435761;
  for (let i = 0; i < pixels.length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    pixels[i] = state >>> 24;
  }
  return sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
}

async function makeDataset(root: string, folders: Record<string, number[]>): Promise<void> {
  for (const [folder, seeds] of Object.entries(folders)) {
    await mkdir(join(root, folder), { recursive: true });
    for (const seed of seeds) await writeFile(join(root, folder, `img${seed}.png`), await noisePng(seed));
  }
}

test('missing or misnamed class folders are refused, naming the expected folders and the near misses', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'misnamed');
    await makeDataset(dataDir, { normal: [1, 2], Osteopenia: [3, 4], 'Osteoporosis ': [5, 6] });
    const error = await rejection(() => indexDataset({ dataDir }), UserError);
    assert.match(error.message, /lacks the class folder\(s\) 'Normal\/', 'Osteoporosis\/'/);
    assert.match(error.message, /Normal\/, Osteopenia\/, Osteoporosis\//);
    assert.match(error.message, /'normal' → rename it to 'Normal'/);
    assert.match(error.message, /'Osteoporosis ' → rename it to 'Osteoporosis'/);
    await rejection(() => readFile(join(dataDir, 'index.csv')));
    // One class folder alone is no dataset either, and split (which indexes first) refuses the same way.
    const single = join(dir.path, 'single');
    await makeDataset(single, { Normal: [1, 2, 3] });
    await rejection(() => indexDataset({ dataDir: single }), UserError, /lacks the class folder\(s\) 'Osteopenia\/', 'Osteoporosis\/'/);
    await rejection(() => splitDataset({ dataDir: single }), UserError, /lacks the class folder/);
    // A file given as the dataset folder is a user error, not a crash.
    await writeFile(join(dir.path, 'file.txt'), 'x');
    await rejection(() => indexDataset({ dataDir: join(dir.path, 'file.txt') }), UserError, /is a file: give the dataset folder/);
  } finally {
    await dir.cleanup();
  }
});

test('a class folder with no usable image: the index warns, and split refuses naming the class', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'empty-class');
    await makeDataset(dataDir, { Normal: [1, 2, 3], Osteopenia: [], Osteoporosis: [4, 5, 6] });
    await writeFile(join(dataDir, 'Osteopenia', 'broken.png'), 'not a png');
    const { report } = await indexDataset({ dataDir });
    assert.equal(report.usablePerClass, [3, 0, 3]);
    assert.match(formatIndexReport(report), /WARNING: Osteopenia\/ has no usable image/);
    await rejection(() => splitDataset({ dataDir }), UserError, /no usable image in Osteopenia\//);
    await rejection(() => readFile(join(dataDir, 'splits.csv')));
  } finally {
    await dir.cleanup();
  }
});

test('a dangling symbolic link and a FIFO in a class folder are reported as bad files, not a crash or a hang', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'odd-entries');
    await makeDataset(dataDir, { Normal: [1, 2], Osteopenia: [3], Osteoporosis: [4] });
    await symlink(join(dir.path, 'gone.png'), join(dataDir, 'Normal', 'link.png'));
    execFileSync('mkfifo', [join(dataDir, 'Osteopenia', 'pipe.png')]);
    const { report } = await indexDataset({ dataDir, write: false });
    assert.equal(
      report.bad.map((b) => [b.path, b.reason]),
      [
        ['Normal/link.png', 'unreadable'],
        ['Osteopenia/pipe.png', 'not-an-image'],
      ],
    );
    assert.match(report.bad[0]!.detail, /does not exist/);
    assert.equal(report.usablePerClass, [2, 1, 1]);
  } finally {
    await dir.cleanup();
  }
});

test('--near-threshold outside 0–256 bits (or not whole) is refused', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'd');
    await makeDataset(dataDir, { Normal: [1], Osteopenia: [2], Osteoporosis: [3] });
    for (const nearThreshold of [-1, 257, 2.5, Number.NaN]) {
      await rejection(() => indexDataset({ dataDir, nearThreshold, write: false }), UserError, /--near-threshold must be a whole number of bits from 0 to 256/);
    }
    assert.is((await indexDataset({ dataDir, nearThreshold: 256, write: false })).report.nearThreshold, 256);
  } finally {
    await dir.cleanup();
  }
});

test('of identical files, the original-looking name is kept and the copies are marked as its duplicates', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'copies');
    await makeDataset(dataDir, { Normal: [1], Osteopenia: [2], Osteoporosis: [3] });
    const image = await noisePng(9);
    // Names that sort before the original, so the old first-by-path rule kept a copy.
    for (const name of ['x (copy).png', 'x (1).png', 'x - Copy.png', 'x.png', 'x_copy2.png']) await writeFile(join(dataDir, 'Normal', name), image);
    await writeFile(join(dataDir, 'Osteopenia', 'scan 2.png'), await noisePng(10));
    await writeFile(join(dataDir, 'Osteopenia', 'scan 12.png'), await noisePng(10));
    const { rows } = await indexDataset({ dataDir, write: false });
    const used = rows.filter((row) => row.use).map((row) => row.path);
    assert.ok(used.includes('Normal/x.png'), used.join(', '));
    for (const copy of ['x (copy).png', 'x (1).png', 'x - Copy.png', 'x_copy2.png']) {
      const row = rows.find((r) => r.path === `Normal/${copy}`)!;
      assert.is(row.use, false, copy);
      assert.match(row.note, /duplicate of Normal\/x\.png/);
    }
    // Without a copy marker, the shorter name wins.
    assert.ok(used.includes('Osteopenia/scan 2.png') && !used.includes('Osteopenia/scan 12.png'));
  } finally {
    await dir.cleanup();
  }
});

test('file names with control characters are escaped in the printed report; index.csv keeps them exactly', async () => {
  const dir = await tempDir();
  try {
    const dataDir = join(dir.path, 'odd-names');
    await makeDataset(dataDir, { Normal: [1, 2], Osteopenia: [3], Osteoporosis: [4] });
    const forged = 'x.png: ok\nbad files:              0\u001b[2K.png';
    await writeFile(join(dataDir, 'Normal', forged), 'not a png');
    const { report } = await indexDataset({ dataDir });
    assert.equal(report.bad.map((b) => b.path), [`Normal/${forged}`]);
    const text = formatIndexReport(report);
    assert.ok(text.includes('Normal/x.png: ok\\nbad files:              0\\u001b[2K.png: '), text);
    assert.is(text.split('\n').filter((line) => line.startsWith('bad files:')).length, 1, 'no forged line');
    const rows = parseCsvRecords(await readFile(join(dataDir, 'index.csv'), 'utf8'), 'index.csv');
    assert.ok(rows.some((row) => row.path === `Normal/${forged}`), 'index.csv holds the real name');
  } finally {
    await dir.cleanup();
  }
});

test.run();
