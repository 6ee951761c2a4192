/**
 * `osteo cv` against a demanding user and an attacker: collect checks plan.json and every
 * result.json instead of trusting them, job ids stay unique after sanitising, the report folder and
 * a live job of another process are never deleted, the plan's space is checked before the first
 * job, a changed plan names what changed, initial weights count by content, and a moved CV folder
 * resumes.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { resolveCvConfig } from '../../src/config/index.js';
import { synthesizePhantom, type IndexRow } from '../../src/data/index.js';
import { useBackend } from '../../src/backend/index.js';
import { collectCv, cvExperimentFromConfig, planCv, runCv, type CvExperiment, type CvPlan } from '../../src/pipeline/index.js';
import { assertCvPlanMatches, entrySlugs, planJobs } from '../../src/pipeline/cv.js';
import { DataError } from '../../src/util/index.js';
import { readRunSplit } from '../../src/runs/index.js';
import { tempDir } from '../helpers/temp.js';
import { captureMain } from '../helpers/cli.js';
import { refusal, rejection } from '../helpers/refusal.js';

const wasm = () => useBackend('wasm');

/** Index rows of a made-up dataset: 12 images, 4 per class, each its own duplicate group. */
const rows: IndexRow[] = Array.from({ length: 12 }, (_, i) => ({
  path: `${['Normal', 'Osteopenia', 'Osteoporosis'][i % 3]}/${i}.png`,
  label: i % 3,
  status: 'ok',
  reason: '',
  format: 'png',
  width: 32,
  height: 32,
  channels: 1,
  depth: 8,
  bytes: 100,
  contentHash: `hash${i}`,
  perceptualHash: '',
  group: `g${i}`,
  use: true,
})) as unknown as IndexRow[];

const experimentOf = (out: string, extra: Record<string, unknown> = {}, sets: string[] = []): CvExperiment =>
  cvExperimentFromConfig(resolveCvConfig({ model: ['resnet18'], data: '/nowhere', out, folds: '2', imageSize: '32', epochs: '1', resamples: '50', ...extra }), sets);

/** A CV folder as `osteo cv` leaves it, without training: the plan, and each job's held-out predictions (fold f holds out images i with i mod 2 = f). */
async function fakeCv(out: string, experiment = experimentOf(out)): Promise<CvPlan> {
  const plan = await planCv(experiment, rows);
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'plan.json'), JSON.stringify(plan, null, 2));
  for (const job of plan.jobs) {
    const held = rows.filter((_, i) => i % plan.folds === job.fold);
    const result = {
      format: 'osteo-cv-job',
      version: 1,
      fingerprint: plan.fingerprint,
      job: job.id,
      repeat: job.repeat,
      fold: job.fold,
      entry: job.entry,
      paths: held.map((r) => r.path),
      groups: held.map((r) => r.group),
      labels: held.map((r) => r.label),
      probabilities: held.flatMap((r, i) => [0, 1, 2].map((k) => (k === (i % 2 === 0 ? r.label : (r.label + 1) % 3) ? 0.6 : 0.2))),
      trainImages: 5,
      valImages: 1,
      seconds: 1,
    };
    await mkdir(join(out, 'jobs', job.id), { recursive: true });
    await writeFile(join(out, 'jobs', job.id, 'result.json'), JSON.stringify(result));
  }
  return plan;
}

async function editJson(file: string, edit: (json: Record<string, any>) => void): Promise<void> {
  const json = JSON.parse(await readFile(file, 'utf8'));
  edit(json);
  await writeFile(file, JSON.stringify(json));
}

