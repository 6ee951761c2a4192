/** Loading a run's weights: a checkpoint with another head says what the user can actually do. */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useBackend } from '../../src/backend/index.js';
import { resolveTrainConfig } from '../../src/config/index.js';
import { getModel } from '../../src/models/index.js';
import { loadRunModel, openRun, runLockPath, runPaths, runWeightsPath } from '../../src/runs/index.js';
import { refusal } from '../helpers/refusal.js';
import { DataError, UserError, writeJsonAtomic } from '../../src/util/index.js';
import { modelToStateDict, writeSafetensors } from '../../src/weights/index.js';

let run: string;
test.before.each(async () => {
  run = await mkdtemp(join(tmpdir(), 'osteo-run-'));
});
test.after.each(async () => {
  await rm(run, { recursive: true, force: true });
});

test('weights with a 1000-class head in a run: the error names the key and the command that swaps a head (an existing one)', async () => {
  await useBackend('wasm');
  const config = await resolveTrainConfig({ flags: { model: 'resnet18', data: 'd', out: run, imageSize: '32' } });
  await writeJsonAtomic(runPaths(run).config, config);
  const imagenet = getModel('resnet18').build({ imageSize: 32, numClasses: 1000, seed: 1 });
  const dict = await modelToStateDict(imagenet, 'resnet18');
  imagenet.dispose();
  await mkdir(runPaths(run).best);
  await writeSafetensors(runWeightsPath(run, 'best'), dict);
  try {
    (await loadRunModel(run)).model.dispose();
    assert.unreachable('a 1000-class head loaded into a 3-class model');
  } catch (error) {
    assert.instance(error, UserError);
    const message = (error as Error).message;
    assert.match(message, /fc\.weight \(checkpoint float32 \[1000, 512\], model float32 \[3, 512\]\)/);
    // the hint names a flag that exists: osteo train's own --pretrained option
    assert.match(message, /fine-tune from these weights with `osteo train --pretrained FILE`, which replaces the head with a fresh 3-class one/);
    const { buildProgram } = await import('../../src/cli.js');
    const train = buildProgram().commands.find((command) => command.name() === 'train')!;
    assert.ok(train.options.some((option) => option.long === '--pretrained'), 'osteo train has --pretrained');
  }
});

test("a run's preprocessing is the transform its config.json records, not the one its tag would give today; a config without one is a DataError naming the file", async () => {
  const config = await resolveTrainConfig({ flags: { model: 'resnet50', data: 'd', out: run, imageSize: '64' } });
  assert.equal([config.transform.resize, config.transform.crop], [66, 64], "round(64 · 232 / 224): ResNet50's default (V2) weights");
  await writeJsonAtomic(runPaths(run).config, { ...config, transform: { ...config.transform, resize: 80 } });
  await mkdir(runPaths(run).best);
  await writeJsonAtomic(runWeightsPath(run, 'best'), {});
  const info = await openRun(run);
  assert.equal(info.transform, { ...config.transform, resize: 80 });
  assert.equal(info.config.transform, info.transform);
  const { transform: _transform, ...without } = config;
  await writeJsonAtomic(runPaths(run).config, without);
  try {
    await openRun(run);
    assert.unreachable('a run without a recorded transform opened');
  } catch (error) {
    assert.instance(error, DataError);
    assert.match((error as Error).message, /config\.json.*has no "transform"/);
  }
});


test('an empty safetensors file in a run is said to hold no tensors, not sent to a head swap; weights of another architecture get no head hint either', async () => {
  await useBackend('wasm');
  const config = await resolveTrainConfig({ flags: { model: 'resnet18', data: 'd', out: run, imageSize: '32' } });
  await writeJsonAtomic(runPaths(run).config, config);
  await mkdir(runPaths(run).best);
  await writeSafetensors(runWeightsPath(run, 'best'), new Map());
  const empty = await refusal(async () => (await loadRunModel(run)).model.dispose(), /the file holds no tensors at all \(an empty state dict\)/);
  assert.not.match(empty, /head swap/);
  const other = getModel('resnet50').build({ imageSize: 32, numClasses: 3, seed: 1 });
  const dict = await modelToStateDict(other, 'resnet50');
  other.dispose();
  await writeSafetensors(runWeightsPath(run, 'best'), dict);
  const mismatched = await refusal(async () => (await loadRunModel(run)).model.dispose(), /do not fit resnet18: .*(unexpected|mis-shaped) keys: /);
  assert.not.match(mismatched, /head swap/);
});

test('a run with no checkpoint yet: "train it" only when no trainer holds its lock, else the trainer is named', async () => {
  const config = await resolveTrainConfig({ flags: { model: 'resnet18', data: 'd', out: run, imageSize: '32' } });
  await writeJsonAtomic(runPaths(run).config, config);
  await refusal(openRun(run), /has no best checkpoint .*it has no checkpoint at all: train it \(`osteo train --resume`\) until it saves one/);
  // This very process holds the lock, as a trainer in its first epoch does.
  await writeJsonAtomic(runLockPath(run), { pid: process.pid, host: hostname(), started: '2026-01-01T00:00:00.000Z' });
  const message = await refusal(openRun(run), new RegExp(`process ${process.pid} is training it \\(since 2026-01-01T00:00:00\\.000Z\\) and has saved no checkpoint yet: wait until it saves one`));
  assert.not.match(message, /train it \(/);
});

test.run();
