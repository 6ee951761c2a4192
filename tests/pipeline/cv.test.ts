import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { captureMain, osteoArgv } from '../helpers/cli.js';
import { UserError } from '../../src/util/index.js';
import { synthesizePhantom } from '../../src/data/index.js';
import { resolveCvConfig } from '../../src/config/index.js';
import { useBackend } from '../../src/backend/index.js';
import { buildCvReport, collectCv, compareCv, cvCsv, cvEntryNames, cvExperimentFromConfig, ensembleEntry, formatCvReport, runCv, shardJobs, type JobPredictions } from '../../src/pipeline/index.js';
import { builtInMetrics, MetricRegistry, type MetricRecord } from '../../src/report/index.js';

/** The backend the CV jobs run on (tinyFlags asks for wasm), chosen as `osteo cv` chooses it. */
const wasm = () => useBackend('wasm');

/** A job whose probabilities put `p` on the class in `predicted[i]` and split the rest evenly. */
function job(entry: string, fold: number, paths: string[], labels: number[], predicted: number[], p = 0.8): JobPredictions {
  const probabilities = predicted.flatMap((c) => [0, 1, 2].map((k) => (k === c ? p : (1 - p) / 2)));
  return { job: `r1-f${fold + 1}-${entry}`, repeat: 0, fold, entry, paths, groups: paths.map((x) => `g-${x}`), labels, probabilities };
}

test('the report pools out-of-fold predictions, averages folds, soft-votes an ensemble and pairs differences (hand-computed)', () => {
  const labels = [[0, 1, 2, 0], [1, 2, 0, 2]];
  const paths = [['a', 'b', 'c', 'd'], ['e', 'f', 'g', 'h']];
  const jobs = [
    job('m1', 0, paths[0]!, labels[0]!, [0, 1, 2, 1]), // 3 of 4 right
    job('m1', 1, paths[1]!, labels[1]!, [1, 0, 0, 2]), // 3 of 4
    job('m2', 0, paths[0]!, labels[0]!, [0, 0, 0, 0], 0.9), // 2 of 4
    job('m2', 1, paths[1]!, labels[1]!, [0, 0, 0, 0], 0.9), // 1 of 4
  ];
  const report = buildCvReport(jobs, { entries: ['m1', 'm2'], folds: 2, repeats: 1, seed: 3, resamples: 300 });
  assert.is(report.images, 8);
  const [m1, m2, ensemble] = report.rows;
  assert.is(m1!.pooled.accuracy!.value, 6 / 8);
  assert.is(m2!.pooled.accuracy!.value, 3 / 8);
  assert.equal(m1!.perFold.map((f) => f.metrics.accuracy), [0.75, 0.75]);
  assert.is(m2!.foldMean.accuracy, (0.5 + 0.25) / 2);
  assert.ok(Math.abs(m2!.foldSd.accuracy! - Math.sqrt(((0.5 - 0.375) ** 2 + (0.25 - 0.375) ** 2) / 1)) < 1e-12);
  assert.equal(m1!.confusion, [[2, 1, 0], [0, 2, 0], [1, 0, 2]]);
  // Soft vote by hand: the mean of the two probability rows, then argmax.
  assert.is(ensemble!.entry, ensembleEntry);
  let correct = 0;
  jobs.slice(0, 2).forEach((j1, f) => {
    const j2 = jobs[2 + f]!;
    j1.labels.forEach((label, i) => {
      const mean = [0, 1, 2].map((k) => (j1.probabilities[i * 3 + k]! + j2.probabilities[i * 3 + k]!) / 2);
      if (mean.indexOf(Math.max(...mean)) === label) correct += 1;
    });
  });
  assert.ok(Math.abs(ensemble!.pooled.accuracy!.value - correct / 8) < 1e-12);
  for (const row of report.rows) {
    const i = row.pooled.accuracy!;
    assert.ok(i.lower <= i.value && i.value <= i.upper, `${row.entry}: ${i.lower} ≤ ${i.value} ≤ ${i.upper}`);
  }
  const diff = report.differences.find((d) => d.b === 'm2')!;
  assert.ok(Math.abs(diff.pooled.accuracy!.value - (3 / 8 - 6 / 8)) < 1e-12);
  assert.ok(diff.pooled.accuracy!.lower < diff.pooled.accuracy!.value && diff.pooled.accuracy!.value < diff.pooled.accuracy!.upper, 'a paired interval around the difference');
  // An entry against itself: exactly zero, with a zero-width interval (the pairing is exact).
  const same = buildCvReport([...jobs.slice(0, 2), ...jobs.slice(0, 2).map((j) => ({ ...j, entry: 'twin' }))], { entries: ['m1', 'twin'], folds: 2, repeats: 1, seed: 3, resamples: 100 });
  assert.equal(same.differences[0]!.pooled.accuracy, { value: 0, lower: 0, upper: 0 });
});

