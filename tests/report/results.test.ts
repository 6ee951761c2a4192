import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parse } from 'csv-parse/sync';
import sharp from 'sharp';
import { ensembleProbabilities } from '../../src/eval/ensemble.js';
import {
  bootstrapAccuracy,
  builtInMetrics,
  MetricRegistry,
  predictionsCsv,
  reportSummaryJson,
  resultsCsv,
  resultsMarkdown,
  resultsTable,
  summarize,
  writeEvaluationReport,
  type EvaluationReport,
  type MetricRecord,
} from '../../src/report/index.js';
import { randomSource } from '../helpers/random.js';
import { parseCsvRecords } from '../../src/util/index.js';

const classNames = ['Normal', 'Osteopenia', 'Osteoporosis'] as const;

function fixture(registry?: MetricRegistry): EvaluationReport {
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
      summarize('resnet18', 'model', a, labels, 3, { rng: randomSource(1), resamples: 200, run: 'runs/a', classNames, ...(registry ? { registry } : {}) }),
      summarize('resnet50', 'model', b, labels, 3, { rng: randomSource(1), resamples: 200, run: 'runs/b', classNames, ...(registry ? { registry } : {}) }),
      summarize('ensemble (soft vote)', 'ensemble', ensemble, labels, 3, { rng: randomSource(1), resamples: 200, classNames, ...(registry ? { registry } : {}) }),
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

/** A Brier score record, as the calibration work would add it: overall, with an interval, in every view. */
const brier: MetricRecord = {
  key: 'brier',
  label: 'Brier',
  csvColumn: 'brier',
  jsonKey: 'brier',
  higherIsBetter: false,
  scale: 'proportion',
  format: (v) => (v === null ? '—' : v.toFixed(3)),
  interval: true,
  views: ['table', 'cv', 'cvFolds', 'cvDifferences'],
  compute: ({ probabilities, labels, numClasses }) => {
    let sum = 0;
    for (let i = 0; i < labels.length; i++) for (let k = 0; k < numClasses; k++) sum += (probabilities[i * numClasses + k]! - (labels[i] === k ? 1 : 0)) ** 2;
    return labels.length === 0 ? null : sum / labels.length;
  },
};

/** A per-class record: one-vs-rest specificity, TN / (TN + FP). */
const specificity: MetricRecord = {
  key: 'specificity',
  label: 'specificity',
  perClass: true,
  csvColumn: 'specificity',
  jsonKey: 'specificity',
  higherIsBetter: true,
  scale: 'proportion',
  format: (v) => (v === null ? '—' : v.toFixed(3)),
  views: ['table'],
  compute: ({ classification }) =>
    classification.confusion.map((_, k) => {
      const negatives = classification.confusion.filter((_, r) => r !== k);
      const total = negatives.reduce((s, row) => s + row.reduce((a, b) => a + b, 0), 0);
      return total === 0 ? null : negatives.reduce((s, row) => s + row.reduce((a, b) => a + b, 0) - row[k]!, 0) / total;
    }),
};

test('a new report metric is one record: registered in a scratch registry, it reaches results.csv, results.md, the table and the --json summary', async () => {
  const registry = new MetricRegistry([...builtInMetrics, brier, specificity]);
  const report = fixture(registry);
  const labels = report.images.map((i) => i.label);
  const rows = parse(resultsCsv(report, registry), { columns: true }) as Record<string, string>[];
  report.models.forEach((m, i) => {
    let sum = 0;
    labels.forEach((y, n) => [0, 1, 2].forEach((k) => (sum += (m.probabilities[n * 3 + k]! - (y === k ? 1 : 0)) ** 2)));
    assert.ok(Math.abs(Number(rows[i]!.brier) - sum / labels.length) < 1e-6, 'Brier by hand');
    assert.ok(Number(rows[i]!.brier_ci_low) <= Number(rows[i]!.brier) && Number(rows[i]!.brier) <= Number(rows[i]!.brier_ci_high), 'its bootstrap interval');
    // Normal's specificity by hand: non-Normal images not predicted Normal, over non-Normal images.
    const negatives = labels.map((y, n) => [y, n] as const).filter(([y]) => y !== 0);
    const specific = negatives.filter(([, n]) => m.predictions[n] !== 0).length / negatives.length;
    assert.ok(Math.abs(Number(rows[i]!.specificity_Normal) - specific) < 1e-6, 'specificity by hand');
  });
  const header = resultsCsv(report, registry).split('\n')[0]!.split(',');
  assert.equal(header.slice(header.indexOf('nll'), header.indexOf('weight') + 1), ['nll', 'kappa_quadratic', 'kappa_quadratic_ci_low', 'kappa_quadratic_ci_high', 'mae_classes', 'mae_classes_ci_low', 'mae_classes_ci_high', 'brier', 'brier_ci_low', 'brier_ci_high', 'weight']);
  assert.equal(
    header.slice(header.indexOf('weight') + 1),
    classNames.flatMap((c) => ['precision', 'recall', 'f1', 'support', 'auc', 'specificity'].map((r) => `${r}_${c}`)),
    'per-class columns: class-major, the new record last within each class',
  );

  const table = resultsTable(report, registry).split('\n');
  assert.ok(table[0]!.endsWith('| ECE | quadratic κ (95% CI) | MAE (classes) (95% CI) | Brier (95% CI) |'), table[0]);
  const b = report.models[0]!;
  assert.ok(table[2]!.endsWith(`| ${(b.values.brier as number).toFixed(3)} (${b.intervals.brier!.lower.toFixed(3)}–${b.intervals.brier!.upper.toFixed(3)}) |`), table[2]);
  const md = resultsMarkdown(report, [], registry);
  assert.match(md, /\| model \| class \| precision \| recall \| F1 \| support \| AUC \| specificity \|/);
  assert.ok(md.includes(`| resnet18 | Normal | ${b.metrics.perClass[0]!.precision.toFixed(3)} |`));

  const json = reportSummaryJson(report, registry) as { models: { brier: number; brierInterval: number[]; accuracy: number; perClass: { specificity: number | null }[] }[] };
  assert.is(json.models[0]!.brier, b.values.brier);
  assert.equal(json.models[0]!.brierInterval, [b.intervals.brier!.lower, b.intervals.brier!.upper]);
  assert.is(json.models[0]!.perClass[2]!.specificity, (b.values.specificity as number[])[2]);
  assert.is(json.models[0]!.accuracy, b.metrics.accuracy);

  const dir = await mkdtemp(join(tmpdir(), 'osteo-report-'));
  try {
    await writeEvaluationReport(report, dir, registry);
    assert.match(await readFile(join(dir, 'results.csv'), 'utf8'), /,brier,brier_ci_low,brier_ci_high,weight,/);
    assert.match(await readFile(join(dir, 'results.md'), 'utf8'), /\| MAE \(classes\) \(95% CI\) \| Brier \(95% CI\) \|/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the default registry keeps the published table, results.csv and --json in their shape', () => {
  const report = fixture();
  assert.equal(resultsTable(report).split('\n')[0], '| model | accuracy (95% CI) | balanced accuracy | macro-F1 | Osteopenia recall | macro AUC | ECE | quadratic κ (95% CI) | MAE (classes) (95% CI) |');
  assert.is(
    resultsCsv(report).split('\n')[0],
    'model,kind,run,split,images,accuracy,accuracy_ci_low,accuracy_ci_high,balanced_accuracy,macro_f1,macro_auc,ece,nll,' +
      'kappa_quadratic,kappa_quadratic_ci_low,kappa_quadratic_ci_high,mae_classes,mae_classes_ci_low,mae_classes_ci_high,weight,' +
      ['Normal', 'Osteopenia', 'Osteoporosis'].map((c) => `precision_${c},recall_${c},f1_${c},support_${c},auc_${c}`).join(','),
  );
  const json = reportSummaryJson(report) as { models: Record<string, unknown>[] };
  assert.equal(Object.keys(json.models[0]!), ['name', 'kind', 'run', 'accuracy', 'accuracyInterval', 'balancedAccuracy', 'macroF1', 'macroAuc', 'ece', 'nll', 'quadraticKappa', 'quadraticKappaInterval', 'meanAbsoluteClassError', 'meanAbsoluteClassErrorInterval', 'perClass', 'confusion']);
  assert.equal(Object.keys((json.models[0]!.perClass as object[])[0]!), ['class', 'precision', 'recall', 'f1', 'support', 'auc']);
  // The accuracy interval is bootstrapAccuracy's for the same generator: the registry's bootstrap draws images in its order.
  const m = report.models[0]!;
  const correct = Array.from(m.predictions, (p, i) => p === report.images[i]!.label);
  assert.equal(m.accuracyInterval, bootstrapAccuracy(correct, { rng: randomSource(1), resamples: 200 }));
});

test('names from outside: formulas neutralised in results.csv and predictions.csv, control characters escaped in the table', () => {
  const report = fixture();
  report.images[0]!.path = '=HYPERLINK("http://evil.example","open").png';
  report.models[0]!.run = '@runs/a';
  report.models[1]!.name = 'resnet50:b\n| fake | 99.9% |';
  const predictions = predictionsCsv(report);
  assert.ok(predictions.includes(`"'=HYPERLINK(""http://evil.example"",""open"").png"`), predictions.split('\n')[1]);
  assert.equal(parseCsvRecords(predictions, 'predictions.csv')[0]!.path, report.images[0]!.path, 'osteo reads back the real name');
  const results = resultsCsv(report);
  assert.match(results, /^resnet18,model,'@runs\/a,/m);
  assert.is(parseCsvRecords(results, 'results.csv')[0]!.run, '@runs/a');
  const table = resultsTable(report);
  assert.is(table.split('\n').length, 2 + report.models.length, 'one row per model');
  assert.ok(table.includes('| resnet50:b\\n| fake | 99.9% |'), table);
});

test.run();
