/**
 * Temperature scaling (Guo et al. 2017) and the calibration metrics reported before and after it.
 *
 * The models' outputs reach report/ as softmax probabilities; softmax(log p / T) equals
 * softmax(z / T) for the logits z (log p is z shifted by a per-row constant), so the temperature is
 * fitted and applied on log-probabilities and needs no logits. A probability that underflowed to 0
 * in float32 is floored at the smallest positive float32, which keeps its row's order.
 */
import { UserError } from '../util/index.js';
import { argmaxRows } from './metrics.js';
import { negativeLogLikelihood } from './stats.js';

/** The smallest positive (subnormal) float32: log of it is finite. */
const floor32 = 1.401298464324817e-45;

/** softmax(log p / T) of row-major [n, numClasses] probabilities, in float64, rounded once to float32. */
export function applyTemperature(probabilities: Float32Array, numClasses: number, temperature: number): Float32Array {
  if (!(temperature > 0) || !Number.isFinite(temperature)) throw new UserError(`a temperature must be a positive number, got ${temperature}`);
  if (probabilities.length % numClasses !== 0) throw new UserError(`temperature: ${probabilities.length} probabilities do not divide into rows of ${numClasses}`);
  const out = new Float32Array(probabilities.length);
  const scaled = new Float64Array(numClasses);
  for (let row = 0; row < probabilities.length; row += numClasses) {
    let max = -Infinity;
    for (let c = 0; c < numClasses; c++) {
      scaled[c] = Math.log(Math.max(probabilities[row + c]!, floor32)) / temperature;
      max = Math.max(max, scaled[c]!);
    }
    let sum = 0;
    for (let c = 0; c < numClasses; c++) sum += scaled[c] = Math.exp(scaled[c]! - max);
    for (let c = 0; c < numClasses; c++) out[row + c] = scaled[c]! / sum;
  }
  return out;
}

/** Mean NLL at temperature T, in float64 throughout (the solver's objective). */
function nllAt(logs: Float64Array, labels: ArrayLike<number>, numClasses: number, temperature: number): number {
  const n = labels.length;
  let total = 0;
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let c = 0; c < numClasses; c++) max = Math.max(max, logs[i * numClasses + c]! / temperature);
    let sum = 0;
    for (let c = 0; c < numClasses; c++) sum += Math.exp(logs[i * numClasses + c]! / temperature - max);
    total += max + Math.log(sum) - logs[i * numClasses + labels[i]!]! / temperature;
  }
  return total / n;
}

export interface FittedTemperature {
  temperature: number;
  /** Mean NLL on the fitting images at T = 1 and at the fitted T. */
  nllBefore: number;
  nllAfter: number;
  images: number;
  /** The bracket searched (in T) and whether the minimum lies on its edge (then T is that edge). */
  bracket: [number, number];
  atBracketEdge: boolean;
}

/** The solver's bracket: T from 1/20 to 20 covers every model we have seen by a wide margin. */
export const temperatureBracket: [number, number] = [0.05, 20];

/**
 * The T minimising the mean NLL of softmax(log p / T) on labelled images, by golden-section search
 * on log T over `bracket` (NLL is convex in 1/T, so unimodal in log T) to a width of 1e-6 in log T.
 * Hand-written: no maintained npm package offers a bounded scalar minimiser without pulling in a
 * whole numerics library, and the search is a dozen lines.
 */
export function fitTemperature(probabilities: Float32Array, labels: ArrayLike<number>, numClasses: number, bracket: [number, number] = temperatureBracket): FittedTemperature {
  const n = labels.length;
  if (n === 0) throw new UserError('temperature scaling needs labelled images to fit on, and the split is empty');
  if (probabilities.length !== n * numClasses) throw new UserError(`temperature: ${probabilities.length} probabilities for ${n} labels × ${numClasses} classes`);
  const logs = Float64Array.from(probabilities, (p) => Math.log(Math.max(p, floor32)));
  const f = (logT: number) => nllAt(logs, labels, numClasses, Math.exp(logT));
  const ratio = (Math.sqrt(5) - 1) / 2;
  let [a, b] = [Math.log(bracket[0]), Math.log(bracket[1])];
  let c = b - ratio * (b - a);
  let d = a + ratio * (b - a);
  let fc = f(c);
  let fd = f(d);
  while (b - a > 1e-6) {
    if (fc <= fd) {
      b = d;
      d = c;
      fd = fc;
      c = b - ratio * (b - a);
      fc = f(c);
    } else {
      a = c;
      c = d;
      fc = fd;
      d = a + ratio * (b - a);
      fd = f(d);
    }
  }
  const logT = (a + b) / 2;
  const edge = Math.min(logT - Math.log(bracket[0]), Math.log(bracket[1]) - logT) < 1e-4;
  return { temperature: Math.exp(logT), nllBefore: nllAt(logs, labels, numClasses, 1), nllAfter: f(logT), images: n, bracket, atBracketEdge: edge };
}

export interface CalibrationBinStat {
  count: number;
  meanConfidence: number;
  accuracy: number;
}

