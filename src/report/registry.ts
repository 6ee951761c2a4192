/**
 * The metric registry: every report metric is one record — how it is computed from a model's
 * probabilities, how its cell reads, its results.csv column, its --json key, its direction, and the
 * views it appears in. eval's results (results.csv, results.md, the printed table, --json), the
 * cross-validation report (cv.md, cv.csv, `cv compare`) and training's monitor read the records, so
 * a new metric is one record in `builtInMetrics` (its function beside the others in report/).
 *
 * A record is either overall (one number per model) or per class (one number per class, in class
 * order). `null` is "undefined on these images" (an AUC without positives); files show it empty,
 * tables as '—', JSON as null.
 */
import { UserError } from '../util/index.js';
import { argmaxRows, classificationMetrics, type ClassificationMetrics } from './metrics.js';
import { kappaFromConfusion, meanAbsoluteClassError } from './ordinal.js';
import { calibration, negativeLogLikelihood, oneVsRestAuc, type Calibration, type OneVsRestAuc } from './stats.js';

/**
 * One model's (or an ensemble's) predictions on labelled images. The shared intermediate results
 * (confusion-based metrics, ROC curves, calibration bins) are computed on first use and kept, so
 * records that read the same one cost it once.
 */
export interface MetricInput {
  /** Row-major [n, numClasses] probabilities. */
  readonly probabilities: Float32Array;
  readonly labels: ArrayLike<number>;
  readonly classNames: readonly string[];
  readonly numClasses: number;
  /**
   * The classes scored, in class order: every class, unless the images are of a subset (an external
   * folder without Osteopenia). Per-class values of the other classes are null, and macro averages
   * run over these only (scikit-learn's `labels=` argument).
   */
  readonly classes: readonly number[];
  readonly predictions: Int32Array;
  readonly classification: ClassificationMetrics;
  readonly auc: OneVsRestAuc;
  readonly calibration: Calibration;
}

/** `predictions`, when the caller has them, must be the rows' argmax (ties to the lower class). `classes`: the classes scored (default all). */
export function metricInput(probabilities: Float32Array, labels: ArrayLike<number>, classNames: readonly string[], predictions?: Int32Array, classes?: readonly number[]): MetricInput {
  const numClasses = classNames.length;
  const scored = classes ?? classNames.map((_, k) => k);
  const memo = <T>(make: () => T): (() => T) => {
    let value: T | undefined;
    return () => (value ??= make());
  };
  const predicted = memo(() => predictions ?? argmaxRows(probabilities, numClasses));
  const classification = memo(() => classificationMetrics(labels, predicted(), numClasses));
  const auc = memo(() => oneVsRestAuc(probabilities, labels, numClasses));
  const calibrated = memo(() => calibration(probabilities, labels, numClasses));
  return {
    probabilities,
    labels,
    classNames,
    numClasses,
    classes: scored,
    get predictions() {
      return predicted();
    },
    get classification() {
      return classification();
    },
    get auc() {
      return auc();
    },
    get calibration() {
      return calibrated();
    },
  };
}

/**
 * Where a record appears besides results.csv (when it has a `csvColumn`) and the eval --json
 * summary (when it has a `jsonKey`):
 * - `table`: eval's Markdown table (results.md and the printed table); a per-class record appears in
 *   the per-class section;
 * - `cv`: the pooled out-of-fold metrics of cross-validation, with group-bootstrap intervals
 *   (cv.md, cv.csv, the CV JSON and the paired differences' JSON);
 * - `cvFolds`: the per-fold rows, their mean ± sd and the per-fold paired differences;
 * - `cvDifferences`: the columns of the paired-difference table (cv.md and `cv compare`).
 */
export type MetricView = 'table' | 'cv' | 'cvFolds' | 'cvDifferences';

export type MetricValue = number | null;

