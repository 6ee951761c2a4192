/**
 * Evaluation reports: per-model summaries (metrics, interval, AUC, calibration) and the files the
 * eval command writes — results.csv, results.md, predictions.csv and the PNG plots.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { formatCsv, printable, UserError, writeFileAtomic } from '../util/index.js';
import type { ClassificationMetrics } from './metrics.js';
import { confusionMatrixPng, lineChartPng, reliabilityDiagramPng } from './plot.js';
import { metricInput, metricLabel, metricRegistry, type MetricInput, type MetricRegistry, type MetricValue, type OverallMetric, type PerClassMetric } from './registry.js';
import type { CalibrationReport, CalibrationSection } from './calibration.js';
import type { PairedComparison } from './paired.js';
import { operatingPointsJson, operatingPointsMarkdown, operatingPointsPlots, type OperatingPointsSection } from './screening-report.js';
import { negativeLogLikelihood, percentile, type BootstrapInterval, type Calibration, type OneVsRestAuc, type RandomSource } from './stats.js';

export interface ModelSummary {
  /** Row name in the report: the model name, or "ensemble (soft vote)". */
  name: string;
  kind: 'model' | 'ensemble';
  /** Source run directory (models only). */
  run?: string;
  predictions: Int32Array;
  /** Row-major [n, numClasses] softmax probabilities (after TTA when on). */
  probabilities: Float32Array;
  /** Every registered metric's value, by record key (per-class records: one value per class). */
  values: Record<string, MetricValue | MetricValue[]>;
  /** The bootstrap interval of every record that has one, by record key. */
  intervals: Record<string, BootstrapInterval>;
  metrics: ClassificationMetrics;
  /** The accuracy record's interval: the error bar of the published table's number. */
  accuracyInterval: BootstrapInterval;
  auc: OneVsRestAuc;
  calibration: Calibration;
  nll: number;
}

/** Every registered metric of one model's probabilities on the evaluated images. */
export function summarize(
  name: string,
  kind: 'model' | 'ensemble',
  probabilities: Float32Array,
  labels: ArrayLike<number>,
  numClasses: number,
  options: { rng: RandomSource; resamples: number; run?: string; classNames?: readonly string[]; registry?: MetricRegistry; classes?: readonly number[] },
): ModelSummary {
  const registry = options.registry ?? metricRegistry;
  const classNames = options.classNames ?? Array.from({ length: numClasses }, (_, k) => `class ${k}`);
  if (classNames.length !== numClasses) throw new UserError(`summarize: ${classNames.length} class names for ${numClasses} classes`);
  const input = metricInput(probabilities, labels, classNames, undefined, options.classes);
  const values = Object.fromEntries(registry.all().map((r) => [r.key, r.compute(input)]));
  const intervals = bootstrapIntervals(input, registry.all().filter((r): r is OverallMetric => r.interval === true && !r.perClass), { rng: options.rng, resamples: options.resamples });
  const accuracyInterval = intervals.accuracy;
  if (accuracyInterval === undefined) throw new UserError("summarize: the metric registry has no 'accuracy' record with an interval");
  return {
    name,
    kind,
    ...(options.run === undefined ? {} : { run: options.run }),
    predictions: input.predictions,
    probabilities,
    values,
    intervals,
    metrics: input.classification,
    accuracyInterval,
    auc: input.auc,
    calibration: input.calibration,
    nll: negativeLogLikelihood(probabilities, labels, numClasses),
  };
}

/**
 * Percentile bootstrap intervals over the images for `records`, all on the same resamples: each
 * resample draws n images with replacement, in the order `bootstrapAccuracy` draws them, so the
 * accuracy interval is that function's for the same generator. An undefined value (null) on a
 * resample is left out of its percentiles.
 */
