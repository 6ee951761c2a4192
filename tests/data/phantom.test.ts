import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UserError } from '../../src/util/index.js';
import { decodeRgb } from '../../src/data/image.js';
import { contentHash } from '../../src/data/hash.js';
import { renderPhantom, synthesizePhantom } from '../../src/data/phantom.js';
import { indexDataset } from '../../src/data/indexer.js';
import { rejection } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';

test('same seed → byte-identical files; another seed → different images', async () => {
  const dir = await tempDir();
  try {
    const a = await synthesizePhantom({ dest: join(dir.path, 'a'), perClass: 6, size: 48, seed: 7 });
    await synthesizePhantom({ dest: join(dir.path, 'b'), perClass: 6, size: 48, seed: 7 });
    await synthesizePhantom({ dest: join(dir.path, 'c'), perClass: 6, size: 48, seed: 8 });
    assert.equal(a.files, [10, 10, 11]);
    const files = (await readdir(join(dir.path, 'a', 'Normal'))).sort();
    assert.equal(files, (await readdir(join(dir.path, 'b', 'Normal'))).sort());
    for (const name of files) {
      assert.ok((await readFile(join(dir.path, 'a', 'Normal', name))).equals(await readFile(join(dir.path, 'b', 'Normal', name))), name);
    }
    const first = 'Osteopenia/osteopenia_0001';
    const ext = (await readdir(join(dir.path, 'a', 'Osteopenia'))).find((n) => n.startsWith('osteopenia_0001'))!.slice(-4);
    const other = (await readdir(join(dir.path, 'c', 'Osteopenia'))).find((n) => n.startsWith('osteopenia_0001'))!;
    const hashA = contentHash(await decodeRgb(join(dir.path, 'a', `${first}${ext}`)));
    const hashC = contentHash(await decodeRgb(join(dir.path, 'c', 'Osteopenia', other)));
    assert.is.not(hashA, hashC);
    const description = JSON.parse(await readFile(join(dir.path, 'a', 'phantom.json'), 'utf8'));
    assert.equal(description.expected, { files: 31, exactDuplicateGroups: 7, nearDuplicateGroups: 3, conflicts: 1 });
  } finally {
    await dir.cleanup();
  }
});

test('an image depends only on (seed, class, index): growing the set keeps existing images', () => {
  const small = renderPhantom(3, 2, 4, 40);
  const again = renderPhantom(3, 2, 4, 40);
  assert.ok(Buffer.from(small.pixels).equals(Buffer.from(again.pixels)));
  assert.ok(!Buffer.from(renderPhantom(3, 2, 5, 40).pixels).equals(Buffer.from(small.pixels)));
});

test('classes differ as the disease does, with overlap: latent density falls Normal → Osteoporosis', () => {
  const densities = [0, 1, 2].map((label) => Array.from({ length: 80 }, (_, i) => renderPhantom(11, label, i, 32).density));
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const [normal, penia, porosis] = densities.map(mean) as [number, number, number];
  assert.ok(normal > penia + 0.15 && penia > porosis + 0.15, `means ${normal}, ${penia}, ${porosis}`);
  // Neighbouring classes overlap (the task is not trivially separable by the latent score).
  assert.ok(Math.max(...densities[1]!) > Math.min(...densities[0]!));
  assert.ok(Math.max(...densities[2]!) > Math.min(...densities[1]!));
});

test('bone is brighter and thicker-walled in Normal than in Osteoporosis at equal pose (image evidence)', () => {
  // Average the 10%-brightest fraction of pixels over many films: a cortex/trabecular density proxy
  // that exposure only partly hides.
  const brightFraction = (label: number) => {
    let sum = 0;
    for (let i = 0; i < 40; i++) {
      const image = renderPhantom(5, label, i, 64);
      const sorted = Float64Array.from(image.pixels).sort();
      const median = sorted[sorted.length >> 1]!;
      const high = sorted[Math.floor(sorted.length * 0.95)]!;
      sum += (high - median) / 255;
    }
    return sum / 40;
  };
  const normal = brightFraction(0);
  const porosis = brightFraction(2);
  assert.ok(normal > porosis, `bone contrast Normal ${normal.toFixed(3)} vs Osteoporosis ${porosis.toFixed(3)}`);
});

test('the default set (60 per class at 256 px) generates in seconds', async () => {
  const dir = await tempDir();
  try {
    const result = await synthesizePhantom({ dest: join(dir.path, 'phantom') });
    assert.equal(result.files, [64, 64, 65]);
    assert.ok(result.seconds < 20, `took ${result.seconds.toFixed(1)} s`);
    const image = await decodeRgb(join(dir.path, 'phantom', 'Normal', (await readdir(join(dir.path, 'phantom', 'Normal')))[0]!));
    assert.is(image.width, 256);
  } finally {
    await dir.cleanup();
  }
});

