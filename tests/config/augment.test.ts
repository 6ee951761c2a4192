/**
 * Augmentation configs as files: presets and JSON files load through the one config reader, and every
 * error names the file and the key.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { augmentPresetDir, augmentPresets, loadAugmentConfig, parseAugmentConfig, resolveTrainConfig } from '../../src/config/index.js';
import { DataError, UserError } from '../../src/util/index.js';
import { rejection } from '../helpers/refusal.js';

test('presets: every file in configs/augment is a preset, and each loads', async () => {
  const files = (await readdir(augmentPresetDir)).filter((name) => name.endsWith('.json')).map((name) => name.replace(/\.json$/, ''));
  assert.equal(files.sort(), [...augmentPresets].sort());
  const seed = await loadAugmentConfig('seed');
  assert.equal(seed.rotation, { p: 1, degrees: 10 });
  assert.equal(seed.colorJitter, { p: 1, brightness: 0.2, contrast: 0.2 });
  assert.is(seed.hflip?.p, 0.5);
  assert.equal((await loadAugmentConfig('none')).crop, { type: 'center' });
  const strong = await loadAugmentConfig('strong');
  assert.equal(strong.mixup, { p: 0.5, alpha: 0.2 });
  assert.equal(strong.crop, { type: 'randomResized', scale: [0.6, 1], ratio: [0.8, 1.25] });
});

test('errors name the file and the key: unknown keys, bad values, bad JSON, folders, unknown presets', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'osteo-augment-'));
  try {
    const typo = join(dir, 'typo.json');
    await writeFile(typo, JSON.stringify({ rotaton: { degrees: 5 }, hflip: { p: 0.5, prob: 1 } }));
    const error = await rejection(() => loadAugmentConfig(typo), UserError);
    assert.ok(error.message.startsWith(`${typo}: `), error.message);
    assert.match(error.message, /unknown key "rotaton" at the top level/);
    assert.match(error.message, /unknown key "prob" in "hflip"/);
    assert.match(error.message, /\(keys: description, clahe, crop, hflip, rotation, colorJitter, gaussianNoise, randomErasing, mixup\)/);

    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ rotation: { degrees: 500 } }));
    await rejection(() => loadAugmentConfig(bad), (e) => e instanceof UserError && e.message.startsWith(`${bad}: rotation.degrees:`));
    assert.throws(() => parseAugmentConfig({ gaussianNoise: { sigma: [0.3, 0.1] } }), /gaussianNoise\.sigma: a range is \[low, high\] with low ≤ high/);
    assert.throws(() => parseAugmentConfig({ crop: { type: 'zoom' } }, 'inline'), /^inline: crop/);

    const broken = join(dir, 'broken.json');
    await writeFile(broken, '{ "hflip": ');
    await rejection(() => loadAugmentConfig(broken), (e) => e instanceof DataError && e.message.startsWith(`${broken}: not valid JSON`));
    const folder = join(dir, 'folder.json');
    await mkdir(folder);
    await rejection(() => loadAugmentConfig(folder), UserError, /augmentation config .*folder\.json is a folder/);
    await rejection(() => loadAugmentConfig('medium'), UserError, /no augmentation config 'medium'.*none, seed, strong/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a bad value is printed alone, not the whole object around it: in a file, and inline through --set augment=…', async () => {
  assert.throws(() => parseAugmentConfig({ hflip: { p: 'often' }, rotation: { p: 1, degrees: 10 } }, 'inline'), (error: Error) => {
    assert.match(error.message, /^inline: hflip\.p: Invalid input: expected number, received string \(got "often"\)/);
    return !error.message.includes('degrees');
  });
  // augment takes a preset name or an inline object: an object picks the object branch, whose issue names the leaf.
  const big = { hflip: { p: 1, extra: 1 }, rotation: { p: 1, degrees: 'ten' }, colorJitter: { p: 1, brightness: 0.2, contrast: 0.2 } };
  const error = await rejection(
    () => resolveTrainConfig({ flags: { model: 'resnet18', data: 'datasets/x' }, sets: [`augment=${JSON.stringify(big)}`] }),
    UserError,
  );
  assert.match(error.message, /augment\.rotation\.degrees: Invalid input: expected number, received string \(got "ten"\)/);
  assert.match(error.message, /unknown key "augment\.hflip\.extra"/);
  assert.not.ok(error.message.includes('colorJitter'), error.message);
  assert.not.ok(/Invalid input \(got \{/.test(error.message), error.message);
  // A bad value that is itself a big object is described by its shape, not pasted whole.
  const bigValue = { first: 'x'.repeat(40), second: 'y'.repeat(40) };
  const shaped = await rejection(() => resolveTrainConfig({ flags: { model: 'resnet18', data: 'datasets/x' }, sets: [`epochs=${JSON.stringify(bigValue)}`] }), UserError);
  assert.match(shaped.message, /epochs.*\(got an object with keys first, second\)/);
  assert.not.ok(shaped.message.includes('xxxxxxxxxx'), shaped.message);
});

test.run();
