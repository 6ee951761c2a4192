/**
 * The evaluations a model card reports: `osteo eval` report folders of exactly the card's runs, read
 * from their evaluation.json (the record of what was evaluated and the report's numbers, as
 * `osteo eval --json` prints them). A report on a dataset the runs were trained on is internal; one
 * on any other folder is external validation. The card copies the numbers, it computes none.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readConfigFile } from '../config/index.js';
import { metricLabel, metricRegistry, type MetricRecord } from '../report/index.js';
import type { CheckpointName } from '../runs/index.js';
import { DataError, UserError, printable } from '../util/index.js';
import { defaultEvalOutDir, evaluationRecordFile } from './evaluate.js';
import { pathFromExport } from './paths.js';

export interface CardMetric {
  /** The metric's --json key (its registry record's). */
  key: string;
  label: string;
  value: number | null;
  /** Its 95% percentile-bootstrap interval, for the records that have one. */
  interval: [number, number] | null;
}

export interface CardPerformance {
  name: string;
  kind: 'model' | 'ensemble';
  overall: CardMetric[];
  perClass: { class: string; metrics: CardMetric[] }[];
}

export interface CardCalibrationStats {
  ece: number;
  adaptiveEce: number;
  meanClasswiseEce: number;
  brier: number;
  nll: number;
}

export interface CardEvaluation {
  role: 'internal' | 'external';
  report: string;
  split: string;
  data: string;
  images: number;
  tta: boolean;
  bootstrap: { resamples: number; seed: number };
  ensembleWeights: { mode: string; weights: number[] };
  models: CardPerformance[];
  /** The temperatures and the calibration metrics before → after on the evaluated images; null: the report is uncalibrated. */
  calibration: { fittedOnEvaluatedSplit: boolean; models: { name: string; temperature: number; before: CardCalibrationStats; after: CardCalibrationStats }[] } | null;
  /** The report's screening operating points (thresholds chosen on val, rates on the evaluated split); null where it has none. */
  operatingPoints: CardOperatingPoints | null;
  /** The report's subgroup results (per attribute and group, each model's metrics); null where it has none. */
  subgroups: CardSubgroup[] | null;
  /** An external folder's images that are copies of training images (exact: same pixels; near: perceptual hash), from its leakage count; null for other reports. */
  copies: { images: number; exact: number; near: number; withoutCopies: number; copiedFraction: number } | null;
}

export interface CardSubgroup {
  attribute: string;
  /** Images whose metadata does not record the attribute. */
  notRecorded: number;
  groups: { value: string; images: number; tooSmall: boolean; models: CardPerformance[] }[];
}

/** A rate on the evaluated images with its 95% group-bootstrap interval; null where it is undefined. */
export interface CardRate {
  value: number | null;
  lower: number | null;
  upper: number | null;
}

