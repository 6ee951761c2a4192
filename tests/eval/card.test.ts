/**
 * The model card: every number in model-card.json equals the record it came from (evaluation.json's
 * summary, results.csv, calibration.json, index.csv and splits.csv read back here), and every number
 * model-card.md prints is one of model-card.json's, formatted. Exports carry the card and record it;
 * `osteo card` writes one alone; reports of other runs are refused; absent sections say so.
 */
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { setupOnce } from './helpers.js';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { classNames, splitDataset, synthesizePhantom } from '../../src/data/index.js';
import { calibrateRuns } from '../../src/eval/calibrate.js';
import { evaluateRuns } from '../../src/eval/evaluate.js';
import { exportRecordFile, exportRun } from '../../src/eval/export.js';
import { writeModelCard } from '../../src/eval/card-folder.js';
import type { ModelCard } from '../../src/eval/card.js';
import { readRunCalibration, runCalibrationPath, writeRunSplit } from '../../src/runs/index.js';
import { reportSummaryJson } from '../../src/report/index.js';
import { parseCsvRecords, sha256Of } from '../../src/util/index.js';
import { captureMain } from '../helpers/cli.js';
import { refusal } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';
import { writeRunFixture, type RunFixture } from './fixtures.js';

let backend: BackendHandle;
let root = '';
let cleanup: () => Promise<void> = async () => undefined;
let data = '';
let a: RunFixture;
let b: RunFixture;
let report = '';
let summary: unknown;

setupOnce(test, async () => {
  backend = await useBackend('wasm');
  const temp = await tempDir('osteo-card-');
  root = temp.path;
  cleanup = temp.cleanup;
  data = join(root, 'phantom');
  await synthesizePhantom({ dest: data, perClass: 6, size: 48, seed: 7 });
  await splitDataset({ dataDir: data, val: 0.25, test: 0.3, seed: 2 });
  a = await writeRunFixture(join(root, 'runs', 'a'), 'resnet18', { imageSize: 32, seed: 51 });
  b = await writeRunFixture(join(root, 'runs', 'b'), 'resnet18', { imageSize: 32, seed: 52 });
  for (const run of [a, b]) await writeRunSplit(run.dir, data);
  await calibrateRuns({ backend, runs: [a.dir, b.dir], dataDir: data });
  const evaluated = await evaluateRuns({ backend, runs: [a.dir, b.dir], dataDir: data, resamples: 50 });
  report = evaluated.written!.dir;
  // evaluation.json keeps the operating points under a key of their own, beside the summary.
  const { operatingPoints: _own, ...rest } = reportSummaryJson(evaluated.report) as Record<string, unknown>;
  summary = JSON.parse(JSON.stringify(rest));
});

test.after(async () => {
  await cleanup();
});

type Json = Record<string, unknown>;

/** Every number of a JSON value (its leaves), for finding a printed number's source. */
function leaves(value: unknown, into: number[] = []): number[] {
  if (typeof value === 'number') into.push(value);
  else if (Array.isArray(value)) for (const v of value) leaves(v, into);
  else if (typeof value === 'object' && value !== null) for (const v of Object.values(value)) leaves(v, into);
  return into;
}

