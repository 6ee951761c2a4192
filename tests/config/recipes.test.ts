/**
 * Recipes and where they are found: a recipe whose "model" is another than the one asked for is
 * refused (train, cv per --model, reproduce per models[i]) before anything is written; a relative
 * `configs/…` that the working directory lacks is osteo's own file, so README.md's commands run from
 * any folder; and `checkpointEvery` takes steps or minutes and may change on resume.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkpointInterval, loadPipelineConfig, locateConfigFile, resolveCvConfig, resolveTrainConfig, shippedConfigDir } from '../../src/config/index.js';
import { useBackend } from '../../src/backend/index.js';
import { synthesizePhantom } from '../../src/data/index.js';
import { cvExperimentFromConfig, runCv } from '../../src/pipeline/index.js';
import { captureMain } from '../helpers/cli.js';
import { refusal } from '../helpers/refusal.js';
import { tempDir } from '../helpers/temp.js';

const base = { model: 'resnet18', data: 'datasets/phantom' };

/** Run `work` with the working directory set to a fresh, empty folder. */
async function elsewhere<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const { path: dir, cleanup } = await tempDir('osteo-elsewhere-');
  const home = process.cwd();
  process.chdir(dir);
  try {
    return await work(dir);
  } finally {
    process.chdir(home);
    await cleanup();
  }
}

test("train: --model resnet18 with resnet50's recipe is refused naming both models and the recipe; the same model, or a recipe naming none, is taken", async () => {
  const message = await refusal(resolveTrainConfig({ configFile: 'configs/resnet50.json', flags: base }), /--model asks for "resnet18", but the recipe configs\/resnet50\.json is for "resnet50"/);
  assert.match(message, /freeze point/);
  assert.ok(message.includes(join(shippedConfigDir, 'resnet18.json')), `names resnet18's own recipe: ${message}`);
  await refusal(resolveTrainConfig({ configFile: 'configs/resnet50.json', flags: { data: 'd' }, sets: ['model=resnet18'] }), /--set model asks for "resnet18"/);
  assert.is((await resolveTrainConfig({ configFile: 'configs/resnet50.json', flags: { ...base, model: 'resnet50' } })).freezeUntil, 'layer3');
  assert.is((await resolveTrainConfig({ configFile: 'configs/resnet50.json', flags: { data: 'd' } })).model, 'resnet50', 'the recipe alone names its model');
  const cli = await captureMain(['train', '--model', 'resnet18', '--config', 'configs/resnet50.json', '--data', 'd', '--print-config']);
  assert.is(cli.code, 1);
  assert.match(cli.stderr, /is for "resnet50"/);
});

test('cv: each --config is checked against the --model at its position, before the CV folder is made', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-cv-recipes-');
  try {
    const data = join(dir, 'phantom');
    await synthesizePhantom({ dest: data, perClass: 6, size: 32, seed: 2 });
    const out = join(dir, 'out');
    const config = resolveCvConfig({ model: ['resnet18', 'resnet50'], config: ['configs/resnet18.json', 'configs/resnet18.json'], data, out, folds: '2', epochs: '1' });
    await refusal(runCv(cvExperimentFromConfig(config, []), { backend: await useBackend('wasm') }), /asks for "resnet50", but the recipe .*resnet18\.json is for "resnet18"/);
    assert.not.ok(existsSync(out), 'nothing was written');
  } finally {
    await cleanup();
  }
});

test("reproduce: a model's recipe for another model is refused naming models[i], when the config is read", async () => {
  const { path: dir, cleanup } = await tempDir('osteo-pipeline-recipes-');
  try {
    await writeFile(join(dir, 'r50.json'), JSON.stringify({ model: 'resnet50', freezeUntil: 'layer3' }));
    await writeFile(join(dir, 'aug-only.json'), JSON.stringify({ epochs: 2 }));
    const file = join(dir, 'pipeline.json');
    const models = [{ model: 'resnet18', recipe: 'aug-only.json' }, { model: 'resnet18', recipe: 'r50.json' }];
    await writeFile(file, JSON.stringify({ data: { source: 'phantom', dir: 'p' }, models }));
    await refusal(loadPipelineConfig(file), /models\.1\.recipe: .*r50\.json is a recipe for "resnet50" \(its "model"\), not for models\.1\.model "resnet18"/);
    await writeFile(file, JSON.stringify({ data: { source: 'phantom', dir: 'p' }, models: [models[0], { model: 'resnet50', recipe: 'r50.json' }] }));
    assert.is((await loadPipelineConfig(file)).models.length, 2);
  } finally {
    await cleanup();
  }
});

test("a relative configs/… path the working directory lacks is osteo's own; a file that is there wins; anything else is left as given", async () => {
  await elsewhere(async (dir) => {
    assert.is(locateConfigFile('configs/demo.json'), join(shippedConfigDir, 'demo.json'));
    assert.is(locateConfigFile('configs/missing.json'), 'configs/missing.json');
    assert.is(locateConfigFile('my-recipe.json'), 'my-recipe.json');
    const r50 = await resolveTrainConfig({ configFile: 'configs/resnet50.json', flags: { data: 'd' } });
    assert.equal([r50.model, r50.freezeUntil], ['resnet50', 'layer3']);
    assert.is((await loadPipelineConfig(locateConfigFile('configs/demo.json'))).models.length, 3);
    await mkdir(join(dir, 'configs'));
    await writeFile(join(dir, 'configs', 'resnet50.json'), JSON.stringify({ model: 'resnet50', freezeUntil: 'layer2' }));
    assert.is(locateConfigFile('configs/resnet50.json'), 'configs/resnet50.json', "the working directory's own file");
    assert.is((await resolveTrainConfig({ configFile: 'configs/resnet50.json', flags: { data: 'd' } })).freezeUntil, 'layer2');
  });
});

test('checkpointEvery: a step count or minutes (10m, 0.5m); anything else is refused naming the key; it may change on resume', async () => {
  const every = async (value: string) => (await resolveTrainConfig({ flags: { ...base, checkpointEvery: value } })).checkpointEvery;
  assert.is(await every('50'), 50);
  assert.is(await every('10m'), '10m');
  assert.equal(checkpointInterval(50), { steps: 50 });
  assert.equal(checkpointInterval('0.5m'), { milliseconds: 30_000 });
  assert.is(checkpointInterval(undefined), undefined);
  for (const bad of ['0', '10s', 'm', '0m', '-3', '1.5']) await refusal(resolveTrainConfig({ flags: { ...base, checkpointEvery: bad } }), /--checkpoint-every: checkpointEvery/);
  const saved = JSON.parse(JSON.stringify(await resolveTrainConfig({ flags: { ...base, out: 'runs/a', checkpointEvery: '50' } })));
  const resumed = await resolveTrainConfig({ resumeFrom: { file: 'runs/a/config.json', config: saved }, flags: { checkpointEvery: '5m' } });
  assert.is(resumed.checkpointEvery, '5m');
});

test.run();
