/**
 * A run folder is never a dead end and never trains on the wrong data: the run records its dataset
 * and split, refuses a changed split, checks what can fail before making its folder, restarts a start
 * that never saved `last`, keeps a second trainer out, treats --max-steps as a budget per invocation,
 * and saves `last` on SIGTERM as on Ctrl-C. 32 px, wasm, one thread, a few steps each.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useBackend } from '../../src/backend/index.js';
import { osteoArgv } from '../helpers/cli.js';
import { signalWhen } from '../helpers/signals.js';
import { refusal, rejection } from '../helpers/refusal.js';
import { resolveTrainConfig } from '../../src/config/index.js';
import { manifestContentHashes, readSplitManifest, splitDataset, synthesizePhantom } from '../../src/data/index.js';
import { getModel } from '../../src/models/index.js';
import { readRunConfigJson, readRunSplit, runLockPath } from '../../src/runs/index.js';
import { trainModel, type TrainEvent } from '../../src/train/index.js';
import { DataError, UserError } from '../../src/util/index.js';
import { modelToStateDict, writeSafetensors } from '../../src/weights/index.js';
import { assertSameDict, memo, wasm, readWeights, tinyConfig } from './helpers.js';
import { tempDir } from '../helpers/temp.js';

const workspace = memo(() => tempDir('osteo-run-safety-'));
test.after(async () => {
  await (await workspace()).cleanup();
});
const folder = async (name: string) => join((await workspace()).path, name);
/** 16 films per class at 48 px, split 65/25/10: 32 train images (2 steps of 16), 12 val. */
const phantom = memo(async () => {
  const dataDir = join((await workspace()).path, 'phantom');
  await synthesizePhantom({ dest: dataDir, perClass: 16, size: 48, seed: 1 });
  await splitDataset({ dataDir, val: 0.25, test: 0.1 });
  return dataDir;
});
/** A test that changes the dataset works on its own copy. */
async function ownPhantom(name: string): Promise<string> {
  const copy = await folder(name);
  await cp(await phantom(), copy, { recursive: true });
  return copy;
}

/** `osteo train --resume --out RUN [--max-steps N]`, as the command resolves it. */
async function resumeConfig(run: string, flags: Record<string, unknown> = {}) {
  const { file, json } = await readRunConfigJson(run);
  return resolveTrainConfig({ resumeFrom: { file, config: json }, flags: { out: run, ...flags } });
}