function bootstrapIntervals(
  input: MetricInput,
  records: readonly OverallMetric[],
  options: { rng: RandomSource; resamples: number; confidence?: number },
): Record<string, BootstrapInterval> {
  const { resamples } = options;
  const confidence = options.confidence ?? 0.95;
  const n = input.labels.length;
  if (records.length === 0) return {};
  if (n === 0) return Object.fromEntries(records.map((r) => [r.key, { lower: 0, upper: 0, confidence, resamples }]));
  const k = input.numClasses;
  const samples = records.map(() => [] as number[]);
  const probabilities = new Float32Array(n * k);
  const labels = new Int32Array(n);
  const predictions = new Int32Array(n);
  for (let b = 0; b < resamples; b++) {
    for (let i = 0; i < n; i++) {
      const at = Math.floor(options.rng.next() * n);
      labels[i] = input.labels[at]!;
      predictions[i] = input.predictions[at]!;
      probabilities.set(input.probabilities.subarray(at * k, (at + 1) * k), i * k);
    }
    const resampled = metricInput(probabilities, labels, input.classNames, predictions, input.classes);
    records.forEach((r, j) => {
      const value = r.compute(resampled);
      if (value !== null) samples[j]!.push(value);
    });
  }
  const tail = (1 - confidence) / 2;
  return Object.fromEntries(
    records.map((r, j) => {
      const sorted = Float64Array.from(samples[j]!).sort();
      return [r.key, { lower: percentile(sorted, tail), upper: percentile(sorted, 1 - tail), confidence, resamples }];
    }),
  );
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
  /** Each member model against the ensemble on the same images (report/paired.ts); empty or absent without an ensemble. */
  comparisons?: PairedComparison[];
  /** Present when the runs are calibrated: the models' probabilities above are the calibrated ones, and this compares them with the uncalibrated. */
  calibration?: CalibrationSection;
  /** Screening thresholds chosen on val and scored on the evaluated split (report/screening.ts); absent when none could be chosen. */
  operatingPoints?: OperatingPointsSection;
  /** Classes with no evaluated image (an external folder of a subset): left out of the per-class rows; the metrics score the others. */
  absentClasses?: number[];
  /** Sections added by other parts of the evaluation (external validation, subgroups), in order. */
  sections?: ReportSection[];
}

/**
 * A section of the report that eval composes beside the metrics (report/external.ts,
 * report/subgroups.ts): its lines of results.md after the headline table, an optional warning shown
 * above that table, its lines on the console, and its JSON under `key` in `--json` and the report's
 * evaluation.json.
 */
export interface ReportSection {
  key: string;
  markdown: string[];
  banner?: string;
  /** What `osteo eval` prints of it after the headline table. */
  console?: string[];
  json: unknown;
}

const round = (v: number | null, digits = 6): number | string => (v === null || !Number.isFinite(v) ? '' : Number(v.toFixed(digits)));
const percent = (v: number): string => `${(v * 100).toFixed(1)}%`;
const slug = (name: string) =>
  name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_|_$/g, '');

const overallValue = (m: ModelSummary, r: OverallMetric): MetricValue => m.values[r.key] as MetricValue;
const classValues = (m: ModelSummary, r: PerClassMetric): MetricValue[] => m.values[r.key] as MetricValue[];

