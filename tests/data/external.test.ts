import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import sharp from 'sharp';
import { findCopies, scanLabelledFolder, type ReferenceImage } from '../../src/data/index.js';
import { refusal } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';

/** A 256-bit hash (64 hex digits) with the first `flipped` bits set. */
const hashWithBits = (flipped: number) => {
  const bytes = Buffer.alloc(32);
  for (let i = 0; i < flipped; i++) bytes[i >> 3]! |= 1 << (i & 7);
  return bytes.toString('hex');
};

test('copies: an exact match wins (a train image over a val one), else the nearest perceptual hash within the threshold', () => {
  const reference: ReferenceImage[] = [
    { path: 'Normal/v.png', label: 0, split: 'val', contentHash: 'c1', perceptualHash: hashWithBits(0) },
    { path: 'Normal/t.png', label: 0, split: 'train', contentHash: 'c1', perceptualHash: hashWithBits(0) },
    { path: 'Osteoporosis/far.png', label: 2, split: 'train', contentHash: 'c2', perceptualHash: hashWithBits(30) },
    { path: 'Osteoporosis/near.png', label: 2, split: 'train', contentHash: 'c3', perceptualHash: hashWithBits(50) },
  ];
  const matches = findCopies(
    [
      { contentHash: 'c1', perceptualHash: hashWithBits(100) },
      { contentHash: 'x', perceptualHash: hashWithBits(38) },
      { contentHash: 'y', perceptualHash: hashWithBits(41) },
      { contentHash: 'z', perceptualHash: hashWithBits(200) },
    ],
    reference,
    10,
  );
  assert.equal(matches[0], { kind: 'exact', path: 'Normal/t.png', label: 0, split: 'train', distance: 0 });
  // 38 bits: 8 from far (30), 12 from near (50).
  assert.equal(matches[1], { kind: 'near', path: 'Osteoporosis/far.png', label: 2, split: 'train', distance: 8 });
  // 41 bits: 11 from far, 9 from near.
  assert.equal(matches[2], { kind: 'near', path: 'Osteoporosis/near.png', label: 2, split: 'train', distance: 9 });
  assert.is(matches[3], undefined);
});

test('a labelled folder: any subset of the classes, top-level files listed; misnamed or extra folders and unreadable files refused', async () => {
  const { path: root, cleanup } = await tempDir('osteo-labelled-');
  try {
    const png = await sharp({ create: { width: 20, height: 24, channels: 3, background: { r: 90, g: 90, b: 90 } } }).png().toBuffer();
    await mkdir(join(root, 'ok', 'Osteoporosis', 'deeper'), { recursive: true });
    await mkdir(join(root, 'ok', 'Osteopenia'));
    await writeFile(join(root, 'ok', 'Osteoporosis', 'a.png'), png);
    await writeFile(join(root, 'ok', 'Osteoporosis', 'deeper', 'b.png'), png);
    await writeFile(join(root, 'ok', 'metadata.csv'), 'path\n');
    const folder = await scanLabelledFolder(join(root, 'ok'));
    assert.equal(folder.images.map((i) => [i.path, i.label, i.width, i.height]), [['Osteoporosis/a.png', 2, 20, 24], ['Osteoporosis/deeper/b.png', 2, 20, 24]]);
    assert.equal([folder.present, folder.absent, folder.ignoredFiles], [[2], [0, 1], ['metadata.csv']]);
    assert.is(folder.images[0]!.contentHash, folder.images[1]!.contentHash);

    await mkdir(join(root, 'bad', 'Osteopenia '), { recursive: true });
    await mkdir(join(root, 'bad', 'scans'));
    await refusal(scanLabelledFolder(join(root, 'bad')), /'Osteopenia ' \(near miss: rename it to 'Osteopenia'\)/, /'scans'/);
    await mkdir(join(root, 'empty', 'Normal'), { recursive: true });
    await refusal(scanLabelledFolder(join(root, 'empty')), /no image in any class folder/);
    await mkdir(join(root, 'junk', 'Normal'), { recursive: true });
    await writeFile(join(root, 'junk', 'Normal', 'a.png'), png);
    await writeFile(join(root, 'junk', 'Normal', 'b.png'), png.subarray(0, 40));
    await refusal(scanLabelledFolder(join(root, 'junk')), /1 file\(s\)/, /Normal\/b\.png \((truncated|unreadable)/);
    await refusal(scanLabelledFolder(join(root, 'nowhere')), /does not exist/);
  } finally {
    await cleanup();
  }
});

test.run();
