/**
 * The cross-validation report from the jobs' out-of-fold predictions: per-fold metrics, their mean ±
 * sd, pooled out-of-fold metrics with group-bootstrap 95% intervals, the soft-vote ensemble out of
 * fold, and paired differences between entries on the same folds.
 *
 * The bootstrap here resamples duplicate groups (near duplicates stay together, as they do in the
 * folds) and evaluates every metric and every entry on the same resamples, so a difference between
 * two entries gets a paired interval. report/ has only a bootstrap over images; this one is
 * composed from report/'s metric registry (which metrics, their names and headers: the records in
 * its `cv`, `cvFolds` and `cvDifferences` views) and its percentile.
 */
import { classNames, numClasses } from '../data/index.js';
import { argmaxRows, metricInput, metricLabel, metricRegistry, percentile, softVote, type MetricRecord, type MetricRegistry, type MetricView } from '../report/index.js';
import { createRng, formatCsv, UserError } from '../util/index.js';

/** One job's held-out predictions (result.json). */
export interface JobPredictions {
  job: string;
  repeat: number;
  fold: number;
  entry: string;
  paths: string[];
  groups: string[];
  labels: number[];
  /** Row-major [n, 3] softmax probabilities. */
  probabilities: number[];
}

/** One number of the CV report: a record's value, or one class's value of a per-class record. */
interface CvColumn {
  /** Its key in the report and its cv.csv column: the record's jsonKey (per class: followed by the class name, `recallNormal`). */
  name: string;
  record: MetricRecord;
  classIndex?: number;
  header: string;
}

function cvColumns(registry: MetricRegistry, view: MetricView): CvColumn[] {
  return registry.in(view).flatMap((record): CvColumn[] => {
    const label = record.shortLabel ?? metricLabel(record, classNames);
    // The registry refuses a record in a CV view without a jsonKey.
    const name = record.jsonKey!;
    if (!record.perClass) return [{ name, record, header: label }];
    return classNames.map((c, k) => ({ name: `${name}${c}`, record, classIndex: k, header: `${c} ${label}` }));
  });
}

const names = (columns: readonly CvColumn[]) => columns.map((c) => c.name);

/** The columns of each part of the report. */
interface CvMetrics {
  pooled: CvColumn[];
  folds: CvColumn[];
  differences: CvColumn[];
}

const cvMetrics = (registry: MetricRegistry): CvMetrics => ({ pooled: cvColumns(registry, 'cv'), folds: cvColumns(registry, 'cvFolds'), differences: cvColumns(registry, 'cvDifferences') });

/** The pooled metrics' names (the registry's `cv` view), in report order. */
export const pooledMetricNames: readonly string[] = names(cvColumns(metricRegistry, 'cv'));

export interface Interval {
  value: number;
  lower: number;
  upper: number;
}

export interface CvRow {
  entry: string;
  kind: 'model' | 'ensemble';
  perFold: { repeat: number; fold: number; images: number; metrics: Record<string, number> }[];
  foldMean: Record<string, number>;
  foldSd: Record<string, number>;
  pooled: Record<string, Interval>;
  confusion: number[][];
}

export interface CvDifference {
  /** `b − a`, both on the same folds and the same bootstrap resamples. */
  a: string;
  b: string;
  pooled: Record<string, Interval>;
  foldMean: Record<string, number>;
  foldSd: Record<string, number>;
}

export interface CvReport {
  images: number;
  folds: number;
  repeats: number;
  resamples: number;
  confidence: number;
  rows: CvRow[];
  differences: CvDifference[];
}

export const ensembleEntry = 'ensemble (soft vote)';

/** The columns' values on these predictions; an undefined value (an AUC without positives) is NaN, left out of intervals. */
function metricsOf(probabilities: Float32Array, labels: readonly number[], columns: readonly CvColumn[]): Record<string, number> {
  const input = metricInput(probabilities, labels, classNames);
  const computed = new Map<MetricRecord, ReturnType<MetricRecord['compute']>>();
  const out: Record<string, number> = {};
  for (const column of columns) {
    if (!computed.has(column.record)) computed.set(column.record, column.record.compute(input));
    const value = computed.get(column.record)!;
    out[column.name] = (Array.isArray(value) ? value[column.classIndex!] : value) ?? Number.NaN;
  }
  return out;
}

const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const sd = (xs: readonly number[]) => (xs.length < 2 ? 0 : Math.sqrt(xs.reduce((s, x) => s + (x - mean(xs)) ** 2, 0) / (xs.length - 1)));

/** Out-of-fold probabilities of one entry per repeat, in the order of `paths`. */
interface Pooled {
  entry: string;
  kind: 'model' | 'ensemble';
  byRepeat: Float32Array[];
  perFold: CvRow['perFold'];
}