export interface CardOperatingPoints {
  targets: { sensitivity: number; specificity: number };
  calibrated: boolean;
  fittedOnEvaluatedSplit: boolean;
  points: { model: string; view: string; point: string; threshold: number; sensitivity: CardRate | null; specificity: CardRate | null; ppv: CardRate | null; npv: CardRate | null }[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const numberOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function metricOf(record: MetricRecord, source: Json, classes: readonly string[]): CardMetric {
  const key = record.jsonKey!;
  const interval = source[`${key}Interval`];
  const pair = Array.isArray(interval) && interval.length === 2 && interval.every((v) => typeof v === 'number') ? ([interval[0], interval[1]] as [number, number]) : null;
  return { key, label: metricLabel(record, classes), value: numberOrNull(source[key]), interval: pair };
}

function performanceOf(model: Json, classes: readonly string[], file: string): CardPerformance {
  if (typeof model.name !== 'string' || (model.kind !== 'model' && model.kind !== 'ensemble') || !Array.isArray(model.perClass)) {
    throw new DataError(file, "has a model entry without a name, kind or per-class list: re-run `osteo eval` to write the report again");
  }
  const overall = metricRegistry.overall().filter((r) => r.jsonKey !== undefined);
  const perClass = metricRegistry.perClass().filter((r) => r.jsonKey !== undefined);
  return {
    name: model.name,
    kind: model.kind,
    overall: overall.map((r) => metricOf(r, model, classes)),
    perClass: (model.perClass as unknown[]).filter(isObject).map((row) => ({ class: String(row.class), metrics: perClass.map((r) => metricOf(r, row, classes)) })),
  };
}

function rateOf(value: unknown): CardRate | null {
  return isObject(value) ? { value: numberOrNull(value.value), lower: numberOrNull(value.lower), upper: numberOrNull(value.upper) } : null;
}

/** evaluation.json's operatingPoints, each point of each model and view (their thresholds' sources name machine paths, so they stay out). */
function operatingPointsOf(section: unknown): CardOperatingPoints | null {
  if (!isObject(section) || !Array.isArray(section.models)) return null;
  const targets = isObject(section.targets) ? section.targets : {};
  const points = section.models.filter(isObject).flatMap((m) =>
    (Array.isArray(m.views) ? m.views : []).filter(isObject).flatMap((v) =>
      (Array.isArray(v.points) ? v.points : []).filter(isObject).map((p) => ({
        model: String(m.name),
        view: String(v.name ?? v.view),
        point: String(p.name),
        threshold: Number(p.threshold),
        sensitivity: rateOf(p.sensitivity),
        specificity: rateOf(p.specificity),
        ppv: rateOf(p.ppv),
        npv: rateOf(p.npv),
      })),
    ),
  );
  return { targets: { sensitivity: Number(targets.sensitivity), specificity: Number(targets.specificity) }, calibrated: section.calibrated === true, fittedOnEvaluatedSplit: section.fittedOnEvaluatedSplit === true, points };
}

function subgroupsOf(section: unknown, classes: readonly string[], file: string): CardSubgroup[] | null {
  if (!isObject(section) || !Array.isArray(section.attributes)) return null;
  return section.attributes.filter(isObject).map((a) => ({
    attribute: String(a.attribute),
    notRecorded: Number(a.notRecorded ?? 0),
    groups: (Array.isArray(a.groups) ? a.groups : []).filter(isObject).map((g) => ({
      value: String(g.value),
      images: Number(g.images),
      tooSmall: g.tooSmall === true,
      models: (Array.isArray(g.models) ? g.models : []).filter(isObject).map((m) => performanceOf(m, classes, file)),
    })),
  }));
}

function copiesOf(external: unknown): CardEvaluation['copies'] {
  const leakage = isObject(external) && isObject(external.leakage) ? external.leakage : undefined;
  const total = leakage !== undefined && isObject(leakage.total) ? leakage.total : undefined;
  if (leakage === undefined || total === undefined) return null;
  return { images: Number(total.images), exact: Number(total.exact), near: Number(total.near), withoutCopies: Number(total.withoutCopies), copiedFraction: Number(leakage.copiedFraction) };
}

function statsOf(value: unknown): CardCalibrationStats {
  const v = isObject(value) ? value : {};
  return { ece: Number(v.ece), adaptiveEce: Number(v.adaptiveEce), meanClasswiseEce: Number(v.meanClasswiseEce), brier: Number(v.brier), nll: Number(v.nll) };
}

function calibrationOf(summary: Json): CardEvaluation['calibration'] {
  const section = summary.calibration;
  if (!isObject(section) || !Array.isArray(section.models)) return null;
  return {
    fittedOnEvaluatedSplit: section.fittedOnEvaluatedSplit === true,
    models: section.models.filter(isObject).map((m) => ({ name: String(m.name), temperature: Number(m.temperature), before: statsOf(m.before), after: statsOf(m.after) })),
  };
}

/**
 * One report folder of exactly `runs` (in order, same checkpoint): refused, naming the folder and
 * the file, when it is not an osteo eval report, evaluates other runs, or lacks its numbers.
 */
export async function readCardEvaluation(report: string, runs: readonly string[], checkpoint: CheckpointName, trainedOn: readonly string[], dir: string, label = `--eval ${report}`): Promise<CardEvaluation> {
  const file = join(report, evaluationRecordFile);
  if (!existsSync(file)) throw new UserError(`${label} is not an osteo eval report: it has no ${evaluationRecordFile} (give the folder \`osteo eval\` wrote)`);
  const json = await readConfigFile(file, 'evaluation record');
  if (!isObject(json) || json.format !== 'osteo-evaluation' || !Array.isArray(json.runs)) throw new DataError(file, 'is not an osteo evaluation record');
  const evaluated = json.runs.map((run) => resolve(String(run)));
  if (evaluated.length !== runs.length || evaluated.some((run, i) => run !== runs[i]) || json.checkpoint !== checkpoint) {
    throw new UserError(
      `${label} evaluates ${evaluated.map(printable).join(', ')} (${String(json.checkpoint)} checkpoint), not ${runs.map(printable).join(', ')} (${checkpoint}): ` +
        'give the report of exactly these runs, in this order (`osteo eval --run …`)',
    );
  }
  const summary = json.summary;
  if (!isObject(summary) || !Array.isArray(summary.models) || !Array.isArray(summary.classNames)) {
    throw new DataError(file, 'holds no summary of the report’s numbers: re-run `osteo eval` on these runs to write the report again');
  }
  const classes = summary.classNames.map(String);
  const bootstrap = isObject(summary.bootstrap) ? summary.bootstrap : {};
  const weights = isObject(summary.ensembleWeights) ? summary.ensembleWeights : {};
  const data = resolve(String(json.data));
  return {
    role: json.split === 'external' || !trainedOn.includes(data) ? 'external' : 'internal',
    report: pathFromExport(dir, report),
    split: String(json.split),
    data: pathFromExport(dir, data),
    images: Number(summary.images),
    tta: summary.tta === true,
    bootstrap: { resamples: Number(bootstrap.resamples), seed: Number(bootstrap.seed) },
    ensembleWeights: { mode: String(weights.mode), weights: Array.isArray(weights.weights) ? weights.weights.map(Number) : [] },
    models: summary.models.filter(isObject).map((m) => performanceOf(m, classes, file)),
    calibration: calibrationOf(summary),
    operatingPoints: operatingPointsOf(json.operatingPoints),
    subgroups: subgroupsOf(json.subgroups, classes, file),
    copies: copiesOf(json.external),
  };
}

/**
 * The given reports, or else the runs' default test report when it exists and is of these runs;
 * without an internal one, `notEvaluated` says how to make it.
 */
export async function readCardEvaluations(options: {
  runs: readonly string[];
  checkpoint: CheckpointName;
  reports?: readonly string[];
  trainedOn: readonly string[];
  dir: string;
}): Promise<{ evaluations: CardEvaluation[]; notEvaluated: string | null }> {
  const { runs, checkpoint, trainedOn, dir } = options;
  const evaluations: CardEvaluation[] = [];
  let reason: string | undefined;
  if (options.reports !== undefined && options.reports.length > 0) {
    for (const report of options.reports) evaluations.push(await readCardEvaluation(resolve(report), runs, checkpoint, trainedOn, dir));
  } else {
    const report = defaultEvalOutDir([...runs], 'test', checkpoint);
    try {
      if (existsSync(report)) evaluations.push(await readCardEvaluation(report, runs, checkpoint, trainedOn, dir, 'the default report'));
    } catch (error) {
      if (!(error instanceof UserError) && !(error instanceof DataError)) throw error;
      reason = `the report beside the runs (${pathFromExport(dir, report)}) cannot be used: ${error.message}`;
    }
  }
  if (evaluations.some((e) => e.role === 'internal')) return { evaluations, notEvaluated: null };
  const why = reason === undefined ? '' : ` (${reason})`;
  return { evaluations, notEvaluated: `not evaluated on the runs' own test split${why}: run \`osteo eval --run RUN… --data DATA\` on these runs, in this order, then write the card again (\`osteo card --run RUN… --eval REPORT\`)` };
}
