import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UserError } from '../../src/util/index.js';
import { loadPipelineConfig } from '../../src/config/index.js';
import {
  checkAgainstPublished,
  formatReproduceTable,
  publishedResults,
  reproduce,
  type ProtocolResult,
  type ReproduceRow,
} from '../../src/pipeline/reproduce.js';

const result = (accuracy: number): ProtocolResult => ({
  accuracy,
  interval: [accuracy - 0.04, accuracy + 0.04],
  balancedAccuracy: accuracy,
  macroF1: accuracy,
  osteopeniaRecall: accuracy,
  testImages: 100,
  leaked: 40,
});
const row = (name: string, published: number | null, accuracy: number | null, clean: number | null = null): ReproduceRow => ({
  row: name,
  published,
  publishedProtocol: accuracy === null ? null : result(accuracy),
  clean: clean === null ? null : result(clean),
  cv: null,
  errors: [],
});

/**
 * The published table as the documentation prints it for users (README.md, or a page under docs/):
 * `| model | published | … |` rows such as `| ResNet18 | 83% | … |`, by registry name.
 */
async function documentedPublishedTable(): Promise<Record<string, number | null>> {
  const docs = existsSync('docs') ? (await readdir('docs', { recursive: true })).filter((f) => f.endsWith('.md')).map((f) => join('docs', f)) : [];
  for (const file of ['README.md', ...docs]) {
    const lines = (await readFile(file, 'utf8')).split('\n');
    const header = lines.findIndex((line) => /^\|\s*model\s*\|\s*published\s*\|/.test(line));
    if (header < 0) continue;
    const table: Record<string, number | null> = {};
    for (const line of lines.slice(header + 2)) {
      if (!line.startsWith('|')) break;
      const [name, published] = line.split('|').slice(1, 3).map((cell) => cell.trim());
      const key = name!.startsWith('ensemble') ? 'ensemble' : name!.toLowerCase().replaceAll('-', '_');
      table[key] = /^\d+(\.\d+)?%$/.test(published!) ? Number(published!.slice(0, -1)) / 100 : null;
    }
    return table;
  }
  throw new Error('no "| model | published |" table in README.md or docs/');
}

test('the published table in the code is the one the documentation gives: ResNet18 83%, ResNet50 78%, ensemble 85%, none for EfficientNet-B3', async () => {
  const byRow = Object.fromEntries(publishedResults.map((p) => [p.row, p.accuracy]));
  assert.equal(byRow, await documentedPublishedTable());
});

test('--check compares like with like: the published-protocol accuracies, never the clean ones', () => {
  const rows = [row('resnet18', 0.83, 0.801, 0.5), row('resnet50', 0.78, 0.7499, 0.9), row('efficientnet_b3', null, 0.1), row('ensemble', 0.85, null, 0.9)];
  const failures = checkAgainstPublished(rows, 3);
  assert.is(failures.length, 2);
  assert.match(failures[0]!, /^resnet50: 75\.0% under the published protocol is more than 3 points below the published 78\.0%/);
  assert.match(failures[1]!, /^ensemble: no published-protocol result/);
  assert.equal(checkAgainstPublished([row('resnet18', 0.83, 0.8, 0.4)], 3), [], '80.0 is within 3 points of 83.0; the clean 40% is not what --check compares');
});

test('on the Kaggle set the table shows published, ours under both protocols with intervals, the leak, the delta and the defects', () => {
  const text = formatReproduceTable([row('resnet18', 0.83, 0.8, 0.7)], 'datasets/knee');
  assert.match(text, /\| resnet18 \| 83\.0% \| 80\.0% \(76\.0% – 84\.0%\) \| 40 of 100 \| -3\.0 \| 70\.0% \(66\.0% – 74\.0%\) \|/);
  assert.match(text, /85\.32%/);
  assert.match(text, /de-duplicat/);
});

test('on data that is not the Kaggle set the table shows no published figure and no delta, and says what the numbers are', () => {
  const text = formatReproduceTable([row('resnet18', 0.83, 0.8, 0.44)], 'datasets/phantom', { kaggle: false, phantom: true, counts: [10, 10, 11], initialWeights: 'resnet18: random' });
  assert.not.match(text, /83\.0%/);
  assert.not.match(text, /Δ/);
  assert.match(text, /not the Kaggle set/);
  assert.match(text, /synthetic phantom, with small images and few epochs; the models start from random weights/);
  assert.match(text, /\| resnet18 \| 80\.0% \(76\.0% – 84\.0%\) \| 40 of 100 \| 44\.0% /);
});

