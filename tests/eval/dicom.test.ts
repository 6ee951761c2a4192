/**
 * DICOM through predict, Grad-CAM, the index, training and eval: a DICOM film and its lossless PNG
 * export (both written by pydicom/Pillow) give the same probabilities and the same index hashes; no
 * tag value reaches an output; the phantom written as DICOM runs index → split → train → eval →
 * predict end to end.
 */
import { copyFile, mkdir, readFile, readdir } from 'node:fs/promises';
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
    assert.match(refused.stderr, /--dicom-window: expected auto, file, or a centre and a width/);
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
    const { rows, report } = await indexDataset({ dataDir: data });
    const row = (path: string) => rows.find((r) => r.path === path)!;
    assert.is(row('Normal/film.dcm').contentHash, row('Normal/film.png').contentHash, 'the same decoded pixels');
    assert.equal(report.exactDuplicateGroups.map((g) => g.paths.sort()), [['Normal/film.dcm', 'Normal/film.png']]);
    assert.is(row('Osteopenia/IM0001').format, 'dicom');
    assert.is(row('Osteopenia/IM0001').depth, 12);
    assert.equal(report.bad.map((b) => [b.path, b.reason]).sort(), [
      ['Osteopenia/stack.dcm', 'dicom-multiframe'],
      ['Osteoporosis/report.dcm', 'dicom-no-pixels'],
      ['Osteoporosis/video.dcm', 'dicom-unsupported-syntax'],
    ]);
    assert.equal(
      report.identifyingTags.map((entry) => entry.path).sort(),
      ['Normal/film.dcm', 'Osteopenia/IM0001', 'Osteopenia/stack.dcm', 'Osteoporosis/deep.dcm', 'Osteoporosis/report.dcm', 'Osteoporosis/video.dcm'],
    );
    assert.equal(report.identifyingTags.find((entry) => entry.path === 'Normal/film.dcm')!.tags, ['PatientName', 'PatientID', 'PatientBirthDate']);
    assert.not.match(JSON.stringify(report), patientValues);
    assert.not.match(await readFile(join(data, 'index.csv'), 'utf8'), patientValues);
    const cli = await captureMain(['data', 'index', '--data', data]);
    assert.is(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /patient data: +6 DICOM files carry patient-identifying attributes/);
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
