/**
 * Screening operating points on the binary views (report/views.ts). A view's score is the summed
 * probability of its positive classes and an image is called positive when its score is ≥ the
 * threshold, as scikit-learn's roc_curve counts. Thresholds are chosen on one split (val) by three
 * rules — a target sensitivity, a target specificity, Youden's J — and scored on another (test):
 * sensitivity, specificity, PPV and NPV with group-bootstrap intervals, the view's ROC and
 * precision-recall curves, and its decision curve.
 */
import { UserError } from '../util/index.js';
import { percentile, rocCurve, type RandomSource } from './stats.js';
import { binaryScores, binaryViews, type BinaryView } from './views.js';

export interface ScreeningTargets {
  /** The sensitivity the `sens` point reaches on val, in (0, 1). */
  sensitivity: number;
  /** The specificity the `spec` point reaches on val, in (0, 1). */
  specificity: number;
}

export type OperatingRule = 'sensitivity' | 'specificity' | 'youden';

export interface BinaryCounts {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

/** Counts and rates at one threshold; a rate whose denominator is 0 is null (undefined, not 0). */
export interface BinaryRates extends BinaryCounts {
  sensitivity: number | null;
  specificity: number | null;
  ppv: number | null;
  npv: number | null;
}

export interface OperatingPoint {
  /** `sens90`, `spec90`, `youden`: what `osteo predict --operating-point` names. */
  name: string;
  rule: OperatingRule;
  /** The target of a sensitivity or specificity rule; null for Youden's J. */
  target: number | null;
  threshold: number;
  /** The rates on the split the threshold was chosen on. */
  fitted: BinaryRates;
}

export interface ViewOperatingPoints {
  view: BinaryView['key'];
  name: string;
  positiveClasses: number[];
  points: OperatingPoint[];
}

/** One model's thresholds on every binary view, and the targets they were chosen for. */
export interface FittedOperatingPoints {
  targets: ScreeningTargets;
  views: ViewOperatingPoints[];
}

const ratio = (a: number, b: number): number | null => (b === 0 ? null : a / b);

export function ratesFromCounts(counts: BinaryCounts): BinaryRates {
  const { tp, fp, tn, fn } = counts;
  return { tp, fp, tn, fn, sensitivity: ratio(tp, tp + fn), specificity: ratio(tn, tn + fp), ppv: ratio(tp, tp + fp), npv: ratio(tn, tn + fn) };
}

export function countsAt(scores: ArrayLike<number>, positive: ArrayLike<boolean>, threshold: number): BinaryCounts {
  const counts = { tp: 0, fp: 0, tn: 0, fn: 0 };
  for (let i = 0; i < scores.length; i++) {
    const called = scores[i]! >= threshold;
    if (positive[i] && called) counts.tp++;
    else if (positive[i]) counts.fn++;
    else if (called) counts.fp++;
    else counts.tn++;
  }
  return counts;
}

export function ratesAt(scores: ArrayLike<number>, positive: ArrayLike<boolean>, threshold: number): BinaryRates {
  return ratesFromCounts(countsAt(scores, positive, threshold));
}

/**
 * PPV and NPV at a prevalence π instead of the split's own (Bayes' rule):
 * PPV = sens·π / (sens·π + (1 − spec)(1 − π)), NPV = spec(1 − π) / (spec(1 − π) + (1 − sens)π).
 */
export function predictiveValuesAt(sensitivity: number | null, specificity: number | null, prevalence: number): { ppv: number | null; npv: number | null } {
  if (sensitivity === null || specificity === null) return { ppv: null, npv: null };
  const truePositive = sensitivity * prevalence;
  const trueNegative = specificity * (1 - prevalence);
  return { ppv: ratio(truePositive, truePositive + (1 - specificity) * (1 - prevalence)), npv: ratio(trueNegative, trueNegative + (1 - sensitivity) * prevalence) };
}

/** `sens90`, `spec92.5`, `youden`. */
export function operatingPointName(rule: OperatingRule, target: number | null): string {
  if (rule === 'youden') return 'youden';
  return `${rule === 'sensitivity' ? 'sens' : 'spec'}${Number((target! * 100).toFixed(2))}`;
}

export function checkTarget(what: 'sensitivity' | 'specificity', target: number): void {
  if (!(Number.isFinite(target) && target > 0 && target < 1)) throw new UserError(`the target ${what} ${target} is outside (0, 1): give a fraction such as 0.9`);
}

/** The distinct scores, highest first, with the true and false positives at each (called: score ≥ it). */
function thresholdSteps(scores: ArrayLike<number>, positive: ArrayLike<boolean>): { thresholds: number[]; tp: number[]; fp: number[] } {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  const thresholds: number[] = [];
  const tp: number[] = [];
  const fp: number[] = [];
  let [t, f] = [0, 0];
  for (let k = 0; k < order.length; ) {
    const threshold = scores[order[k]!]!;
    for (; k < order.length && scores[order[k]!]! === threshold; k++) {
      if (positive[order[k]!]) t++;
      else f++;
    }
    thresholds.push(threshold);
    tp.push(t);
    fp.push(f);
  }
  return { thresholds, tp, fp };
}

/**
 * The three operating points of one binary labelling. At a target sensitivity: the highest threshold
 * whose sensitivity is ≥ the target (the most specific such point). At a target specificity: the
 * lowest threshold whose specificity is ≥ the target (the most sensitive such point); when even the
 * top score's ties cost more specificity than that, it is scikit-learn's first roc_curve threshold,
 * the top score + 1, which calls no image positive (sensitivity 0: the model cannot reach the
 * target). Youden's J: the score threshold of the largest sensitivity + specificity − 1, the highest
 * among ties. `where` names the split and view in a refusal.
 */
export function chooseThresholds(scores: ArrayLike<number>, positive: ArrayLike<boolean>, targets: ScreeningTargets, where: string): OperatingPoint[] {
  checkTarget('sensitivity', targets.sensitivity);
  checkTarget('specificity', targets.specificity);
  const steps = thresholdSteps(scores, positive);
  const positives = steps.tp.at(-1) ?? 0;
  const negatives = steps.fp.at(-1) ?? 0;
  if (positives === 0 || negatives === 0) throw new UserError(`${where} has ${positives} positive and ${negatives} negative images: a threshold needs both`);
  const last = steps.thresholds.length - 1;
  const point = (rule: OperatingRule, target: number | null, k: number): OperatingPoint => {
    const [tp, fp, threshold]: [number, number, number] = k < 0 ? [0, 0, steps.thresholds[0]! + 1] : [steps.tp[k]!, steps.fp[k]!, steps.thresholds[k]!];
    return { name: operatingPointName(rule, target), rule, target, threshold, fitted: ratesFromCounts({ tp, fp, tn: negatives - fp, fn: positives - tp }) };
  };
  const bySensitivity = steps.tp.findIndex((tp) => tp / positives >= targets.sensitivity);
  let bySpecificity = -1;
  for (let k = 0; k <= last && (negatives - steps.fp[k]!) / negatives >= targets.specificity; k++) bySpecificity = k;
  let byYouden = 0;
  const youden = (k: number) => steps.tp[k]! / positives - steps.fp[k]! / negatives;
  for (let k = 1; k <= last; k++) if (youden(k) > youden(byYouden)) byYouden = k;
  return [point('sensitivity', targets.sensitivity, bySensitivity), point('specificity', targets.specificity, bySpecificity), point('youden', null, byYouden)];
}

/**
 * The operating points of every binary view, chosen on `probabilities` (one split's, usually val's).
 * Every class must be present: a view's sensitivity measured without one of its positive classes
 * (low bone density without Osteopenia) or a specificity without one of its negative classes is not
 * the one the threshold will meet. `where` names the split in the refusal.
 */
export function fitOperatingPoints(probabilities: Float32Array, labels: ArrayLike<number>, classNames: readonly string[], targets: ScreeningTargets, where: string): FittedOperatingPoints {
  requireEveryClass(labels, classNames, where);
  const views = binaryViews(classNames).map((view) => {
    const { scores, positive } = binaryScores(view, probabilities, labels, classNames.length);
    return { view: view.key, name: view.name, positiveClasses: view.positiveClasses, points: chooseThresholds(scores, positive, targets, `${where}, ${view.name}`) };
  });
  return { targets: { ...targets }, views };
}

/** Refuses a split without an image of every class (see fitOperatingPoints), naming the split and the classes. */
export function requireEveryClass(labels: ArrayLike<number>, classNames: readonly string[], where: string): void {
  const present = new Set(Array.from(labels));
  const absent = classNames.filter((_, c) => !present.has(c));
  if (absent.length === 0) return;
  throw new UserError(
    `${where} has no ${absent.join(' and ')} image, so the screening thresholds cannot be chosen on it: the sensitivity and specificity they are chosen for would leave that class out; re-split so that every class is in val (\`osteo data split\`)`,
  );
}

export interface PrecisionRecallCurve {
  /** From (recall 0, precision 1), one point per distinct threshold, highest first (scikit-learn's precision_recall_curve, reversed). */
  recall: number[];
  precision: number[];
  /** Σ (R_k − R_{k−1}) P_k, scikit-learn's average_precision_score; null without positives. */
  averagePrecision: number | null;
}

export function precisionRecallCurve(scores: ArrayLike<number>, positive: ArrayLike<boolean>): PrecisionRecallCurve {
  const steps = thresholdSteps(scores, positive);
  const positives = steps.tp.at(-1) ?? 0;
  const recall = [0];
  const precision = [1];
  let area = 0;
  steps.thresholds.forEach((_, k) => {
    const r = positives === 0 ? 1 : steps.tp[k]! / positives;
    const p = steps.tp[k]! / (steps.tp[k]! + steps.fp[k]!);
    area += (r - recall.at(-1)!) * p;
    recall.push(r);
    precision.push(p);
  });
  return { recall, precision, averagePrecision: positives === 0 ? null : area };
}

export interface DecisionCurve {
  /** Threshold probabilities pt: 0.01, 0.02, …, 0.99. */
  thresholds: number[];
  /** TP/n − FP/n · pt/(1 − pt), calling positive a score ≥ pt. */
  netBenefit: number[];
  /** Calling everyone positive: prevalence − (1 − prevalence) · pt/(1 − pt). */
  treatAll: number[];
  /** Calling no one positive: 0. */
  treatNone: number[];
}

export const decisionThresholds: readonly number[] = Array.from({ length: 99 }, (_, k) => Number(((k + 1) / 100).toFixed(2)));

/** Vickers & Elkin's decision curve: the net benefit of acting on the score at each threshold probability. */
export function decisionCurve(scores: ArrayLike<number>, positive: ArrayLike<boolean>, thresholds: readonly number[] = decisionThresholds): DecisionCurve {
  const n = scores.length;
  let positives = 0;
  for (let i = 0; i < n; i++) if (positive[i]) positives++;
  const netBenefit: number[] = [];
  const treatAll: number[] = [];
  for (const pt of thresholds) {
    const odds = pt / (1 - pt);
    const { tp, fp } = countsAt(scores, positive, pt);
    netBenefit.push(n === 0 ? 0 : tp / n - (fp / n) * odds);
    treatAll.push(n === 0 ? 0 : positives / n - ((n - positives) / n) * odds);
  }
  return { thresholds: [...thresholds], netBenefit, treatAll, treatNone: thresholds.map(() => 0) };
}

/** A value on all images and its percentile-bootstrap interval (null bounds: undefined on every resample). */
export interface IntervalValue {
  value: number | null;
  lower: number | null;
  upper: number | null;
}

export interface PointEvaluation {
  name: string;
  rule: OperatingRule;
  target: number | null;
  threshold: number;
  counts: BinaryCounts;
  sensitivity: IntervalValue;
  specificity: IntervalValue;
  ppv: IntervalValue;
  npv: IntervalValue;
  /** PPV and NPV at the prevalence asked for (from this split's sensitivity and specificity). */
  atPrevalence?: { prevalence: number; ppv: IntervalValue; npv: IntervalValue };
}

export interface ViewEvaluation {
  view: BinaryView['key'];
  name: string;
  positives: number;
  negatives: number;
  auc: IntervalValue;
  roc: { fpr: number[]; tpr: number[] };
  pr: PrecisionRecallCurve;
  points: PointEvaluation[];
  decisionCurve: DecisionCurve;
}

type Statistic = 'sensitivity' | 'specificity' | 'ppv' | 'npv' | 'ppvAtPrevalence' | 'npvAtPrevalence';

/** Every statistic of one point on one set of images (the full split or a resample). */
function pointStatistics(scores: ArrayLike<number>, positive: ArrayLike<boolean>, threshold: number, prevalence: number | undefined): Record<Statistic, number | null> {
  const r = ratesAt(scores, positive, threshold);
  const at = prevalence === undefined ? { ppv: null, npv: null } : predictiveValuesAt(r.sensitivity, r.specificity, prevalence);
  return { sensitivity: r.sensitivity, specificity: r.specificity, ppv: r.ppv, npv: r.npv, ppvAtPrevalence: at.ppv, npvAtPrevalence: at.npv };
}

/**
 * Each view's AUC and each operating point's rates on the evaluated images, with percentile
 * bootstrap intervals over duplicate groups (a group's images drawn together, as the paired
 * comparisons draw them); the thresholds stay fixed, only the images are resampled. `groups[i]` is
 * image i's group. A statistic undefined on a resample (no positive call: no PPV) is left out of it.
 */
export function evaluateOperatingPoints(
  probabilities: Float32Array,
  labels: ArrayLike<number>,
  groups: readonly string[],
  classNames: readonly string[],
  fitted: FittedOperatingPoints,
  options: { rng: RandomSource; resamples: number; prevalence?: number; confidence?: number },
): ViewEvaluation[] {
  const n = labels.length;
  if (groups.length !== n) throw new UserError(`operating points: ${groups.length} groups for ${n} images`);
  if (options.prevalence !== undefined && !(options.prevalence > 0 && options.prevalence < 1)) throw new UserError(`the prevalence ${options.prevalence} is outside (0, 1): give a fraction such as 0.2`);
  const confidence = options.confidence ?? 0.95;
  const views = binaryViews(classNames).map((view) => ({ view, ...binaryScores(view, probabilities, labels, classNames.length), points: fitted.views.find((v) => v.view === view.key)?.points ?? [] }));
  const members = new Map<string, number[]>();
  groups.forEach((g, i) => members.set(g, [...(members.get(g) ?? []), i]));
  const groupList = [...members.values()];
  const statistics: Statistic[] = ['sensitivity', 'specificity', 'ppv', 'npv', 'ppvAtPrevalence', 'npvAtPrevalence'];
  const samples = views.map((v) => ({ auc: [] as number[], points: v.points.map(() => Object.fromEntries(statistics.map((s) => [s, [] as number[]])) as Record<Statistic, number[]>) }));
  for (let b = 0; b < options.resamples && n > 0; b++) {
    const indices: number[] = [];
    for (let g = 0; g < groupList.length; g++) indices.push(...groupList[Math.floor(options.rng.next() * groupList.length)]!);
    views.forEach((v, j) => {
      const scores = indices.map((i) => v.scores[i]!);
      const positive = indices.map((i) => v.positive[i]!);
      const auc = rocCurve(scores, positive).auc;
      if (auc !== null) samples[j]!.auc.push(auc);
      v.points.forEach((p, q) => {
        const values = pointStatistics(scores, positive, p.threshold, options.prevalence);
        for (const s of statistics) if (values[s] !== null) samples[j]!.points[q]![s].push(values[s]!);
      });
    });
  }
  const tail = (1 - confidence) / 2;
  const interval = (value: number | null, drawn: number[]): IntervalValue => {
    if (drawn.length === 0) return { value, lower: null, upper: null };
    const sorted = Float64Array.from(drawn).sort();
    return { value, lower: percentile(sorted, tail), upper: percentile(sorted, 1 - tail) };
  };
  return views.map((v, j) => {
    const roc = rocCurve(v.scores, v.positive);
    const positives = v.positive.filter(Boolean).length;
    const points = v.points.map((p, q): PointEvaluation => {
      const all = pointStatistics(v.scores, v.positive, p.threshold, options.prevalence);
      const drawn = samples[j]!.points[q]!;
      const { tp, fp, tn, fn } = ratesAt(v.scores, v.positive, p.threshold);
      return {
        name: p.name,
        rule: p.rule,
        target: p.target,
        threshold: p.threshold,
        counts: { tp, fp, tn, fn },
        sensitivity: interval(all.sensitivity, drawn.sensitivity),
        specificity: interval(all.specificity, drawn.specificity),
        ppv: interval(all.ppv, drawn.ppv),
        npv: interval(all.npv, drawn.npv),
        ...(options.prevalence === undefined ? {} : { atPrevalence: { prevalence: options.prevalence, ppv: interval(all.ppvAtPrevalence, drawn.ppvAtPrevalence), npv: interval(all.npvAtPrevalence, drawn.npvAtPrevalence) } }),
      };
    });
    return {
      view: v.view.key,
      name: v.view.name,
      positives,
      negatives: n - positives,
      auc: interval(roc.auc, samples[j]!.auc),
      roc: { fpr: roc.fpr, tpr: roc.tpr },
      pr: precisionRecallCurve(v.scores, v.positive),
      points,
      decisionCurve: decisionCurve(v.scores, v.positive),
    };
  });
}