/** Every entry's (and, with several, the ensemble's) pooled out-of-fold predictions, checked for a complete, consistent cover. */
function poolPredictions(jobs: readonly JobPredictions[], entries: readonly string[], repeats: number, metrics: CvMetrics): { paths: string[]; labels: number[]; groups: string[]; pooled: Pooled[] } {
  const first = jobs.filter((j) => j.repeat === 0 && j.entry === entries[0]);
  const paths = first.flatMap((j) => j.paths).sort();
  const position = new Map(paths.map((p, i) => [p, i]));
  const labels = new Array<number>(paths.length);
  const groups = new Array<string>(paths.length);
  for (const j of first) j.paths.forEach((p, i) => ((labels[position.get(p)!] = j.labels[i]!), (groups[position.get(p)!] = j.groups[i]!)));
  const pooled: Pooled[] = entries.map((entry) => ({ entry, kind: 'model', byRepeat: [], perFold: [] }));
  for (const [e, entry] of entries.entries()) {
    for (let r = 0; r < repeats; r++) {
      const probabilities = new Float32Array(paths.length * numClasses).fill(Number.NaN);
      for (const job of jobs.filter((j) => j.entry === entry && j.repeat === r).sort((a, b) => a.fold - b.fold)) {
        job.paths.forEach((p, i) => {
          const at = position.get(p);
          if (at === undefined) throw new UserError(`job ${job.job} predicts ${p}, which repeat 1 of ${entries[0]} never held out: the jobs come from different data`);
          for (let k = 0; k < numClasses; k++) probabilities[at * numClasses + k] = job.probabilities[i * numClasses + k]!;
        });
        const fold = Float32Array.from(job.probabilities);
        pooled[e]!.perFold.push({ repeat: r, fold: job.fold, images: job.paths.length, metrics: metricsOf(fold, job.labels, metrics.folds) });
      }
      if (probabilities.some(Number.isNaN)) throw new UserError(`repeat ${r + 1} of ${entry} does not predict every image out of fold: the jobs come from different data`);
      pooled[e]!.byRepeat.push(probabilities);
    }
  }
  if (entries.length > 1) {
    const ensemble: Pooled = { entry: ensembleEntry, kind: 'ensemble', byRepeat: [], perFold: [] };
    for (let r = 0; r < repeats; r++) ensemble.byRepeat.push(softVote(pooled.map((p) => p.byRepeat[r]!)));
    for (const job of jobs.filter((j) => j.entry === entries[0])) {
      const members = entries.map((entry) => Float32Array.from(jobs.find((j) => j.entry === entry && j.repeat === job.repeat && j.fold === job.fold)!.probabilities));
      ensemble.perFold.push({ repeat: job.repeat, fold: job.fold, images: job.paths.length, metrics: metricsOf(softVote(members), job.labels, metrics.folds) });
    }
    pooled.push(ensemble);
  }
  for (const p of pooled) p.perFold.sort((a, b) => a.repeat - b.repeat || a.fold - b.fold);
  return { paths, labels, groups, pooled };
}

/** The metrics of one entry on the images at `indices`, averaged over repeats. */
function resampledMetrics(p: Pooled, labels: readonly number[], indices: readonly number[], columns: readonly CvColumn[]): Record<string, number> {
  const sampledLabels = indices.map((i) => labels[i]!);
  const perRepeat = p.byRepeat.map((probabilities) => {
    const sampled = new Float32Array(indices.length * numClasses);
    indices.forEach((i, j) => sampled.set(probabilities.subarray(i * numClasses, (i + 1) * numClasses), j * numClasses));
    return metricsOf(sampled, sampledLabels, columns);
  });
  return Object.fromEntries(names(columns).map((n) => [n, mean(perRepeat.map((m) => m[n]!))]));
}

function interval(value: number, samples: number[], confidence: number): Interval {
  const finite = samples.filter(Number.isFinite).sort((a, b) => a - b);
  const tail = (1 - confidence) / 2;
  return { value, lower: percentile(finite, tail), upper: percentile(finite, 1 - tail) };
}

function foldDifferences(a: Pooled, b: Pooled, columns: readonly CvColumn[]): { foldMean: Record<string, number>; foldSd: Record<string, number> } {
  const foldMean: Record<string, number> = {};
  const foldSd: Record<string, number> = {};
  for (const name of names(columns)) {
    const diffs = b.perFold.map((f, i) => f.metrics[name]! - a.perFold[i]!.metrics[name]!);
    foldMean[name] = mean(diffs);
    foldSd[name] = sd(diffs);
  }
  return { foldMean, foldSd };
}

