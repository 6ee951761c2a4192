/**
 * Evaluation reports: per-model summaries (metrics, interval, AUC, calibration) and the files the
 * eval command writes — results.csv, results.md, predictions.csv and the PNG plots.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { formatCsv, printable, writeFileAtomic } from '../util/index.js';
import { argmaxRows, classificationMetrics, type ClassificationMetrics } from './metrics.js';
import { confusionMatrixPng, lineChartPng, reliabilityDiagramPng } from './plot.js';
import { bootstrapAccuracy, calibration, negativeLogLikelihood, oneVsRestAuc, type BootstrapInterval, type Calibration, type OneVsRestAuc, type RandomSource } from './stats.js';

export interface ModelSummary {
  /** Row name in the report: the model name, or "ensemble (soft vote)". */
  name: string;
  kind: 'model' | 'ensemble';
  /** Source run directory (models only). */
  run?: string;
  predictions: Int32Array;
  /** Row-major [n, numClasses] softmax probabilities (after TTA when on). */
  probabilities: Float32Array;
  metrics: ClassificationMetrics;
  accuracyInterval: BootstrapInterval;
  auc: OneVsRestAuc;
  calibration: Calibration;
  nll: number;
}

/** Every metric of one model's probabilities on the evaluated images. */
export function summarize(
  name: string,
  kind: 'model' | 'ensemble',
  probabilities: Float32Array,
  labels: ArrayLike<number>,
  numClasses: number,
  options: { rng: RandomSource; resamples: number; run?: string },
): ModelSummary {
  const predictions = argmaxRows(probabilities, numClasses);
  const metrics = classificationMetrics(labels, predictions, numClasses);
  const correct = Array.from(predictions, (p, i) => p === labels[i]);
  return {
    name,
    kind,
    ...(options.run === undefined ? {} : { run: options.run }),
    predictions,
    probabilities,
    metrics,
    accuracyInterval: bootstrapAccuracy(correct, { rng: options.rng, resamples: options.resamples }),
    auc: oneVsRestAuc(probabilities, labels, numClasses),
    calibration: calibration(probabilities, labels, numClasses),
    nll: negativeLogLikelihood(probabilities, labels, numClasses),
  };
}

export interface EvaluationReport {
  split: string;
  dataDir: string;
  classNames: readonly string[];
  tta: boolean;
  /** Ensemble weights per member model, in --run order, and how they were chosen. */
  ensembleWeights: { mode: 'equal' | 'auto' | 'fixed'; weights: number[]; fittedOn?: string; valNll?: number; equalValNll?: number };
  bootstrap: { resamples: number; seed: number };
  images: { path: string; label: number }[];
  models: ModelSummary[];
}

const round = (v: number | null, digits = 6): number | string => (v === null || !Number.isFinite(v) ? '' : Number(v.toFixed(digits)));
const percent = (v: number): string => `${(v * 100).toFixed(1)}%`;
const slug = (name: string) =>
  name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_|_$/g, '');

/**
 * The headline metrics of a model row, one record each: its CSV column(s), its cell in the Markdown
 * table, its key in the --json summary — in that order everywhere. A new report metric is one record
 * here (per-class metrics and the confusion matrix have their own sections).
 */
export interface MetricColumn {
  /** Key in the --json summary; absent: not in the summary. */
  json?: string;
  jsonValue?: (m: ModelSummary) => unknown;
  /** CSV header(s) and the row's values; absent: not in results.csv. */
  csv?: readonly string[];
  csvValues?: (m: ModelSummary) => (number | string)[];
  /** Header and cell of the Markdown table (the published table's shape); absent: not in it. */
  table?: { header: (report: EvaluationReport) => string; cell: (m: ModelSummary, report: EvaluationReport) => string };
}

/** Osteopenia, the clinically weak spot, when the classes are osteo's; else the second class. */
function weakClassIndex(report: EvaluationReport): number {
  const index = report.classNames.indexOf('Osteopenia');
  return index >= 0 ? index : 1;
}