test('the same phantom again is reused (nothing written); another one needs --force; bad sizes are refused', async () => {
  const dir = await tempDir();
  try {
    const first = await synthesizePhantom({ dest: join(dir.path, 'p'), perClass: 6, size: 32 });
    const marker = join(dir.path, 'p', 'Normal', 'marker.txt');
    await writeFile(marker, 'untouched');
    const again = await synthesizePhantom({ dest: join(dir.path, 'p'), perClass: 6, size: 32 });
    assert.ok(again.reused);
    assert.equal(again.expected, first.expected);
    assert.is(await readFile(marker, 'utf8'), 'untouched', 'a reused phantom is not rewritten');
    await rejection(
      () => synthesizePhantom({ dest: join(dir.path, 'p'), perClass: 7, size: 32 }),
      (e) => e instanceof UserError && /another phantom \(perClass 6 \(asked 7\)\)/.test(e.message) && /--force/.test(e.message),
    );
    await synthesizePhantom({ dest: join(dir.path, 'p'), perClass: 6, size: 32, force: true });
    await rejection(() => synthesizePhantom({ dest: join(dir.path, 'q'), perClass: 2 }), UserError, /per-class/);
    await rejection(() => synthesizePhantom({ dest: join(dir.path, 'q'), size: 8 }), UserError, /size/);
    // Seeds as everywhere else: non-negative integers (-1 and 1.5 would otherwise name a phantom of their own).
    for (const seed of [-1, 1.5, 2 ** 53]) {
      await rejection(() => synthesizePhantom({ dest: join(dir.path, 'q'), perClass: 6, size: 32, seed }), UserError, /--seed must be an integer ≥ 0/);
    }
    assert.not.ok(existsSync(join(dir.path, 'q')), 'nothing written for a refused seed');
  } finally {
    await dir.cleanup();
  }
});

test('--force replaces only what synth owns; a folder that is not a phantom is refused even with --force', async () => {
  const dir = await tempDir();
  try {
    const dest = join(dir.path, 'p');
    await synthesizePhantom({ dest, perClass: 6, size: 32 });
    await writeFile(join(dest, 'notes.txt'), 'mine');
    await writeFile(join(dest, 'splits.csv'), 'stale');
    await synthesizePhantom({ dest, perClass: 7, size: 32, force: true });
    assert.is(await readFile(join(dest, 'notes.txt'), 'utf8'), 'mine', 'an unrelated file survives --force');
    assert.not.ok(existsSync(join(dest, 'splits.csv')), 'the split derived from the old phantom is gone');
    assert.is((await readdir(join(dest, 'Osteopenia'))).length, 7 + 4, 'the class folders are the new phantom');
    const other = join(dir.path, 'mine');
    await mkdir(other);
    await writeFile(join(other, 'thesis.tex'), 'x');
    await rejection(() => synthesizePhantom({ dest: other, perClass: 6, size: 32, force: true }), (e) => e instanceof UserError && /not an osteo phantom/.test(e.message) && !/--force/.test(e.message));
    assert.is(await readFile(join(other, 'thesis.tex'), 'utf8'), 'x');
  } finally {
    await dir.cleanup();
  }
});

test('--duplicate-rate plants byte-identical copies in Normal and Osteoporosis at that rate, and the index finds them', async () => {
  const dir = await tempDir();
  try {
    const dest = join(dir.path, 'p');
    const result = await synthesizePhantom({ dest, perClass: 10, size: 32, seed: 2, duplicateRate: 0.5 });
    // 10 distinct images per class: 10 copies make half of the class's planted-free files copies.
    assert.equal(result.files, [14 + 10, 14, 15 + 10]);
    const { report } = await indexDataset({ dataDir: dest });
    const normal = await readdir(join(dest, 'Normal'));
    const dups = normal.filter((name) => / \(dup \d+\)\./.test(name));
    assert.is(dups.length, 10);
    for (const name of dups) {
      const original = name.replace(/ \(dup \d+\)/, '');
      assert.ok((await readFile(join(dest, 'Normal', name))).equals(await readFile(join(dest, 'Normal', original))), `${name} is a byte copy of ${original}`);
    }
    assert.is(report.exactDuplicateGroups.length, result.expected.exactDuplicateGroups);
    assert.is((await readdir(join(dest, 'Osteopenia'))).filter((n) => n.includes('(dup')).length, 0, 'Osteopenia gets none');
    await rejection(() => synthesizePhantom({ dest: join(dir.path, 'q'), perClass: 6, duplicateRate: 1 }), UserError, /duplicate-rate/);
  } finally {
    await dir.cleanup();
  }
});

test.run();
