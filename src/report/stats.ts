/**
 * The statistics behind the report: a bootstrap interval for accuracy, one-vs-rest ROC curves and
 * AUC, and expected calibration error. All take row-major [n, numClasses] probability arrays.
 */
import { UserError } from '../util/index.js';
import { argmaxRows } from './metrics.js';
import type { ReliabilityBin } from './plot.js';

/** Anything that yields uniform numbers in [0, 1): the data room's seeded Rng satisfies it. */
export interface RandomSource {
  next(): number;
}

/** Percentile with linear interpolation between order statistics (numpy's default, "type 7"). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return 0;
  const position = (sorted.length - 1) * q;
  const below = Math.floor(position);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (position - below);
}

export interface BootstrapInterval {
  lower: number;
  upper: number;
  confidence: number;
  resamples: number;
}

/**
 * Percentile bootstrap interval for accuracy: resample the evaluated images with replacement
 * `resamples` times and take the central `confidence` mass of the resampled accuracies. With a
 * few hundred test images this is the honest error bar on "83%": about ±4 points. `resamples` is a
 * positive integer and `confidence` in (0, 1): callers pass validated settings (the eval option table).
 */
export function bootstrapAccuracy(
  correct: ArrayLike<boolean | number>,
  options: { rng: RandomSource; resamples: number; confidence?: number },
): BootstrapInterval {
  const { resamples } = options;
  const confidence = options.confidence ?? 0.95;
  const n = correct.length;
  if (n === 0) return { lower: 0, upper: 0, confidence, resamples };
  const hits = new Uint8Array(n);
  for (let i = 0; i < n; i++) hits[i] = correct[i] ? 1 : 0;
  const accuracies = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += hits[Math.floor(options.rng.next() * n)]!;
    accuracies[b] = sum / n;
  }
  accuracies.sort();
  const tail = (1 - confidence) / 2;
  return { lower: percentile(accuracies, tail), upper: percentile(accuracies, 1 - tail), confidence, resamples };
}

export interface RocCurve {
  /** False- and true-positive rates from (0,0) to (1,1), one point per distinct score threshold. */
  fpr: number[];
  tpr: number[];
  /** null when the split has no positives or no negatives for this class (AUC undefined). */
  auc: number | null;
}

/**
 * ROC curve of `scores` for a binary `positive` labelling. Tied scores form one threshold, so the
 * curve steps diagonally across them and the trapezoidal area counts a tied positive/negative pair
 * as half a win — the Mann–Whitney convention sklearn's roc_auc_score follows.
 */
export function rocCurve(scores: ArrayLike<number>, positive: ArrayLike<boolean>): RocCurve {
  const n = scores.length;
  if (positive.length !== n) throw new UserError(`roc: ${n} scores but ${positive.length} labels`);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  let positives = 0;
  for (let i = 0; i < n; i++) if (positive[i]) positives++;
  const negatives = n - positives;
  const fpr = [0];
  const tpr = [0];
  let tp = 0;
  let fp = 0;
  let area = 0;
  for (let k = 0; k < n; ) {
    const threshold = scores[order[k]!]!;
    const [tp0, fp0] = [tp, fp];
    while (k < n && scores[order[k]!]! === threshold) {
      if (positive[order[k]!]) tp++;
      else fp++;
      k++;
    }
    area += ((fp - fp0) * (tp + tp0)) / 2;
    fpr.push(negatives === 0 ? 0 : fp / negatives);
    tpr.push(positives === 0 ? 0 : tp / positives);
  }
  const auc = positives === 0 || negatives === 0 ? null : area / (positives * negatives);
  return { fpr, tpr, auc };
}

export interface OneVsRestAuc {
  perClass: (number | null)[];
  curves: RocCurve[];
  /** Mean over the classes whose AUC is defined; null if none is. */
  macro: number | null;
}

export function oneVsRestAuc(probabilities: Float32Array, labels: ArrayLike<number>, numClasses: number): OneVsRestAuc {
  const n = labels.length;
  if (probabilities.length !== n * numClasses) throw new UserError(`auc: ${probabilities.length} probabilities for ${n} labels × ${numClasses} classes`);
  const curves: RocCurve[] = [];
  for (let c = 0; c < numClasses; c++) {
    const scores = new Float64Array(n);
    const positive = new Array<boolean>(n);
    for (let i = 0; i < n; i++) {
      scores[i] = probabilities[i * numClasses + c]!;
      positive[i] = labels[i] === c;
    }
    curves.push(rocCurve(scores, positive));
  }
  const perClass = curves.map((c) => c.auc);
  const defined = perClass.filter((a): a is number => a !== null);
  return { perClass, curves, macro: defined.length === 0 ? null : defined.reduce((a, b) => a + b, 0) / defined.length };
}

export interface Calibration {
  /** Expected calibration error: Σ_b (n_b / N) · |accuracy_b − mean confidence_b|. */
  ece: number;
  bins: ReliabilityBin[];
}

/**
 * Expected calibration error of the top-class confidence (Guo et al. 2017), equal-width bins
 * (lower edge exclusive, upper inclusive), 15 bins by default as in that paper.
 */
export function calibration(probabilities: Float32Array, labels: ArrayLike<number>, numClasses: number, numBins = 15): Calibration {
  const n = labels.length;
  if (probabilities.length !== n * numClasses) throw new UserError(`calibration: ${probabilities.length} probabilities for ${n} labels × ${numClasses} classes`);
  const count = new Float64Array(numBins);
  const confidenceSum = new Float64Array(numBins);
  const correctSum = new Float64Array(numBins);
  const predicted = argmaxRows(probabilities, numClasses);
  for (let i = 0; i < n; i++) {
    const best = predicted[i]!;
    const confidence = probabilities[i * numClasses + best]!;
    const bin = Math.min(numBins - 1, Math.max(0, Math.ceil(confidence * numBins) - 1));
    count[bin]!++;
    confidenceSum[bin]! += confidence;
    if (best === labels[i]) correctSum[bin]!++;
  }
  let ece = 0;
  const bins: ReliabilityBin[] = [];
  for (let b = 0; b < numBins; b++) {
    const c = count[b]!;
    const meanConfidence = c === 0 ? 0 : confidenceSum[b]! / c;
    const accuracy = c === 0 ? 0 : correctSum[b]! / c;
    if (c > 0) ece += (c / n) * Math.abs(accuracy - meanConfidence);
    bins.push({ lower: b / numBins, upper: (b + 1) / numBins, count: c, meanConfidence, accuracy });
  }
  return { ece, bins };
}

/** Mean negative log-likelihood of the true labels (the quantity `--weights auto` minimizes on val). */
export function negativeLogLikelihood(probabilities: Float32Array, labels: ArrayLike<number>, numClasses: number): number {
  const n = labels.length;
  if (n === 0) return 0;
  let sum = 0;
  // Clamp: one confidently wrong image must not make the whole sum infinite.
  for (let i = 0; i < n; i++) sum -= Math.log(Math.max(probabilities[i * numClasses + labels[i]!]!, 1e-12));
  return sum / n;
}