/** Σ_b (n_b / N) |accuracy_b − confidence_b| of `scores` against 0/1 `outcomes` for the bin of each score. */
function binnedError(scores: ArrayLike<number>, outcomes: ArrayLike<number>, binOf: (score: number) => number, numBins: number): { error: number; bins: CalibrationBinStat[] } {
  const count = new Float64Array(numBins);
  const confidence = new Float64Array(numBins);
  const hits = new Float64Array(numBins);
  for (let i = 0; i < scores.length; i++) {
    const b = binOf(scores[i]!);
    count[b]!++;
    confidence[b]! += scores[i]!;
    hits[b]! += outcomes[i]!;
  }
  let error = 0;
  const bins: CalibrationBinStat[] = [];
  for (let b = 0; b < numBins; b++) {
    const c = count[b]!;
    const stat = { count: c, meanConfidence: c === 0 ? 0 : confidence[b]! / c, accuracy: c === 0 ? 0 : hits[b]! / c };
    if (c > 0) error += (c / scores.length) * Math.abs(stat.accuracy - stat.meanConfidence);
    bins.push(stat);
  }
  return { error: scores.length === 0 ? 0 : error, bins };
}

/**
 * Bin index of a score among `edges` (ascending, numBins + 1 of them), lower edge exclusive and
 * upper inclusive: numpy's `searchsorted(edges[1:-1], score)` (side 'left'), the rule of
 * scikit-learn's `calibration_curve`.
 */
function searchBin(edges: readonly number[]): (score: number) => number {
  const inner = edges.slice(1, -1);
  return (score) => {
    let lo = 0;
    let hi = inner.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (inner[mid]! < score) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

const uniformEdges = (numBins: number) => Array.from({ length: numBins + 1 }, (_, b) => b / numBins);

/** numpy's default percentile (linear) of sorted values at q in [0, 1]. */
function quantile(sorted: Float64Array, q: number): number {
  const position = (sorted.length - 1) * q;
  const below = Math.floor(position);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (position - below);
}

export interface CalibrationReport {
  /** Top-label ECE, equal-width bins (as the `ece` registry record). */
  ece: number;
  /** Top-label ECE over equal-mass bins: edges at the confidences' quantiles (calibration_curve's 'quantile' strategy). */
  adaptiveEce: number;
  /** Per class c: ECE of p_c against 1[y = c] on equal-width bins; and their mean. */
  classwiseEce: number[];
  meanClasswiseEce: number;
  /** Multiclass Brier: mean over images of Σ_c (p_c − 1[y = c])², the sum of the per-class one-vs-rest Brier scores. */
  brier: number;
  /** Per class c: mean (p_c − 1[y = c])², scikit-learn's brier_score_loss(1[y = c], p_c). */
  classBrier: number[];
  nll: number;
  /** The equal-width top-label bins, for the reliability diagram. */
  bins: (CalibrationBinStat & { lower: number; upper: number })[];
  numBins: number;
}

/** Every calibration metric of row-major [n, numClasses] probabilities, with `numBins` bins (15, as Guo et al.). */
export function calibrationReport(probabilities: Float32Array, labels: ArrayLike<number>, numClasses: number, numBins = 15): CalibrationReport {
  const n = labels.length;
  if (probabilities.length !== n * numClasses) throw new UserError(`calibration: ${probabilities.length} probabilities for ${n} labels × ${numClasses} classes`);
  const predicted = argmaxRows(probabilities, numClasses);
  const confidence = Float64Array.from(predicted, (c, i) => probabilities[i * numClasses + c]!);
  const correct = Float64Array.from(predicted, (c, i) => (c === labels[i] ? 1 : 0));
  const uniform = searchBin(uniformEdges(numBins));
  const top = binnedError(confidence, correct, uniform, numBins);
  const sorted = Float64Array.from(confidence).sort();
  const adaptive = n === 0 ? { error: 0 } : binnedError(confidence, correct, searchBin(Array.from({ length: numBins + 1 }, (_, b) => quantile(sorted, b / numBins))), numBins);
  const classwiseEce: number[] = [];
  const classBrier: number[] = [];
  for (let c = 0; c < numClasses; c++) {
    const p = Float64Array.from({ length: n }, (_, i) => probabilities[i * numClasses + c]!);
    const y = Float64Array.from({ length: n }, (_, i) => (labels[i] === c ? 1 : 0));
    classwiseEce.push(binnedError(p, y, uniform, numBins).error);
    classBrier.push(n === 0 ? 0 : p.reduce((s, v, i) => s + (v - y[i]!) ** 2, 0) / n);
  }
  return {
    ece: top.error,
    adaptiveEce: adaptive.error,
    classwiseEce,
    meanClasswiseEce: classwiseEce.reduce((a, b) => a + b, 0) / numClasses,
    brier: classBrier.reduce((a, b) => a + b, 0),
    classBrier,
    nll: negativeLogLikelihood(probabilities, labels, numClasses),
    bins: top.bins.map((b, k) => ({ ...b, lower: k / numBins, upper: (k + 1) / numBins })),
    numBins,
  };
}

/** One row of the eval report's calibration section: a model (or the ensemble) before and after scaling. */
export interface ModelCalibration {
  name: string;
  temperature: number;
  /** Where the temperature was fitted, e.g. "val split of /data (RUN/calibration.json)". */
  fittedOn: string;
  /** The evaluated images' metrics with the uncalibrated and the calibrated probabilities. */
  before: CalibrationReport;
  after: CalibrationReport;
}

export interface CalibrationSection {
  models: ModelCalibration[];
  /** True when the evaluated split is the one the temperatures were fitted on (the numbers are then optimistic). */
  fittedOnEvaluatedSplit: boolean;
}
