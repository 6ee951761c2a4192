/**
 * The split, evaluation and pipeline settings are option tables like the training config: one table
 * gives each key's default, schema, flag and docs; files and flags are validated by the same
 * machinery, and every error names the key and the file or flag that set it.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { refusal } from '../helpers/refusal.js';
import type { Command } from 'commander';
import {
  evalOptions,
  loadPipelineConfig,
  optionEntries,
  optionsMarkdown,
  pipelineOptions,
  resolveCalibrateConfig,
  resolveEvalConfig,
  resolvePredictScreening,
  resolveSplitConfig,
  splitOptions,
} from '../../src/config/index.js';
import { splitDefaults } from '../../src/data/index.js';
import { backendCandidates, candidateTrains } from '../../src/backend/index.js';
import { buildProgram } from '../../src/cli.js';

let dir: string;
test.before.each(async () => {
  dir = await mkdtemp(join(tmpdir(), 'osteo-pipeline-config-'));
});
test.after.each(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function refusedFile(content: unknown, ...patterns: RegExp[]): Promise<void> {
  const file = join(dir, 'pipeline.json');
  await writeFile(file, JSON.stringify(content));
  const message = await refusal(() => loadPipelineConfig(file), ...patterns);
  assert.ok(message.includes(file), `names the file: ${message}`);
}

/** A subcommand of `osteo`, found by its path (`data split`). */
function command(...path: string[]): Command {
  let node = buildProgram() as Command;
  for (const name of path) node = node.commands.find((c) => c.name() === name)!;
  return node;
}

const tableFlags = (table: Parameters<typeof optionEntries>[0]) =>
  optionEntries(table)
    .filter(([, spec]) => spec.flag)
    .map(([, spec]) => spec.flag!.split(' ')[0]!);

const minimal = { data: { source: 'phantom', dir: 'datasets/phantom' }, models: [{ model: 'resnet18' }] };

test('split defaults are written once: the table, `osteo data split` and the pipeline all read them', async () => {
  assert.equal(resolveSplitConfig(), { ...splitDefaults }, 'no flags: the defaults');
  assert.equal([splitOptions.val.default, splitOptions.test.default, splitOptions.seed.default], [splitDefaults.val, splitDefaults.test, splitDefaults.seed]);
  const split = command('data', 'split');
  const longFlags = split.options.map((o) => o.long);
  assert.equal(longFlags, ['--data', ...tableFlags(splitOptions), '--conflicts', '--json']);
  for (const option of split.options.filter((o) => ['--val', '--test', '--seed'].includes(o.long!))) {
    const key = option.attributeName() as keyof typeof splitDefaults;
    assert.ok(option.description.includes(`(default ${splitDefaults[key]})`), `${option.long} help shows the table default`);
  }
  const file = join(dir, 'p.json');
  await writeFile(file, JSON.stringify(minimal));
  const pipeline = await loadPipelineConfig(file);
  assert.equal([pipeline.data.val, pipeline.data.test, pipeline.data.seed], [splitDefaults.val, splitDefaults.test, splitDefaults.seed]);
});

test('split flags: coerced, validated, and errors name the flag', async () => {
  assert.equal(resolveSplitConfig({ val: '0.2', test: '0.1', seed: '7' }), { val: 0.2, test: 0.1, seed: 7 });
  assert.equal(resolveSplitConfig({ val: '0' }).val, 0, 'a split without val is allowed');
  await refusal(() => resolveSplitConfig({ val: '-0.1' }), /--val: val: /, /-0\.1/);
  await refusal(() => resolveSplitConfig({ test: '1' }), /--test: test: /);
  await refusal(() => resolveSplitConfig({ seed: '1.5' }), /--seed: seed: /);
  await refusal(() => resolveSplitConfig({ val: '0.6', test: '0.5' }), /--test: test: val \+ test must leave images for training \(got 0\.6 \+ 0\.5\)/);
});

