/**
 * The training config: layers merge in order (defaults → recipe → flags → --set), every error names
 * the key and where it was set, the recipes say what the published recipes say, and the option table
 * really is the single source of the flags, the schema and the docs.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejection } from '../helpers/refusal.js';
import {
  optionEntries,
  optionsMarkdown,
  parseSavedTrainConfig,
  resolveTrainConfig,
  trainConfigSchema,
  trainOptions,
  type TrainConfigSources,
} from '../../src/config/index.js';
import { UserError, DataError } from '../../src/util/index.js';
import { backendCandidates, candidateTrains } from '../../src/backend/index.js';
import { buildProgram } from '../../src/cli.js';

let dir: string;
test.before.each(async () => {
  dir = await mkdtemp(join(tmpdir(), 'osteo-config-'));
});
test.after.each(async () => {
  await rm(dir, { recursive: true, force: true });
});

const base = { model: 'resnet18', data: 'datasets/phantom' };

/** resolveTrainConfig(sources) must refuse, as a UserError or a DataError whose message matches every pattern. */
async function rejects(sources: TrainConfigSources, ...patterns: RegExp[]): Promise<string> {
  return (await rejection(() => resolveTrainConfig(sources), UserError, DataError, ...patterns)).message;
}

async function recipe(name: string, content: unknown): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

test('each model gets its built-in recipe; the published numbers are in it', async () => {
  const r18 = await resolveTrainConfig({ flags: { ...base } });
  assert.is(r18.optimizer.type, 'adam');
  assert.is(r18.optimizer.lr, 1e-4);
  assert.equal([r18.schedule.type, r18.schedule.stepSize, r18.schedule.gamma], ['step', 7, 0.1]);
  assert.equal([r18.epochs, r18.batchSize, r18.freezeUntil], [25, 16, undefined]);
  assert.equal(r18.augment.rotation, { p: 1, degrees: 10 }, "the 'seed' preset, read into the config");
  assert.is(r18.imageSize, 224);
  assert.is(r18.out, join('checkpoints', 'resnet18'));

  const r50 = await resolveTrainConfig({ flags: { ...base, model: 'resnet50' } });
  assert.is(r50.freezeUntil, 'layer3');

  const b3 = await resolveTrainConfig({ flags: { ...base, model: 'efficientnet_b3' } });
  assert.equal([b3.optimizer.type, b3.optimizer.weightDecay, b3.classBalance], ['adamw', 0.01, 'sampler']);
  assert.ok(b3.augment.clahe !== undefined, 'CLAHE on');
  assert.is(b3.augment.rotation?.degrees, 15);
  assert.is(b3.imageSize, 300);
});

test('merge order: defaults → recipe → flags → --set, dotted keys reach nested values', async () => {
  const file = await recipe('r.json', { model: 'resnet18', epochs: 9, optimizer: { lr: 0.01 }, schedule: { type: 'cosine', warmupEpochs: 1 } });
  const config = await resolveTrainConfig({ configFile: file, flags: { data: 'd', epochs: '5' }, sets: ['epochs=6', 'optimizer.lr=3e-4', 'schedule.minLr=1e-6'] });
  assert.is(config.epochs, 6, '--set beats the flag, which beats the recipe');
  assert.is(config.optimizer.lr, 3e-4);
  assert.equal(config.schedule, { type: 'cosine', stepSize: 7, gamma: 0.1, warmupEpochs: 1, minLr: 1e-6 });
  assert.is(config.optimizer.beta2, 0.999, 'untouched keys keep their defaults');
  // An explicit --config replaces the built-in recipe (resnet50's freezeUntil does not leak in).
  const modelless = await recipe('modelless.json', { epochs: 9, optimizer: { lr: 0.01 } });
  const other = await resolveTrainConfig({ configFile: modelless, flags: { model: 'resnet50', data: 'd' } });
  assert.is(other.freezeUntil, undefined);
  assert.is(other.epochs, 9);
  // null unsets an optional key: the resnet50 recipe, fully fine-tuned.
  const full = await resolveTrainConfig({ flags: { ...base, model: 'resnet50' }, sets: ['freezeUntil=null'] });
  assert.is(full.freezeUntil, undefined);
});

test('an unknown key is an error naming the key and the file or flag', async () => {
  const file = await recipe('typo.json', { model: 'resnet18', optimiser: { lr: 1 } });
  await rejects({ configFile: file, flags: { data: 'd' } }, /unknown key "optimiser"/, /typo\.json/);
  const nested = await recipe('nested.json', { optimizer: { learningRate: 1 } });
  await rejects({ configFile: nested, flags: base }, /unknown key "optimizer\.learningRate"/, /nested\.json/);
  await rejects({ flags: base, sets: ['optimizer.lrr=1'] }, /--set optimizer\.lrr=1/, /unknown config key "optimizer\.lrr"/);
  await rejects({ flags: base, sets: ['nokey'] }, /expected key=value/);
  // a saved run's config is held to the same schema
  assert.throws(() => parseSavedTrainConfig('RUN/config.json', { ...base, extra: 1 }), /RUN\/config\.json: unknown key "extra"/);
});