/**
 * The report of a complete set of jobs. `entries` fixes the row order; `pairs` lists the
 * differences to report (default: every later entry and the ensemble against the first entry).
 */
export function buildCvReport(
  jobs: readonly JobPredictions[],
  settings: { entries: readonly string[]; folds: number; repeats: number; seed: number; resamples: number; confidence?: number; metrics?: MetricRegistry },
): CvReport {
  const confidence = settings.confidence ?? 0.95;
  const metrics = cvMetrics(settings.metrics ?? metricRegistry);
  const pooledNames = names(metrics.pooled);
  const { labels, groups, pooled } = poolPredictions(jobs, settings.entries, settings.repeats, metrics);
  const all = labels.map((_, i) => i);
  const point = pooled.map((p) => resampledMetrics(p, labels, all, metrics.pooled));
  const members = new Map<string, number[]>();
  groups.forEach((g, i) => members.set(g, [...(members.get(g) ?? []), i]));
  const groupList = [...members.values()];
  const rng = createRng(settings.seed);
  const samples = pooled.map(() => Object.fromEntries(pooledNames.map((n) => [n, [] as number[]])));
  for (let s = 0; s < settings.resamples; s++) {
    const indices: number[] = [];
    for (let g = 0; g < groupList.length; g++) indices.push(...groupList[Math.floor(rng.next() * groupList.length)]!);
    pooled.forEach((p, e) => {
      const m = resampledMetrics(p, labels, indices, metrics.pooled);
      for (const n of pooledNames) samples[e]![n]!.push(m[n]!);
    });
  }
  const rows: CvRow[] = pooled.map((p, e) => {
    const foldMean: Record<string, number> = {};
    const foldSd: Record<string, number> = {};
    for (const n of names(metrics.folds)) {
      const xs = p.perFold.map((f) => f.metrics[n]!);
      foldMean[n] = mean(xs);
      foldSd[n] = sd(xs);
    }
    const confusion = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
    for (const probabilities of p.byRepeat) {
      const predictions = argmaxRows(probabilities, numClasses);
      labels.forEach((label, i) => confusion[label]![predictions[i]!]!++);
    }
    return {
      entry: p.entry,
      kind: p.kind,
      perFold: p.perFold,
      foldMean,
      foldSd,
      pooled: Object.fromEntries(pooledNames.map((n) => [n, interval(point[e]![n]!, samples[e]![n]!, confidence)])),
      confusion,
    };
  });
  const differences: CvDifference[] = pooled.slice(1).map((b, i) => {
    const e = i + 1;
    const diffSamples = (n: string) => samples[e]![n]!.map((x, s) => x - samples[0]![n]![s]!);
    return {
      a: pooled[0]!.entry,
      b: b.entry,
      pooled: Object.fromEntries(pooledNames.map((n) => [n, interval(point[e]![n]! - point[0]![n]!, diffSamples(n), confidence)])),
      ...foldDifferences(pooled[0]!, b, metrics.folds),
    };
  });
  return { images: labels.length, folds: settings.folds, repeats: settings.repeats, resamples: settings.resamples, confidence, rows, differences };
}

/**
 * Paired differences `B − A` between two CV reports' jobs on the same folds: rows with the same name
 * are paired (one config against another), or, when no name is shared, B's rows against A's first.
 */
export function compareCvJobs(
  a: { jobs: readonly JobPredictions[]; entries: readonly string[]; label: string },
  b: { jobs: readonly JobPredictions[]; entries: readonly string[]; label: string },
  settings: { folds: number; repeats: number; seed: number; resamples: number; metrics?: MetricRegistry },
): CvDifference[] {
  const shared = b.entries.filter((e) => a.entries.includes(e));
  const pairs = shared.length > 0 ? shared.map((e) => [e, e] as const) : b.entries.map((e) => [a.entries[0]!, e] as const);
  return pairs.map(([ea, eb]) => {
    const nameA = `${a.label}: ${ea}`;
    const nameB = `${b.label}: ${eb}`;
    const rename = (jobs: readonly JobPredictions[], from: string, to: string) => jobs.filter((j) => j.entry === from).map((j) => ({ ...j, entry: to }));
    const report = buildCvReport([...rename(a.jobs, ea, nameA), ...rename(b.jobs, eb, nameB)], { entries: [nameA, nameB], ...settings });
    return report.differences[0]!;
  });
}

const points = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}` : '—');
const signedPoints = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}` : '—');

/** A value in a CV table: a proportion in percentage points, any other number by its record's format. */
function cvCell(column: CvColumn, x: number, signed = false): string {
  if (column.record.scale === 'proportion') return signed ? signedPoints(x) : points(x);
  if (!Number.isFinite(x)) return '—';
  return `${signed && x >= 0 ? '+' : ''}${column.record.format(x)}`;
}