test('a reproduce config with an unknown key is refused naming the key and the file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'osteo-repro-'));
  try {
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ data: { source: 'phantom', dir: 'x', colour: 1 }, models: [{ model: 'resnet18' }] }));
    try {
      await loadPipelineConfig(file);
      assert.unreachable();
    } catch (error) {
      assert.instance(error, UserError);
      assert.match((error as Error).message, /bad\.json: unknown key "data\.colour"/);
    }
    await writeFile(file, JSON.stringify({ data: { source: 'phantom', dir: 'x' }, models: [{ model: 'resnet34' }] }));
    try {
      await loadPipelineConfig(file);
      assert.unreachable();
    } catch (error) {
      assert.match((error as Error).message, /bad\.json: models\.0\.model: .*"resnet34"/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the shipped pipeline configs are valid', async () => {
  for (const name of ['reproduce.json', 'demo.json']) {
    const config = await loadPipelineConfig(resolve('configs', name));
    assert.equal(config.models.map((m) => m.model), ['resnet18', 'resnet50', 'efficientnet_b3']);
  }
});

test('a missing ImageNet checkpoint stops reproduce before any data work, saying what to do', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'osteo-repro-'));
  const server = createServer((_request, response) => response.writeHead(404).end());
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const previous = process.env.OSTEO_WEIGHTS_URL;
  process.env.OSTEO_WEIGHTS_URL = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const configFile = join(dir, 'needs-weights.json');
    const dataDir = join(dir, 'phantom');
    await writeFile(configFile, JSON.stringify({ data: { source: 'phantom', dir: dataDir }, models: [{ model: 'resnet18', pretrained: true }] }));
    try {
      await reproduce({ config: configFile, out: join(dir, 'out'), weightsDir: join(dir, 'weights') });
      assert.unreachable('should have refused');
    } catch (error) {
      assert.instance(error, UserError);
      const message = (error as Error).message;
      assert.match(message, /resnet18's ImageNet checkpoint resnet18-f37072fd\.pth/);
      assert.match(message, /--no-pretrained/);
      assert.match(message, /--weights-dir/);
    }
    assert.not.ok(existsSync(dataDir), 'no data was generated before the refusal');
  } finally {
    if (previous === undefined) delete process.env.OSTEO_WEIGHTS_URL;
    else process.env.OSTEO_WEIGHTS_URL = previous;
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("npm start's pipeline end to end at the smallest settings: both protocols, the leak counted, ensemble, dashboard; a re-run reuses every run; a changed config is refused untouched; --fresh starts over", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'osteo-repro-'));
  try {
    const demo = JSON.parse(await readFile('configs/demo.json', 'utf8')) as Record<string, unknown> & { models: { recipe: string }[] };
    const config = {
      ...demo,
      data: { source: 'phantom', dir: join(dir, 'phantom'), perClass: 8, size: 64, duplicateRate: 0.5, val: 0.2, test: 0.2, seed: 3 },
      models: demo.models.map((m) => ({ ...m, recipe: resolve('configs', m.recipe), pretrained: true, set: [] })),
      set: ['epochs=1', 'imageSize=32', 'batchSize=8', 'augment=none'],
    };
    const configFile = join(dir, 'tiny.json');
    await writeFile(configFile, JSON.stringify(config));
    const out = join(dir, 'out');
    const lines: string[] = [];
    const result = await reproduce({ config: configFile, out, workers: 1, pretrained: false, log: (line) => lines.push(line) });
    assert.equal(result.failures, []);
    assert.is(result.kaggle, false);
    assert.equal(Object.keys(result.runs.clean), ['resnet18', 'resnet50', 'efficientnet_b3']);
    assert.equal(Object.keys(result.runs.published), ['resnet18', 'resnet50', 'efficientnet_b3']);
    assert.equal(result.rows.map((r) => r.row), ['resnet18', 'resnet50', 'efficientnet_b3', 'ensemble (soft vote)']);
    for (const r of result.rows) {
      for (const p of [r.clean, r.publishedProtocol]) {
        assert.ok(p !== null && p.accuracy >= 0 && p.accuracy <= 1, `${r.row} has an accuracy under both protocols`);
        assert.ok(p!.interval[0] <= p!.accuracy && p!.accuracy <= p!.interval[1]);
      }
      assert.is(r.clean!.leaked, 0, `${r.row}: the clean split tests on no copy of a training image`);
    }
    // Half the Normal and Osteoporosis files are copies: a random split of every file tests on some of them.
    assert.ok(result.rows.every((r) => r.publishedProtocol!.leaked > 0), `leaks ${result.rows.map((r) => r.publishedProtocol!.leaked)}`);
    const ensemble = result.rows[3]!.publishedProtocol!;
    assert.ok(ensemble.leaked >= result.rows[0]!.publishedProtocol!.leaked, "the ensemble's test set leaks at least its first member's");
    for (const file of ['sydney_best_model.pth', 'resnet50_best_model.pth', 'best_osteoporosis_model.pth']) {
      assert.ok(existsSync(join(out, 'dashboard', file)), `dashboard file ${file}`);
      assert.ok(result.artefacts.dashboard!.includes(join(out, 'dashboard', file)), `${file} is listed with its path`);
    }
    assert.ok(existsSync(join(out, 'eval', 'results.md')));
    assert.ok(existsSync(join(out, 'published', 'eval', 'results.md')));
    const report = await readFile(join(out, 'reproduce.md'), 'utf8');
    assert.not.match(report, /85\.0%/, 'no published figure beside phantom numbers');
    assert.match(report, /not the Kaggle set/);
    assert.match(report, /initial weights: resnet18: random, resnet50: random, efficientnet_b3: random/);
    const saved = JSON.parse(await readFile(join(out, 'reproduce.json'), 'utf8')) as { rows: unknown[] };
    assert.is(saved.rows.length, 4);
    assert.ok(lines.some((l) => /leak check: 0 images and 0 duplicate groups shared/.test(l)), 'the clean split reports no leak');

    // Twice: every run is reused (no training event), the numbers are the same.
    const events: string[] = [];
    const again = await reproduce({ config: configFile, out, workers: 1, pretrained: false, onTrainEvent: (e) => events.push(e.type), log: (line) => lines.push(line) });
    assert.equal(events, []);
    assert.equal(again.failures, []);
    assert.equal(again.rows, result.rows);
    assert.is(lines.filter((l) => /reusing the finished run/.test(l)).length, 6);

    // A changed recipe: refused before anything is touched.
    const before = await readFile(join(out, 'reproduce.md'), 'utf8');
    await writeFile(configFile, JSON.stringify({ ...config, set: ['epochs=1', 'imageSize=32', 'batchSize=8', 'augment=seed'] }));
    try {
      await reproduce({ config: configFile, out, workers: 1, pretrained: false });
      assert.unreachable();
    } catch (error) {
      assert.instance(error, UserError);
      assert.match((error as Error).message, /holds a run made with another config: augment/);
      assert.match((error as Error).message, /--fresh/);
    }
    assert.is(await readFile(join(out, 'reproduce.md'), 'utf8'), before);

    // --fresh: what reproduce wrote goes, anything else in OUT stays.
    await writeFile(join(out, 'notes.txt'), 'mine');
    await writeFile(configFile, JSON.stringify({ ...config, models: [config.models[0]] }));
    const fresh = await reproduce({ config: configFile, out, workers: 1, pretrained: false, protocol: 'clean', fresh: true, cv: 2 });
    assert.equal(fresh.failures, []);
    const cv = fresh.rows[0]!.cv!;
    assert.ok(cv.accuracy.lower <= cv.accuracy.value && cv.accuracy.value <= cv.accuracy.upper, '--cv adds the pooled out-of-fold accuracy with its interval');
    assert.ok(existsSync(join(out, 'cv', 'report', 'cv.md')));
    assert.match(await readFile(join(out, 'reproduce.md'), 'utf8'), /ours, clean CV \(95% CI\)/);
    assert.not.ok(existsSync(join(out, 'published')), 'the published runs of the earlier reproduce are gone');
    assert.not.ok(existsSync(join(out, 'dashboard')), 'no stale dashboard');
    assert.is(await readFile(join(out, 'notes.txt'), 'utf8'), 'mine');
    assert.is(fresh.rows[0]!.publishedProtocol, null);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('--check is refused on data that is not the Kaggle set, and under --protocol clean', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'osteo-repro-'));
  try {
    const configFile = join(dir, 'c.json');
    await writeFile(configFile, JSON.stringify({ data: { source: 'phantom', dir: join(dir, 'phantom'), perClass: 6, size: 32 }, models: [{ model: 'resnet18', pretrained: false }] }));
    for (const [options, pattern] of [
      [{ check: 3 }, /measured on the Kaggle set; .* is not it/],
      [{ check: 3, protocol: 'clean' as const }, /--check compares the published protocol/],
    ] as const) {
      try {
        await reproduce({ config: configFile, out: join(dir, 'out'), pretrained: false, ...options });
        assert.unreachable();
      } catch (error) {
        assert.instance(error, UserError);
        assert.match((error as Error).message, pattern);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
