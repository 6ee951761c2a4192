/**
 * inspectRun: where a run directory stands (absent, unsaved, resumable, finished) and how its config
 * differs from the one asked for; clearUnsavedRun: what a restart may remove. Runs are built with the
 * runs room's own writers (config, checkpoints) and an event log, without training.
 */
import { existsSync, readdirSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { resolveTrainConfig, type TrainConfig } from '../../src/config/index.js';
import { clearUnsavedRun, configDifferences, formatConfigDifferences, inspectRun, runPaths, saveCheckpoint, writeRunConfig, type CheckpointProgress } from '../../src/runs/index.js';
import { UserError } from '../../src/util/index.js';

let root: string;
test.before.each(async () => {
  root = await mkdtemp(join(tmpdir(), 'osteo-lifecycle-'));
});
test.after.each(async () => {
  await rm(root, { recursive: true, force: true });
});

function config(run: string, flags: Record<string, string> = {}, sets: string[] = []): Promise<TrainConfig> {
  return resolveTrainConfig({ flags: { model: 'resnet18', data: 'd', out: run, imageSize: '32', epochs: '2', ...flags }, sets });
}

/** `last` as the trainer saves it: weights, optimizer slots, and a state with the loop's position. */
async function saveLast(run: string, progress: CheckpointProgress): Promise<void> {
  await saveCheckpoint(run, 'last', { weights: new Map(), optimizer: new Map(), state: { format: 'osteo-train-state', version: 1, ...progress } });
}

/** Sessions of the event log: each a start, then its stop's status (or none: killed). */
async function writeSessions(run: string, ...stops: (string | undefined)[]): Promise<void> {
  for (const status of stops) {
    await appendFile(runPaths(run).events, JSON.stringify({ type: 'start', run }) + '\n');
    if (status !== undefined) await appendFile(runPaths(run).events, JSON.stringify({ type: 'stop', status, message: '' }) + '\n');
  }
}

test('absent: no folder, or a folder without a config.json', async () => {
  const run = join(root, 'run');
  assert.equal(await inspectRun(run, await config(run)), { dir: run, condition: 'absent', differences: [] });
  await mkdir(run);
  await writeFile(join(run, 'notes.txt'), 'mine');
  assert.is((await inspectRun(run, await config(run))).condition, 'absent');
});

test('unsaved: a config.json (and a best/) but no last: a start that failed before its first save', async () => {
  const run = join(root, 'run');
  const asked = await config(run);
  await writeRunConfig(run, asked);
  assert.equal(await inspectRun(run, asked), { dir: run, condition: 'unsaved', differences: [] });
  await saveCheckpoint(run, 'best', { weights: new Map(), state: { epoch: 1 } });
  await writeSessions(run, undefined);
  assert.is((await inspectRun(run, asked)).condition, 'unsaved');
});

test('resumable: last short of the epochs, or mid-epoch in the last one, or a session that stopped for now (interrupted, max-steps) or was killed', async () => {
  const run = join(root, 'run');
  const asked = await config(run);
  await writeRunConfig(run, asked);
  await saveLast(run, { epoch: 1, batch: 0, step: 4 });
  const inspection = await inspectRun(run, asked);
  assert.is(inspection.condition, 'resumable');
  assert.equal([inspection.state?.epoch, inspection.state?.step], [1, 4]);
  await saveLast(run, { epoch: 1, batch: 3, step: 7 });
  await writeSessions(run, 'max-steps', 'interrupted', undefined);
  assert.is((await inspectRun(run, asked)).condition, 'resumable');
  // a kill between the two renames of a save leaves last set aside: still training that a start would lose
  await rename(join(run, 'last'), join(run, 'last.old-1-2-3'));
  assert.is((await inspectRun(run, asked)).condition, 'resumable');
});

test('finished: a session that completed its epochs (at an epoch boundary), stopped early or diverged; not one killed before its stop event', async () => {
  const run = join(root, 'run');
  const asked = await config(run);
  await writeRunConfig(run, asked);
  await saveLast(run, { epoch: 2, batch: 0, step: 8 });
  // killed after the last save, before the stop event: resuming it only records the end
  await writeSessions(run, undefined);
  assert.is((await inspectRun(run, asked)).condition, 'resumable');
  await writeSessions(run, 'completed');
  assert.equal([(await inspectRun(run, asked)).condition, (await inspectRun(run, asked)).status], ['finished', 'completed']);
  // a completed session of a run whose epochs were extended since (--resume --epochs 3, killed before its start event)
  await writeRunConfig(run, await config(run, { epochs: '3' }));
  assert.is((await inspectRun(run, await config(run, { epochs: '3' }))).condition, 'resumable');

  for (const status of ['early-stopped', 'diverged'] as const) {
    const short = join(root, status);
    const itsConfig = await config(short);
    await writeRunConfig(short, itsConfig);
    await saveLast(short, { epoch: 1, batch: 0, step: 4 });
    await writeSessions(short, 'interrupted', status);
    const inspection = await inspectRun(short, itsConfig);
    assert.equal([inspection.condition, inspection.status], ['finished', status], status);
    // a session started since (and killed) is training in progress again
    await writeSessions(short, undefined);
    assert.is((await inspectRun(short, itsConfig)).condition, 'resumable', `${status}, then a new session`);
  }
});

test('the differences: each key that shapes the result, old → new, the number of epochs included and runtime keys (backend, workers, out) left out', async () => {
  const run = join(root, 'run');
  const saved = await config(run, {}, ['optimizer.lr=0.001']);
  await writeRunConfig(run, saved);
  await saveLast(run, { epoch: 2, batch: 0, step: 8 });
  await writeSessions(run, 'completed');
  const asked = await config(join(root, 'elsewhere'), { epochs: '3', backend: 'cpu', workers: '2' }, ['optimizer.lr=0.01', 'augment=none']);
  const inspection = await inspectRun(run, asked);
  assert.is(inspection.condition, 'finished', 'the condition is the run on disk, whatever was asked');
  assert.equal(
    inspection.differences.map((d) => d.key),
    ['augment', 'optimizer.lr', 'epochs'],
  );
  const lr = inspection.differences.find((d) => d.key === 'optimizer.lr')!;
  assert.equal([lr.before, lr.after], [0.001, 0.01]);
  assert.equal(inspection.differences.at(-1), { key: 'epochs', before: 2, after: 3 });
  assert.match(formatConfigDifferences(inspection.differences), /optimizer\.lr \(the run has 0\.001, the config asks for 0\.01\); epochs \(the run has 2, the config asks for 3\)$/);
  assert.equal(configDifferences(JSON.parse(JSON.stringify(saved)), { ...saved, out: 'x', backend: 'wasm', workers: 4 }), [], 'runtime keys only: no difference');
  assert.equal(configDifferences({}, saved).find((d) => d.key === 'model'), { key: 'model', before: undefined, after: 'resnet18' });
});

test('clearUnsavedRun removes what a failed start wrote, keeps config, events and anything else; refuses a foreign config or saved training', async () => {
  const run = join(root, 'run');
  await writeRunConfig(run, await config(run));
  await saveCheckpoint(run, 'best', { weights: new Map(), state: { epoch: 1 } });
  await mkdir(join(run, 'last.tmp-1-2-3'));
  for (const file of ['metrics.csv', 'curves.png', 'split.json', 'notes.txt']) await writeFile(join(run, file), 'x');
  await writeSessions(run, undefined);
  assert.equal((await clearUnsavedRun(run)).sort(), ['best', 'curves.png', 'last.tmp-1-2-3', 'metrics.csv', 'split.json']);
  assert.equal(readdirSync(run).sort(), ['config.json', 'events.jsonl', 'notes.txt']);

  const foreign = join(root, 'foreign');
  await mkdir(join(foreign, 'best'), { recursive: true });
  await writeFile(join(foreign, 'config.json'), '{"title": "my notes"}');
  try {
    await clearUnsavedRun(foreign);
    assert.unreachable();
  } catch (error) {
    assert.instance(error, UserError);
    assert.match((error as Error).message, /config\.json is not the config of an osteo training run.*nothing was changed/);
  }
  assert.ok(existsSync(join(foreign, 'best')));

  await saveLast(run, { epoch: 1, batch: 0, step: 4 });
  try {
    await clearUnsavedRun(run);
    assert.unreachable();
  } catch (error) {
    assert.instance(error, UserError);
    assert.match((error as Error).message, /holds saved training/);
  }
  assert.ok(existsSync(join(run, 'last')));
});

test('an unreadable config.json is a DataError naming it', async () => {
  const run = join(root, 'run');
  await mkdir(run);
  await writeFile(join(run, 'config.json'), '{ cut');
  try {
    await inspectRun(run, await config(run));
    assert.unreachable();
  } catch (error) {
    assert.match((error as Error).message, /config\.json.*not valid JSON/);
  }
});

test('a run moved together with its data (a CV job’s data/ beside its run/) is the same run; other data is a difference', async () => {
  const saved = await config('/old/cv/jobs/j1/run', { data: '/old/cv/jobs/j1/data' });
  assert.equal(configDifferences(saved, await config('/new/place/jobs/j1/run', { data: '/new/place/jobs/j1/data' })), []);
  assert.equal(configDifferences(saved, await config('/new/place/jobs/j1/run', { data: '/old/cv/jobs/j1/data' })), [], 'the run moved, its data stayed and is named as before');
  assert.equal(configDifferences(saved, await config('/new/place/jobs/j1/run', { data: '/new/place/jobs/j2/data' })).map((d) => d.key), ['data'], "another job's data beside the moved run");
  assert.equal(configDifferences(saved, await config('/old/cv/jobs/j1/run', { data: '/elsewhere/data' })).map((d) => d.key), ['data']);
});

test.run();
