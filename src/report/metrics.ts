/**
 * Classification metrics over integer labels and predictions.
 *
 * Conventions follow scikit-learn with `labels=range(numClasses)` and `zero_division=0`, so numbers
 * here can be compared with a Python notebook's:
 * - precision of a class that is never predicted (tp + fp = 0) is 0;
 * - recall of a class absent from the labels (support 0) is 0;
 * - F1 is 0 when precision + recall is 0 (which covers both cases above);
 * - macro-F1 averages over ALL `numClasses` classes, absent ones included (as sklearn does when the
 *   labels are given explicitly);
 * - balanced accuracy is the mean recall over the classes PRESENT in the labels (sklearn's
 *   `balanced_accuracy_score` drops absent classes rather than counting them as recall 0).
 * Everything is 0 for an empty input rather than NaN, so reports and JSON never carry NaN.
 */
import { UserError } from '../util/index.js';

/** confusion[trueClass][predictedClass] = count. */
export function confusionMatrix(labels: ArrayLike<number>, predictions: ArrayLike<number>, numClasses: number): number[][] {
  if (labels.length !== predictions.length) {
    throw new UserError(`labels (${labels.length}) and predictions (${predictions.length}) differ in length`);
  }
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new UserError(`numClasses must be a positive integer, got ${numClasses}`);
  const confusion = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i]!;
    const predicted = predictions[i]!;
    if (!isClassIndex(label, numClasses)) throw new UserError(`label ${label} at index ${i} is not a class index in 0..${numClasses - 1}`);
    if (!isClassIndex(predicted, numClasses)) {
      throw new UserError(`prediction ${predicted} at index ${i} is not a class index in 0..${numClasses - 1}`);
    }
    confusion[label]![predicted]!++;
  }
  return confusion;
}

function isClassIndex(value: number, numClasses: number): boolean {
  return Number.isInteger(value) && value >= 0 && value < numClasses;
}

export interface ClassMetrics {
  precision: number;
  recall: number;
  f1: number;
  /** Number of samples whose true label is this class. */
  support: number;
}

export interface ClassificationMetrics {
  accuracy: number;
  balancedAccuracy: number;
  macroF1: number;
  perClass: ClassMetrics[];
  confusion: number[][];
}

const ratio = (numerator: number, denominator: number): number => (denominator === 0 ? 0 : numerator / denominator);

/** The metrics of a confusion matrix (rows = true class, columns = predicted class). */
export function metricsFromConfusion(confusion: number[][]): ClassificationMetrics {
  const numClasses = confusion.length;
  let total = 0;
  let correct = 0;
  const perClass: ClassMetrics[] = [];
  for (let c = 0; c < numClasses; c++) {
    const truePositive = confusion[c]![c]!;
    let support = 0;
    let predicted = 0;
    for (let k = 0; k < numClasses; k++) {
      support += confusion[c]![k]!;
      predicted += confusion[k]![c]!;
    }
    total += support;
    correct += truePositive;
    const precision = ratio(truePositive, predicted);
    const recall = ratio(truePositive, support);
    const f1 = ratio(2 * precision * recall, precision + recall);
    perClass.push({ precision, recall, f1, support });
  }
  const present = perClass.filter((m) => m.support > 0);
  return {
    accuracy: ratio(correct, total),
    balancedAccuracy: ratio(
      present.reduce((sum, m) => sum + m.recall, 0),
      present.length,
    ),
    macroF1: ratio(
      perClass.reduce((sum, m) => sum + m.f1, 0),
      numClasses,
    ),
    perClass,
    confusion: confusion.map((row) => [...row]),
  };
}

export function classificationMetrics(labels: ArrayLike<number>, predictions: ArrayLike<number>, numClasses: number): ClassificationMetrics {
  return metricsFromConfusion(confusionMatrix(labels, predictions, numClasses));
}

/**
 * Row-wise softmax of a row-major [n, numClasses] logit array, in float64 and shifted by the row
 * maximum so large logits cannot overflow.
 */
export function softmax(logits: Float32Array, numClasses: number): Float32Array {
  if (!Number.isInteger(numClasses) || numClasses < 1 || logits.length % numClasses !== 0) {
    throw new UserError(`softmax: ${logits.length} logits do not divide into rows of ${numClasses}`);
  }
  const out = new Float32Array(logits.length);
  const exps = new Float64Array(numClasses);
  for (let row = 0; row < logits.length; row += numClasses) {
    let max = -Infinity;
    for (let c = 0; c < numClasses; c++) max = Math.max(max, logits[row + c]!);
    let sum = 0;
    for (let c = 0; c < numClasses; c++) {
      exps[c] = Math.exp(logits[row + c]! - max);
      sum += exps[c]!;
    }
    for (let c = 0; c < numClasses; c++) out[row + c] = exps[c]! / sum;
  }
  return out;
}

/** Row-wise argmax of a row-major [n, numClasses] array; ties go to the lower class index (as numpy/torch). */
export function argmaxRows(values: ArrayLike<number>, numClasses: number): Int32Array {
  const rows = Math.floor(values.length / numClasses);
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < numClasses; c++) if (values[r * numClasses + c]! > values[r * numClasses + best]!) best = c;
    out[r] = best;
  }
  return out;
}
