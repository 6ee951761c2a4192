import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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
  type ReproduceRow,
} from '../../src/pipeline/reproduce.js';

const row = (name: string, published: number | null, accuracy: number | null): ReproduceRow => ({
  row: name,
  published,
  accuracy,
  interval: accuracy === null ? null : [accuracy - 0.04, accuracy + 0.04],
  balancedAccuracy: accuracy,
  macroF1: accuracy,
  osteopeniaRecall: accuracy,
});

test('the published table is the README one: ResNet18 83%, ResNet50 78%, ensemble 85%', () => {
  const byRow = Object.fromEntries(publishedResults.map((p) => [p.row, p.accuracy]));
  assert.equal(byRow, { resnet18: 0.83, resnet50: 0.78, efficientnet_b3: null, ensemble: 0.85 });
});

test('--check fails exactly the rows more than TOL points below the published accuracy', () => {
  const rows = [row('resnet18', 0.83, 0.801), row('resnet50', 0.78, 0.7499), row('efficientnet_b3', null, 0.1), row('ensemble', 0.85, null)];
  const failures = checkAgainstPublished(rows, 3);
  assert.is(failures.length, 2);
  assert.match(failures[0]!, /^resnet50: 75\.0% is more than 3 points below the published 78\.0%/);
  assert.match(failures[1]!, /^ensemble: no result/);
  assert.equal(checkAgainstPublished([row('resnet18', 0.83, 0.8)], 3), [], '80.0 is within 3 points of 83.0');
});

test('the comparison table shows published, ours with its interval, the delta, and the protocol defects', () => {
  const text = formatReproduceTable([row('resnet18', 0.83, 0.8)], 'datasets/knee');
  assert.match(text, /\| resnet18 \| 83\.0% \| 80\.0% \| 76\.0% – 84\.0% \| -3\.0 \|/);
  assert.match(text, /85\.32%/);
  assert.match(text, /de-duplicat/);
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

test("npm start's pipeline end to end at the smallest settings: data, three models, ensemble, dashboard export", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'osteo-repro-'));
  try {
    const demo = JSON.parse(await readFile('configs/demo.json', 'utf8')) as Record<string, unknown> & { models: { recipe: string }[] };
    const config = {
      ...demo,
      data: { source: 'phantom', dir: join(dir, 'phantom'), perClass: 8, size: 64, val: 0.2, test: 0.2, seed: 3 },
      models: demo.models.map((m) => ({ ...m, recipe: resolve('configs', m.recipe), pretrained: true, set: [] })),
      set: ['epochs=1', 'imageSize=32', 'batchSize=8', 'augment=none'],
    };
    const configFile = join(dir, 'tiny.json');
    await writeFile(configFile, JSON.stringify(config));
    const out = join(dir, 'out');
    const lines: string[] = [];
    const result = await reproduce({ config: configFile, out, workers: 1, pretrained: false, log: (line) => lines.push(line) });
    assert.equal(result.failures, []);
    assert.equal(Object.keys(result.runs), ['resnet18', 'resnet50', 'efficientnet_b3']);
    assert.equal(result.rows.map((r) => r.row), ['resnet18', 'resnet50', 'efficientnet_b3', 'ensemble (soft vote)']);
    for (const r of result.rows) {
      assert.ok(r.accuracy !== null && r.accuracy >= 0 && r.accuracy <= 1, `${r.row} has an accuracy`);
      assert.ok(r.interval![0] <= r.accuracy! && r.accuracy! <= r.interval![1]);
    }
    for (const file of ['sydney_best_model.pth', 'resnet50_best_model.pth', 'best_osteoporosis_model.pth']) {
      assert.ok(existsSync(join(out, 'dashboard', file)), `dashboard file ${file}`);
      assert.ok(result.artefacts.dashboard!.includes(join(out, 'dashboard', file)), `${file} is listed with its path`);
    }
    assert.ok(existsSync(join(out, 'eval', 'results.md')));
    const report = await readFile(join(out, 'reproduce.md'), 'utf8');
    assert.match(report, /\| ensemble \(soft vote\) \| 85\.0% \|/);
    assert.match(report, /initial weights: resnet18: random, resnet50: random, efficientnet_b3: random/);
    const saved = JSON.parse(await readFile(join(out, 'reproduce.json'), 'utf8')) as { rows: unknown[] };
    assert.is(saved.rows.length, 4);
    assert.ok(lines.some((l) => /leak check: 0 images and 0 duplicate groups shared/.test(l)), 'the split reports no leak');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
