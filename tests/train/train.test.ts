/**
 * The training loop on the phantom at 32 px, wasm, one thread.
 *
 * The loop's own behaviour (learning, checkpoints, exact resume, divergence) is tested on a small
 * convnet standing in for the config's ResNet18 (fixtures/small-provider.ts, through trainModel's
 * `providerModule`), so it takes seconds. Starting from a random init, its BatchNorm running
 * statistics need a few dozen steps to follow the weights before inference-mode validation means
 * anything: 5 epochs of 8 steps shows validation accuracy well above chance (seeds 0–3 reach
 * 0.64–0.69 balanced accuracy; chance is 1/3). The resume and kill tests compare against that same
 * run's epoch-2 checkpoint, bitwise. What depends on the real architectures (freezing stages, the
 * head swap, two-stage fine-tuning, cpu against wasm) trains the registry's models for a few steps.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../../src/backend/index.js';
import { resolveTrainConfig } from '../../src/config/index.js';
import { createLoader } from '../../src/data/index.js';
import { UserError } from '../../src/util/index.js';
import { getModel } from '../../src/models/index.js';
import { openRun, readRunConfig, readRunConfigJson } from '../../src/runs/index.js';
import { modelProvider as smallProvider } from './fixtures/small-provider.js';
import { trainModel, type TrainEvent } from '../../src/train/index.js';
import { modelToStateDict, writePth, writeSafetensors } from '../../src/weights/index.js';
import { assertSameDict, memo, metricsRows, phantomDataset, smallModel, wasm, readWeights, sameValues, snapshotOn, tinyConfig } from './helpers.js';
import { tempDir } from '../helpers/temp.js';

const workspace = memo(() => tempDir());
test.after(async () => {
  await (await workspace()).cleanup();
});
/** Each test writes only under its own folder of the shared temporary directory. */
const folder = async (name: string) => join((await workspace()).path, name);
const phantom = memo(async () => phantomDataset((await workspace()).path));

const recipe = ['optimizer.lr=1e-3'];

/** The uninterrupted 5-epoch run that the resume, NaN and refusal tests compare against, with its events and a copy of `last` right after epoch 2. */
const runA = memo(async () => {
  const run = await folder('a');
  const epoch2 = await folder('a-epoch2');
  const config = await tinyConfig(await phantom(), run, { epochs: '5' }, recipe);
  const events: TrainEvent[] = [];
  const snapshot = snapshotOn(run, 'last', 2, 0, epoch2);
  const result = await trainModel(config, {
    backend: await wasm(),
    providerModule: smallModel,
    onEvent: (event) => {
      events.push(event);
      snapshot(event);
    },
  });
  return { run, epoch2, config, result, events: events as readonly TrainEvent[] };
});