/** The pid of a process that has ended: what a lock left by `kill -9` names. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '0']).pid!;
}
const staleLock = () => JSON.stringify({ pid: deadPid(), host: hostname(), started: '2026-01-01T00:00:00.000Z' });
const require = createRequire(import.meta.url);

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('a relative --data is recorded absolute with its manifest hash: --resume from another directory continues on it; --max-steps is per invocation', async () => {
  const data = await ownPhantom('relative-data');
  const run = await folder('relative-run');
  const home = process.cwd();
  try {
    process.chdir(dirname(data));
    const first = await trainModel(await tinyConfig(basename(data), run, { epochs: '3', maxSteps: '1' }), { backend: await wasm() });
    assert.equal([first.status, first.steps], ['max-steps', 1]);
    assert.match(first.message, /took the --max-steps 1 steps of this invocation; .*continue with --resume/);
    const record = (await readRunSplit(run))!;
    assert.is(record.data, data);
    assert.is(record.manifestSha256, createHash('sha256').update(readFileSync(join(data, 'splits.csv'))).digest('hex'));
    // elsewhere, where the relative path names nothing
    process.chdir(dirname(home));
    const config = await resumeConfig(run, { maxSteps: '3' });
    assert.is(config.data, basename(data), 'the saved config keeps what the user typed');
    const second = await trainModel(config, { backend: await wasm(), resume: true });
    assert.equal([second.status, second.steps], ['max-steps', 4], '3 more steps, not 2 (the budget is per invocation)');
    assert.match(second.message, /continue with --resume/);
  } finally {
    process.chdir(home);
  }
  assert.not.ok(existsSync(runLockPath(run)), 'the lock was released');
});

test('a re-split dataset: --resume is refused naming both hashes, and the run is left as it was', async () => {
  const data = await ownPhantom('resplit-data');
  const run = await folder('resplit-run');
  await trainModel(await tinyConfig(data, run, { epochs: '1', maxSteps: '1' }), { backend: await wasm() });
  const before = (await readRunSplit(run))!.manifestSha256;
  const state = await readFile(join(run, 'last', 'state.json'));
  await splitDataset({ dataDir: data, val: 0.25, test: 0.1, seed: 7 });
  const after = createHash('sha256').update(readFileSync(join(data, 'splits.csv'))).digest('hex');
  assert.is.not(after, before);
  await refusal(trainModel(await resumeConfig(run), { backend: await wasm(), resume: true }), new RegExp(`splits\\.csv has changed since .*SHA-256 ${before} then, ${after} now`), /Restore the original splits\.csv, or start a new run/);
  assert.ok((await readFile(join(run, 'last', 'state.json'))).equals(state));
  assert.not.ok(existsSync(runLockPath(run)));
});

test("a training film changed after indexing stops the run naming the file, as eval would; the run records its training images' hashes", async () => {
  const data = await ownPhantom('tampered-data');
  const train = (await readSplitManifest(data)).filter((row) => row.split === 'train');
  const hashes = await manifestContentHashes(data);
  // Every training film but the first (and its copies) gets the first one's pixels: whichever the sampler draws first is caught.
  const tampered = train.filter((row) => hashes.get(row.path)?.hash !== hashes.get(train[0]!.path)?.hash).map((row) => join(data, row.path));
  for (const file of tampered) await writeFile(file, await readFile(join(data, train[0]!.path)));
  const run = await folder('tampered-run');
  const error = await rejection(trainModel(await tinyConfig(data, run, { epochs: '1', maxSteps: '2' }), { backend: await wasm() }), /its pixels no longer match the content hash in .*splits\.csv/);
  assert.instance(error, DataError);
  assert.ok(tampered.includes((error as DataError).file), (error as DataError).file);
  const record = (await readRunSplit(run))!;
  assert.equal(record.trainContentHashes, [...new Set(train.map((row) => hashes.get(row.path)!.hash))].sort());
});

test('what can fail is checked before the run folder exists: a missing manifest, a bad --pretrained, --out under a file', async () => {
  const data = await phantom();
  const none = await folder('no-manifest-run');
  await refusal(trainModel(await tinyConfig(await folder('no-such-dataset'), none), { backend: await wasm() }), /no split manifest/);
  assert.not.ok(existsSync(none));

  // a checkpoint missing a backbone key: read, shape-checked, refused — no run folder
  const model = getModel('resnet18').build({ imageSize: 32, numClasses: 3, seed: 1 });
  const dict = await modelToStateDict(model, 'resnet18');
  model.dispose();
  dict.delete('layer1.0.conv1.weight');
  const broken = await folder('broken.safetensors');
  await writeSafetensors(broken, dict);
  const pretrainedRun = await folder('bad-pretrained-run');
  await refusal(trainModel(await tinyConfig(data, pretrainedRun, { pretrained: broken, maxSteps: '1' }), { backend: await wasm() }), /do not fit resnet18: missing keys: layer1\.0\.conv1\.weight/);
  assert.not.ok(existsSync(pretrainedRun));
  const missingRun = await folder('missing-pretrained-run');
  try {
    await trainModel(await tinyConfig(data, missingRun, { pretrained: await folder('absent.pth'), maxSteps: '1' }), { backend: await wasm() });
    assert.unreachable();
  } catch (error) {
    assert.ok(String(error).includes('absent.pth'), String(error));
  }
  assert.not.ok(existsSync(missingRun));

  const file = await folder('a-file');
  await writeFile(file, 'not a folder');
  for (const out of [file, join(file, 'run')]) {
    await refusal(trainModel(await tinyConfig(data, out, { maxSteps: '1' }), { backend: await wasm() }), new RegExp(`^${escape(file)} is a file, but .* needs it to be a folder`));
  }
  assert.is(readFileSync(file, 'utf8'), 'not a folder');
});

const tfjsNodeInstalled = (() => {
  try {
    require.resolve('@tensorflow/tfjs-node');
    return true;
  } catch {
    return false;
  }
})();
(tfjsNodeInstalled ? test.skip : test)('an absent backend is refused before the run folder exists (skipped where tfjs-node is installed: it is then not absent)', async () => {
  const run = await folder('absent-backend-run');
  // as `osteo train` does: the backend the config names is chosen before trainModel is called
  const config = await tinyConfig(await phantom(), run, { backend: 'tensorflow', maxSteps: '1' });
  await refusal((async () => trainModel(config, { backend: await useBackend(config.backend) }))());
  assert.not.ok(existsSync(run));
});

test('killed in epoch 1 after best/ but before last/ (and a stale lock): the same command restarts it from scratch, to the same result', async () => {
  const run = await folder('killed-run');
  const config = await tinyConfig(await phantom(), run, { epochs: '1' });
  await refusal(
    trainModel(config, {
    backend: await wasm(),
      fault: (name) => {
        if (name === 'last') throw new UserError('killed before last/');
      },
    }),
    /killed before last/,
  );
  assert.ok(existsSync(join(run, 'best')) && !existsSync(join(run, 'last')));
  const killedBest = await readWeights(join(run, 'best', 'model.safetensors'));
  await writeFile(runLockPath(run), staleLock()); // kill -9 releases nothing
  const events: TrainEvent[] = [];
  const result = await trainModel(config, { backend: await wasm(), onEvent: (event) => events.push(event) });
  assert.equal([result.status, result.steps], ['completed', 2]);
  const restarted = events.find((e): e is Extract<TrainEvent, { type: 'restarted' }> => e.type === 'restarted');
  assert.ok(restarted, 'a restarted event');
  assert.match(restarted.reason, /holds no saved training .*starting it from scratch/);
  assert.equal(restarted.removed.sort(), ['best', 'curves.png', 'metrics.csv', 'split.json']);
  assert.is(events.find((e) => e.type === 'start' && e.resumed === false)?.type, 'start');
  assertSameDict(await readWeights(join(run, 'best', 'model.safetensors')), killedBest, 'the restarted epoch 1 equals the killed one');
  assert.not.ok(existsSync(runLockPath(run)));
  // the same command on the finished run has nothing to do (exit 0, nothing written); any other
  // config on a run that holds training is still refused without --resume
  const finishedWeights = await readWeights(join(run, 'last', 'model.safetensors'));
  const again = await trainModel(config, { backend: await wasm() });
  assert.equal([again.status, again.steps], ['completed', 2]);
  assert.match(again.message, /already holds this run, trained to the end .*nothing to do/);
  assertSameDict(await readWeights(join(run, 'last', 'model.safetensors')), finishedWeights, 'a finished run is not retrained');
  await refusal(trainModel({ ...config, seed: config.seed + 1 }, { backend: await wasm() }), /already holds a training run: add --resume/);
  await refusal(trainModel({ ...config, epochs: config.epochs + 1 }, { backend: await wasm() }), /already holds a training run: add --resume/);
  // a folder whose config.json is not a training run's is not restarted (nothing in it is deleted)
  const foreign = await folder('foreign-run');
  await cp(join(run, 'best'), join(foreign, 'best'), { recursive: true });
  await writeFile(join(foreign, 'config.json'), '{"title": "my notes"}');
  await refusal(trainModel(await tinyConfig(await phantom(), foreign, { epochs: '1' }), { backend: await wasm() }), /config\.json is not the config of an osteo training run/);
  assert.equal(readdirSync(foreign).sort(), ['best', 'config.json']);
});

test('killed before any checkpoint: --resume restarts it too (nothing to resume, nothing to lose)', async () => {
  const run = await folder('killed-early-run');
  const config = await tinyConfig(await phantom(), run, { epochs: '1' });
  await refusal(
    trainModel(config, {
    backend: await wasm(),
      onEvent: (event) => {
        if (event.type === 'step') throw new UserError('killed mid-epoch');
      },
    }),
    /killed mid-epoch/,
  );
  assert.ok(existsSync(join(run, 'config.json')) && !existsSync(join(run, 'last')));
  await writeFile(runLockPath(run), staleLock());
  const events: TrainEvent[] = [];
  const result = await trainModel(await resumeConfig(run, { maxSteps: '1' }), { backend: await wasm(), resume: true, onEvent: (event) => events.push(event) });
  assert.equal([result.status, result.steps], ['max-steps', 1]);
  assert.ok(events.some((e) => e.type === 'restarted'));
  assert.not.ok(events.some((e) => e.type === 'resume'));
});

test('non-finite validation outputs stop the run as diverged, before the epoch is recorded or saved', async () => {
  const run = await folder('nan-val-run');
  await trainModel(await tinyConfig(await phantom(), run, { epochs: '2', maxSteps: '1' }), { backend: await wasm() });
  // A running mean of float32's lowest value and a zero running variance in the last BatchNorm
  // (non-finite statistics are refused on reading): training (batch statistics) stays finite, while
  // inference-mode validation overflows to infinite features and NaN logits.
  const weights = await readWeights(join(run, 'last', 'model.safetensors'));
  (weights.get('layer4.1.bn2.running_mean')!.data as Float32Array).fill(-3.4028234663852886e38);
  (weights.get('layer4.1.bn2.running_var')!.data as Float32Array).fill(0);
  await writeSafetensors(join(run, 'last', 'model.safetensors'), weights);
  const events: TrainEvent[] = [];
  const result = await trainModel(await resumeConfig(run), { backend: await wasm(), resume: true, onEvent: (event) => events.push(event) });
  assert.ok(events.some((e) => e.type === 'step' && Number.isFinite(e.loss)), 'training loss stayed finite');
  assert.is(result.status, 'diverged');
  assert.match(result.message, /validation diverged: the val loss is NaN after epoch 1 \(step 2\); the epoch was not recorded or saved/);
  assert.equal(result.history, []);
  assert.not.ok(existsSync(join(run, 'best')) || existsSync(join(run, 'metrics.csv')));
});

test('a run being trained by a live process is refused naming its pid, and is not touched', async () => {
  const run = await folder('locked-run');
  await trainModel(await tinyConfig(await phantom(), run, { epochs: '1', maxSteps: '1' }), { backend: await wasm() });
  const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  try {
    const lock = JSON.stringify({ pid: sleeper.pid, host: hostname(), started: 'now' });
    await writeFile(runLockPath(run), lock);
    const entries = readdirSync(run).sort();
    const state = await readFile(join(run, 'last', 'state.json'));
    await refusal(trainModel(await resumeConfig(run), { backend: await wasm(), resume: true }), new RegExp(`is being trained by process ${sleeper.pid}`));
    assert.equal(readdirSync(run).sort(), entries);
    assert.ok((await readFile(join(run, 'last', 'state.json'))).equals(state));
    assert.is(readFileSync(runLockPath(run), 'utf8'), lock, "the owner's lock is left in place");
  } finally {
    const exited = once(sleeper, 'exit');
    sleeper.kill();
    await exited;
  }
});

test('SIGTERM (as `timeout` sends) is handled like Ctrl-C: the step finishes, `last` is saved, the exit status is 1', async () => {
  const data = await phantom();
  const run = await folder('sigterm-run');
  const args = osteoArgv(['train', '--model', 'resnet18', '--data', data, '--out', run, '--image-size', '32', '--batch-size', '16']);
  const { sent, code, signal, stderr } = await signalWhen(process.execPath, [...args, '--backend', 'wasm', '--workers', '1', '--epochs', '3', '--set', 'augment=none'], /step 1\/2/, 'SIGTERM');
  assert.ok(sent, `no step was reported: ${stderr}`);
  assert.equal([code, signal], [1, null], `exit ${code} ${signal}: ${stderr}`);
  assert.match(stderr, /SIGTERM: finishing the current step and saving `last`/);
  // the signal lands after step 1; step 2 may already be under way, and then ends the epoch first
  assert.match(stderr, /interrupted (at epoch 1, after batch 1 of 2 \(step 1\); `last` saved|after epoch 1; `last` is current): resume with --resume/);
  const state = JSON.parse(readFileSync(join(run, 'last', 'state.json'), 'utf8'));
  assert.ok(state.step >= 1 && state.step <= 2, `saved at step ${state.step}`);
  assert.not.ok(existsSync(runLockPath(run)));
});

test.run();