test('a metric record in a scratch registry reaches cv.md, cv.csv and the paired differences; the default tables keep their shape', () => {
  const labels = [[0, 1, 2, 0], [1, 2, 0, 2]];
  const paths = [['a', 'b', 'c', 'd'], ['e', 'f', 'g', 'h']];
  const jobs = [
    job('m1', 0, paths[0]!, labels[0]!, [0, 1, 2, 1]),
    job('m1', 1, paths[1]!, labels[1]!, [1, 0, 0, 2]),
    job('m2', 0, paths[0]!, labels[0]!, [0, 0, 0, 0], 0.9),
    job('m2', 1, paths[1]!, labels[1]!, [0, 0, 0, 0], 0.9),
  ];
  // The fraction of images whose top probability is at least 0.85: 0 for m1 (0.8), 1 for m2 (0.9).
  const confident: MetricRecord = {
    key: 'confident',
    label: 'confident share',
    shortLabel: 'confident',
    csvColumn: 'confident',
    jsonKey: 'confident',
    higherIsBetter: true,
    scale: 'proportion',
    format: (v) => String(v),
    views: ['cv', 'cvFolds', 'cvDifferences'],
    compute: ({ probabilities, predictions }) => predictions.filter((p, i) => probabilities[i * 3 + p]! >= 0.85).length / predictions.length,
  };
  const registry = new MetricRegistry([...builtInMetrics, confident]);
  const settings = { entries: ['m1', 'm2'], folds: 2, repeats: 1, seed: 3, resamples: 100 };
  const report = buildCvReport(jobs, { ...settings, metrics: registry });
  const [m1, m2] = report.rows;
  assert.equal(m1!.pooled.confident, { value: 0, lower: 0, upper: 0 });
  assert.equal(m2!.pooled.confident, { value: 1, lower: 1, upper: 1 });
  assert.equal(m2!.perFold.map((f) => f.metrics.confident), [1, 1]);
  assert.equal(report.differences[0]!.pooled.confident, { value: 1, lower: 1, upper: 1 });
  assert.is(report.differences[0]!.foldMean.confident, 1);

  const md = formatCvReport(report, { data: 'D', plan: 'P' }, registry);
  assert.ok(md.includes('| model | accuracy | balanced acc. | macro-F1 | Normal recall | Osteopenia recall | Osteoporosis recall | macro AUC | ECE | quadratic κ | MAE | confident |'), md);
  assert.match(md, /\| m2 \| .* \| 100\.0 \[100\.0, 100\.0\] \|\n/);
  assert.ok(md.includes('| model | repeat | fold | images | accuracy | balanced acc. | macro-F1 | confident |'), md);
  assert.ok(md.includes('| B − A (points) | accuracy [95% CI] | balanced acc. | macro-F1 | macro AUC | quadratic κ | MAE | confident | per-fold Δ accuracy, mean ± sd |'), md);
  assert.match(md, /\| m2 − m1 \| .* \| \+100\.0 \[\+100\.0, \+100\.0\] \| [^|]+ \|$/m);
  const csv = cvCsv(report, registry).split('\n');
  assert.ok(csv[0]!.endsWith(',ece,ece_ci_low,ece_ci_high,quadraticKappa,quadraticKappa_ci_low,quadraticKappa_ci_high,meanAbsoluteClassError,meanAbsoluteClassError_ci_low,meanAbsoluteClassError_ci_high,confident,confident_ci_low,confident_ci_high'), csv[0]);
  assert.ok(csv.some((line) => line.startsWith('m2,pooled,') && line.endsWith(',1,1,1')));

  const plain = buildCvReport(jobs, settings);
  assert.not.ok('confident' in plain.rows[0]!.pooled);
  const plainMd = formatCvReport(plain, { data: 'D', plan: 'P' });
  assert.ok(plainMd.includes('| model | accuracy | balanced acc. | macro-F1 | Normal recall | Osteopenia recall | Osteoporosis recall | macro AUC | ECE | quadratic κ | MAE |\n|---|---|---|---|---|---|---|---|---|---|---|\n'), plainMd);
  assert.ok(plainMd.includes('| B − A (points) | accuracy [95% CI] | balanced acc. | macro-F1 | macro AUC | quadratic κ | MAE | per-fold Δ accuracy, mean ± sd |\n|---|---|---|---|---|---|---|---|\n'), plainMd);
  assert.is(
    cvCsv(plain).split('\n')[0],
    'model,kind,repeat,fold,images,' +
      ['accuracy', 'balancedAccuracy', 'macroF1', 'recallNormal', 'recallOsteopenia', 'recallOsteoporosis', 'macroAuc', 'ece', 'quadraticKappa', 'meanAbsoluteClassError'].flatMap((n) => [n, `${n}_ci_low`, `${n}_ci_high`]).join(','),
  );
});

