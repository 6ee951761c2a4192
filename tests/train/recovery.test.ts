/**
 * Recovery checkpoints (`checkpointEvery`, `--checkpoint-every N|Nm`): `last` is saved in mid-epoch
 * every N steps of the run or every N minutes, so a SIGKILL (no warning, no handler) loses at most
 * those steps, and the run resumed from that `last` ends bitwise where a run that was never stopped
 * ends. Saving is reading: a run with a save after every step trains exactly as one without. The
 * small stand-in model on the phantom at 32 px (8 steps an epoch), 2 epochs.
 */
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { resolveTrainConfig } from '../../src/config/index.js';
import { inspectRun, readRunConfigJson } from '../../src/runs/index.js';
import { trainModel, type TrainConfig, type TrainEvent } from '../../src/train/index.js';
import { signalWhen } from '../helpers/signals.js';
import { tempDir } from '../helpers/temp.js';
import { assertSameDict, memo, metricsRows, phantomDataset, readWeights, smallModel, tinyConfig, wasm } from './helpers.js';

const workspace = memo(() => tempDir('osteo-recovery-'));
test.after(async () => {
  await (await workspace()).cleanup();
});
const folder = async (name: string) => join((await workspace()).path, name);
const phantom = memo(async () => phantomDataset((await workspace()).path));
const recipe = ['optimizer.lr=1e-3'];
const child = new URL('./fixtures/train-child.ts', import.meta.url).pathname;

async function train(config: TrainConfig, resume = false): Promise<TrainEvent[]> {
  const events: TrainEvent[] = [];
  const result = await trainModel(config, { backend: await wasm(), providerModule: smallModel, resume, onEvent: (event) => events.push(event) });
  assert.is(result.status, 'completed', result.message);
  return events;
}

/** The 2-epoch run that is never stopped and saves only at epoch ends. */
const uninterrupted = memo(async () => {
  const run = await folder('uninterrupted');
  const events = await train(await tinyConfig(await phantom(), run, { epochs: '2' }, recipe));
  assert.not.ok(events.some((e) => e.type === 'checkpoint' && e.batch > 0), 'no mid-epoch save without checkpointEvery');
  return run;
});

async function assertSameRun(run: string, label: string): Promise<void> {
  const reference = await uninterrupted();
  for (const file of ['model.safetensors', 'optimizer.safetensors']) {
    assertSameDict(await readWeights(join(run, 'last', file)), await readWeights(join(reference, 'last', file)), `${label}: last/${file}`);
  }
  assert.equal(metricsRows(run), metricsRows(reference), `${label}: the same epoch metrics`);
}

const midEpochSaves = (events: TrainEvent[]) => events.flatMap((e) => (e.type === 'checkpoint' && e.which === 'last' && e.batch > 0 ? [e.step] : []));

test('a save after every step (checkpointEvery 1) changes nothing of the training: the same weights, optimizer state and metrics, bitwise', async () => {
  const run = await folder('every-step');
  const events = await train(await tinyConfig(await phantom(), run, { epochs: '2', checkpointEvery: '1' }, recipe));
  assert.equal(midEpochSaves(events), [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15], 'after every step but an epoch’s last, which the epoch end saves');
  await assertSameRun(run, 'checkpointEvery 1');
});

test('minutes: 10m saves nothing in mid-epoch in a run of seconds; a fraction of a millisecond saves after every step', async () => {
  const rare = await train(await tinyConfig(await phantom(), await folder('minutes-rare'), { epochs: '1', checkpointEvery: '10m' }, recipe));
  assert.equal(midEpochSaves(rare), []);
  const often = await train(await tinyConfig(await phantom(), await folder('minutes-often'), { epochs: '1', checkpointEvery: '0.000001m' }, recipe));
  assert.equal(midEpochSaves(often), [1, 2, 3, 4, 5, 6, 7]);
});

test('SIGKILL mid-epoch after a recovery checkpoint (--checkpoint-every 3): at most 3 steps are lost, and the resumed run ends bitwise as the uninterrupted one', async () => {
  const run = await folder('killed');
  const config = await tinyConfig(await phantom(), run, { epochs: '2', checkpointEvery: '3' }, recipe);
  const file = join(await folder('.'), 'killed-config.json');
  await writeFile(file, JSON.stringify(config));
  // saves at steps 3, 6, 8 (epoch end), 9, 12, 15, 16: killed once step 12's save (epoch 2, batch 4) is written
  const killed = await signalWhen(process.execPath, ['--import', 'tsx', child, file], /"type":"checkpoint","which":"last","epoch":1,"batch":4,/, 'SIGKILL');
  assert.ok(killed.sent, `the step-12 checkpoint was not reported: ${killed.stderr}`);
  assert.equal([killed.code, killed.signal], [null, 'SIGKILL']);
  const stepsDone = Math.max(...[...killed.stderr.matchAll(/"type":"step".*?"step":(\d+)/g)].map((m) => Number(m[1])));
  assert.ok((await readdir(run)).includes('.lock'), 'a SIGKILL leaves its lock (taken over on resume)');
  // what cv and reproduce ask before they resume it: resumable, from mid-epoch
  const inspected = await inspectRun(run, config);
  assert.is(inspected.condition, 'resumable');
  assert.ok(inspected.state!.epoch === 1 && inspected.state!.batch >= 4, `last/state.json: ${JSON.stringify(inspected.state)}`);

  const { file: saved, json } = await readRunConfigJson(run);
  const events = await train(await resolveTrainConfig({ resumeFrom: { file: saved, config: json }, flags: { out: run } }), true);
  const resumed = events.find((e) => e.type === 'resume') as Extract<TrainEvent, { type: 'resume' }>;
  assert.ok(resumed.batch > 0 && resumed.step >= 12, `resumed in mid-epoch from a recovery checkpoint: ${JSON.stringify(resumed)}`);
  assert.ok(stepsDone - resumed.step <= 3, `lost ${stepsDone - resumed.step} steps (done ${stepsDone}, resumed at ${resumed.step})`);
  await assertSameRun(run, 'killed and resumed');
});

test.run();
