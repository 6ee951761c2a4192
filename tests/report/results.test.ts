import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parse } from 'csv-parse/sync';
import sharp from 'sharp';
import { ensembleProbabilities } from '../../src/eval/ensemble.js';
import { metricColumns, reportSummaryJson, resultsCsv, resultsTable, summarize, writeEvaluationReport, type EvaluationReport, type MetricColumn } from '../../src/report/index.js';
import { randomSource } from '../helpers/random.js';

const classNames = ['Normal', 'Osteopenia', 'Osteoporosis'] as const;

function fixture(): EvaluationReport {
  const labels = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2];
  const rng = randomSource(5);
  const member = (skill: number) => {
    const p = new Float32Array(labels.length * 3);
    labels.forEach((y, i) => {
      const raw = [0, 1, 2].map((k) => (k === y ? skill : 0) + rng.next());
      const sum = raw.reduce((a, b) => a + b, 0);
      raw.forEach((v, k) => (p[i * 3 + k] = v / sum));
    });
    return p;
  };
  const a = member(1.2);
  const b = member(0.4);
  const ensemble = ensembleProbabilities([a, b]);
  return {
    split: 'test',
    dataDir: 'datasets/phantom',
    classNames,
    tta: false,
    ensembleWeights: { mode: 'equal', weights: [0.5, 0.5] },
    bootstrap: { resamples: 200, seed: 1 },
    images: labels.map((label, i) => ({ path: `img/${i}.png`, label })),
    models: [
      summarize('resnet18', 'model', a, labels, 3, { rng: randomSource(1), resamples: 200, run: 'runs/a' }),
      summarize('resnet50', 'model', b, labels, 3, { rng: randomSource(1), resamples: 200, run: 'runs/b' }),
      summarize('ensemble (soft vote)', 'ensemble', ensemble, labels, 3, { rng: randomSource(1), resamples: 200 }),
    ],
  };
}

test('the report files carry the summaries: CSV numbers, Markdown table, predictions, PNG plots', async () => {
  const report = fixture();
  const dir = await mkdtemp(join(tmpdir(), 'osteo-report-'));
  try {
    const written = await writeEvaluationReport(report, dir);
    for (const f of ['results.csv', 'results.md', 'predictions.csv', 'reliability.png', 'confusion_ensemble_soft_vote.png', 'roc_resnet18.png']) {
      assert.ok(written.files.includes(f), `${f} listed`);
    }
    const rows = parse(await readFile(join(dir, 'results.csv')), { columns: true }) as Record<string, string>[];
    assert.equal(
      rows.map((r) => r.model),
      ['resnet18', 'resnet50', 'ensemble (soft vote)'],
    );
    report.models.forEach((m, i) => {
      assert.ok(Math.abs(Number(rows[i]!.accuracy) - m.metrics.accuracy) < 1e-6);
      assert.ok(Math.abs(Number(rows[i]!.recall_Osteopenia) - m.metrics.perClass[1]!.recall) < 1e-6);
      assert.ok(Math.abs(Number(rows[i]!.accuracy_ci_low) - m.accuracyInterval.lower) < 1e-6);
      assert.ok(Math.abs(Number(rows[i]!.ece) - m.calibration.ece) < 1e-6);
    });
    assert.is(rows[0]!.weight, '0.5');
    assert.is(rows[2]!.weight, '');

    const predictions = parse(await readFile(join(dir, 'predictions.csv')), { columns: true }) as Record<string, string>[];
    assert.is(predictions.length, 10 * 3);
    const first = predictions.find((r) => r.path === 'img/3.png' && r.model === 'resnet50')!;
    assert.is(first.label_name, 'Osteopenia');
    assert.is(Number(first.prediction), report.models[1]!.predictions[3]);
    assert.ok(Math.abs(Number(first.p_Osteoporosis) - report.models[1]!.probabilities[3 * 3 + 2]!) < 1e-6);

    const md = await readFile(join(dir, 'results.md'), 'utf8');
    assert.match(md, /\| model \| accuracy \(95% CI\) \| balanced accuracy \| macro-F1 \| Osteopenia recall \| macro AUC \| ECE \|/);
    const ensembleRow = md.split('\n').find((l) => l.startsWith('| **ensemble (soft vote)**'))!;
    const e = report.models[2]!;
    assert.ok(ensembleRow.includes(`${(e.metrics.accuracy * 100).toFixed(1)}% (${(e.accuracyInterval.lower * 100).toFixed(1)}%`), ensembleRow);
    assert.ok(ensembleRow.includes(`${(e.metrics.perClass[1]!.recall * 100).toFixed(1)}%`));
    assert.match(md, /not a diagnostic device/);

    const meta = await sharp(join(dir, 'roc_resnet18.png')).metadata();
    assert.is(meta.format, 'png');
    assert.is(meta.width, 640);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a new report metric is one column record: it reaches results.csv, the Markdown table and the --json summary', () => {
  const report = fixture();
  const brier: MetricColumn = {
    json: 'brier',
    jsonValue: () => 0.25,
    csv: ['brier'],
    csvValues: () => [0.25],
    table: { header: () => 'Brier', cell: () => '0.250' },
  };
  const columns = [...metricColumns, brier];
  const rows = parse(resultsCsv(report, columns), { columns: true }) as Record<string, string>[];
  assert.equal(rows.map((r) => r.brier), ['0.25', '0.25', '0.25']);
  const table = resultsTable(report, columns).split('\n');
  assert.ok(table[0]!.endsWith('| ECE | Brier |'), table[0]);
  assert.ok(table.slice(2).every((line) => line.endsWith('| 0.250 |')));
  const json = reportSummaryJson(report, columns) as { models: { brier: number; accuracy: number }[] };
  assert.equal(json.models.map((m) => m.brier), [0.25, 0.25, 0.25]);
  assert.is(json.models[0]!.accuracy, report.models[0]!.metrics.accuracy);
  // the default columns are the published table's shape
  assert.match(resultsTable(report).split('\n')[0]!, /^\| model \| accuracy \(95% CI\) \| balanced accuracy \| macro-F1 \| Osteopenia recall \| macro AUC \| ECE \|$/);
});

test.run();