interface MetricFields {
  /** Unique name in the registry (camelCase). */
  key: string;
  /** Column header in eval's tables; a function of the class names where the header names a class. */
  label: string | ((classNames: readonly string[]) => string);
  /** Header in cross-validation's narrower tables (default: `label`). */
  shortLabel?: string;
  /** results.csv column; per class: `${csvColumn}_${className}`. Absent: not in results.csv. */
  csvColumn?: string;
  /** Key in the eval --json summary (per class: in each `perClass` entry) and in the CV report (per class: `${jsonKey}${className}`). Absent: in neither. */
  jsonKey?: string;
  higherIsBetter: boolean;
  /**
   * 'proportion': a fraction in [0, 1], shown in percentage points in the CV tables; 'value': any
   * other number (a loss, a count), shown there by `format`.
   */
  scale: 'proportion' | 'value';
  /** Its cell in eval's Markdown tables (and a 'value' metric's in the CV tables). */
  format: (value: MetricValue) => string;
  /** Overall metrics: eval reports a percentile-bootstrap interval over the images beside it (CSV `_ci_low`/`_ci_high`, JSON `${jsonKey}Interval`, the table's "(95% CI)"). */
  interval?: boolean;
  /** The `earlyStopping.metric` name under which training monitors this metric on val (its epoch-row field). */
  monitor?: string;
  views: readonly MetricView[];
}

export interface OverallMetric extends MetricFields {
  perClass?: false;
  compute: (input: MetricInput) => MetricValue;
}

export interface PerClassMetric extends MetricFields {
  perClass: true;
  compute: (input: MetricInput) => MetricValue[];
}

export type MetricRecord = OverallMetric | PerClassMetric;

/** A record's header for the given class names. */
export function metricLabel(record: MetricRecord, classNames: readonly string[]): string {
  return typeof record.label === 'function' ? record.label(classNames) : record.label;
}

/** Whether `value` is better than `previous` in the record's direction (ties are not). */
export function isImprovement(record: MetricRecord, value: number, previous: number): boolean {
  return record.higherIsBetter ? value > previous : value < previous;
}

export class MetricRegistry {
  readonly #records: MetricRecord[] = [];

  constructor(records: readonly MetricRecord[] = []) {
    for (const record of records) this.register(record);
  }

