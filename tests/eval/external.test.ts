import { copyFile, cp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import sharp from 'sharp';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { classNames, indexDataset, readSplitManifest, splitDataset, synthesizePhantom } from '../../src/data/index.js';
import { calibrateRuns } from '../../src/eval/calibrate.js';
import { evaluateRuns } from '../../src/eval/evaluate.js';
import { predictImages } from '../../src/eval/predict.js';
import { classificationMetrics, type EvaluationReport, type ModelSummary } from '../../src/report/index.js';
import { writeDicom } from '../../src/data/dicom-write.js';
import { writeRunSplit } from '../../src/runs/index.js';
import { DataError } from '../../src/util/index.js';
import { captureMain } from '../helpers/cli.js';
import { rejection, refusal } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';
import { writeRunFixture } from './fixtures.js';
import { setupOnce } from './helpers.js';

let backend: BackendHandle;
let root = '';
let cleanup: () => Promise<void> = async () => undefined;
/** The training phantom (seed 42), indexed and split, and a run whose split record points at it. */
let train = '';
let run = '';
/** A phantom of another seed: images the run never saw. */
let fresh = '';

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  ({ path: root, cleanup } = await tempDir('osteo-external-'));
  train = join(root, 'train');
  await synthesizePhantom({ dest: train, perClass: 10, size: 64, seed: 42 });
  await indexDataset({ dataDir: train });
  await splitDataset({ dataDir: train });
  run = (await writeRunFixture(join(root, 'runs', 'r18'), 'resnet18', { imageSize: 32, seed: 31 })).dir;
  await writeRunSplit(run, train);
  fresh = join(root, 'fresh');
  await synthesizePhantom({ dest: fresh, perClass: 8, size: 64, seed: 7 });
});

test.after(() => cleanup());

type Json = Record<string, any>;

const evaluate = (dataDir: string, extra: Partial<Parameters<typeof evaluateRuns>[0]> = {}) =>
  evaluateRuns({ backend, runs: [run], dataDir, external: true, outDir: null, resamples: 50, ...extra });

const section = (report: EvaluationReport, key: string): Json => report.sections!.find((s) => s.key === key)!.json as Json;

async function imagesOf(dir: string): Promise<string[]> {
  const paths: string[] = [];
  for (const name of classNames) {
    const entries = await readdir(join(dir, name)).catch(() => [] as string[]);
    paths.push(...entries.filter((e) => !e.startsWith('.')).map((e) => `${name}/${e}`));
  }
  return paths.sort();
}

/** The metrics of `m` on the images at `indices`, computed here from its predictions. */
function subsetAccuracy(report: EvaluationReport, m: ModelSummary, indices: number[]): number {
  const labels = indices.map((i) => report.images[i]!.label);
  return classificationMetrics(labels, indices.map((i) => m.predictions[i]!), 3).accuracy;
}

