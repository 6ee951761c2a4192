/**
 * DICOM through predict, Grad-CAM, the index, training and eval: a DICOM film and its lossless PNG
 * export (both written by pydicom/Pillow) give the same probabilities and the same index hashes; no
 * tag value reaches an output; the phantom written as DICOM runs index → split → train → eval →
 * predict end to end.
 */
import { copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useBackend } from '../../src/backend/index.js';
import { indexDataset, splitDataset, synthesizePhantom } from '../../src/data/index.js';
import { evaluateRuns, predictImages } from '../../src/eval/index.js';
import { trainModel } from '../../src/train/index.js';
import { dicomFixtures, dicomTools } from '../fixtures/dicom/fixtures.js';
import { captureMain } from '../helpers/cli.js';
import { testWith } from '../helpers/requirements.js';
import { tempDir } from '../helpers/temp.js';
import { tinyConfig } from '../train/helpers.js';
import { writeRunFixture } from './fixtures.js';

const patientValues = /Phantom\^Knee|Phantom Knee|PID-0001|19500101/;

/** The bad films of the list (besides multi-frame, SR and a syntax without a decoder): name, reason, detail. */
const badFilms: [string, string, RegExp][] = [
  ['DICOMDIR', 'dicom-no-pixels', /a DICOMDIR/],
  ['bad-huge.dcm', 'too-large', /60000×60000 = 3,600,000,000 pixels, above the limit.*--max-pixels/],
  ['bad-length.dcm', 'unreadable', /the pixel data is 1,920 bytes, but 40 rows × 48 columns × 1 samples × 16 bits need 3,840/],
  ['bad-truncated-header.dcm', 'truncated', /cannot parse the DICOM data set/],
  ['bad-truncated.dcm', 'truncated', /the file ends after|buffer overrun/],
  ['bad-zero.dcm', 'unreadable', /declares a 0×0 image/],
];

/** The bad films into `dir`: pydicom's fixtures, and two truncations of a good film. */
async function writeBadFilms(dir: string): Promise<string[]> {
  const { dir: fixtures } = dicomFixtures();
  const whole = await readFile(join(fixtures, 'u12-mono2-window.dcm'));
  await writeFile(join(dir, 'bad-truncated.dcm'), whole.subarray(0, whole.length - 500));
  await writeFile(join(dir, 'bad-truncated-header.dcm'), whole.subarray(0, 200));
  for (const name of ['DICOMDIR', 'bad-huge.dcm', 'bad-length.dcm', 'bad-zero.dcm']) await copyFile(join(fixtures, name), join(dir, name));
  return badFilms.map(([name]) => join(dir, name));
}

testWith(dicomTools, test, 'predict film.dcm and its lossless PNG export: the same probabilities to 1e-6; a Grad-CAM overlay; no tag value in the output', async () => {
  const dir = await tempDir();
  try {
    const { dir: fixtures } = dicomFixtures();
    const backend = await useBackend('wasm');
    const run = await writeRunFixture(join(dir.path, 'run'), 'resnet18', { imageSize: 32, seed: 4 });
    const images = [join(fixtures, 'u8-mono2.dcm'), join(fixtures, 'u8-mono2.png'), join(fixtures, 'u12-mono2-window.dcm')];
    const result = await predictImages({ backend, images, runs: [run.dir], gradcamDir: join(dir.path, 'cam') });
    assert.equal(result.failed, []);
    const [dcm, png, deep] = result.images.map((image) => image.probabilities);
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(dcm![c]! - png![c]!) <= 1e-6, `class ${c}: ${dcm![c]} vs ${png![c]}`);
    assert.ok(deep!.some((p, c) => Math.abs(p - dcm![c]!) > 1e-4), 'another film gives other probabilities (the check can fail)');
    const overlays = await readdir(join(dir.path, 'cam'));
    assert.equal(overlays.filter((name) => name.startsWith('u12-mono2-window')).length, 1, overlays.join(', '));
    assert.not.match(JSON.stringify(result), patientValues);

    const cli = await captureMain(['predict', images[2]!, '--run', run.dir, '--backend', 'wasm', '--json', '--dicom-window', '2000,800']);
    assert.is(cli.code, 0, cli.stderr);
    assert.not.match(cli.stdout + cli.stderr, patientValues);
    const windowed = (JSON.parse(cli.stdout) as { images: { probabilities: number[] }[] }).images[0]!.probabilities;
    assert.ok(windowed.some((p, c) => Math.abs(p - deep![c]!) > 1e-5), '--dicom-window changes the input');
    const refused = await captureMain(['predict', images[2]!, '--run', run.dir, '--dicom-window', 'soft']);
    assert.is.not(refused.code, 0);
    assert.match(refused.stderr, /--dicom-window: dicomWindow: expected auto, file, or a centre and a width/);
  } finally {
    await dir.cleanup();
  }
});