test('eval flags come from the eval table: same flags, defaults in help, values validated naming the flag', async () => {
  const evalCommand = command('eval');
  assert.equal(
    evalCommand.options.map((o) => o.long),
    [...tableFlags(evalOptions), '--backend', '--json'],
  );
  const resamples = evalCommand.options.find((o) => o.long === '--resamples')!;
  assert.ok(resamples.description.includes(`(default ${evalOptions.resamples.default})`));
  assert.ok(evalCommand.options.find((o) => o.long === '--run')!.mandatory, '--run is required');
  assert.ok(evalCommand.options.find((o) => o.long === '--data')!.mandatory, '--data is required');

  const config = resolveEvalConfig({ run: ['runs/a'], data: 'd' });
  assert.equal(config, {
    run: ['runs/a'],
    data: 'd',
    split: 'test',
    checkpoint: 'best',
    tta: false,
    weights: 'equal',
    batchSize: 16,
    seed: 0,
    resamples: evalOptions.resamples.default,
    targetSensitivity: 0.9,
    targetSpecificity: 0.9,
    external: false,
    ageBands: '50,60,70,80',
    minSubgroup: 20,
  });
  const given = resolveEvalConfig({ run: ['a', 'b'], data: 'd', split: 'val', tta: true, weights: '2', batchSize: '4', seed: '3', resamples: '100' });
  assert.equal([given.split, given.tta, given.weights, given.batchSize, given.seed, given.resamples], ['val', true, '2', 4, 3, 100], "'2' stays a weight spec string");
  await refusal(() => resolveEvalConfig({ run: ['a'], data: 'd', resamples: '0' }), /--resamples: resamples: /, /got 0/);
  await refusal(() => resolveEvalConfig({ run: ['a'], data: 'd', seed: '-1' }), /--seed: seed: /);
  await refusal(() => resolveEvalConfig({ run: ['a'], data: 'd', split: 'train' }), /--split: split: /, /"test"\|"val"/);
  await refusal(() => resolveEvalConfig({ data: 'd' }), /--run: missing required key "run"/);
  const screening = resolveEvalConfig({ run: ['a'], data: 'd', targetSensitivity: '0.95', targetSpecificity: '0.8', prevalence: '0.2' });
  assert.equal([screening.targetSensitivity, screening.targetSpecificity, screening.prevalence], [0.95, 0.8, 0.2]);
  for (const bad of ['1', '0', '1.5', '-0.1', 'high']) {
    await refusal(() => resolveEvalConfig({ run: ['a'], data: 'd', targetSensitivity: bad }), /^invalid config: --target-sensitivity: targetSensitivity: /);
    await refusal(() => resolveCalibrateConfig({ run: ['a'], data: 'd', targetSpecificity: bad }), /^invalid config: --target-specificity: targetSpecificity: /);
    await refusal(() => resolveEvalConfig({ run: ['a'], data: 'd', prevalence: bad }), /^invalid config: --prevalence: prevalence: /);
  }
  assert.equal(resolvePredictScreening({ operatingPoint: 'spec92.5', eval: 'report' }), { operatingPoint: 'spec92.5', eval: 'report' });
  assert.equal(resolvePredictScreening({}), {});
  await refusal(() => resolvePredictScreening({ operatingPoint: 'sensitive' }), /^invalid config: --operating-point: operatingPoint: expected sensNN, specNN or youden \(e\.g\. sens90\) \(got "sensitive"\)/);
  // External validation and subgroups: every image of the folder (no --split), ascending age bands.
  assert.equal(resolveEvalConfig({ run: ['a'], data: 'd', external: true, metadata: 'm.csv', ageBands: '65', minSubgroup: '5' }).ageBands, '65');
  await refusal(() => resolveEvalConfig({ run: ['a'], data: 'd', external: true, split: 'test' }), /--split: split: an --external folder is never split/);
  await refusal(() => resolveEvalConfig({ run: ['a'], data: 'd', ageBands: '60,50' }), /--age-bands: ageBands: the age band edges must ascend/);
  await refusal(() => resolveEvalConfig({ run: ['a'], data: 'd', ageBands: 'sixty' }), /--age-bands: ageBands: /);
  await refusal(() => resolveEvalConfig({ run: ['a'], data: 'd', minSubgroup: '0' }), /--min-subgroup: minSubgroup: /);
});