export const metricColumns: readonly MetricColumn[] = [
  {
    json: 'accuracy',
    jsonValue: (m) => m.metrics.accuracy,
    csv: ['accuracy'],
    csvValues: (m) => [round(m.metrics.accuracy)],
    table: {
      header: () => 'accuracy (95% CI)',
      cell: (m) => `${percent(m.metrics.accuracy)} (${percent(m.accuracyInterval.lower)}–${percent(m.accuracyInterval.upper)})`,
    },
  },
  {
    json: 'accuracyInterval',
    jsonValue: (m) => [m.accuracyInterval.lower, m.accuracyInterval.upper],
    csv: ['accuracy_ci_low', 'accuracy_ci_high'],
    csvValues: (m) => [round(m.accuracyInterval.lower), round(m.accuracyInterval.upper)],
  },
  {
    json: 'balancedAccuracy',
    jsonValue: (m) => m.metrics.balancedAccuracy,
    csv: ['balanced_accuracy'],
    csvValues: (m) => [round(m.metrics.balancedAccuracy)],
    table: { header: () => 'balanced accuracy', cell: (m) => percent(m.metrics.balancedAccuracy) },
  },
  {
    json: 'macroF1',
    jsonValue: (m) => m.metrics.macroF1,
    csv: ['macro_f1'],
    csvValues: (m) => [round(m.metrics.macroF1)],
    table: { header: () => 'macro-F1', cell: (m) => m.metrics.macroF1.toFixed(3) },
  },
  {
    table: {
      header: (report) => `${report.classNames[weakClassIndex(report)] ?? 'class 1'} recall`,
      cell: (m, report) => percent(m.metrics.perClass[weakClassIndex(report)]?.recall ?? 0),
    },
  },
  {
    json: 'macroAuc',
    jsonValue: (m) => m.auc.macro,
    csv: ['macro_auc'],
    csvValues: (m) => [round(m.auc.macro)],
    table: { header: () => 'macro AUC', cell: (m) => (m.auc.macro === null ? '—' : m.auc.macro.toFixed(3)) },
  },
  {
    json: 'ece',
    jsonValue: (m) => m.calibration.ece,
    csv: ['ece'],
    csvValues: (m) => [round(m.calibration.ece)],
    table: { header: () => 'ECE', cell: (m) => m.calibration.ece.toFixed(3) },
  },
  { json: 'nll', jsonValue: (m) => m.nll, csv: ['nll'], csvValues: (m) => [round(m.nll)] },
];

export function resultsCsv(report: EvaluationReport, columns: readonly MetricColumn[] = metricColumns): string {
  const classColumns = report.classNames.flatMap((c) => [`precision_${c}`, `recall_${c}`, `f1_${c}`, `support_${c}`, `auc_${c}`]);
  const header = ['model', 'kind', 'run', 'split', 'images', ...columns.flatMap((c) => c.csv ?? []), 'weight', ...classColumns];
  const members = report.models.filter((m) => m.kind === 'model');
  const rows = report.models.map((m) => {
    const weight = m.kind === 'model' ? report.ensembleWeights.weights[members.indexOf(m)] ?? null : null;
    return [
      m.name,
      m.kind,
      m.run ?? '',
      report.split,
      report.images.length,
      ...columns.flatMap((c) => c.csvValues?.(m) ?? []),
      round(weight),
      ...m.metrics.perClass.flatMap((c, k) => [round(c.precision), round(c.recall), round(c.f1), c.support, round(m.auc.perClass[k] ?? null)]),
    ];
  });
  return formatCsv([header, ...rows]);
}

export function predictionsCsv(report: EvaluationReport): string {
  const header = ['path', 'label', 'label_name', 'model', 'prediction', 'prediction_name', 'correct', 'confidence', ...report.classNames.map((c) => `p_${c}`)];
  const k = report.classNames.length;
  const rows: (string | number)[][] = [];
  report.images.forEach((image, i) => {
    for (const m of report.models) {
      const p = m.predictions[i]!;
      const probs = Array.from(m.probabilities.subarray(i * k, (i + 1) * k), (v) => Number(v.toFixed(6)));
      rows.push([image.path, image.label, report.classNames[image.label]!, m.name, p, report.classNames[p]!, p === image.label ? 1 : 0, probs[p]!, ...probs]);
    }
  });
  return formatCsv([header, ...rows]);
}

/**
 * The headline table in the published table's shape (model, accuracy), with the bootstrap interval
 * and the other metrics beside it; Osteopenia's recall, the clinically weak spot, has its own column.
 */
export function resultsTable(report: EvaluationReport, columns: readonly MetricColumn[] = metricColumns): string {
  const shown = columns.filter((c) => c.table !== undefined);
  return [
    `| model | ${shown.map((c) => c.table!.header(report)).join(' | ')} |`,
    `|---|${shown.map(() => '---').join('|')}|`,
    ...report.models.map((m) => {
      // A run's folder name becomes a model name: a newline in it must not make a row of its own.
      const name = m.kind === 'ensemble' ? `**${printable(m.name)}**` : printable(m.name);
      return `| ${name} | ${shown.map((c) => c.table!.cell(m, report)).join(' | ')} |`;
    }),
  ].join('\n');
}