const withCi = (column: CvColumn, i: Interval, signed = false) => `${cvCell(column, i.value, signed)} [${cvCell(column, i.lower, signed)}, ${cvCell(column, i.upper, signed)}]`;

/** The paired differences as Markdown (points; the CI excluding 0 is the evidence that B differs from A). */
export function formatDifferences(differences: readonly CvDifference[], confidence = 0.95, registry: MetricRegistry = metricRegistry): string {
  const { differences: columns, folds } = cvMetrics(registry);
  const perFold = folds[0];
  const headers = columns.map((c, i) => (i === 0 ? `${c.header} [${confidence * 100}% CI]` : c.header));
  const lines = [
    `| B − A (points) | ${headers.join(' | ')} |${perFold ? ` per-fold Δ ${perFold.header}, mean ± sd |` : ''}`,
    `|---|${[...columns, ...(perFold ? [perFold] : [])].map(() => '---').join('|')}|`,
  ];
  for (const d of differences) {
    const cells = columns.map((c) => withCi(c, d.pooled[c.name]!, true));
    const foldCell = perFold ? ` ${cvCell(perFold, d.foldMean[perFold.name]!, true)} ± ${cvCell(perFold, d.foldSd[perFold.name]!)} |` : '';
    lines.push(`| ${d.b} − ${d.a} | ${cells.join(' | ')} |${foldCell}`);
  }
  return lines.join('\n');
}

/** cv.md: pooled table, per-fold table, differences. */
export function formatCvReport(report: CvReport, context: { data: string; plan: string }, registry: MetricRegistry = metricRegistry): string {
  const { pooled, folds } = cvMetrics(registry);
  const ci = `${report.confidence * 100}% CI`;
  const lines = [
    '# osteo cv',
    '',
    `${report.folds}-fold cross-validation${report.repeats > 1 ? `, ${report.repeats} repeats` : ''} over the duplicate groups of ${context.data}: ${report.images} distinct images, each predicted once per repeat by a model that never saw it or a copy of it (plan ${context.plan}).`,
    '',
    `## Pooled out-of-fold metrics (%, ${ci}: bootstrap over duplicate groups, ${report.resamples} resamples)`,
    '',
    `| model | ${pooled.map((c) => c.header).join(' | ')} |`,
    `|---|${pooled.map(() => '---').join('|')}|`,
  ];
  for (const r of report.rows) {
    const cells = pooled.map((c) => withCi(c, r.pooled[c.name]!));
    lines.push(`| ${r.entry} | ${cells.join(' | ')} |`);
  }
  lines.push('', '## Per fold (%)', '', `| model | repeat | fold | images | ${folds.map((c) => c.header).join(' | ')} |`, `|---|---|---|---|${folds.map(() => '---').join('|')}|`);
  for (const r of report.rows) {
    for (const f of r.perFold) lines.push(`| ${r.entry} | ${f.repeat + 1} | ${f.fold + 1} | ${f.images} | ${folds.map((c) => cvCell(c, f.metrics[c.name]!)).join(' | ')} |`);
    lines.push(`| ${r.entry} | mean ± sd | | | ${folds.map((c) => `${cvCell(c, r.foldMean[c.name]!)} ± ${cvCell(c, r.foldSd[c.name]!)}`).join(' | ')} |`);
  }
  if (report.differences.length > 0) {
    lines.push('', '## Paired differences on the same folds', '', formatDifferences(report.differences, report.confidence, registry));
  }
  return lines.join('\n') + '\n';
}

/** cv.csv: one row per fold and one pooled row per entry. */
export function cvCsv(report: CvReport, registry: MetricRegistry = metricRegistry): string {
  const pooledNames = names(cvMetrics(registry).pooled);
  const header = ['model', 'kind', 'repeat', 'fold', 'images', ...pooledNames.flatMap((n) => [n, `${n}_ci_low`, `${n}_ci_high`])];
  const rows: (string | number)[][] = [];
  const round = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? '' : Number(x.toFixed(6)));
  for (const r of report.rows) {
    for (const f of r.perFold) rows.push([r.entry, 'fold', f.repeat + 1, f.fold + 1, f.images, ...pooledNames.flatMap((n) => [round(f.metrics[n]), '', ''])]);
    rows.push([r.entry, 'pooled', '', '', report.images, ...pooledNames.flatMap((n) => [round(r.pooled[n]!.value), round(r.pooled[n]!.lower), round(r.pooled[n]!.upper)])]);
  }
  return formatCsv([header, ...rows]);
}
