/**
 * What `osteo reproduce` may touch: nothing in OUT that it did not write (its record,
 * OUT/.osteo-reproduce.json, names what it did), nothing at all before every check has passed, and
 * never a dataset's index or split that another split's runs depend on.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { reproduce } from '../../src/pipeline/reproduce.js';
import { indexDataset, splitDataset, synthesizePhantom } from '../../src/data/index.js';
import { sha256Of } from '../../src/util/index.js';
import { tempDir } from '../helpers/temp.js';
import { refusal } from '../helpers/refusal.js';

/** Every file under `dir` with its content: what a refused command must leave exactly as it was. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) files[join(entry.parentPath, entry.name).slice(dir.length)] = await readFile(join(entry.parentPath, entry.name), 'utf8');
  }
  return files;
}

async function tinyConfig(dir: string, extra: Record<string, unknown> = {}): Promise<string> {
  const file = join(dir, 'tiny.json');
  const models = [{ model: 'resnet18', pretrained: false }];
  await writeFile(file, JSON.stringify({ data: { source: 'phantom', dir: join(dir, 'phantom'), perClass: 6, size: 32, seed: 3 }, models, set: ['epochs=1', 'imageSize=32'], ...extra }));
  return file;
}

test('--fresh --check on data that is not the Kaggle set is refused with OUT untouched, its own earlier runs included', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-repro-out-');
  try {
    const config = await tinyConfig(dir);
    const out = join(dir, 'P');
    // An OUT whose runs/resnet18 an earlier reproduce recorded as its own.
    await mkdir(join(out, 'runs', 'resnet18'), { recursive: true });
    await writeFile(join(out, 'runs', 'resnet18', 'config.json'), '{"model":"resnet18"}');
    await writeFile(join(out, '.osteo-reproduce.json'), JSON.stringify({ format: 'osteo-reproduce', version: 1, files: {}, folders: ['runs/resnet18'] }));
    const before = await snapshot(out);
    await refusal(reproduce({ config, out, fresh: true, check: 3, pretrained: false }), /measured on the Kaggle set/);
    assert.equal(await snapshot(out), before, 'nothing was removed before the refusal');
  } finally {
    await cleanup();
  }
});

test('--fresh refuses, naming them, entries of OUT that reproduce did not write; P keeps every file', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-repro-out-');
  try {
    const config = await tinyConfig(dir);
    const out = join(dir, 'P');
    for (const folder of ['runs/mine', 'eval', 'dashboard', 'cv']) await mkdir(join(out, folder), { recursive: true });
    await writeFile(join(out, 'runs', 'mine', 'notes.txt'), 'a run of mine');
    await writeFile(join(out, 'eval', 'notes.txt'), 'my notes');
    await writeFile(join(out, 'dashboard', 'sydney_best_model.pth'), 'the original weights');
    await writeFile(join(out, 'cv', 'plan.json'), '{}');
    await writeFile(join(out, 'reproduce.md'), '# my own report');
    const before = await snapshot(out);
    const message = await refusal(reproduce({ config, out, fresh: true, pretrained: false }), /did not write/, /--fresh would remove or replace them/);
    for (const name of ['eval/notes.txt', 'dashboard', 'reproduce.md']) assert.ok(message.includes(name), `${name} is named: ${message}`);
    assert.equal(await snapshot(out), before);
    assert.not.ok(existsSync(join(dir, 'phantom')), 'refused before any data work');
  } finally {
    await cleanup();
  }
});

test('without --fresh, a user’s file where reproduce writes (eval/, dashboard/, reproduce.md) is refused, never replaced or deleted', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-repro-out-');
  try {
    const config = await tinyConfig(dir);
    for (const [path, content] of [
      ['eval/notes.txt', 'my notes'],
      ['dashboard/sydney_best_model.pth', 'the original weights'],
      ['reproduce.md', '# my own report'],
      ['runs/resnet18/config.json', '{}'],
    ] as const) {
      const out = join(dir, `out-${path.split('/')[0]}`);
      await mkdir(join(out, path, '..'), { recursive: true });
      await writeFile(join(out, path), content);
      const message = await refusal(reproduce({ config, out, pretrained: false }), /did not write/, /reproduce would replace them/);
      assert.ok(message.includes(path.startsWith('runs/') ? 'runs/resnet18' : path.startsWith('dashboard/') ? 'dashboard' : path), message);
      assert.is(await readFile(join(out, path), 'utf8'), content);
    }
    // A file reproduce wrote and the user changed since is the user's now.
    const out = join(dir, 'changed');
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'reproduce.md'), 'edited');
    await writeFile(join(out, '.osteo-reproduce.json'), JSON.stringify({ format: 'osteo-reproduce', version: 1, files: { 'reproduce.md': sha256Of('as written') } }));
    assert.match(await refusal(reproduce({ config, out, pretrained: false })), /reproduce\.md/);
    assert.is(await readFile(join(out, 'reproduce.md'), 'utf8'), 'edited');
  } finally {
    await cleanup();
  }
});

test('reproduce --data DIR never replaces the dataset’s splits.csv or index.csv: another split is refused naming `osteo data split`', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-repro-out-');
  try {
    const config = await tinyConfig(dir);
    const data = join(dir, 'mine');
    await synthesizePhantom({ dest: data, perClass: 6, size: 32, seed: 5 });
    await indexDataset({ dataDir: data });
    await splitDataset({ dataDir: data, seed: 1, val: 0.2, test: 0.2 });
    const manifest = await readFile(join(data, 'splits.csv'), 'utf8');
    const index = await readFile(join(data, 'index.csv'), 'utf8');
    const message = await refusal(reproduce({ config, data, out: join(dir, 'out'), pretrained: false, protocol: 'clean' }), /holds another split than this config asks for/, /osteo data split --data/);
    assert.match(message, /seed 3/);
    assert.is(await readFile(join(data, 'splits.csv'), 'utf8'), manifest);
    assert.is(await readFile(join(data, 'index.csv'), 'utf8'), index);
    assert.not.ok(existsSync(join(dir, 'out', 'data.json')), 'OUT is untouched');
    // An index that differs from the files (one added since) is not rewritten either.
    await writeFile(join(data, 'Normal', 'added.png'), await readFile(join(data, 'Normal', (await readdir(join(data, 'Normal')))[0]!)));
    await refusal(reproduce({ config, data, out: join(dir, 'out'), pretrained: false, protocol: 'clean' }), /index\.csv is not what indexing/, /osteo data index/);
    assert.is(await readFile(join(data, 'index.csv'), 'utf8'), index);
  } finally {
    await cleanup();
  }
});

test('the whole plan is validated first: ensemble.weights against the model count, and --cv 1, before any data work', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-repro-out-');
  try {
    const models = [{ model: 'resnet18', pretrained: false }, { model: 'resnet50', pretrained: false }, { model: 'efficientnet_b3', pretrained: false }];
    const config = await tinyConfig(dir, { models, ensemble: { weights: '1,2' } });
    await refusal(reproduce({ config, out: join(dir, 'out'), pretrained: false }), /ensemble\.weights/, /3 models/);
    await refusal(reproduce({ config: await tinyConfig(dir), out: join(dir, 'out'), pretrained: false, cv: 1 }), /--cv needs at least 2 folds/);
    assert.not.ok(existsSync(join(dir, 'phantom')), 'no data was generated');
    assert.not.ok(existsSync(join(dir, 'out')), 'OUT was not made');
  } finally {
    await cleanup();
  }
});

test('a second reproduce on an OUT another live process is reproducing into is refused before it looks at anything', async () => {
  const { path: dir, cleanup } = await tempDir('osteo-repro-out-');
  const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
  try {
    const config = await tinyConfig(dir);
    const out = join(dir, 'P');
    await mkdir(out, { recursive: true });
    const lock = JSON.stringify({ pid: sleeper.pid, host: hostname(), started: 'now' });
    await writeFile(join(out, '.lock'), lock);
    await refusal(reproduce({ config, out, fresh: true, pretrained: false }), new RegExp(`in use by another osteo reproduce \\(process ${sleeper.pid}`), /Nothing was changed/);
    assert.equal(await readdir(out), ['.lock']);
    assert.is(await readFile(join(out, '.lock'), 'utf8'), lock, 'the owner keeps its lock');
    assert.not.ok(existsSync(join(dir, 'phantom')));
  } finally {
    const exited = once(sleeper, 'exit');
    sleeper.kill();
    await exited;
    await cleanup();
  }
});

test.run();