test('a phantom of another seed evaluates as external: every image, no copy found, both rows alike', async () => {
  const warnings: string[] = [];
  const out = join(root, 'report-fresh');
  const { report, written } = await evaluate(fresh, { outDir: out, onWarning: (w) => warnings.push(w) });
  assert.equal(report.images.map((i) => i.path).sort(), await imagesOf(fresh));
  assert.is(report.split, 'external');
  const external = section(report, 'external');
  assert.equal(external.classesPresent, classNames);
  assert.equal(external.classesAbsent, []);
  assert.equal(external.ignoredFiles, ['phantom.json']);
  assert.equal(external.leakage.total, { images: report.images.length, exact: 0, near: 0, withoutCopies: report.images.length, otherLabel: 0 });
  assert.is(external.leakage.mostlyTraining, false);
  assert.equal(external.leakage.against[0].images, (await readSplitManifest(train)).filter((r) => r.split !== 'test').length);
  assert.is(external.metrics.withoutCopies.models[0].accuracy, report.models[0]!.metrics.accuracy);
  // No thresholds are chosen on the folder, and this run stored none: said, and nothing else.
  assert.equal(warnings.map((w) => /^no screening operating points on an external folder/.test(w)), [true]);
  assert.is(report.operatingPoints, undefined);
  // A temperature re-fitted on the folder itself is reported apart, and lowers its NLL there.
  const refit = external.refittedOnExternal[0];
  assert.ok(refit.temperature > 0 && refit.nllAfter <= refit.nllBefore + 1e-9, JSON.stringify(refit));
  assert.ok(Math.abs(refit.nllBefore - (report.models[0]!.values.nll as number)) < 1e-9);
  // The same reader and eval transform as predict: same probabilities.
  const predicted = await predictImages({ backend, images: [join(fresh, report.images[0]!.path)], runs: [run] });
  predicted.images[0]!.probabilities.forEach((p, c) => assert.ok(Math.abs(p - report.models[0]!.probabilities[c]!) < 1e-6));
  // evaluation.json carries the record and the section; results.md both rows.
  const record = JSON.parse(await readFile(join(out, 'evaluation.json'), 'utf8')) as Json;
  assert.is(record.split, 'external');
  assert.equal(record.external.leakage.total, external.leakage.total);
  const markdown = await readFile(join(out, 'results.md'), 'utf8');
  assert.match(markdown, /## External validation/);
  assert.match(markdown, new RegExp(`The ${report.images.length} images with no copy in training`));
  assert.not.match(markdown, /WARNING/);
  assert.match(markdown, /Re-fitted on the external images \(not a validation\)/);
  assert.ok(written!.files.includes('evaluation.json'));
});

test('a folder that copies half of the training images counts them per class, exact and near, and gives both metric rows', async () => {
  const dir = join(root, 'half');
  const manifest = await readSplitManifest(train);
  const seen = manifest.filter((r) => r.split !== 'test');
  const copied = seen.filter((_, i) => i % 2 === 0);
  const expectedExact = classNames.map(() => 0);
  for (const row of copied) {
    await mkdir(join(dir, classNames[row.label]!), { recursive: true });
    await copyFile(join(train, row.path), join(dir, classNames[row.label]!, `copy-${row.path.split('/')[1]}`));
    expectedExact[row.label]!++;
  }
  // A re-encoded, downscaled copy of a training image: a near copy.
  const source = seen.find((_, i) => i % 2 === 1)!;
  await sharp(join(train, source.path)).resize(48).jpeg({ quality: 85 }).toFile(join(dir, classNames[source.label]!, 'resized.jpg'));
  // And as many unseen images.
  const unseen = (await imagesOf(fresh)).slice(0, copied.length);
  for (const path of unseen) await copyFile(join(fresh, path), join(dir, path.replace('/', '/fresh-')));
  const warnings: string[] = [];
  const { report } = await evaluate(dir, { onWarning: (w) => warnings.push(w) });
  const leakage = section(report, 'external').leakage;
  assert.equal(
    leakage.perClass.map((c: Json) => c.exact),
    expectedExact,
  );
  assert.is(leakage.total.exact, copied.length);
  assert.is(leakage.total.near, 1);
  const near = leakage.copies.find((c: Json) => c.kind === 'near');
  assert.equal([near.path, near.trainingPath], [`${classNames[source.label]}/resized.jpg`, source.path]);
  assert.ok(near.distance > 0 && near.distance <= leakage.nearThreshold);
  assert.is(leakage.total.withoutCopies, unseen.length);
  // More than half are copies: said loudly, in the report and as a warning.
  assert.is(leakage.mostlyTraining, true);
  assert.ok(report.sections![0]!.banner!.startsWith('WARNING'));
  assert.ok(warnings.some((w) => /mostly training data/.test(w)));
  // The row without copies is the models' metrics on exactly those images.
  const clean = report.images.flatMap((image, i) => (image.path.includes('/fresh-') ? [i] : []));
  const rows = section(report, 'external').metrics;
  assert.is(rows.withoutCopies.images, clean.length);
  assert.is(rows.withoutCopies.models[0].accuracy, subsetAccuracy(report, report.models[0]!, clean));
  assert.is(rows.all.models[0].accuracy, report.models[0]!.metrics.accuracy);
});

test('a two-class folder scores the classes present: no Osteopenia rows, macro averages over Normal and Osteoporosis', async () => {
  const dir = join(root, 'two-class');
  for (const name of ['Normal', 'Osteoporosis']) await cp(join(fresh, name), join(dir, name), { recursive: true });
  const out = join(root, 'report-two');
  const { report } = await evaluate(dir, { outDir: out });
  const external = section(report, 'external');
  assert.equal(external.classesAbsent, ['Osteopenia']);
  assert.equal(report.absentClasses, [1]);
  const m = report.models[0]!;
  const labels = report.images.map((i) => i.label);
  // By hand: F1 of each present class from its counts, and the Mann–Whitney AUC of its probability.
  const f1 = (k: number) => {
    const tp = labels.filter((y, i) => y === k && m.predictions[i] === k).length;
    const predicted = labels.filter((_, i) => m.predictions[i] === k).length;
    const support = labels.filter((y) => y === k).length;
    const [p, r] = [predicted === 0 ? 0 : tp / predicted, tp / support];
    return p + r === 0 ? 0 : (2 * p * r) / (p + r);
  };
  const auc = (k: number) => {
    const score = (i: number) => m.probabilities[i * 3 + k]!;
    const pos = labels.flatMap((y, i) => (y === k ? [i] : []));
    const neg = labels.flatMap((y, i) => (y !== k ? [i] : []));
    let wins = 0;
    for (const a of pos) for (const b of neg) wins += score(a) > score(b) ? 1 : score(a) === score(b) ? 0.5 : 0;
    return wins / (pos.length * neg.length);
  };
  assert.ok(Math.abs((m.values.macroF1 as number) - (f1(0) + f1(2)) / 2) < 1e-12);
  assert.ok(Math.abs((m.values.macroAuc as number) - (auc(0) + auc(2)) / 2) < 1e-12);
  assert.is(m.values.weakClassRecall, null);
  assert.is((m.values.recall as (number | null)[])[1], null);
  assert.is((m.values.support as (number | null)[])[2], labels.filter((y) => y === 2).length);
  const markdown = await readFile(join(out, 'results.md'), 'utf8');
  assert.not.match(markdown, /\| resnet18 \| Osteopenia \|/);
  assert.match(markdown, /\| resnet18 \| Osteoporosis \|/);
  assert.match(markdown, /absent: Osteopenia/);
});

test('images of another bit depth, size or format (16-bit PNG, WebP, 12-bit DICOM) read through the same reader as predict', async () => {
  const dir = join(root, 'depths');
  await mkdir(join(dir, 'Normal'), { recursive: true });
  // A 16-bit gray film (as readers.test.ts writes one), a small one and a large one.
  const deep = Uint16Array.from({ length: 90 * 70 }, (_, i) => (i * 977) % 65536);
  await sharp(deep, { raw: { width: 90, height: 70, channels: 1 } }).toColourspace('grey16').png().toFile(join(dir, 'Normal', 'deep.png'));
  await sharp(join(fresh, (await imagesOf(fresh))[1]!)).resize(23, 31, { fit: 'fill' }).png().toFile(join(dir, 'Normal', 'small.png'));
  await sharp(join(fresh, (await imagesOf(fresh))[2]!)).resize(400).webp({ lossless: true }).toFile(join(dir, 'Normal', 'large.webp'));
  // And a 12-bit DICOM film with a window, which stays deeper than 8 bits through the reader.
  const values = Uint16Array.from({ length: 72 * 88 }, (_, i) => 800 + ((i * 131) % 2400));
  await writeFile(join(dir, 'Normal', 'film.dcm'), writeDicom({ values, width: 72, height: 88, bitsStored: 12, photometric: 'MONOCHROME2', window: { center: 2000, width: 2400 }, seed: 'external-depth' }));
  const { report } = await evaluate(dir);
  assert.is(report.images.length, 4);
  assert.equal(section(report, 'external').classesAbsent, ['Osteopenia', 'Osteoporosis']);
  const predicted = await predictImages({ backend, images: report.images.map((i) => join(dir, i.path)), runs: [run] });
  predicted.images.forEach((image, i) => image.probabilities.forEach((p, c) => assert.ok(Math.abs(p - report.models[0]!.probabilities[i * 3 + c]!) < 1e-6)));
});

test('extra or misnamed folders are refused, naming the near misses; unreadable files too', async () => {
  const dir = join(root, 'misnamed');
  await cp(join(fresh, 'Normal'), join(dir, 'normal'), { recursive: true });
  await mkdir(join(dir, 'misc'));
  await cp(join(fresh, 'Osteoporosis'), join(dir, 'Osteoporosis'), { recursive: true });
  await refusal(evaluate(dir), /'misc'/, /'normal' \(near miss: rename it to 'Normal'\)/);
  const broken = join(root, 'broken');
  await cp(join(fresh, 'Normal'), join(broken, 'Normal'), { recursive: true });
  await writeFile(join(broken, 'Normal', 'notes.txt'), 'not an image');
  await refusal(evaluate(broken), /Normal\/notes\.txt/, /every image/);
});

test('an image changed after the folder was scanned for copies is refused, naming it', async () => {
  const dir = join(root, 'changing');
  await cp(join(fresh, 'Normal'), join(dir, 'Normal'), { recursive: true });
  const [first] = await imagesOf(dir);
  const other = (await imagesOf(fresh)).find((p) => p.startsWith('Osteoporosis/') && p.endsWith(first!.slice(first!.lastIndexOf('.'))))!;
  const error = await rejection(
    evaluate(dir, { onModelsLoaded: () => void copyFileSync(join(fresh, other), join(dir, first!)) }),
    DataError,
    /pixels changed since the folder was scanned/,
  );
  assert.ok(error.message.startsWith(join(dir, first!)));
});

test('the leakage check cannot be skipped: a run without its split record, a re-split or the training folder itself are refused', async () => {
  const bare = (await writeRunFixture(join(root, 'runs', 'bare'), 'resnet18', { imageSize: 32, seed: 33 })).dir;
  await refusal(evaluateRuns({ backend, runs: [bare], dataDir: fresh, external: true, outDir: null }), /no split record/, /leakage check/);
  const moved = join(root, 'train-copy');
  await cp(train, moved, { recursive: true });
  const resplit = (await writeRunFixture(join(root, 'runs', 'resplit'), 'resnet18', { imageSize: 32, seed: 34 })).dir;
  await writeRunSplit(resplit, moved);
  await writeFile(join(moved, 'splits.csv'), `${await readFile(join(moved, 'splits.csv'), 'utf8')}\n`);
  await refusal(evaluateRuns({ backend, runs: [resplit], dataDir: fresh, external: true, outDir: null }), /re-split/, /leakage check/);
  await refusal(evaluate(train), /is the dataset run .* was trained on/);
  await refusal(evaluate(fresh, { weights: 'auto' }), /nothing is fitted on an --external folder/);
});

test('calibrated runs keep their own temperatures; their ensemble is the vote of the calibrated members, with nothing fitted on the folder', async () => {
  const runs = [];
  for (const [name, seed] of [['cal-a', 35], ['cal-b', 36]] as const) {
    const dir = (await writeRunFixture(join(root, 'runs', name), 'resnet18', { imageSize: 32, seed })).dir;
    await writeRunSplit(dir, train);
    runs.push(dir);
  }
  const fitted = await calibrateRuns({ backend, runs, dataDir: train });
  const { report } = await evaluateRuns({ backend, runs, dataDir: fresh, external: true, outDir: null, resamples: 20 });
  assert.equal(report.calibration!.models.map((m) => m.temperature), fitted.map((f) => f.record.temperature));
  const [a, b, vote] = report.models;
  for (let i = 0; i < vote!.probabilities.length; i++) assert.ok(Math.abs(vote!.probabilities[i]! - (a!.probabilities[i]! + b!.probabilities[i]!) / 2) < 1e-6);
  assert.is(section(report, 'external').ensembleUncalibratedVote, true);
});

test('osteo eval --external: the JSON carries the external section; --split with --external is refused', async () => {
  const out = join(root, 'cli-report');
  const ok = await captureMain(['eval', '--run', run, '--data', fresh, '--external', '--resamples', '20', '--out', out, '--json', '--backend', 'wasm']);
  assert.is(ok.code, 0, ok.stderr);
  const json = JSON.parse(ok.stdout) as Json;
  assert.is(json.split, 'external');
  assert.is(json.external.leakage.total.exact, 0);
  const human = await captureMain(['eval', '--run', run, '--data', fresh, '--external', '--resamples', '20', '--out', out, '--backend', 'wasm']);
  assert.is(human.code, 0, human.stderr);
  assert.match(human.stdout, /copies of training images: 0 exact, 0 near/);
  const refused = await captureMain(['eval', '--run', run, '--data', fresh, '--external', '--split', 'val', '--backend', 'wasm']);
  assert.is(refused.code, 1);
  assert.match(refused.stderr, /--split/);
  const table = join(root, 'outside.csv');
  await writeFile(table, 'path,site\nNormal/a.png,A\n../../etc/passwd,B\n');
  const badTable = await captureMain(['eval', '--run', run, '--data', fresh, '--external', '--metadata', table, '--backend', 'wasm']);
  assert.is(badTable.code, 1);
  assert.match(badTable.stderr, /outside\.csv: row 3: path '\.\.\/\.\.\/etc\/passwd' is not inside the data folder/);
  await rm(out, { recursive: true, force: true });
});

test.run();