test('with repeats, each image is predicted once per repeat: pooled metrics are the mean over repeats, the confusion counts every prediction', () => {
  const paths = [['a', 'b'], ['c', 'd']];
  const labels = [[0, 1], [2, 0]];
  const right = [0, 1].map((f) => job('m', f, paths[f]!, labels[f]!, labels[f]!));
  const wrong = [0, 1].map((f) => ({ ...job('m', f, paths[f]!, labels[f]!, labels[f]!.map((l) => (l + 1) % 3)), repeat: 1, job: `r2-f${f + 1}-m` }));
  const report = buildCvReport([...right, ...wrong], { entries: ['m'], folds: 2, repeats: 2, seed: 1, resamples: 50 });
  assert.is(report.rows[0]!.pooled.accuracy!.value, 0.5);
  assert.equal(report.rows[0]!.perFold.map((f) => [f.repeat, f.fold, f.metrics.accuracy]), [[0, 0, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0]]);
  assert.is(report.rows[0]!.confusion.flat().reduce((sum, n) => sum + n, 0), 8);
});

test('shards deal the plan round-robin; names stay unique; the settings are validated naming the flag', () => {
  const jobs = Array.from({ length: 7 }, (_, i) => ({ id: `j${i}`, repeat: 0, fold: i, entry: 'm', seed: 0 }));
  const shards = [1, 2, 3].map((index) => shardJobs(jobs, { index, count: 3 }).map((j) => j.id));
  assert.equal(shards, [['j0', 'j3', 'j6'], ['j1', 'j4'], ['j2', 'j5']]);
  assert.equal(cvEntryNames(['resnet18', 'resnet18', 'resnet50'], ['/a/base.json', '/b/strong.json', undefined]), ['resnet18:base', 'resnet18:strong', 'resnet50']);
  assert.throws(() => resolveCvConfig({ model: ['resnet18'], data: 'd', shard: '4/3' }), /--shard 4\/3/);
  assert.throws(() => resolveCvConfig({ model: ['resnet18'], data: 'd', shard: 'two' }), /--shard: shard/);
  assert.throws(() => resolveCvConfig({ model: ['resnet18'], data: 'd', config: ['a.json', 'b.json'] }), /one recipe per --model/);
  assert.throws(() => resolveCvConfig({ data: 'd' }), /missing required key "model"/);
});