test('collect refuses an edited plan.json or result.json instead of reporting from it', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-robust-');
  try {
    const good = join(dir, 'good');
    await fakeCv(good);
    const collected = await collectCv(good);
    assert.is(collected.report.images, 12);
    // Half of each fold's images are predicted right (the fixture's probabilities): accuracy 6/12.
    assert.is(collected.report.rows[0]!.pooled.accuracy!.value, 0.5);

    const cases: [string, (dir: string) => Promise<void>, RegExp][] = [
      ['folds edited to 3', (d) => editJson(join(d, 'plan.json'), (p) => (p.folds = 3)), /plan\.json: its jobs are not the 3 folds/],
      ['no jobs', (d) => editJson(join(d, 'plan.json'), (p) => (p.jobs = [])), /plan\.json: its jobs are not/],
      ['resamples 0', (d) => editJson(join(d, 'plan.json'), (p) => (p.resamples = 0)), /plan\.json: .*resamples/],
      ['a job id that leaves OUT', (d) => editJson(join(d, 'plan.json'), (p) => (p.jobs[0].id = '../../x')), /plan\.json: its jobs are not/],
      ['an edited setting with its fingerprint left', (d) => editJson(join(d, 'plan.json'), (p) => (p.innerVal = 0.3)), /plan\.json: its fingerprint is not the one its settings give/],
      ['a null probability', (d) => editJson(join(d, 'jobs', 'r1-f1-resnet18', 'result.json'), (r) => (r.probabilities[0] = null)), /result\.json: is not a valid CV job result: probabilities\.0/],
      ['a probability of 5', (d) => editJson(join(d, 'jobs', 'r1-f1-resnet18', 'result.json'), (r) => (r.probabilities[0] = 5)), /result\.json: is not a valid CV job result: probabilities\.0/],
      ['a row that is no distribution', (d) => editJson(join(d, 'jobs', 'r1-f1-resnet18', 'result.json'), (r) => (r.probabilities[0] = 0.9)), /sum to 1\.3/],
      ['fewer labels than paths', (d) => editJson(join(d, 'jobs', 'r1-f2-resnet18', 'result.json'), (r) => r.labels.pop()), /expected 6 of each/],
      ['an image held out twice', (d) => editJson(join(d, 'jobs', 'r1-f2-resnet18', 'result.json'), (r) => (r.paths[0] = 'Normal/0.png')), /hold out 12 images \(11 distinct\)/],
    ];
    for (const [name, edit, pattern] of cases) {
      const out = join(dir, name.replaceAll(' ', '-'));
      await cp(good, out, { recursive: true });
      await rm(join(out, 'report'), { recursive: true, force: true });
      await edit(out);
      const error = await rejection(collectCv(out), DataError);
      assert.match(error.message, pattern, `${name}: ${error.message}`);
      assert.not.ok(existsSync(join(out, 'report')), `${name}: no report`);
    }
  } finally {
    await cleanup();
  }
});

test('job ids and report file names are unique by construction: "a b.json" and "a_b.json" are two jobs, two confusion matrices', async () => {
  assert.equal(entrySlugs(['resnet18:a b', 'resnet18:a_b', 'resnet50']), ['resnet18_a_b-e1', 'resnet18_a_b-e2', 'resnet50']);
  assert.equal(entrySlugs(['x', 'x y', 'x_y', 'x_y-e2']), ['x', 'x_y-e2', 'x_y-e3', 'x_y-e2-e4']);
  const { path: dir, cleanup } = await tempDir('osteo-cv-robust-');
  try {
    await writeFile(join(dir, 'a b.json'), JSON.stringify({ epochs: 1 }));
    await writeFile(join(dir, 'a_b.json'), JSON.stringify({ epochs: 2 }));
    const out = join(dir, 'out');
    const experiment = experimentOf(out, { model: ['resnet18', 'resnet18'], config: [join(dir, 'a b.json'), join(dir, 'a_b.json')], epochs: undefined });
    const plan = await fakeCv(out, experiment);
    const ids = plan.jobs.map((j) => j.id);
    assert.is(new Set(ids).size, 4, ids.join(', '));
    const collected = await collectCv(out);
    const pngs = collected.files.filter((f) => f.endsWith('.png'));
    assert.is(new Set(pngs).size, 3, `one confusion matrix per entry and the ensemble: ${pngs.join(', ')}`);
    assert.equal(planJobs(plan, plan.entries.map((e) => e.name)), plan.jobs);
  } finally {
    await cleanup();
  }
});

test('collect never deletes a report folder holding files it did not write; its own report it replaces', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-robust-');
  try {
    const out = join(dir, 'out');
    await fakeCv(out);
    await mkdir(join(out, 'report'));
    await writeFile(join(out, 'report', 'notes.txt'), 'my notes');
    const message = await refusal(collectCv(out), /report holds files osteo cv collect did not write \(notes\.txt\)/);
    assert.match(message, /Nothing was changed/);
    assert.equal(await readdir(join(out, 'report')), ['notes.txt']);
    await rm(join(out, 'report', 'notes.txt'));
    await collectCv(out);
    await collectCv(out); // its own report: replaced
    await writeFile(join(out, 'report', 'cv.md'), 'edited by hand');
    await refusal(collectCv(out), /cv\.md/);
    assert.is(await readFile(join(out, 'report', 'cv.md'), 'utf8'), 'edited by hand');
  } finally {
    await cleanup();
  }
});