test('a bad value is an error naming the key, where it was set and what was given', async () => {
  const file = await recipe('bad.json', { model: 'resnet18', optimizer: { lr: -1 } });
  await rejects({ configFile: file, flags: { data: 'd' } }, /bad\.json: optimizer\.lr: Too small/, /got -1/);
  await rejects({ flags: { ...base, epochs: 'many' } }, /--epochs: epochs:/, /"many"/);
  await rejects({ flags: { ...base, model: 'vgg16' } }, /--model: model:/, /resnet18/);
  await rejects({ flags: base, sets: ['schedule.type=linear'] }, /--set schedule\.type:/, /cosine/);
  await rejects({ flags: base, sets: ['augment={"hflip":{"p":2}}'] }, /--set augment: augment\.hflip\.p/);
  await rejects({ flags: base, sets: ['augment=no-such-preset'] }, /--set augment/, /no augmentation config/);
  await rejects({ flags: base, sets: ['freezeUntil=layer9'] }, /freezeUntil/, /conv1, layer1, layer2, layer3, layer4, fc/);
  await rejects({ flags: base, sets: ['freezeUntil=fc'] }, /freezeUntil/, /nothing to train/);
  await rejects({ flags: { data: 'd' } }, /no model: give --model/);
  await rejects({ flags: { model: 'resnet18' } }, /no dataset: give --data/);
  const broken = await recipe('broken.json', '{ "model": ');
  await rejects({ configFile: broken, flags: base }, /broken\.json/, /not valid JSON/);
  await rejects({ configFile: join(dir, 'missing.json'), flags: base }, /missing\.json not found/);
  await rejects({ configFile: dir, flags: base }, /is a folder: give the path of a \.json file/);
});

test('a key that the chosen optimizer or schedule ignores is refused only when set as late as the choice', async () => {
  await rejects({ flags: base, sets: ['optimizer.momentum=0.5'] }, /--set optimizer\.momentum: applies to sgd only, not adam/);
  await rejects({ flags: base, sets: ['optimizer.type=sgd', 'optimizer.beta1=0.8'] }, /optimizer\.beta1: applies to adam and adamw only/);
  // The resnet18 recipe sets stepSize and gamma; switching to cosine on the command line just leaves them unused.
  const cosine = await resolveTrainConfig({ flags: base, sets: ['schedule.type=cosine'] });
  assert.is(cosine.schedule.type, 'cosine');
  const file = await recipe('moot.json', { model: 'resnet18', schedule: { type: 'cosine', gamma: 0.5 } });
  await rejects({ configFile: file, flags: { data: 'd' } }, /moot\.json: schedule\.gamma: applies to the step schedule only/);
});

test('settings that contradict each other are refused, naming the key and where it was set', async () => {
  // cosine decays from lr to minLr: minLr ≥ lr would raise the rate (minLr=1 at lr 1e-4 reaches a loss of 3e18)
  await rejects({ flags: base, sets: ['schedule.type=cosine', 'schedule.minLr=1'] }, /^invalid config: --set schedule\.minLr: 1 is not below optimizer\.lr 0\.0001/);
  await rejects({ flags: base, sets: ['schedule.type=cosine', 'schedule.minLr=1e-4'] }, /schedule\.minLr: 0\.0001 is not below/);
  const cosine = await resolveTrainConfig({ flags: base, sets: ['schedule.type=cosine', 'schedule.minLr=1e-6'] });
  assert.is(cosine.schedule.minLr, 1e-6);
  await rejects({ flags: { ...base, microBatch: '32', batchSize: '16' } }, /^invalid config: --micro-batch: microBatch: 32 is larger than batchSize 16: .*use at most 16/);
  assert.is((await resolveTrainConfig({ flags: { ...base, microBatch: '16', batchSize: '16' } })).microBatch, 16);
  // the recipe's 25 epochs, all of them head-only: never unfreezes
  await rejects({ flags: base, sets: ['headEpochs=25'] }, /^invalid config: --set headEpochs: 25 head-only epochs leave none of the 25 epochs/, /freezeUntil/);
  await rejects({ flags: { ...base, epochs: '2' }, sets: ['headEpochs=3'] }, /headEpochs: 3 head-only epochs leave none of the 2 epochs/);
  assert.is((await resolveTrainConfig({ flags: { ...base, epochs: '2' }, sets: ['headEpochs=1'] })).headEpochs, 1);
  await rejects({ flags: { ...base, epochs: '2' }, sets: ['schedule.warmupEpochs=2.5'] }, /schedule\.warmupEpochs: a 2\.5-epoch warm-up is longer than the 2 epochs/);
  assert.is((await resolveTrainConfig({ flags: { ...base, epochs: '2' }, sets: ['schedule.warmupEpochs=2'] })).schedule.warmupEpochs, 2);
  // a recipe file is named as the origin
  const file = await recipe('r.json', { model: 'resnet18', epochs: 3, headEpochs: 3 });
  await rejects({ configFile: file, flags: { data: 'd' } }, new RegExp(`^invalid config: ${file}: headEpochs: 3 head-only`));
});