testWith(dicomTools, test, 'predict: each bad film is a failure with its reason, and the batch goes on with the good ones', async () => {
  const dir = await tempDir();
  try {
    const { dir: fixtures } = dicomFixtures();
    const backend = await useBackend('wasm');
    const run = await writeRunFixture(join(dir.path, 'run'), 'resnet18', { imageSize: 32, seed: 4 });
    const bad = await writeBadFilms(dir.path);
    for (const name of ['bad-multiframe.dcm', 'bad-sr.dcm', 'bad-mpeg2.dcm']) await copyFile(join(fixtures, name), join(dir.path, name));
    const good = [join(fixtures, 'u8-mono2.dcm'), join(fixtures, 'jpeg-ls.dcm')];
    const images = [good[0]!, ...bad, ...['bad-multiframe.dcm', 'bad-sr.dcm', 'bad-mpeg2.dcm'].map((name) => join(dir.path, name)), good[1]!];
    const result = await predictImages({ backend, images, runs: [run.dir] });
    assert.equal(result.images.map((image) => image.path), good);
    const reasons: [string, RegExp][] = [
      ...badFilms.map(([name, , detail]): [string, RegExp] => [name, detail]),
      ['bad-multiframe.dcm', /2 frames/],
      ['bad-sr.dcm', /a structured report/],
      ['bad-mpeg2.dcm', /MPEG2 Main Profile\) has no decoder/],
    ];
    assert.equal(result.failed.map((f) => f.path), reasons.map(([name]) => join(dir.path, name)));
    for (const [name, reason] of reasons) assert.match(result.failed.find((f) => f.path === join(dir.path, name))!.error, reason, name);
    assert.not.match(JSON.stringify(result), patientValues);
    const cli = await captureMain(['predict', ...images, '--run', run.dir, '--backend', 'wasm', '--json']);
    assert.is(cli.code, 1, 'some inputs failed: the exit status says so');
    assert.is((JSON.parse(cli.stdout) as { images: unknown[] }).images.length, 2, 'the good films are printed');
    assert.match(cli.stderr, /9 of 11 inputs could not be predicted/);
    assert.not.match(cli.stdout + cli.stderr, patientValues);
  } finally {
    await dir.cleanup();
  }
});