export function resultsCsv(report: EvaluationReport, registry: MetricRegistry = metricRegistry): string {
  const overall = registry.overall().filter((r) => r.csvColumn !== undefined);
  const perClass = registry.perClass().filter((r) => r.csvColumn !== undefined);
  const overallColumns = overall.flatMap((r) => (r.interval ? [r.csvColumn!, `${r.csvColumn}_ci_low`, `${r.csvColumn}_ci_high`] : [r.csvColumn!]));
  const classColumns = report.classNames.flatMap((c) => perClass.map((r) => `${r.csvColumn}_${c}`));
  const header = ['model', 'kind', 'run', 'split', 'images', ...overallColumns, 'weight', ...classColumns];
  const members = report.models.filter((m) => m.kind === 'model');
  const rows = report.models.map((m) => {
    const weight = m.kind === 'model' ? report.ensembleWeights.weights[members.indexOf(m)] ?? null : null;
    return [
      m.name,
      m.kind,
      m.run ?? '',
      report.split,
      report.images.length,
      ...overall.flatMap((r) => {
        const interval = m.intervals[r.key];
        return r.interval ? [round(overallValue(m, r)), round(interval?.lower ?? null), round(interval?.upper ?? null)] : [round(overallValue(m, r))];
      }),
      round(weight),
      ...report.classNames.flatMap((_, k) => perClass.map((r) => round(classValues(m, r)[k] ?? null))),
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
export function resultsTable(report: EvaluationReport, registry: MetricRegistry = metricRegistry): string {
  const shown = registry.overall().filter((r) => r.views.includes('table'));
  const header = (r: OverallMetric) => `${metricLabel(r, report.classNames)}${r.interval ? ` (${(report.models[0]?.intervals[r.key]?.confidence ?? 0.95) * 100}% CI)` : ''}`;
  const cell = (m: ModelSummary, r: OverallMetric) => {
    const interval = m.intervals[r.key];
    return r.interval && interval ? `${r.format(overallValue(m, r))} (${r.format(interval.lower)}–${r.format(interval.upper)})` : r.format(overallValue(m, r));
  };
  return [
    `| model | ${shown.map(header).join(' | ')} |`,
    `|---|${shown.map(() => '---').join('|')}|`,
    ...report.models.map((m) => {
      // A run's folder name becomes a model name: a newline in it must not make a row of its own.
      const name = m.kind === 'ensemble' ? `**${printable(m.name)}**` : printable(m.name);
      return `| ${name} | ${shown.map((r) => cell(m, r)).join(' | ')} |`;
    }),
  ].join('\n');
}

export function resultsMarkdown(report: EvaluationReport, plots: string[] = [], registry: MetricRegistry = metricRegistry): string {
  const sections = report.sections ?? [];
  const lines = [
    report.split === 'external' ? '# Evaluation on an external folder' : `# Evaluation on the ${report.split} split`,
    '',
    ...sections.flatMap((section) => (section.banner === undefined ? [] : [`**${section.banner}**`, ''])),
    `${report.images.length} images from \`${report.dataDir}\`; ${report.tta ? 'horizontal-flip test-time augmentation on' : 'no test-time augmentation'}. ` +
      `Accuracy intervals: percentile bootstrap, 95%, ${report.bootstrap.resamples} resamples, seed ${report.bootstrap.seed}.`,
    '',
    resultsTable(report, registry),
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
  for (const section of sections) lines.push(...section.markdown);
  lines.push(...calibrationMarkdown(report));
  lines.push(...comparisonsMarkdown(report, registry));
  lines.push(...operatingPointsMarkdown(report.operatingPoints, report.split, report.bootstrap.resamples));
  lines.push('## Per class', '');
  const perClass = registry.perClass().filter((r) => r.views.includes('table'));
  lines.push(`| model | class | ${perClass.map((r) => metricLabel(r, report.classNames)).join(' | ')} |`, `|---|---|${perClass.map(() => '---').join('|')}|`);
  const absent = report.absentClasses ?? [];
  for (const m of report.models) {
    report.classNames.forEach((c, k) => {
      if (!absent.includes(k)) lines.push(`| ${m.name} | ${c} | ${perClass.map((r) => r.format(classValues(m, r)[k] ?? null)).join(' | ')} |`);
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
      'ECE uses 15 equal-width confidence bins.' +
      (absent.length === 0
        ? ''
        : ` No image is of ${absent.map((k) => report.classNames[k]).join(' or ')}: its rows are left out, and macro-F1, macro AUC and the per-class values score the classes present only (scikit-learn's \`labels=\` those classes).`),
    '',
  );
  if (plots.length > 0) {
    lines.push('## Plots', '', ...plots.map((p) => `![${p}](${p})`), '');
  }
  lines.push('osteo is a research tool, not a diagnostic device.', '');
  return lines.join('\n');
}

/** Temperatures and the calibration metrics before → after, when the runs are calibrated. */
function calibrationMarkdown(report: EvaluationReport): string[] {
  const section = report.calibration;
  if (section === undefined) return [];
  const pair = (before: CalibrationReport, after: CalibrationReport, pick: (r: CalibrationReport) => number, digits: number) => `${pick(before).toFixed(digits)} → ${pick(after).toFixed(digits)}`;
  const lines = [
    '## Calibration (temperature scaling)',
    '',
    'The probabilities in this report are calibrated: softmax(logits / T), each model with its own T and the ensemble with its own, fitted on the soft vote of the calibrated members. ' +
      'Each cell reads uncalibrated → calibrated on the evaluated images.',
    '',
    '| model | T | fitted on | ECE | adaptive ECE | class-wise ECE | Brier | NLL |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const m of section.models) {
    const [b, a] = [m.before, m.after];
    lines.push(
      `| ${printable(m.name)} | ${m.temperature.toFixed(3)} | ${printable(m.fittedOn)} | ${pair(b, a, (r) => r.ece, 3)} | ${pair(b, a, (r) => r.adaptiveEce, 3)} | ${pair(b, a, (r) => r.meanClasswiseEce, 3)} | ${pair(b, a, (r) => r.brier, 4)} | ${pair(b, a, (r) => r.nll, 4)} |`,
    );
  }
  lines.push(
    '',
    `ECE: ${section.models[0]?.after.numBins ?? 15} bins of the top-class confidence, equal-width or (adaptive) equal-mass at its quantiles; class-wise ECE: the mean over classes of the ECE of p(class) against 1[label = class]; ` +
      'Brier: the mean over images of Σ over classes of (p − 1[label = class])², the sum of the one-vs-rest Brier scores. Temperature scaling leaves each model\'s argmax unchanged.',
    '',
  );
  if (section.fittedOnEvaluatedSplit) lines.push('**The temperatures were fitted on the evaluated split: the calibrated numbers are optimistic.**', '');
  return lines;
}

/** Paired differences (model − ensemble) and DeLong's test per binary view, when there is an ensemble. */
function comparisonsMarkdown(report: EvaluationReport, registry: MetricRegistry): string[] {
  const comparisons = report.comparisons ?? [];
  if (comparisons.length === 0) return [];
  const keys = Object.keys(comparisons[0]!.differences);
  const records = keys.map((k) => registry.get(k));
  const views = comparisons[0]!.auc;
  const signed = (v: number | null, digits = 3) => (v === null ? '—' : `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`);
  const lines = [
    '## Each model against the ensemble (paired, same images)',
    '',
    `| model − ${printable(comparisons[0]!.against)} | ${records.map((r) => `Δ ${metricLabel(r, report.classNames)} (95% CI)`).join(' | ')} | ${views.map((v) => `Δ AUC ${v.name} (DeLong p)`).join(' | ')} |`,
    `|---|${records.map(() => '---').join('|')}|${views.map(() => '---').join('|')}|`,
  ];
  for (const c of comparisons) {
    const differences = keys.map((k) => {
      const d = c.differences[k]!;
      return `${signed(d.difference)} (${signed(d.lower)} to ${signed(d.upper)})`;
    });
    const aucs = c.auc.map((v) => (v.test === null ? '— (too few positives or negatives)' : `${signed(v.test.difference)} (p ${v.test.pValue.toFixed(3)})`));
    lines.push(`| ${printable(c.model)} | ${differences.join(' | ')} | ${aucs.join(' | ')} |`);
  }
  lines.push(
    '',
    `Differences are model minus ensemble on the same images: a percentile bootstrap over duplicate groups (both on the same draw, ${report.bootstrap.resamples} resamples), ` +
      "and DeLong's test of the two correlated AUCs on each binary view (the view's score: the summed probability of its positive classes).",
    '',
  );
  return lines;
}

export function comparisonsCsv(report: EvaluationReport): string {
  const header = ['model', 'against', 'statistic', 'view', 'difference', 'ci_low', 'ci_high', 'p_value', 'positives', 'negatives'];
  const rows: (string | number)[][] = [];
  for (const c of report.comparisons ?? []) {
    for (const [key, d] of Object.entries(c.differences)) rows.push([c.model, c.against, key, '', round(d.difference), round(d.lower), round(d.upper), '', '', '']);
    for (const v of c.auc) {
      const t = v.test;
      rows.push([c.model, c.against, 'auc_delong', v.view, round(t?.difference ?? null), round(t?.lower ?? null), round(t?.upper ?? null), round(t?.pValue ?? null), t?.positives ?? '', t?.negatives ?? '']);
    }
  }
  return formatCsv([header, ...rows]);
}

export interface WrittenReport {
  dir: string;
  files: string[];
}

/** Write every report file into `outDir` and return their names. */
export async function writeEvaluationReport(report: EvaluationReport, outDir: string, registry: MetricRegistry = metricRegistry): Promise<WrittenReport> {
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
  for (const m of report.calibration?.models ?? []) {
    plots.push({
      file: `calibration_${slug(m.name)}.png`,
      png: () =>
        reliabilityDiagramPng({
          title: `${m.name} — reliability before and after T = ${m.temperature.toFixed(2)}`,
          models: [
            { name: 'uncalibrated', bins: m.before.bins, ece: m.before.ece },
            { name: 'calibrated', bins: m.after.bins, ece: m.after.ece },
          ],
        }),
    });
  }
  plots.push(...operatingPointsPlots(report.operatingPoints, report.split));
  const comparisons = (report.comparisons ?? []).length > 0;
  const files = ['results.csv', 'results.md', 'predictions.csv', ...(comparisons ? ['comparisons.csv'] : []), ...plots.map((p) => p.file)];
  await writeFileAtomic(join(outDir, 'results.csv'), resultsCsv(report, registry));
  if (comparisons) await writeFileAtomic(join(outDir, 'comparisons.csv'), comparisonsCsv(report));
  await writeFileAtomic(join(outDir, 'predictions.csv'), predictionsCsv(report));
  await writeFileAtomic(
    join(outDir, 'results.md'),
    resultsMarkdown(
      report,
      plots.map((p) => p.file),
      registry,
    ),
  );
  for (const plot of plots) await writeFileAtomic(join(outDir, plot.file), await plot.png());
  return { dir: outDir, files };
}

const calibrationJson = (r: CalibrationReport) => ({ ece: r.ece, adaptiveEce: r.adaptiveEce, classwiseEce: r.classwiseEce, meanClasswiseEce: r.meanClasswiseEce, brier: r.brier, classBrier: r.classBrier, nll: r.nll });

/** The report as JSON-friendly data (no per-image arrays; those are in predictions.csv). */
/** One model's metrics as JSON: every record with a jsonKey (intervals as `${jsonKey}Interval`), per class, the confusion matrix. */
export function modelSummaryJson(m: ModelSummary, classNames: readonly string[], registry: MetricRegistry = metricRegistry): Record<string, unknown> {
  const overall = registry.overall().filter((r) => r.jsonKey !== undefined);
  const perClass = registry.perClass().filter((r) => r.jsonKey !== undefined);
  return {
    name: m.name,
    kind: m.kind,
    ...(m.run === undefined ? {} : { run: m.run }),
    ...Object.fromEntries(
      overall.flatMap((r) => {
        const interval = m.intervals[r.key];
        const entry: [string, unknown] = [r.jsonKey!, overallValue(m, r)];
        return r.interval && interval ? [entry, [`${r.jsonKey}Interval`, [interval.lower, interval.upper]]] : [entry];
      }),
    ),
    perClass: classNames.map((c, k) => ({ class: c, ...Object.fromEntries(perClass.map((r) => [r.jsonKey!, classValues(m, r)[k] ?? null])) })),
    confusion: m.metrics.confusion,
  };
}

export function reportSummaryJson(report: EvaluationReport, registry: MetricRegistry = metricRegistry): unknown {
  return {
    split: report.split,
    dataDir: report.dataDir,
    images: report.images.length,
    tta: report.tta,
    classNames: report.classNames,
    ensembleWeights: report.ensembleWeights,
    bootstrap: report.bootstrap,
    ...(report.absentClasses === undefined ? {} : { absentClasses: report.absentClasses.map((k) => report.classNames[k]) }),
    models: report.models.map((m) => modelSummaryJson(m, report.classNames, registry)),
    ...(report.comparisons === undefined || report.comparisons.length === 0 ? {} : { comparisons: report.comparisons }),
    ...(report.operatingPoints === undefined ? {} : { operatingPoints: operatingPointsJson(report.operatingPoints) }),
    ...(report.calibration === undefined
      ? {}
      : {
          calibration: {
            fittedOnEvaluatedSplit: report.calibration.fittedOnEvaluatedSplit,
            models: report.calibration.models.map((m) => ({ name: m.name, temperature: m.temperature, fittedOn: m.fittedOn, before: calibrationJson(m.before), after: calibrationJson(m.after) })),
          },
        }),
    ...Object.fromEntries((report.sections ?? []).map((section) => [section.key, section.json])),
  };
}