test('six collects of one folder at once all succeed and leave one whole report, no staging folder', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-robust-');
  try {
    const out = join(dir, 'out');
    await fakeCv(out);
    await collectCv(out);
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => collectCv(out)));
    const failed = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
    assert.equal(failed, [], failed.join('\n'));
    assert.equal((await readdir(join(out, 'report'))).sort(), ['.osteo-cv-report.json', 'confusion-resnet18.png', 'cv.csv', 'cv.json', 'cv.md']);
    assert.equal((await readdir(out)).filter((e) => e.startsWith('.report')), []);
  } finally {
    await cleanup();
  }
});

test('a changed plan is refused naming each differing key; initial weights of one name but other content are another plan', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-robust-');
  try {
    const out = join(dir, 'out');
    await fakeCv(out);
    const message = await refusal(assertCvPlanMatches(experimentOf(out, { folds: '3', epochs: '2' }), rows), /holds a CV plan with other settings/);
    assert.match(message, /folds \(the folder has 2, the command asks for 3\)/);
    assert.match(message, /resnet18: epochs \(the folder has 1, the command asks for 2\)/);
    // Two files named w.pth with different bytes.
    for (const [name, bytes] of [['a', 'first'], ['b', 'second']]) {
      await mkdir(join(dir, name));
      await writeFile(join(dir, name, 'w.pth'), bytes);
    }
    const first = join(dir, 'weights');
    await fakeCv(first, experimentOf(first, { pretrained: join(dir, 'a', 'w.pth') }));
    const other = await refusal(assertCvPlanMatches(experimentOf(first, { pretrained: join(dir, 'b', 'w.pth') }), rows));
    assert.match(other, /resnet18: pretrained \(the folder has \{"file":"w\.pth","sha256":"[0-9a-f]{64}"\}/);
    await assertCvPlanMatches(experimentOf(first, { pretrained: join(dir, 'a', 'w.pth') }), rows); // the same file: the same plan
  } finally {
    await cleanup();
  }
});

test("a job another live process holds (JOB/.lock) is skipped and not touched, not deleted or trained twice", async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-robust-');
  const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  try {
    const data = join(dir, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 6, size: 32, seed: 2 });
    const out = join(dir, 'out');
    const experiment = cvExperimentFromConfig(resolveCvConfig({ model: ['resnet18'], data, out, folds: '2', imageSize: '32', epochs: '1', batchSize: '8', workers: '1', backend: 'wasm', resamples: '50' }), ['augment=none']);
    const plan = { jobs: planJobs(experiment, experiment.entries.map((e) => e.name)) };
    // The first process's state: each job's folder locked, its run started (config, its own lock), no `last` yet.
    const lock = JSON.stringify({ pid: sleeper.pid, host: hostname(), started: 'now' });
    for (const job of plan.jobs) {
      await mkdir(join(out, 'jobs', job.id, 'run'), { recursive: true });
      await writeFile(join(out, 'jobs', job.id, '.lock'), lock);
      await writeFile(join(out, 'jobs', job.id, 'run', '.lock'), lock);
      await writeFile(join(out, 'jobs', job.id, 'run', 'config.json'), JSON.stringify({ model: 'resnet18', epochs: 1, optimizer: {}, schedule: {} }));
    }
    const before = await readdir(join(out, 'jobs'), { recursive: true });
    const lines: string[] = [];
    const result = await runCv(experiment, { backend: await wasm(), log: (l) => lines.push(l) });
    assert.equal(result.jobs.map((j) => j.status), ['busy', 'busy']);
    assert.ok(lines.some((l) => new RegExp(`being run by process ${sleeper.pid}`).test(l)), lines.join('\n'));
    assert.equal((await readdir(join(out, 'jobs'), { recursive: true })).sort(), before.sort(), 'nothing of the live jobs was removed or added');
    for (const job of plan.jobs) assert.is(await readFile(join(out, 'jobs', job.id, '.lock'), 'utf8'), lock);
    assert.is(result.report, undefined);
  } finally {
    const exited = once(sleeper, 'exit');
    sleeper.kill();
    await exited;
    await cleanup();
  }
});

test("the plan's space is checked before the first job: room for one job's checkpoints is not room for three", async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-robust-');
  try {
    const data = join(dir, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 6, size: 32, seed: 2 });
    const out = join(dir, 'out');
    const experiment = cvExperimentFromConfig(resolveCvConfig({ model: ['resnet18'], data, out, folds: '3', imageSize: '32', epochs: '1', backend: 'wasm' }), []);
    // ResNet18 with Adam: best (weights) + last (weights and two slots) ≈ 187 MB a run, twice that while saving.
    const free = 400 * 2 ** 20;
    const statfs = async () => ({ bavail: free / 4096, bsize: 4096 });
    const message = await refusal(runCv(experiment, { backend: await wasm(), statfs }), /the plan's 3 unfinished job\(s\) keep about 5\d\d MiB/, /Nothing was started/);
    assert.match(message, /only 400\.0 MiB are free/);
    assert.not.ok(existsSync(out), 'nothing was written');
  } finally {
    await cleanup();
  }
});