/** The decimal numbers model-card.md prints, outside code (hashes, JSON recipes) and the footer's date. */
function printedDecimals(markdown: string): string[] {
  const body = markdown.split('\n---\n')[0]!.replace(/```[\s\S]*?```/g, '').replace(/`[^`]*`/g, '');
  return body.match(/-?\d+\.\d+/g) ?? [];
}

/** The body rows of the first Markdown table whose header line starts with `header`. */
function tableAfter(markdown: string, header: string): string[][] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.startsWith(header));
  assert.ok(start >= 0, `a table headed ${header}`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.slice(2, -2).split(' | '));
  }
  return rows;
}

const f3 = (v: number) => v.toFixed(3);

test('osteo card: every number equals its report — evaluation.json, results.csv, calibration.json, index.csv and splits.csv — and the Markdown prints only the JSON’s numbers', async () => {
  const out = join(root, 'card');
  const { files, card } = await writeModelCard({ runs: [a.dir, b.dir], outDir: out });
  assert.equal(files, ['model-card.json', 'model-card.md']);
  const json = JSON.parse(await readFile(join(out, 'model-card.json'), 'utf8')) as ModelCard;
  assert.equal(json, JSON.parse(JSON.stringify(card)));
  const markdown = await readFile(join(out, 'model-card.md'), 'utf8');

  // Metrics: the report's own numbers, overall (with intervals) and per class.
  const evaluation = JSON.parse(await readFile(join(report, 'evaluation.json'), 'utf8')) as { summary: { models: Json[] } };
  assert.equal(evaluation.summary, summary, "evaluation.json holds the report's numbers, as eval --json prints them");
  const csv = parseCsvRecords(await readFile(join(report, 'results.csv'), 'utf8'), 'results.csv');
  const [internal] = json.evaluations;
  assert.is(internal!.role, 'internal');
  assert.is(json.notEvaluated, null);
  assert.equal(internal!.models.map((m) => m.name), evaluation.summary.models.map((m) => m.name));
  for (const [i, model] of internal!.models.entries()) {
    const source = evaluation.summary.models[i]!;
    for (const metric of model.overall) {
      assert.is(metric.value, source[metric.key] ?? null, `${model.name} ${metric.key}`);
      assert.equal(metric.interval, source[`${metric.key}Interval`] ?? null, `${model.name} ${metric.key} interval`);
    }
    const perClass = source.perClass as Json[];
    model.perClass.forEach((row, k) => row.metrics.forEach((metric) => assert.is(metric.value, perClass[k]![metric.key] ?? null, `${model.name} ${row.class} ${metric.key}`)));
    // results.csv rounds to 6 decimals: the same numbers.
    assert.ok(Math.abs(Number(csv[i]!.accuracy) - model.overall.find((m) => m.key === 'accuracy')!.value!) < 1e-6);
    assert.ok(Math.abs(Number(csv[i]!.accuracy_ci_low) - model.overall.find((m) => m.key === 'accuracy')!.interval![0]) < 1e-6);
  }
  // The overall table prints them to 3 decimals, with their intervals.
  const rows = tableAfter(markdown, '| model | accuracy (95% CI)');
  assert.is(rows.length, internal!.models.length, 'one row per model and the ensemble');
  internal!.models.forEach((model, i) => {
    const accuracy = model.overall.find((m) => m.key === 'accuracy')!;
    assert.is(rows[i]![1], `${f3(accuracy.value!)} (${f3(accuracy.interval![0])}–${f3(accuracy.interval![1])})`);
  });

  // Calibration: the temperatures of calibration.json, before and after from the report.
  for (const [i, run] of [a, b].entries()) {
    const record = (await readRunCalibration(run.dir))!;
    assert.is(json.models[i]!.calibration!.temperature, record.temperature);
    assert.is(json.models[i]!.calibration!.weightsSha256, record.weightsSha256);
    assert.is(json.models[i]!.calibration!.applied, true);
    assert.is(internal!.calibration!.models[i]!.temperature, record.temperature);
    assert.is(json.models[i]!.weights.sha256, sha256Of(await readFile(join(run.dir, 'best', 'model.safetensors'))));
  }
  const calibrationSource = (evaluation.summary as unknown as { calibration: { models: { before: Json; after: Json }[] } }).calibration.models;
  internal!.calibration!.models.forEach((m, i) => {
    for (const key of ['ece', 'adaptiveEce', 'meanClasswiseEce', 'brier', 'nll'] as const) {
      assert.is(m.before[key], calibrationSource[i]!.before[key]);
      assert.is(m.after[key], calibrationSource[i]!.after[key]);
    }
  });

  // Operating points: each point of evaluation.json's operatingPoints, its threshold and rates.
  const operating = (JSON.parse(await readFile(join(report, 'evaluation.json'), 'utf8')) as { operatingPoints: { models: { name: string; views: { points: Json[] }[] }[] } }).operatingPoints;
  const sourcePoints = operating.models.flatMap((m) => m.views.flatMap((v) => v.points.map((p) => ({ model: m.name, threshold: p.threshold, sensitivity: p.sensitivity }))));
  const points = internal!.operatingPoints!.points;
  assert.ok(points.length >= 6, 'three points on two views for each model');
  assert.equal(points.map((p) => ({ model: p.model, threshold: p.threshold, sensitivity: p.sensitivity })), sourcePoints);
  assert.match(markdown, /## Operating points\n\nFrom `\.\.\/runs\/eval-test-a\+b`/);
  assert.is(json.checklists[0]!.items.find((i) => i.id === '15')!.section, 'operatingPoints');

  // The flow, recounted here from index.csv and splits.csv.
  const index = parseCsvRecords(await readFile(join(data, 'index.csv'), 'utf8'), 'index.csv');
  const manifest = parseCsvRecords(await readFile(join(data, 'splits.csv'), 'utf8'), 'splits.csv');
  const flow = json.data[0]!.flow!;
  const count = (rows: Json[], keep: (row: Json) => boolean) => classNames.map((name) => rows.filter((row) => row.class === name && keep(row)).length);
  assert.equal(flow.found, count(index, () => true));
  assert.equal(flow.used, count(index, (row) => row.use === 'true'));
  assert.equal(flow.conflicts, count(index, (row) => String(row.note).includes('label conflict')));
  for (const split of ['train', 'val', 'test'] as const) assert.equal(flow.split[split], count(manifest, (row) => row.split === split));
  assert.is(json.data[0]!.manifestSha256, sha256Of(await readFile(join(data, 'splits.csv'))));
  assert.is(json.data[0]!.index!.sha256, sha256Of(await readFile(join(data, 'index.csv'))));
  assert.is(json.data[0]!.phantom, true);
  const flowTable = tableAfter(markdown, '| images |');
  assert.equal(flowTable[0], ['files found', ...flow.found.map(String), String(flow.found.reduce((x, y) => x + y, 0))]);
  assert.equal(flowTable[8], ['test', ...flow.split.test.map(String), String(flow.split.test.reduce((x, y) => x + y, 0))]);

  // Every decimal the Markdown prints is a number of the JSON at that precision.
  const numbers = leaves(json);
  const printed = printedDecimals(markdown);
  assert.ok(printed.length > 40, `the card prints its metrics (${printed.length} decimals)`);
  for (const token of printed) {
    const digits = token.split('.')[1]!.length;
    assert.ok(numbers.some((v) => v.toFixed(digits) === token), `${token} in model-card.md is a number of model-card.json: ${markdown.split('\n').find((line) => line.includes(token))}`);
  }

  // The sections, the limitations from the records, the checklists.
  assert.match(markdown, /Research use only\. Not a diagnostic device\./);
  assert.match(markdown, /reviewed by a clinician/);
  assert.ok(json.limitations.some((line) => /synthetic phantom/.test(line)));
  assert.ok(json.limitations.some((line) => /single source/.test(line)));
  assert.ok(json.limitations.some((line) => /resized to 37 px on its shorter side and centre-cropped to 32×32/.test(line)), json.limitations.join('\n'));
  assert.match(markdown, /## External validation\n\n_Not evaluated: /);
  assert.match(markdown, /## Subgroups\n\n_Not evaluated: /);
  const tripod = json.checklists.find((list) => list.name === 'TRIPOD+AI')!;
  const item = (id: string) => tripod.items.find((i) => i.id === id)!;
  assert.is(item('23a').section, 'performance');
  assert.is(item('17').section, null, 'ethics needs a human');
  assert.is(item('16').section, null, 'no external data: training versus evaluation needs a human');
  assert.is(tripod.items.length, 52, 'TRIPOD+AI: 27 items, 52 with their parts');
  assert.is(json.checklists.find((list) => list.name === 'CLAIM')!.items.length, 42);
  assert.ok(json.human.length > 0);
  assert.match(markdown, /\*\*\[to be written\]\*\* The reference standard/);
  // Paths relative to the card's folder.
  assert.is(json.models[0]!.run, '../runs/a');
  assert.not.match(JSON.stringify(json), new RegExp(root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
});

test('an external report is listed as external validation; a report of other runs, or a folder that is none, is refused by name', async () => {
  const other = join(root, 'external');
  await cp(data, other, { recursive: true });
  const external = (await evaluateRuns({ backend, runs: [a.dir, b.dir], dataDir: other, outDir: join(root, 'eval-external'), resamples: 20 })).written!.dir;
  const { card } = await writeModelCard({ runs: [a.dir, b.dir], reports: [report, external], outDir: join(root, 'card-external') });
  assert.equal(card.evaluations.map((e) => e.role), ['internal', 'external']);
  assert.is(card.checklists[0]!.items.find((i) => i.id === '16')!.section, 'external');
  assert.ok(!card.limitations.some((line) => /single source/.test(line)));
  const markdown = await readFile(join(root, 'card-external', 'model-card.md'), 'utf8');
  assert.match(markdown, /## External validation\n\n### The test split of `\.\.\/external`/);

  assert.match(await refusal(writeModelCard({ runs: [a.dir], reports: [report], outDir: join(root, 'card-x') })), /--eval .* evaluates .*, not .*: give the report of exactly these runs/);
  assert.match(await refusal(writeModelCard({ runs: [b.dir, a.dir], reports: [report], outDir: join(root, 'card-x') })), /in this order/);
  assert.match(await refusal(writeModelCard({ runs: [a.dir], reports: [data], outDir: join(root, 'card-x') })), /is not an osteo eval report: it has no evaluation\.json/);
  assert.not.ok(existsSync(join(root, 'card-x')), 'a refused card writes nothing');
});

test("a report's subgroup results: each group's models with their accuracy, and TRIPOD+AI 14 answered by them", async () => {
  const record = JSON.parse(await readFile(join(report, 'evaluation.json'), 'utf8')) as Json & { summary: { models: Json[] } };
  const groups = [
    { value: 'F', images: 4, tooSmall: false, models: record.summary.models },
    { value: 'M', images: 3, tooSmall: true, models: [] },
  ];
  const withSubgroups = join(root, 'eval-subgroups');
  await mkdir(withSubgroups, { recursive: true });
  await writeFile(join(withSubgroups, 'evaluation.json'), JSON.stringify({ ...record, subgroups: { metadataFile: join(root, 'meta.csv'), minSize: 5, attributes: [{ attribute: 'sex', notRecorded: 2, groups }] } }));
  const { card } = await writeModelCard({ runs: [a.dir, b.dir], reports: [withSubgroups], outDir: join(root, 'card-subgroups') });
  const [subgroup] = card.evaluations[0]!.subgroups!;
  assert.equal([subgroup!.attribute, subgroup!.notRecorded, subgroup!.groups.map((g) => [g.value, g.images, g.tooSmall, g.models.length])], ['sex', 2, [['F', 4, false, 3], ['M', 3, true, 0]]]);
  const markdown = await readFile(join(root, 'card-subgroups', 'model-card.md'), 'utf8');
  const accuracy = card.evaluations[0]!.models[0]!.overall.find((m) => m.key === 'accuracy')!;
  assert.ok(markdown.includes(`| sex | F | 4 | resnet18:a | ${f3(accuracy.value!)} (${f3(accuracy.interval![0])}–${f3(accuracy.interval![1])}) |`));
  assert.match(markdown, /\| sex \| M \| 3 \| — \| too few images \|/);
  assert.is(card.checklists[0]!.items.find((i) => i.id === '14')!.section, 'subgroups');
  assert.ok(!card.limitations.some((line) => /No subgroup results/.test(line)));
  assert.not.match(JSON.stringify(card), /meta\.csv/, 'the metadata file path stays out of the card');
});

test('without a report the card says not evaluated and how; a stale calibration is carried but not applied, in the card and the export metadata', async () => {
  const run = await writeRunFixture(join(root, 'runs', 'c'), 'resnet18', { imageSize: 32, seed: 53 });
  await writeRunSplit(run.dir, data);
  const record = { ...(await readRunCalibration(a.dir))!, weightsSha256: '0'.repeat(64) };
  await writeFile(runCalibrationPath(run.dir), JSON.stringify(record));
  const { card } = await writeModelCard({ runs: [run.dir], outDir: join(root, 'card-c') });
  assert.equal(card.evaluations, []);
  assert.match(card.notEvaluated!, /not evaluated on the runs' own test split: run `osteo eval --run RUN… --data DATA`/);
  assert.is(card.checklists[0]!.items.find((i) => i.id === '23a')!.section, null);
  assert.is(card.models[0]!.calibration!.applied, false);
  assert.ok(card.limitations.some((line) => /fitted on weights of SHA-256 000000000000…, not on the exported ones/.test(line)));

  const exported = await exportRun({ backend, run: run.dir, format: 'pth', outDir: join(root, 'export-c') });
  const metadata = exported.metadata as { calibration: { applied: boolean; temperature: number; weightsSha256: string; reason: string }; notes: string[] };
  assert.is(metadata.calibration.applied, false);
  assert.is(metadata.calibration.temperature, record.temperature);
  assert.is(metadata.calibration.weightsSha256, record.weightsSha256);
  assert.match(metadata.notes.join('\n'), /not calibrated: the run's calibration\.json was fitted on weights of SHA-256 0{12}…/);
  assert.equal(exported.warnings.length, 1, 'the export warns of it');
  assert.match(exported.warnings[0]!, /^resnet18: the run's calibration\.json was fitted on weights of SHA-256 0{12}…/);
});

test('every export writes the card and records it; re-export replaces only it; a model-card.md of the user’s is refused and kept', async () => {
  const out = join(root, 'export-a');
  const result = await exportRun({ backend, run: a.dir, format: 'onnx', outDir: out });
  assert.ok(result.files.includes('model-card.md') && result.files.includes('model-card.json'));
  const metadata = result.metadata as { calibration: { applied: boolean; temperature: number; weightsSha256: string }; source: { sha256: string } };
  const record = (await readRunCalibration(a.dir))!;
  assert.equal([metadata.calibration.applied, metadata.calibration.temperature, metadata.calibration.weightsSha256], [true, record.temperature, record.weightsSha256]);
  assert.is(metadata.source.sha256, record.weightsSha256);
  const owned = JSON.parse(await readFile(join(out, exportRecordFile), 'utf8')) as { files: Record<string, string> };
  for (const file of ['model-card.md', 'model-card.json']) assert.is(owned.files[file], sha256Of(await readFile(join(out, file))), `${file} is recorded`);
  const card = JSON.parse(await readFile(join(out, 'model-card.json'), 'utf8')) as ModelCard;
  assert.equal(card.export, { format: 'onnx', files: ['model.onnx', 'metadata.json'] });
  // The default report of this one run does not exist: not evaluated, said so.
  assert.is(card.evaluations.length, 0);
  await exportRun({ backend, run: a.dir, format: 'onnx', outDir: out });

  const pth = join(root, 'export-user');
  await exportRun({ backend, run: a.dir, format: 'pth', outDir: pth });
  await writeFile(join(pth, 'model-card.md'), 'my own notes\n');
  const message = await refusal(exportRun({ backend, run: a.dir, format: 'pth', outDir: pth }), /model-card\.md/);
  assert.match(message, /osteo export did not write/);
  assert.is(await readFile(join(pth, 'model-card.md'), 'utf8'), 'my own notes\n');
  assert.match(await refusal(writeModelCard({ runs: [a.dir], outDir: pth })), /model-card\.md/);
  await rm(pth, { recursive: true, force: true });
});

test('the CLI: osteo card --run … --json writes the card and prints it; a missing report is a user error naming it', async () => {
  const out = join(root, 'card-cli');
  const ok = await captureMain(['card', '--run', a.dir, b.dir, '--out', out, '--json']);
  assert.is(ok.code, 0, ok.stderr);
  const printed = JSON.parse(ok.stdout) as { dir: string; files: string[]; card: ModelCard };
  assert.equal(printed.files, ['model-card.json', 'model-card.md']);
  assert.is(printed.card.evaluations[0]!.role, 'internal', 'the default report of these runs is found');
  const missing = await captureMain(['card', '--run', a.dir, '--eval', join(root, 'nowhere'), '--out', join(root, 'card-none')]);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /--eval .*nowhere is not an osteo eval report/);
});

test.run();