export function resultsMarkdown(report: EvaluationReport, plots: string[] = []): string {
  const lines = [
    `# Evaluation on the ${report.split} split`,
    '',
    `${report.images.length} images from \`${report.dataDir}\`; ${report.tta ? 'horizontal-flip test-time augmentation on' : 'no test-time augmentation'}. ` +
      `Accuracy intervals: percentile bootstrap, 95%, ${report.bootstrap.resamples} resamples, seed ${report.bootstrap.seed}.`,
    '',
    resultsTable(report),
    '',
  ];
  const w = report.ensembleWeights;
  const members = report.models.filter((m) => m.kind === 'model');
  const weightText = members.map((m, i) => `${m.name} ${(w.weights[i] ?? 0).toFixed(2)}`).join(', ');
  if (w.mode === 'auto') {
    lines.push(
      `Ensemble weights fitted on the ${w.fittedOn ?? 'val'} split (maximum log-likelihood on a simplex grid; the evaluated split was not used): ${weightText}. ` +
        `Val NLL ${w.valNll?.toFixed(4)} vs ${w.equalValNll?.toFixed(4)} with equal weights.`,
      '',
    );
  } else {
    lines.push(`Ensemble weights (${w.mode}): ${weightText}.`, '');
  }
  lines.push('## Per class', '');
  lines.push(`| model | class | precision | recall | F1 | support | AUC |`, '|---|---|---|---|---|---|---|');
  for (const m of report.models) {
    m.metrics.perClass.forEach((c, k) => {
      const auc = m.auc.perClass[k];
      lines.push(`| ${m.name} | ${report.classNames[k]} | ${c.precision.toFixed(3)} | ${c.recall.toFixed(3)} | ${c.f1.toFixed(3)} | ${c.support} | ${auc === null || auc === undefined ? '—' : auc.toFixed(3)} |`);
    });
  }
  lines.push('', '## Confusion matrices (rows: true class, columns: predicted)', '');
  for (const m of report.models) {
    lines.push(`**${m.name}**`, '', `| | ${report.classNames.join(' | ')} |`, `|---|${report.classNames.map(() => '---').join('|')}|`);
    m.metrics.confusion.forEach((row, r) => lines.push(`| ${report.classNames[r]} | ${row.join(' | ')} |`));
    lines.push('');
  }
  lines.push(
    'Conventions: scikit-learn\'s with `zero_division=0` — a class never predicted has precision 0, a class absent from the split has recall 0; ' +
      'macro-F1 averages all classes, balanced accuracy the classes present. AUC is one-vs-rest (ties count half); ' +
      'ECE uses 15 equal-width confidence bins.',
    '',
  );
  if (plots.length > 0) {
    lines.push('## Plots', '', ...plots.map((p) => `![${p}](${p})`), '');
  }
  lines.push('osteo is a research tool, not a diagnostic device.', '');
  return lines.join('\n');
}

export interface WrittenReport {
  dir: string;
  files: string[];
}

/** Write every report file into `outDir` and return their names. */
export async function writeEvaluationReport(report: EvaluationReport, outDir: string): Promise<WrittenReport> {
  await mkdir(outDir, { recursive: true });
  // Thunks, rendered one at a time: a failed render must not leave other promises unhandled.
  const plots: { file: string; png: () => Promise<Buffer> }[] = [];
  for (const m of report.models) {
    plots.push({
      file: `confusion_${slug(m.name)}.png`,
      png: () => confusionMatrixPng({ title: `${m.name} — ${report.split} (accuracy ${percent(m.metrics.accuracy)})`, classNames: report.classNames, confusion: m.metrics.confusion }),
    });
  }
  for (const m of report.models) {
    const curves = m.auc.curves
      .map((curve, k) => ({ curve, k }))
      .filter(({ curve }) => curve.auc !== null)
      .map(({ curve, k }) => ({ name: `${report.classNames[k]} vs rest (AUC ${curve.auc!.toFixed(3)})`, x: curve.fpr, y: curve.tpr }));
    if (curves.length === 0) continue;
    plots.push({
      file: `roc_${slug(m.name)}.png`,
      png: () => lineChartPng({ title: `${m.name} — ROC, one vs rest`, xLabel: 'false positive rate', yLabel: 'true positive rate', xRange: [0, 1], yRange: [0, 1], diagonal: true, legend: 'bottom-right', series: curves }),
    });
  }
  plots.push({
    file: 'reliability.png',
    png: () => reliabilityDiagramPng({ title: `Reliability — ${report.split}`, models: report.models.map((m) => ({ name: m.name, bins: m.calibration.bins, ece: m.calibration.ece })) }),
  });
  const files = ['results.csv', 'results.md', 'predictions.csv', ...plots.map((p) => p.file)];
  await writeFileAtomic(join(outDir, 'results.csv'), resultsCsv(report));
  await writeFileAtomic(join(outDir, 'predictions.csv'), predictionsCsv(report));
  await writeFileAtomic(
    join(outDir, 'results.md'),
    resultsMarkdown(
      report,
      plots.map((p) => p.file),
    ),
  );
  for (const plot of plots) await writeFileAtomic(join(outDir, plot.file), await plot.png());
  return { dir: outDir, files };
}

/** The report as JSON-friendly data (no per-image arrays; those are in predictions.csv). */
export function reportSummaryJson(report: EvaluationReport, columns: readonly MetricColumn[] = metricColumns): unknown {
  return {
    split: report.split,
    dataDir: report.dataDir,
    images: report.images.length,
    tta: report.tta,
    classNames: report.classNames,
    ensembleWeights: report.ensembleWeights,
    bootstrap: report.bootstrap,
    models: report.models.map((m) => ({
      name: m.name,
      kind: m.kind,
      ...(m.run === undefined ? {} : { run: m.run }),
      ...Object.fromEntries(columns.filter((c) => c.json !== undefined).map((c) => [c.json!, c.jsonValue!(m)])),
      perClass: m.metrics.perClass.map((c, k) => ({ class: report.classNames[k], ...c, auc: m.auc.perClass[k] })),
      confusion: m.metrics.confusion,
    })),
  };
}