test('a CV folder moved elsewhere resumes its unfinished job there (the job’s data is found beside its run)', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-robust-');
  try {
    const data = join(dir, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 8, size: 32, seed: 4 });
    const flags = (out: string) => resolveCvConfig({ model: ['resnet18'], data, out, folds: '2', innerVal: '0.3', imageSize: '32', epochs: '1', batchSize: '8', workers: '1', backend: 'wasm', resamples: '50' });
    const first = join(dir, 'first');
    await runCv(cvExperimentFromConfig(flags(first), ['augment=none']), { backend: await wasm() });
    // Job 2 killed before its end: no result, no stop event, its `last` saved.
    const job = join(first, 'jobs', 'r1-f2-resnet18');
    const before = JSON.parse(await readFile(join(job, 'result.json'), 'utf8')).probabilities;
    await rm(join(job, 'result.json'));
    const events = (await readFile(join(job, 'run', 'events.jsonl'), 'utf8')).trim().split('\n');
    await writeFile(join(job, 'run', 'events.jsonl'), events.filter((l) => !l.includes('"type":"stop"')).join('\n') + '\n');
    const moved = join(dir, 'moved');
    await rename(first, moved);
    const seen: string[] = [];
    const result = await runCv(cvExperimentFromConfig(flags(moved), ['augment=none']), { backend: await wasm(), onTrainEvent: (e) => seen.push(e.type) });
    assert.equal(result.jobs.map((j) => j.status), ['reused', 'done']);
    assert.ok(seen.includes('resume'), 'resumed from its last checkpoint, not started over');
    assert.equal(JSON.parse(await readFile(join(moved, 'jobs', 'r1-f2-resnet18', 'result.json'), 'utf8')).probabilities, before);
    const split = await readRunSplit(join(moved, 'jobs', 'r1-f2-resnet18', 'run'));
    assert.is(split!.data, join(moved, 'jobs', 'r1-f2-resnet18', 'data'), 'the run reads the moved view, beside it');
  } finally {
    await cleanup();
  }
});

test('a job whose run cannot be continued names the way out cv offers: delete that job folder', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-robust-');
  try {
    const data = join(dir, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 6, size: 32, seed: 2 });
    const out = join(dir, 'out');
    const experiment = cvExperimentFromConfig(resolveCvConfig({ model: ['resnet18'], data, out, folds: '2', imageSize: '32', epochs: '1', backend: 'wasm' }), []);
    const plan = { jobs: planJobs(experiment, experiment.entries.map((e) => e.name)) };
    const run = join(out, 'jobs', plan.jobs[0]!.id, 'run');
    await mkdir(run, { recursive: true });
    await writeFile(join(run, 'config.json'), JSON.stringify({ model: 'resnet50', epochs: 1, optimizer: {}, schedule: {} }));
    const message = await refusal(runCv(experiment, { backend: await wasm() }), /holds a run made with another config/);
    assert.match(message, new RegExp(`delete ${join(out, 'jobs', plan.jobs[0]!.id).replaceAll('/', '\\/')} to run job r1-f1-resnet18 again from scratch`));
    assert.not.match(message, /--fresh/);
  } finally {
    await cleanup();
  }
});

test('names from outside are printed escaped: a CV folder or a foreign report file named with control characters forges no line', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-robust-');
  try {
    const forged = join(dir, 'x\u001b[2J\rosteo: done');
    const missing = await captureMain(['cv', 'collect', forged]);
    assert.is(missing.code, 1);
    assert.not.ok(/[\u001b\r]/.test(missing.stderr), JSON.stringify(missing.stderr));
    assert.ok(missing.stderr.includes('x\\u001b[2J\\rosteo: done'), missing.stderr);
    const out = join(dir, 'out');
    await fakeCv(out);
    await mkdir(join(out, 'report'));
    await writeFile(join(out, 'report', 'n\nosteo: report written'), 'mine');
    const foreign = await captureMain(['cv', 'collect', out]);
    assert.is(foreign.code, 1);
    assert.ok(foreign.stderr.includes('n\\nosteo: report written'), foreign.stderr);
    assert.is(foreign.stderr.trim().split('\n').length, 1, 'one line');
  } finally {
    await cleanup();
  }
});

test.run();