test('eval --workers: the training check (the cores, a backend that runs in one process), naming the flag', async () => {
  const cores = availableParallelism();
  const base = { run: ['a'], data: 'd' };
  assert.is(resolveEvalConfig({ ...base, workers: String(cores) }).workers, cores);
  assert.is(resolveEvalConfig(base).workers, undefined, 'absent: the backend decides');
  await refusal(() => resolveEvalConfig({ ...base, workers: String(cores + 1) }), new RegExp(`^invalid config: --workers: workers: ${cores + 1} is more than this machine runs at once \\(${cores}, .*use at most ${cores}`));
  await refusal(() => resolveEvalConfig({ ...base, workers: '0' }), /--workers: workers: /);
  const single = backendCandidates.find((c) => candidateTrains(c) && !c.capabilities.workerThreads.trainsInWorkers)!;
  if (cores >= 2) await refusal(() => resolveEvalConfig({ ...base, workers: '2' }, single.backend), new RegExp(`--workers: workers: the ${single.backend} backend trains in one process`));
  assert.is(resolveEvalConfig({ ...base, workers: '1' }, single.backend).workers, 1);
  // on onnxruntime --workers is the session's intra-op thread count, up to the cores
  if (cores >= 2) assert.is(resolveEvalConfig({ ...base, workers: '2' }, 'onnxruntime-cpu').workers, 2);
});

test('pipeline config: an unknown key anywhere names the file and the dotted key', async () => {
  await refusedFile({ ...minimal, colour: 1 }, /unknown key "colour"/);
  await refusedFile({ ...minimal, data: { ...minimal.data, colour: 1 } }, /unknown key "data\.colour"/);
  await refusedFile({ ...minimal, models: [{ model: 'resnet18' }, { model: 'resnet50', foo: true }] }, /unknown key "models\.1\.foo"/);
  await refusedFile({ ...minimal, ensemble: { weights: 'equal', vote: 'hard' } }, /unknown key "ensemble\.vote"/);
});

test('pipeline config: a bad or missing value names the file, the key and what was given', async () => {
  await refusedFile({ ...minimal, data: { ...minimal.data, val: 1.5 } }, /pipeline\.json: data\.val: Too big/, /got 1\.5/);
  await refusedFile({ ...minimal, models: [{ model: 'resnet18', pretrained: 'yes' }] }, /pipeline\.json: models\.0\.pretrained: /, /got "yes"/);
  await refusedFile({ ...minimal, models: [] }, /pipeline\.json: models: Too small/);
  await refusedFile({ ...minimal, seed: -1 }, /pipeline\.json: seed: /);
  await refusedFile({ models: minimal.models, data: { source: 'phantom' } }, /pipeline\.json: missing required key "data\.dir"/);
  await refusedFile({ data: minimal.data }, /pipeline\.json: missing required key "models"/);
  await refusedFile({ ...minimal, data: { ...minimal.data, val: 0.5, test: 0.5 } }, /pipeline\.json: data\.test: val \+ test must leave images for training/);
  await refusedFile({ ...minimal, data: { ...minimal.data, test: 0 } }, /pipeline\.json: data\.test: the pipeline needs a test split/);
  const missing = join(dir, 'missing.json');
  await loadPipelineConfig(missing).then(
    () => assert.unreachable('accepted'),
    (error: Error) => assert.match(error.message, /pipeline config .*missing\.json not found/),
  );
});

test('pipeline config: element defaults are filled, shipped configs read unchanged, docs list every key', async () => {
  const file = join(dir, 'p.json');
  await writeFile(file, JSON.stringify(minimal));
  const config = await loadPipelineConfig(file);
  assert.equal(config.models, [{ model: 'resnet18', pretrained: true, set: [] }]);
  assert.equal([config.seed, config.set, config.ensemble], [42, [], { weights: evalOptions.weights.default, tta: evalOptions.tta.default }]);
  const demo = await loadPipelineConfig(resolve('configs', 'demo.json'));
  assert.equal(demo.models[2], { model: 'efficientnet_b3', recipe: 'efficientnet_b3.json', pretrained: false, set: ['epochs=8'] });
  assert.equal(demo.data, { source: 'phantom', dir: 'datasets/phantom', perClass: 30, size: 128, duplicateRate: 0.5, val: 0.15, test: 0.15, seed: 42 });
  const docs = optionsMarkdown(pipelineOptions);
  for (const key of ['data.source', 'data.val', 'models', 'models[].model', 'models[].pretrained', 'ensemble.weights']) assert.ok(docs.includes(`| \`${key}\` |`), `docs row for ${key}`);
  assert.not.ok(docs.includes('`--val`'), 'a pipeline file key has no flag of its own');
});

test.run();