  /** Add a record at the end (records appear in every output in registration order). */
  register(record: MetricRecord): this {
    if (this.#records.some((r) => r.key === record.key)) throw new UserError(`metric '${record.key}' is registered twice`);
    if (record.perClass && record.interval) throw new UserError(`metric '${record.key}': bootstrap intervals are for overall metrics, not per-class ones`);
    const cvView = record.views.find((v) => v.startsWith('cv'));
    if (cvView !== undefined && record.jsonKey === undefined) throw new UserError(`metric '${record.key}' is in the CV view '${cvView}' but has no jsonKey to name it there`);
    const clash = (field: 'csvColumn' | 'jsonKey' | 'monitor') => record[field] !== undefined && this.#records.find((r) => r[field] === record[field]);
    for (const field of ['csvColumn', 'jsonKey', 'monitor'] as const) {
      const other = clash(field);
      if (other) throw new UserError(`metric '${record.key}' has the ${field} '${record[field]}' of metric '${other.key}'`);
    }
    this.#records.push(record);
    return this;
  }

  get(key: string): MetricRecord {
    const record = this.#records.find((r) => r.key === key);
    if (!record) throw new UserError(`unknown metric '${key}'; the metrics are: ${this.keys().join(', ')}`);
    return record;
  }

  /** The record training monitors under `name` (an `earlyStopping.metric` value). */
  monitored(name: string): MetricRecord {
    const record = this.#records.find((r) => r.monitor === name);
    if (!record) throw new UserError(`unknown monitor metric '${name}'; training can monitor: ${this.monitorNames().join(', ')}`);
    return record;
  }

  keys(): string[] {
    return this.#records.map((r) => r.key);
  }

  /** Every record, in registration order. */
  all(): readonly MetricRecord[] {
    return [...this.#records];
  }

  overall(): OverallMetric[] {
    return this.#records.filter((r): r is OverallMetric => !r.perClass);
  }

  perClass(): PerClassMetric[] {
    return this.#records.filter((r): r is PerClassMetric => r.perClass === true);
  }

  /** The records shown in `view`, in registration order. */
  in(view: MetricView): MetricRecord[] {
    return this.#records.filter((r) => r.views.includes(view));
  }

  /** Training's monitor names, the loss first (metrics.csv's column order: val_loss, then the scores). */
  monitorNames(): string[] {
    const monitored = this.#records.filter((r) => r.monitor !== undefined);
    return [...monitored.filter((r) => !r.higherIsBetter), ...monitored.filter((r) => r.higherIsBetter)].map((r) => r.monitor!);
  }
}

/** Per-class values with the unscored classes null. */
const scoredOnly = (input: MetricInput, values: readonly MetricValue[]): MetricValue[] => values.map((v, k) => (input.classes.includes(k) ? v : null));

/** The mean over the scored classes of their defined values (null when none is defined). */
function scoredMean(input: MetricInput, values: readonly MetricValue[]): MetricValue {
  const defined = input.classes.map((k) => values[k] ?? null).filter((v): v is number => v !== null);
  return defined.length === 0 ? null : defined.reduce((a, b) => a + b, 0) / defined.length;
}

const percent = (v: MetricValue): string => (v === null ? '—' : `${(v * 100).toFixed(1)}%`);
const fixed = (digits: number) => (v: MetricValue) => (v === null ? '—' : v.toFixed(digits));

/** Osteopenia, the clinically weak spot, when the classes are osteo's; else the second class. */
export function weakClassIndex(classNames: readonly string[]): number {
  const index = classNames.indexOf('Osteopenia');
  return index >= 0 ? index : 1;
}

/**
 * osteo's metrics, in the order every output lists them. The `as const` keeps each `monitor` name a
 * literal, so the config's `earlyStopping.metric` enum and training's epoch row are checked against
 * these records by the compiler.
 */
export const builtInMetrics = [
  {
    key: 'accuracy',
    label: 'accuracy',
    csvColumn: 'accuracy',
    jsonKey: 'accuracy',
    higherIsBetter: true,
    scale: 'proportion',
    format: percent,
    interval: true,
    monitor: 'valAccuracy',
    views: ['table', 'cv', 'cvFolds', 'cvDifferences'],
    compute: (input: MetricInput) => input.classification.accuracy,
  },
  {
    key: 'balancedAccuracy',
    label: 'balanced accuracy',
    shortLabel: 'balanced acc.',
    csvColumn: 'balanced_accuracy',
    jsonKey: 'balancedAccuracy',
    higherIsBetter: true,
    scale: 'proportion',
    format: percent,
    monitor: 'valBalancedAccuracy',
    views: ['table', 'cv', 'cvFolds', 'cvDifferences'],
    compute: (input: MetricInput) => input.classification.balancedAccuracy,
  },
  {
    key: 'macroF1',
    label: 'macro-F1',
    csvColumn: 'macro_f1',
    jsonKey: 'macroF1',
    higherIsBetter: true,
    scale: 'proportion',
    format: fixed(3),
    monitor: 'valMacroF1',
    views: ['table', 'cv', 'cvFolds', 'cvDifferences'],
    compute: (input: MetricInput) => (input.classes.length === input.numClasses ? input.classification.macroF1 : scoredMean(input, input.classification.perClass.map((c) => c.f1))),
  },
  {
    // The headline table's own column; results.csv and JSON carry every class's recall per class.
    key: 'weakClassRecall',
    label: (classNames: readonly string[]) => `${classNames[weakClassIndex(classNames)] ?? 'class 1'} recall`,
    higherIsBetter: true,
    scale: 'proportion',
    format: percent,
    views: ['table'],
    compute: (input: MetricInput) => (input.classes.includes(weakClassIndex(input.classNames)) ? (input.classification.perClass[weakClassIndex(input.classNames)]?.recall ?? 0) : null),
  },
  {
    key: 'precision',
    label: 'precision',
    perClass: true,
    csvColumn: 'precision',
    jsonKey: 'precision',
    higherIsBetter: true,
    scale: 'proportion',
    format: fixed(3),
    views: ['table'],
    compute: (input: MetricInput) => scoredOnly(input, input.classification.perClass.map((c) => c.precision)),
  },
  {
    key: 'recall',
    label: 'recall',
    perClass: true,
    csvColumn: 'recall',
    jsonKey: 'recall',
    higherIsBetter: true,
    scale: 'proportion',
    format: fixed(3),
    views: ['table', 'cv'],
    compute: (input: MetricInput) => scoredOnly(input, input.classification.perClass.map((c) => c.recall)),
  },
  {
    key: 'f1',
    label: 'F1',
    perClass: true,
    csvColumn: 'f1',
    jsonKey: 'f1',
    higherIsBetter: true,
    scale: 'proportion',
    format: fixed(3),
    views: ['table'],
    compute: (input: MetricInput) => scoredOnly(input, input.classification.perClass.map((c) => c.f1)),
  },
  {
    key: 'support',
    label: 'support',
    perClass: true,
    csvColumn: 'support',
    jsonKey: 'support',
    higherIsBetter: true,
    scale: 'value',
    format: (v: MetricValue) => (v === null ? '—' : String(v)),
    views: ['table'],
    compute: (input: MetricInput) => scoredOnly(input, input.classification.perClass.map((c) => c.support)),
  },
  {
    key: 'macroAuc',
    label: 'macro AUC',
    csvColumn: 'macro_auc',
    jsonKey: 'macroAuc',
    higherIsBetter: true,
    scale: 'proportion',
    format: fixed(3),
    views: ['table', 'cv', 'cvDifferences'],
    compute: (input: MetricInput) => (input.classes.length === input.numClasses ? input.auc.macro : scoredMean(input, input.auc.perClass)),
  },
  {
    key: 'auc',
    label: 'AUC',
    perClass: true,
    csvColumn: 'auc',
    jsonKey: 'auc',
    higherIsBetter: true,
    scale: 'proportion',
    format: fixed(3),
    views: ['table'],
    compute: (input: MetricInput) => scoredOnly(input, input.auc.perClass),
  },
  {
    key: 'ece',
    label: 'ECE',
    csvColumn: 'ece',
    jsonKey: 'ece',
    higherIsBetter: false,
    scale: 'proportion',
    format: fixed(3),
    views: ['table', 'cv'],
    compute: (input: MetricInput) => input.calibration.ece,
  },
  {
    // Training's val loss is this quantity (mean cross-entropy), computed there from the logits.
    key: 'nll',
    label: 'NLL',
    csvColumn: 'nll',
    jsonKey: 'nll',
    higherIsBetter: false,
    scale: 'value',
    format: fixed(4),
    monitor: 'valLoss',
    views: [],
    compute: (input: MetricInput) => negativeLogLikelihood(input.probabilities, input.labels, input.numClasses),
  },
  {
    // Ordinal agreement (report/ordinal.ts): the class index is the ordinal position.
    key: 'quadraticKappa',
    label: 'quadratic κ',
    csvColumn: 'kappa_quadratic',
    jsonKey: 'quadraticKappa',
    higherIsBetter: true,
    scale: 'value',
    format: fixed(3),
    interval: true,
    views: ['table', 'cv', 'cvDifferences'],
    compute: (input: MetricInput) => kappaFromConfusion(input.classification.confusion),
  },
  {
    key: 'meanAbsoluteClassError',
    label: 'MAE (classes)',
    shortLabel: 'MAE',
    csvColumn: 'mae_classes',
    jsonKey: 'meanAbsoluteClassError',
    higherIsBetter: false,
    scale: 'value',
    format: fixed(3),
    interval: true,
    views: ['table', 'cv', 'cvDifferences'],
    compute: (input: MetricInput) => meanAbsoluteClassError(input.labels, input.predictions),
  },
] as const satisfies readonly MetricRecord[];

/** The names training can monitor (`earlyStopping.metric`), as literal types. */
export type MonitorMetric = Extract<(typeof builtInMetrics)[number], { monitor: string }>['monitor'];

/** The registry every consumer reads unless handed another (tests build scratch ones). */
export const metricRegistry = new MetricRegistry(builtInMetrics);

/** `metricRegistry.monitorNames()`, typed for the config's enum. */
export const monitorMetrics = metricRegistry.monitorNames() as [MonitorMetric, ...MonitorMetric[]];
