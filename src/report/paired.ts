/**
 * Paired comparisons of two models scored on the same images: the difference of any overall
 * registry metric with a paired bootstrap over duplicate groups, and DeLong's test for the
 * difference of two correlated AUCs. The eval report compares every member model with the ensemble.
 */
import erfc from '@stdlib/math-base-special-erfc';
import { UserError } from '../util/index.js';
import { metricInput, type OverallMetric } from './registry.js';
import { percentile, type RandomSource } from './stats.js';
import { binaryScores, binaryViews, type BinaryView } from './views.js';

export interface DelongTest {
  aucA: number;
  aucB: number;
  /** aucA − aucB. */
  difference: number;
  /** DeLong's standard error of the difference; 0 when the two score the images alike. */
  standardError: number;
  /** null when the standard error is 0 (the difference is then 0 too: no test to make). */
  z: number | null;
  /** Two-sided p-value of H0: equal AUCs, from the normal approximation; 1 when z is null. */
  pValue: number;
  /** Normal-approximation interval of the difference at `confidence`. */
  lower: number;
  upper: number;
  confidence: number;
  positives: number;
  negatives: number;
}

/** The z with a central mass p between −z and z, by bisection on erfc (only the interval needs it). */
function normalQuantile(p: number): number {
  let lo = 0;
  let hi = 40;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (0.5 * erfc(mid / Math.SQRT2) > (1 - p) / 2) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/**
 * DeLong, DeLong & Clarke-Pearson (1988): with ψ(x, y) = 1, ½, 0 as a positive's score x is above,
 * tied with, below a negative's y, each model's AUC is the mean of its structural components
 * V10(positive i) = mean_j ψ(x_i, y_j) and V01(negative j) = mean_i ψ(x_i, y_j); the variance of
 * AUC_A − AUC_B is (S10_AA + S10_BB − 2 S10_AB)/m + (S01_AA + S01_BB − 2 S01_AB)/n, S the sample
 * covariances (denominator m − 1, n − 1) of the components. null without two positives and two negatives.
 * O(m·n) pairs: a few hundred thousand for osteo's test splits.
 */
export function delongTest(scoresA: ArrayLike<number>, scoresB: ArrayLike<number>, positive: ArrayLike<boolean>, confidence = 0.95): DelongTest | null {
  const n = positive.length;
  if (scoresA.length !== n || scoresB.length !== n) throw new UserError(`DeLong: ${scoresA.length} and ${scoresB.length} scores for ${n} labels`);
  const pos: number[] = [];
  const neg: number[] = [];
  for (let i = 0; i < n; i++) (positive[i] ? pos : neg).push(i);
  const m = pos.length;
  const k = neg.length;
  if (m < 2 || k < 2) return null;
  const components = (scores: ArrayLike<number>) => {
    const v10 = new Float64Array(m);
    const v01 = new Float64Array(k);
    for (let i = 0; i < m; i++) {
      const x = scores[pos[i]!]!;
      for (let j = 0; j < k; j++) {
        const y = scores[neg[j]!]!;
        const psi = x > y ? 1 : x === y ? 0.5 : 0;
        v10[i]! += psi;
        v01[j]! += psi;
      }
    }
    for (let i = 0; i < m; i++) v10[i]! /= k;
    for (let j = 0; j < k; j++) v01[j]! /= m;
    return { v10, v01, auc: v10.reduce((a, b) => a + b, 0) / m };
  };
  const a = components(scoresA);
  const b = components(scoresB);
  // Variance of the per-component difference: S_AA + S_BB − 2 S_AB in one pass.
  const differenceVariance = (x: Float64Array, y: Float64Array) => {
    const d = x.map((v, i) => v - y[i]!);
    const mean = d.reduce((s, v) => s + v, 0) / d.length;
    return d.reduce((s, v) => s + (v - mean) ** 2, 0) / (d.length - 1);
  };
  const variance = differenceVariance(a.v10, b.v10) / m + differenceVariance(a.v01, b.v01) / k;
  const difference = a.auc - b.auc;
  const standardError = Math.sqrt(Math.max(0, variance));
  const z = standardError > 0 ? difference / standardError : null;
  const half = normalQuantile(confidence) * standardError;
  return {
    aucA: a.auc,
    aucB: b.auc,
    difference,
    standardError,
    z,
    pValue: z === null ? 1 : erfc(Math.abs(z) / Math.SQRT2),
    lower: difference - half,
    upper: difference + half,
    confidence,
    positives: m,
    negatives: k,
  };
}

export interface PairedDifference {
  /** value(A) − value(B) on all images; null where either is undefined. */
  difference: number | null;
  lower: number;
  upper: number;
  confidence: number;
  resamples: number;
}

/**
 * The difference of `record` between two models' probabilities on the same images, with a paired
 * percentile bootstrap: each resample draws duplicate groups with replacement (a group's images
 * together, as cross-validation's bootstrap does) and scores both models on that same draw.
 * `groups[i]` is image i's group; distinct strings per image make it an image bootstrap.
 */
export function pairedBootstrapDifference(
  record: OverallMetric,
  a: Float32Array,
  b: Float32Array,
  labels: ArrayLike<number>,
  groups: readonly string[],
  classNames: readonly string[],
  options: { rng: RandomSource; resamples: number; confidence?: number },
): PairedDifference {
  const k = classNames.length;
  const n = labels.length;
  if (a.length !== n * k || b.length !== n * k || groups.length !== n) throw new UserError(`paired bootstrap: ${a.length} and ${b.length} probabilities, ${groups.length} groups for ${n} images × ${k} classes`);
  const confidence = options.confidence ?? 0.95;
  const value = (pa: Float32Array, pb: Float32Array, y: ArrayLike<number>) => {
    const va = record.compute(metricInput(pa, y, classNames));
    const vb = record.compute(metricInput(pb, y, classNames));
    return va === null || vb === null ? null : va - vb;
  };
  const members = new Map<string, number[]>();
  groups.forEach((g, i) => members.set(g, [...(members.get(g) ?? []), i]));
  const groupList = [...members.values()];
  const samples: number[] = [];
  for (let r = 0; r < options.resamples && n > 0; r++) {
    const indices: number[] = [];
    for (let g = 0; g < groupList.length; g++) indices.push(...groupList[Math.floor(options.rng.next() * groupList.length)]!);
    const pa = new Float32Array(indices.length * k);
    const pb = new Float32Array(indices.length * k);
    indices.forEach((at, i) => (pa.set(a.subarray(at * k, (at + 1) * k), i * k), pb.set(b.subarray(at * k, (at + 1) * k), i * k)));
    const d = value(pa, pb, indices.map((at) => labels[at]!));
    if (d !== null) samples.push(d);
  }
  const sorted = Float64Array.from(samples).sort();
  const tail = (1 - confidence) / 2;
  return { difference: n === 0 ? null : value(a, b, labels), lower: percentile(sorted, tail), upper: percentile(sorted, 1 - tail), confidence, resamples: options.resamples };
}

export interface PairedComparison {
  /** The model compared (A) and what it is compared with (B): every member against the ensemble. */
  model: string;
  against: string;
  /** A − B of each compared record, by record key. */
  differences: Record<string, PairedDifference>;
  /** DeLong's test of AUC_A − AUC_B on each binary view; null where the view lacks two positives or negatives. */
  auc: { view: BinaryView['key']; name: string; test: DelongTest | null }[];
}

/**
 * `model` against `against` on the same images: each record's paired group-bootstrap difference
 * (every record from its own generator seeded alike, so the draws are the same images) and DeLong
 * on the binary views (report/views.ts) — the views a screening decision is made on, rather than a
 * one-vs-rest macro AUC, whose DeLong variance would need the covariance between classes.
 */
export function pairedComparison(
  model: { name: string; probabilities: Float32Array },
  against: { name: string; probabilities: Float32Array },
  labels: ArrayLike<number>,
  groups: readonly string[],
  classNames: readonly string[],
  options: { records: readonly OverallMetric[]; rng: () => RandomSource; resamples: number },
): PairedComparison {
  const differences = Object.fromEntries(
    options.records.map((r) => [r.key, pairedBootstrapDifference(r, model.probabilities, against.probabilities, labels, groups, classNames, { rng: options.rng(), resamples: options.resamples })]),
  );
  const k = classNames.length;
  const auc = binaryViews(classNames).map((view) => {
    const a = binaryScores(view, model.probabilities, labels, k);
    const b = binaryScores(view, against.probabilities, labels, k);
    return { view: view.key, name: view.name, test: delongTest(a.scores, b.scores, a.positive) };
  });
  return { model: model.name, against: against.name, differences, auc };
}

/** The records each member is compared on with the ensemble (their keys; DeLong covers the AUCs). */
export const pairedRecordKeys = ['accuracy', 'quadraticKappa'] as const;

/**
 * Every member model against the ensemble (the last entry, kind 'ensemble') on the same images; none
 * without an ensemble. Each comparison's generators are seeded alike (`rng()`), so every member's
 * bootstrap draws the same groups.
 */
export function compareWithEnsemble(
  models: readonly { name: string; kind: 'model' | 'ensemble'; probabilities: Float32Array }[],
  labels: ArrayLike<number>,
  groups: readonly string[],
  classNames: readonly string[],
  options: { records: readonly OverallMetric[]; rng: () => RandomSource; resamples: number },
): PairedComparison[] {
  const ensemble = models.find((m) => m.kind === 'ensemble');
  if (ensemble === undefined) return [];
  return models.filter((m) => m.kind === 'model').map((m) => pairedComparison(m, ensemble, labels, groups, classNames, options));
}