testWith(dicomTools, test, 'data index: a DICOM film and its PNG export are one image; files with patient attributes are listed without values; bad DICOM files are reported and the batch goes on', async () => {
  const dir = await tempDir();
  try {
    const { dir: fixtures } = dicomFixtures();
    const data = join(dir.path, 'data');
    for (const name of ['Normal', 'Osteopenia', 'Osteoporosis']) await mkdir(join(data, name), { recursive: true });
    await copyFile(join(fixtures, 'u8-mono2.dcm'), join(data, 'Normal', 'film.dcm'));
    await copyFile(join(fixtures, 'u8-mono2.png'), join(data, 'Normal', 'film.png'));
    await copyFile(join(fixtures, 'jpeg-ls.dcm'), join(data, 'Osteopenia', 'IM0001')); // no extension: found by its DICM preamble
    await copyFile(join(fixtures, 'bad-multiframe.dcm'), join(data, 'Osteopenia', 'stack.dcm'));
    await copyFile(join(fixtures, 'bad-sr.dcm'), join(data, 'Osteoporosis', 'report.dcm'));
    await copyFile(join(fixtures, 'bad-mpeg2.dcm'), join(data, 'Osteoporosis', 'video.dcm'));
    await copyFile(join(fixtures, 'u16-mono1-negslope.dcm'), join(data, 'Osteoporosis', 'deep.dcm'));
    await writeBadFilms(join(data, 'Normal'));
    const { rows, report } = await indexDataset({ dataDir: data });
    const row = (path: string) => rows.find((r) => r.path === path)!;
    assert.is(row('Normal/film.dcm').contentHash, row('Normal/film.png').contentHash, 'the same decoded pixels');
    assert.equal(report.exactDuplicateGroups.map((g) => g.paths.sort()), [['Normal/film.dcm', 'Normal/film.png']]);
    assert.is(row('Osteopenia/IM0001').format, 'dicom');
    assert.is(row('Osteopenia/IM0001').depth, 12);
    assert.equal(report.bad.map((b) => [b.path, b.reason]).sort(), [
      ...badFilms.map(([name, reason]) => [`Normal/${name}`, reason]),
      ['Osteopenia/stack.dcm', 'dicom-multiframe'],
      ['Osteoporosis/report.dcm', 'dicom-no-pixels'],
      ['Osteoporosis/video.dcm', 'dicom-unsupported-syntax'],
    ]);
    for (const [name, , detail] of badFilms) assert.match(report.bad.find((b) => b.path === `Normal/${name}`)!.detail, detail, name);
    assert.equal(rows.filter((r) => r.status === 'ok').map((r) => r.path).sort(), ['Normal/film.dcm', 'Normal/film.png', 'Osteopenia/IM0001', 'Osteoporosis/deep.dcm'], 'the good files are indexed');
    // A film refused after its data set was read still says which patient attributes it carries.
    const listed = report.identifyingTags.map((entry) => entry.path);
    for (const path of ['Normal/film.dcm', 'Osteopenia/IM0001', 'Osteopenia/stack.dcm', 'Osteoporosis/deep.dcm', 'Osteoporosis/report.dcm', 'Osteoporosis/video.dcm', 'Normal/bad-length.dcm', 'Normal/bad-huge.dcm']) {
      assert.ok(listed.includes(path), path);
    }
    assert.not.ok(listed.includes('Normal/film.png') || listed.includes('Normal/DICOMDIR'), 'only files that carry the attributes');
    assert.equal(report.identifyingTags.find((entry) => entry.path === 'Normal/film.dcm')!.tags, ['PatientName', 'PatientID', 'PatientBirthDate']);
    assert.not.match(JSON.stringify(report), patientValues);
    assert.not.match(await readFile(join(data, 'index.csv'), 'utf8'), patientValues);
    const cli = await captureMain(['data', 'index', '--data', data]);
    assert.is(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /patient data: +\d+ DICOM files carry patient-identifying attributes/);
    assert.not.match(cli.stdout + cli.stderr, patientValues);
  } finally {
    await dir.cleanup();
  }
});

test('the phantom written as DICOM: MONOCHROME1/2 and 12-bit files that index, split, train, evaluate and predict end to end', async () => {
  const dir = await tempDir();
  try {
    const data = join(dir.path, 'phantom');
    const synth = await synthesizePhantom({ dest: data, perClass: 9, size: 32, seed: 3, format: 'dicom' });
    const { rows, report } = await indexDataset({ dataDir: data });
    assert.equal(report.bad, []);
    const dicomRows = rows.filter((r) => r.format === 'dicom');
    assert.ok(dicomRows.length >= 15, `${dicomRows.length} DICOM files`);
    assert.equal([...new Set(dicomRows.map((r) => r.depth))].sort(), [12, 8]);
    assert.equal(report.identifyingTags, [], 'the phantom carries no patient attributes');
    assert.is(report.exactDuplicateGroups.length, synth.expected.exactDuplicateGroups, 'the planted groups, as for the PNG phantom');
    await splitDataset({ dataDir: data, val: 0.3, test: 0.2 });
    const run = join(dir.path, 'run');
    const config = await tinyConfig(data, run, { epochs: '1' });
    const backend = await useBackend('wasm');
    await trainModel(config, { backend });
    const evaluation = await evaluateRuns({ backend, runs: [run], dataDir: data, outDir: null, resamples: 20 });
    assert.is(evaluation.report.models.length, 1);
    const film = dicomRows.find((r) => r.depth === 12)!;
    const predicted = await predictImages({ backend, images: [join(data, film.path)], runs: [run] });
    assert.equal(predicted.failed, []);
    assert.ok(Math.abs(predicted.images[0]!.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-5);
  } finally {
    await dir.cleanup();
  }
});

test.run();