test('--workers is capped at what the machine runs at once, and at 1 on a backend that does not train in worker threads', async () => {
  const cores = availableParallelism();
  await rejects({ flags: { ...base, workers: String(cores + 1) } }, new RegExp(`^invalid config: --workers: workers: ${cores + 1} is more than this machine runs at once \\(${cores}, .*use at most ${cores}`));
  assert.is((await resolveTrainConfig({ flags: { ...base, workers: String(cores) } })).workers, cores);
  const single = backendCandidates.find((c) => candidateTrains(c) && !c.capabilities.workerThreads.trainsInWorkers);
  assert.ok(single, 'a candidate that trains in one process (tfjs-node)');
  if (cores >= 2) {
    await rejects({ flags: { ...base, workers: '2', backend: single.backend } }, new RegExp(`workers: the ${single.backend} backend trains in one process`));
  }
  assert.is((await resolveTrainConfig({ flags: { ...base, workers: '1', backend: single.backend } })).workers, 1);
});

test('augmentation: a recipe names a file relative to itself, or writes the config inline', async () => {
  await recipe('aug.json', { crop: { type: 'center' }, hflip: { p: 0.25 } });
  const file = await recipe('with-aug.json', { model: 'resnet18', augment: 'aug.json' });
  const config = await resolveTrainConfig({ configFile: file, flags: { data: 'd' } });
  assert.equal(config.augment.hflip, { p: 0.25 });
  const inline = await resolveTrainConfig({ flags: base, sets: ['augment={"hflip":{"p":0.75}}'] });
  assert.equal(inline.augment.hflip, { p: 0.75 });
  assert.equal(inline.augment.crop, { type: 'center' }, 'schema defaults filled in');
});

test("the transform comes from the initial weights' tag at imageSize, is recorded in the config, and a resumed run keeps the saved one", async () => {
  const imagenet = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  const resnet50 = { model: 'resnet50', data: 'd' };
  // torchvision's ResNet50 default weights (V2) evaluate at resize 232, crop 224
  assert.equal((await resolveTrainConfig({ flags: resnet50 })).transform, { resize: 232, crop: 224, ...imagenet });
  assert.equal((await resolveTrainConfig({ flags: { ...resnet50, imageSize: '48' } })).transform, { resize: 50, crop: 48, ...imagenet });
  // starting from the V1 file (any folder) takes the V1 tag's 256
  const v1 = await resolveTrainConfig({ flags: { ...resnet50, pretrained: join('weights', 'resnet50-0676ba61.pth') } });
  assert.equal([v1.transform.resize, v1.transform.crop], [256, 224]);
  const unknown = await resolveTrainConfig({ flags: { ...resnet50, pretrained: 'my-own.pth' } });
  assert.is(unknown.transform.resize, 232, 'a file that is no tag: the default weights');
  const b3 = await resolveTrainConfig({ flags: { model: 'efficientnet_b3', data: 'd' } });
  assert.equal([b3.imageSize, b3.transform.resize, b3.transform.crop], [300, 320, 300]);
  // set by hand: the image size follows its crop; a crop other than imageSize or a resize below it is refused
  const custom = await resolveTrainConfig({ flags: base, sets: ['transform={"resize":80,"crop":64,"mean":[0.5,0.5,0.5],"std":[0.25,0.25,0.25]}'] });
  assert.is(custom.imageSize, 64);
  assert.equal(custom.transform.mean, [0.5, 0.5, 0.5]);
  await rejects({ flags: { ...base, imageSize: '96' }, sets: ['transform={"resize":80,"crop":64,"mean":[0,0,0],"std":[1,1,1]}'] }, /--set transform: crops 64 px but imageSize is 96/);
  await rejects({ flags: base, sets: ['transform={"resize":60,"crop":64,"mean":[0,0,0],"std":[1,1,1]}'] }, /transform: resizes to 60 px, smaller than its 64 px crop/);
  await rejects({ flags: base, sets: ['transform={"resize":80,"crop":64}'] }, /transform/);
  // the saved transform is the run's, whatever today's tags say
  const saved = JSON.parse(JSON.stringify(await resolveTrainConfig({ flags: { ...resnet50, out: 'runs/a' } })));
  saved.transform.resize = 256;
  const resumed = await resolveTrainConfig({ resumeFrom: { file: 'runs/a/config.json', config: saved } });
  assert.is(resumed.transform.resize, 256);
  await rejects({ resumeFrom: { file: 'runs/a/config.json', config: saved }, sets: ['transform=null'] }, /cannot change transform when resuming/);
});