test('osteo cv: a missing --model is named; collect of a folder that is not a CV run says so', async () => {
  const missing = await captureMain(['cv', '--data', 'nowhere']);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /missing required key "model"/);
  const notCv = await captureMain(['cv', 'collect', tmpdir()]);
  assert.is(notCv.code, 1);
  assert.match(notCv.stderr, /is not a CV folder: .*plan\.json is missing/);
});

const tinyFlags = (data: string, out: string, extra: Record<string, unknown> = {}) =>
  resolveCvConfig({ model: ['resnet18'], data, out, folds: '3', imageSize: '32', epochs: '1', batchSize: '8', workers: '1', backend: 'wasm', resamples: '200', ...extra });

test('cv end to end on a phantom: 3 folds, sharded and collected = unsharded bit for bit; re-runs skip; collect names what is missing or mismatched', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'osteo-cv-'));
  try {
    const data = join(dir, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 8, size: 64, seed: 5, duplicateRate: 0.5 });
    const whole = join(dir, 'whole');
    const lines: string[] = [];
    const full = await runCv(cvExperimentFromConfig(tinyFlags(data, whole), ['augment=none']), { backend: await wasm(), log: (l) => lines.push(l) });
    assert.ok(full.report, 'an unsharded run collects its report');
    for (const file of ['cv.md', 'cv.csv', 'cv.json', 'confusion-resnet18.png']) assert.ok(existsSync(join(whole, 'report', file)), file);
    assert.ok(lines.some((l) => /\[job 2\/3\] r1-f2-resnet18 \(repeat 1\/1, fold 2\/3, resnet18\)/.test(l)), 'progress names the job and fold');
    assert.ok(lines.some((l) => /ETA for this shard \d/.test(l)), 'an ETA from measured step times');

    // No duplicate group in two folds: read each job's own manifest.
    const foldOfGroup = new Map<string, string>();
    for (const id of await readdir(join(whole, 'jobs'))) {
      const csv = (await readFile(join(whole, 'jobs', id, 'data', 'splits.csv'), 'utf8')).trim().split('\n').slice(1);
      for (const line of csv.filter((l) => l.includes(',test,'))) {
        const group = line.split(',')[4]!;
        assert.ok(!foldOfGroup.has(group) || foldOfGroup.get(group) === id, `group ${group} held out in ${foldOfGroup.get(group)} and ${id}`);
        foldOfGroup.set(group, id);
      }
    }
    assert.is(foldOfGroup.size > 0, true);

    const jsonOf = async (out: string) => JSON.parse(await readFile(join(out, 'report', 'cv.json'), 'utf8')) as { rows: unknown[] };
    const sharded = join(dir, 'sharded');
    for (const shard of ['1/3', '2/3']) {
      const result = await runCv(cvExperimentFromConfig(tinyFlags(data, sharded, { shard }), ['augment=none']), { backend: await wasm() });
      assert.is(result.jobs.length, 1);
      assert.is(result.report, undefined, 'a shard alone does not collect');
    }
    // The last shard and the collect through the command line, as a scheduler runs them.
    const shardFlags = ['--model', 'resnet18', '--data', data, '--out', sharded, '--folds', '3', '--image-size', '32', '--epochs', '1', '--batch-size', '8', '--workers', '1', '--backend', 'wasm', '--resamples', '200', '--set', 'augment=none'];
    assert.is((await captureMain(['cv', ...shardFlags, '--shard', '3/3'])).code, 0);
    const cli = await captureMain(['cv', 'collect', sharded, '--json']);
    assert.is(cli.code, 0, cli.stderr);
    assert.equal(JSON.parse(cli.stdout).rows, (await jsonOf(whole)).rows);
    const collected = await collectCv(sharded);
    assert.equal((await jsonOf(sharded)).rows, (await jsonOf(whole)).rows, 'identical pooled and per-fold metrics');
    assert.equal(collected.report.rows[0]!.pooled, full.report!.report.rows[0]!.pooled);
    for (const id of await readdir(join(whole, 'jobs'))) {
      const a = JSON.parse(await readFile(join(whole, 'jobs', id, 'result.json'), 'utf8')) as { probabilities: number[] };
      const b = JSON.parse(await readFile(join(sharded, 'jobs', id, 'result.json'), 'utf8')) as { probabilities: number[] };
      assert.equal(b.probabilities, a.probabilities, `${id}: the same probabilities, bit for bit`);
    }

    // Re-running skips finished jobs; a job whose result is gone and whose run stopped mid-way resumes from `last`.
    const again = await runCv(cvExperimentFromConfig(tinyFlags(data, whole), ['augment=none']), { backend: await wasm() });
    assert.equal(again.jobs.map((j) => j.status), ['reused', 'reused', 'reused']);
    const killed = join(whole, 'jobs', 'r1-f2-resnet18');
    const before = await readFile(join(killed, 'result.json'), 'utf8');
    await rm(join(killed, 'result.json'));
    const events = (await readFile(join(killed, 'run', 'events.jsonl'), 'utf8')).trim().split('\n');
    await writeFile(join(killed, 'run', 'events.jsonl'), events.filter((l) => !l.includes('"type":"stop"')).join('\n') + '\n');
    const resumed: string[] = [];
    const third = await runCv(cvExperimentFromConfig(tinyFlags(data, whole), ['augment=none']), { backend: await wasm(), onTrainEvent: (e) => resumed.push(e.type) });
    assert.equal(third.jobs.map((j) => j.status), ['reused', 'done', 'reused']);
    assert.ok(resumed.includes('resume'), 'the killed job resumed from its checkpoint');
    assert.equal(JSON.parse(await readFile(join(killed, 'result.json'), 'utf8')).probabilities, JSON.parse(before).probabilities);

    // In a new process whose runs are all finished, nothing trains: evaluation still finds its backend.
    await rm(join(killed, 'result.json'));
    const child = spawnSync(process.execPath, osteoArgv(['cv', ...['--model', 'resnet18', '--data', data, '--out', whole, '--folds', '3', '--image-size', '32', '--epochs', '1'], ...['--batch-size', '8', '--workers', '1', '--backend', 'wasm', '--resamples', '200', '--set', 'augment=none', '--json']]), { encoding: 'utf8' });
    assert.is(child.status, 0, child.stderr);
    assert.equal((JSON.parse(child.stdout) as { jobs: { status: string }[] }).jobs.map((j) => j.status), ['reused', 'done', 'reused']);
    assert.equal(JSON.parse(await readFile(join(killed, 'result.json'), 'utf8')).probabilities, JSON.parse(before).probabilities, 'the same result from another process');

    // Other settings in the same folder are refused before anything runs.
    try {
      await runCv(cvExperimentFromConfig(tinyFlags(data, whole, { epochs: '2' }), ['augment=none']), { backend: await wasm() });
      assert.unreachable();
    } catch (error) {
      assert.instance(error, UserError);
      assert.match((error as Error).message, /holds a CV plan with other settings/);
    }
    // collect: a missing shard's jobs and a job run with other settings are named.
    await rm(join(sharded, 'jobs', 'r1-f3-resnet18', 'result.json'));
    try {
      await collectCv(sharded);
      assert.unreachable();
    } catch (error) {
      assert.match((error as Error).message, /1 of 3 jobs have no result .*r1-f3-resnet18.*of 3 shards: 3/);
    }
    const other = join(sharded, 'jobs', 'r1-f2-resnet18', 'result.json');
    const changed = JSON.parse(await readFile(other, 'utf8'));
    await writeFile(other, JSON.stringify({ ...changed, fingerprint: 'another plan' }));
    try {
      await collectCv(sharded);
      assert.unreachable();
    } catch (error) {
      assert.match((error as Error).message, /made with other settings.*r1-f2-resnet18/);
    }
    // compare: the same folds, the same model and recipe → a zero difference.
    const compared = await compareCv(whole, whole);
    assert.equal(compared.differences[0]!.pooled.accuracy, { value: 0, lower: 0, upper: 0 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