test('the loop learns on the phantom (small stand-in model): train loss falls, val balanced accuracy well above chance; the run directory is complete', async () => {
  const { run, config, result, events } = await runA();
  const h = result.history;
  console.log(`    phantom, small model 32px: val balanced accuracy by epoch ${h.map((r) => r.valBalancedAccuracy.toFixed(3)).join(', ')}; train loss ${h.map((r) => r.trainLoss.toFixed(3)).join(', ')}`);
  assert.is(result.status, 'completed');
  assert.is(h.length, 5);
  assert.is(result.steps, 40);
  assert.ok(h[4]!.trainLoss < 0.75 * h[0]!.trainLoss, `train loss ${h[0]!.trainLoss} → ${h[4]!.trainLoss}`);
  assert.ok(result.best!.value >= 0.5, `best val balanced accuracy ${result.best!.value} (chance 1/3)`);
  assert.is(result.best!.metric, 'valBalancedAccuracy');

  // metrics.csv: one row per epoch, the same numbers as the result
  const rows = metricsRows(run);
  assert.is(rows.length, 5);
  rows.forEach((row, i) => {
    assert.is(Number(row.epoch), i + 1);
    assert.is(Number(row.val_balanced_accuracy), h[i]!.valBalancedAccuracy);
    assert.is(Number(row.train_loss), h[i]!.trainLoss);
  });
  // events.jsonl: every event, one JSON object per line
  const lines = readFileSync(join(run, 'events.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as TrainEvent);
  assert.equal(lines.map((e) => e.type), events.map((e) => e.type));
  assert.is(lines.filter((e) => e.type === 'step').length, 40);
  // curves.png: two charts side by side
  const meta = await sharp(join(run, 'curves.png')).metadata();
  assert.equal([meta.format, meta.width, meta.height], ['png', 1120, 400]);
  // config.json round-trips; openRun gives the preprocessing of a 32 px ResNet
  assert.equal(JSON.parse(JSON.stringify(await readRunConfig(run))), JSON.parse(JSON.stringify(config)));
  const info = await openRun(run);
  assert.equal([info.model, info.imageSize, info.transform.resize, info.transform.crop, info.numClasses], ['resnet18', 32, 37, 32, 3]);
  // no tensor leaks: the same count after every epoch
  const tensors = events.flatMap((e) => (e.type === 'epoch-end' ? [e.tensors.join('/')] : []));
  assert.is(new Set(tensors).size, 1, `tensors after each epoch: ${tensors.join(', ')}`);
});

test('best/ holds the best epoch: its weights reproduce that epoch’s validation accuracy', async () => {
  const { run, result } = await runA();
  const dataDir = await phantom();
  const best = result.best!;
  const state = JSON.parse(readFileSync(join(run, 'best', 'state.json'), 'utf8'));
  assert.equal([state.epoch, state.metric, state.value], [best.epoch, 'valBalancedAccuracy', best.value]);
  // the run's model is the small stand-in: built and loaded through the provider that trained it
  const { transform } = await openRun(run, 'best');
  const model = smallProvider.build('resnet18', { imageSize: 32, numClasses: 3, initialize: false });
  const report = await smallProvider.loadStateDict(model, 'resnet18', await readWeights(join(run, 'best', 'model.safetensors')), {});
  assert.is(report.missing.length + report.unexpected.length + report.mismatched.length, 0);
  const before = tf.memory().numTensors; // the model's weights
  let correct = 0;
  let seen = 0;
  for await (const batch of createLoader({ dataDir, split: 'val', imageSize: 32, transform, batchSize: 16, sampler: 'sequential', seed: 0, epoch: 0 })) {
    const predicted = tf.tidy(() => tf.argMax(model.apply(tf.tensor4d(batch.images, [batch.size, 32, 32, 3]), { training: false }) as tf.Tensor, 1).dataSync());
    for (let i = 0; i < batch.size; i++) correct += predicted[i] === batch.labels[i] ? 1 : 0;
    seen += batch.size;
  }
  assert.is(tf.memory().numTensors, before);
  model.dispose();
  assert.is(correct / seen, result.history[best.epoch - 1]!.valAccuracy);
});

test('Ctrl-C mid-epoch, then a kill during the next checkpoint write: both resume to the uninterrupted run, bitwise (same seed, same metrics)', async () => {
  const { run: uninterrupted, epoch2 } = await runA();
  const run = await folder('b');
  const config = await tinyConfig(await phantom(), run, { epochs: '2' }, recipe);
  // 1. Ctrl-C after step 13 (batch 5 of epoch 2): the step finishes, `last` is saved, status says so.
  const controller = new AbortController();
  const first = await trainModel(config, {
    backend: await wasm(),
    providerModule: smallModel,
    signal: controller.signal,
    onEvent: (event) => {
      if (event.type === 'step' && event.step === 13) controller.abort();
    },
  });
  assert.is(first.status, 'interrupted');
  assert.match(first.message, /epoch 2, after batch 5 of 8 \(step 13\)/);
  const saved = JSON.parse(readFileSync(join(run, 'last', 'state.json'), 'utf8'));
  assert.equal([saved.epoch, saved.batch, saved.step], [1, 5, 13]);

  // 2. Resume as `osteo train --resume --out RUN` does; a kill lands between the two renames of the
  //    epoch-2 checkpoint, so RUN/last/ does not exist at that moment.
  const resumeConfig = async () => {
    const { file, json } = await readRunConfigJson(run);
    return resolveTrainConfig({ resumeFrom: { file, config: json }, flags: { out: run } });
  };
  let killed: unknown;
  try {
    await trainModel(await resumeConfig(), {
      backend: await wasm(),
      providerModule: smallModel,
      resume: true,
      fault: (name, point) => {
        if (name === 'last' && point === 'between-renames') throw new Error('killed between renames');
      },
    });
  } catch (error) {
    killed = error;
  }
  assert.match(String(killed), /killed between renames/);
  assert.not.ok(existsSync(join(run, 'last')));
  assert.ok(readdirSync(run).some((entry) => entry.startsWith('last.old-')), 'the previous checkpoint was set aside, not lost');

  // 3. Resume again: the previous checkpoint (the Ctrl-C one) comes back and the run completes.
  const events: TrainEvent[] = [];
  const final = await trainModel(await resumeConfig(), { backend: await wasm(), providerModule: smallModel, resume: true, onEvent: (event) => events.push(event) });
  assert.is(final.status, 'completed');
  assert.ok(events.some((e) => e.type === 'recovered'));
  const resumed = events.find((e) => e.type === 'resume');
  assert.equal(resumed, { type: 'resume', epoch: 1, batch: 5, step: 13 });
  assert.is(events.filter((e) => e.type === 'step').length, 3, 'only the three batches left of epoch 2 were trained');

  assertSameDict(await readWeights(join(run, 'last', 'model.safetensors')), await readWeights(join(epoch2, 'model.safetensors')), 'weights');
  assertSameDict(await readWeights(join(run, 'last', 'optimizer.safetensors')), await readWeights(join(epoch2, 'optimizer.safetensors')), 'optimizer state');
  assert.equal(metricsRows(run), metricsRows(uninterrupted).slice(0, 2), 'epoch metrics equal the uninterrupted run');
});

test('a NaN loss stops the run naming epoch and step, and leaves the last checkpoint untouched', async () => {
  const { run: uninterrupted, epoch2 } = await runA();
  const run = await folder('nan');
  await cp(epoch2, join(run, 'last'), { recursive: true });
  await cp(join(uninterrupted, 'config.json'), join(run, 'config.json'));
  // A checkpoint whose classifier is float32's largest value throughout (a NaN weight is refused on
  // reading): the logits overflow to +Infinity, so the first step's loss is NaN. The small model
  // keeps tfjs's own weight names (fc.kernel).
  const weights = await readWeights(join(run, 'last', 'model.safetensors'));
  (weights.get('fc.kernel')!.data as Float32Array).fill(3.4028234663852886e38);
  (weights.get('fc.bias')!.data as Float32Array).fill(3.4028234663852886e38);
  await writeSafetensors(join(run, 'last', 'model.safetensors'), weights);
  const before = await Promise.all(['model.safetensors', 'optimizer.safetensors', 'state.json'].map((f) => readFile(join(run, 'last', f))));
  const { file, json } = await readRunConfigJson(run);
  const config = await resolveTrainConfig({ resumeFrom: { file, config: json }, flags: { out: run } });
  const result = await trainModel(config, { backend: await wasm(), providerModule: smallModel, resume: true });
  assert.is(result.status, 'diverged');
  assert.match(result.message, /loss is NaN at epoch 3, step 17 \(batch 1 of 8\)/);
  assert.match(result.message, /holds the last good checkpoint/);
  const after = await Promise.all(['model.safetensors', 'optimizer.safetensors', 'state.json'].map((f) => readFile(join(run, 'last', f))));
  after.forEach((bytes, i) => assert.ok(bytes.equals(before[i]!), 'last/ unchanged'));
});

test('resnet50 recipe (conv1–layer3 frozen): frozen weights and BatchNorm statistics stay bitwise, layer4 and fc train', async () => {
  const run = await folder('r50');
  const config = await tinyConfig(await phantom(), run, { model: 'resnet50', batchSize: '4', maxSteps: '2' });
  assert.is(config.freezeUntil, 'layer3');
  const result = await trainModel(config, { backend: await wasm() });
  assert.is(result.status, 'max-steps');
  assert.is(result.steps, 2);
  const entry = getModel('resnet50');
  const built = entry.build({ imageSize: 32, numClasses: 3, seed: 0, freezeUntil: 'layer3' });
  const initial = await modelToStateDict(built, 'resnet50');
  built.dispose();
  const trained = await readWeights(join(run, 'last', 'model.safetensors'));
  let frozen = 0;
  let moved = 0;
  for (const [key, tensor] of initial) {
    const same = sameValues(trained.get(key)!.data, tensor.data);
    if (/^(conv1|bn1|layer[123])\./.test(key)) {
      assert.ok(same, `${key} changed although frozen`);
      frozen++;
    } else if (/(weight|bias|running_mean|running_var)$/.test(key)) {
      assert.not.ok(same, `${key} did not train`);
      moved++;
    }
  }
  assert.ok(frozen > 200 && moved > 40, `${frozen} frozen, ${moved} trained tensors`);
});

test('efficientnet_b3 recipe (AdamW, class-weighted sampler, CLAHE) takes its steps', async () => {
  const dataDir = await phantom();
  const run = await folder('b3');
  const events: TrainEvent[] = [];
  const config = await resolveTrainConfig({
    flags: { model: 'efficientnet_b3', data: dataDir, out: run, imageSize: '32', batchSize: '4', maxSteps: '2', backend: 'wasm', workers: '1' },
  });
  assert.equal([config.optimizer.type, config.classBalance, config.augment.clahe?.p], ['adamw', 'sampler', 1]);
  const result = await trainModel(config, { backend: await wasm(), onEvent: (event) => events.push(event) });
  assert.is(result.status, 'max-steps');
  const losses = events.flatMap((e) => (e.type === 'step' ? [e.loss] : []));
  assert.is(losses.length, 2);
  for (const loss of losses) assert.ok(Number.isFinite(loss) && loss > 0, `loss ${loss}`);
  assert.ok(existsSync(join(run, 'last', 'optimizer.safetensors')));
});

test('two-stage fine-tuning: epoch 1 trains only the classifier, epoch 2 the whole network', async () => {
  const run = await folder('two-stage');
  const afterHead = await folder('two-stage-epoch1');
  const config = await tinyConfig(await phantom(), run, { epochs: '2', maxSteps: '9' }, [...recipe, 'headEpochs=1']);
  const events: TrainEvent[] = [];
  const snapshot = snapshotOn(run, 'last', 1, 0, afterHead);
  const result = await trainModel(config, {
    backend: await wasm(),
    onEvent: (event) => {
      events.push(event);
      snapshot(event);
    },
  });
  assert.is(result.status, 'max-steps');
  assert.equal(
    events.flatMap((e) => (e.type === 'stage' ? [[e.stage, e.freezeUntil, e.epoch]] : [])),
    [
      ['head', 'layer4', 1],
      ['main', null, 2],
    ],
  );
  const built = getModel('resnet18').build({ imageSize: 32, numClasses: 3, seed: 0 });
  const initial = await modelToStateDict(built, 'resnet18');
  built.dispose();
  const head = await readWeights(join(afterHead, 'model.safetensors'));
  const end = await readWeights(join(run, 'last', 'model.safetensors'));
  for (const [key, tensor] of initial) {
    if (key.startsWith('fc.')) assert.not.ok(sameValues(head.get(key)!.data, tensor.data), `${key} did not train in stage 1`);
    else assert.ok(sameValues(head.get(key)!.data, tensor.data), `${key} changed in stage 1`);
  }
  for (const key of ['conv1.weight', 'layer1.0.conv1.weight', 'bn1.running_mean']) {
    assert.not.ok(sameValues(end.get(key)!.data, head.get(key)!.data), `${key} did not train in stage 2`);
  }
});

test('cpu and wasm agree on the loss of the first steps (≤ 1e-3)', async () => {
  // layer4 + fc train: the tfjs cpu backend's filter gradient takes ~30 s per step for the whole
  // ResNet18 even at 32 px, so the full network's backward pass is compared in the engine's tests.
  const losses: Record<string, number[]> = {};
  for (const backend of ['cpu', 'wasm']) {
    const run = await folder(`agree-${backend}`);
    // the recipe's Adam 1e-4: at 1e-3 Adam's normalised update turns float-rounding differences in
    // near-zero gradients into full-size steps, and the two backends drift apart by step 3
    const config = await tinyConfig(await phantom(), run, { backend, batchSize: '4', maxSteps: '3' }, ['freezeUntil=layer3']);
    const events: TrainEvent[] = [];
    await trainModel(config, { backend: await useBackend(backend), onEvent: (event) => events.push(event) });
    losses[backend] = events.flatMap((e) => (e.type === 'step' ? [e.loss] : []));
  }
  console.log(`    first-step losses cpu ${losses.cpu!.map((l) => l.toFixed(6)).join(', ')}; wasm ${losses.wasm!.map((l) => l.toFixed(6)).join(', ')}`);
  assert.is(losses.cpu!.length, 3);
  losses.cpu!.forEach((loss, i) => assert.ok(Math.abs(loss - losses.wasm![i]!) <= 1e-3, `step ${i + 1}: cpu ${loss}, wasm ${losses.wasm![i]}`));
  assert.ok(losses.cpu![2] !== losses.cpu![0], 'the steps changed the model');
});

test('--pretrained: an ImageNet-shaped checkpoint loads with its 1000-class head swapped for a fresh one, and says so', async () => {
  const imagenet = getModel('resnet18').build({ imageSize: 32, numClasses: 1000, seed: 7, head: 'torchvision' });
  const checkpoint = await modelToStateDict(imagenet, 'resnet18');
  imagenet.dispose();
  const file = await folder('imagenet-like.pth');
  await writePth(file, checkpoint);
  const run = await folder('pretrained');
  const events: TrainEvent[] = [];
  await trainModel(await tinyConfig(await phantom(), run, { pretrained: file, maxSteps: '1' }), { backend: await wasm(), onEvent: (event) => events.push(event) });
  const loaded = events.find((e): e is Extract<TrainEvent, { type: 'pretrained' }> => e.type === 'pretrained')!;
  assert.equal(loaded.headReinitialised, ['fc.weight', 'fc.bias']);
  assert.is(loaded.loaded, checkpoint.size - 2);
  const trained = await readWeights(join(run, 'last', 'model.safetensors'));
  assert.equal(trained.get('fc.weight')!.shape, [3, 512]);
  // One Adam step moves a weight by at most lr (1e-4): the backbone is the checkpoint's, not the seed's init.
  const after = trained.get('layer2.0.conv1.weight')!.data as Float32Array;
  const before = checkpoint.get('layer2.0.conv1.weight')!.data as Float32Array;
  let worst = 0;
  for (let i = 0; i < before.length; i++) worst = Math.max(worst, Math.abs(after[i]! - before[i]!));
  assert.ok(worst <= 1.01e-4 && worst > 0, `largest change ${worst}`);
});

test('early stopping: no improvement for `patience` epochs stops the run (class-weighted loss, smoothing, clipping wired in)', async () => {
  // Only the classifier trains, at a rate too small to change a float32 weight, and every BatchNorm is
  // frozen: validation is identical each epoch, so the first epoch stays best and patience 1 stops after epoch 2.
  const run = await folder('patience');
  const config = await tinyConfig(await phantom(), run, { epochs: '4' }, [
    'optimizer.lr=1e-12',
    'freezeUntil=layer4',
    'earlyStopping.patience=1',
    'classBalance=loss',
    'labelSmoothing=0.1',
    'clipGradNorm=1',
  ]);
  const result = await trainModel(config, { backend: await wasm() });
  assert.is(result.status, 'early-stopped');
  assert.is(result.history.length, 2);
  assert.is(result.history[1]!.valBalancedAccuracy, result.history[0]!.valBalancedAccuracy);
  assert.equal([result.best!.epoch, result.steps], [1, 16]);
  assert.match(result.message, /valBalancedAccuracy has not improved for 1 epochs/);
  assert.is(JSON.parse(readFileSync(join(run, 'best', 'state.json'), 'utf8')).epoch, 1);
});

test('refusals: no split manifest names the command that makes one; an existing run needs --resume', async () => {
  const empty = await folder('no-split');
  const config = await tinyConfig(empty, await folder('never'));
  try {
    await trainModel(config, { backend: await wasm() });
    assert.unreachable();
  } catch (error) {
    assert.instance(error, UserError);
    assert.match((error as Error).message, /no split manifest at .*splits\.csv: run `osteo data split --data .*no-split` first/);
  }
  assert.not.ok(existsSync(config.out), 'a refused start makes no run folder');
  try {
    await trainModel(await tinyConfig(await phantom(), (await runA()).run), { backend: await wasm() });
    assert.unreachable();
  } catch (error) {
    assert.instance(error, UserError);
    assert.match((error as Error).message, /already holds a training run: add --resume/);
  }
});

test.run();