test('resuming: runtime keys may change, everything that shapes the result may not', async () => {
  const saved = JSON.parse(JSON.stringify(await resolveTrainConfig({ flags: { ...base, out: 'runs/a', epochs: '3' } })));
  const resumed = await resolveTrainConfig({ resumeFrom: { file: 'runs/a/config.json', config: saved }, flags: { epochs: '5', backend: 'cpu' } });
  assert.is(resumed.epochs, 5);
  assert.is(resumed.backend, 'cpu');
  assert.equal(resumed.augment, saved.augment);
  await rejects({ resumeFrom: { file: 'runs/a/config.json', config: saved }, flags: { batchSize: '8' } }, /--batch-size: cannot change batchSize when resuming/, /16/);
  await rejects({ resumeFrom: { file: 'runs/a/config.json', config: saved }, sets: ['optimizer.lr=1'] }, /cannot change optimizer\.lr/);
  await rejects({ resumeFrom: { file: 'runs/a/config.json', config: saved }, configFile: 'x.json' }, /--config cannot be combined with --resume/);
  // --max-steps budgets one invocation: the saved run's budget is not inherited
  const budgeted = JSON.parse(JSON.stringify(await resolveTrainConfig({ flags: { ...base, out: 'runs/a', maxSteps: '2' } })));
  assert.is(budgeted.maxSteps, 2);
  assert.is((await resolveTrainConfig({ resumeFrom: { file: 'runs/a/config.json', config: budgeted } })).maxSteps, undefined);
  assert.is((await resolveTrainConfig({ resumeFrom: { file: 'runs/a/config.json', config: budgeted }, flags: { maxSteps: '3' } })).maxSteps, 3);
});

test('one table: schema keys, generated flags and docs all come from it', async () => {
  const entries = optionEntries(trainOptions);
  // schema: the complete default config parses; every table key is in the schema's shape
  const flat = (shape: Record<string, unknown>, prefix = ''): string[] =>
    Object.entries(shape).flatMap(([key, schema]) => {
      const inner = (schema as { shape?: Record<string, unknown> }).shape;
      return inner && !entries.some(([k]) => k === prefix + key) ? flat(inner, `${prefix}${key}.`) : [prefix + key];
    });
  assert.equal(flat(trainConfigSchema.shape).sort(), entries.map(([key]) => key).sort());
  // flags: `osteo train` has exactly the table's flags plus its own five
  const train = buildProgram().commands.find((c) => c.name() === 'train')!;
  const longFlags = train.options.map((o) => o.long).filter((f): f is string => f !== undefined);
  const tableFlags = entries.filter(([, spec]) => spec.flag).map(([, spec]) => spec.flag!.split(' ')[0]!);
  assert.equal(longFlags.sort(), [...tableFlags, '--config', '--set', '--resume', '--print-config', '--json'].sort());
  // docs: one row per key with its default
  const markdown = optionsMarkdown(trainOptions);
  for (const [key, spec] of entries) {
    assert.ok(markdown.includes(`| \`${key}\` |`), `docs row for ${key}`);
    if (spec.hasDefault) assert.ok(markdown.includes(`\`${JSON.stringify(spec.default)}\``));
  }
});

test('osteo train --print-config: flags land on their keys', async () => {
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string) => {
    chunks.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  try {
    await buildProgram().parseAsync(
      ['train', '--model', 'resnet50', '--data', 'd', '--epochs', '3', '--batch-size', '4', '--image-size', '64', '--max-steps', '7', '--micro-batch', '2', '--seed', '5', '--set', 'optimizer.lr=3e-4', '--print-config'],
      { from: 'user' },
    );
  } finally {
    process.stdout.write = write;
  }
  const config = JSON.parse(chunks.join(''));
  assert.equal(
    [config.model, config.epochs, config.batchSize, config.imageSize, config.maxSteps, config.microBatch, config.seed, config.optimizer.lr, config.freezeUntil],
    ['resnet50', 3, 4, 64, 7, 2, 5, 3e-4, 'layer3'],
  );
});

test.run();
