/**
 * Soft-vote ensemble: the (weighted) mean of the members' softmax probabilities, argmax, and the
 * confidence is that mean probability — what the dashboard computes with equal weights.
 */
import { UserError } from '../util/index.js';
import { negativeLogLikelihood } from '../report/index.js';

export type EnsembleWeightSpec = { kind: 'equal' } | { kind: 'auto' } | { kind: 'fixed'; weights: number[] };

/** Parse `--weights auto|equal|w1,w2,…` for `members` models. */
export function parseEnsembleWeights(spec: string, members: number): EnsembleWeightSpec {
  const text = spec.trim();
  if (text === 'equal') return { kind: 'equal' };
  if (text === 'auto') return { kind: 'auto' };
  const parts = text.split(',').map((p) => p.trim());
  const weights = parts.map(Number);
  if (parts.some((p) => p === '') || weights.some((w) => !Number.isFinite(w) || w < 0)) {
    throw new UserError(`--weights must be 'auto', 'equal' or non-negative numbers separated by commas, got '${spec}'`);
  }
  if (weights.length !== members) throw new UserError(`--weights has ${weights.length} values but there are ${members} models (one per --run, in order)`);
  if (weights.every((w) => w === 0)) throw new UserError('--weights: at least one weight must be positive');
  return { kind: 'fixed', weights: normalizeWeights(weights) };
}

export function normalizeWeights(weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (!(sum > 0) || weights.some((w) => !(w >= 0))) throw new UserError(`ensemble weights must be non-negative with a positive sum, got [${weights.join(', ')}]`);
  return weights.map((w) => w / sum);
}

/** Weighted mean of row-major [n, C] probability arrays; equal weights when none are given. */
export function ensembleProbabilities(members: readonly Float32Array[], weights?: readonly number[]): Float32Array {
  if (members.length === 0) throw new UserError('an ensemble needs at least one model');
  const length = members[0]!.length;
  if (members.some((m) => m.length !== length)) throw new UserError('ensemble members disagree on the number of predictions');
  const w = normalizeWeights(weights ?? members.map(() => 1));
  if (w.length !== members.length) throw new UserError(`${w.length} weights for ${members.length} ensemble members`);
  const broken = members.findIndex((m) => !m.every(Number.isFinite));
  // A NaN would win no argmax and pass silently as class 0 with a NaN confidence.
  if (broken >= 0) throw new UserError(`ensemble member ${broken + 1} of ${members.length} has non-finite probabilities (NaN or infinity): its weights are damaged or its training diverged`);
  const out = new Float32Array(length);
  // Accumulate in float64 so the mean of identical members is exactly that member.
  for (let i = 0; i < length; i++) {
    let sum = 0;
    for (let m = 0; m < members.length; m++) sum += w[m]! * members[m]![i]!;
    out[i] = sum;
  }
  return out;
}

/** Every point of the simplex {w ≥ 0, Σw = 1} whose coordinates are multiples of 1/divisions. */
export function simplexGrid(members: number, divisions: number): number[][] {
  const points: number[][] = [];
  const current: number[] = [];
  const recurse = (remaining: number, slots: number) => {
    if (slots === 1) {
      points.push([...current, remaining].map((k) => k / divisions));
      return;
    }
    for (let k = remaining; k >= 0; k--) {
      current.push(k);
      recurse(remaining - k, slots - 1);
      current.pop();
    }
  };
  recurse(divisions, members);
  return points;
}

export interface FittedWeights {
  weights: number[];
  /** Mean negative log-likelihood on the fitting data with the fitted and with equal weights. */
  nll: number;
  equalNll: number;
  candidates: number;
}

/**
 * `--weights auto`: the simplex weights that maximize the validation log-likelihood of the soft
 * vote, by exhaustive search on a grid (step 1/20 for up to four models, coarser beyond, so the
 * search stays below ~10k candidates). It is given the validation predictions only — its signature
 * cannot see test data — and ties keep the candidate nearest equal weights.
 */
export function fitEnsembleWeights(valMembers: readonly Float32Array[], valLabels: ArrayLike<number>, numClasses: number): FittedWeights {
  const count = valMembers.length;
  if (count === 0) throw new UserError('an ensemble needs at least one model');
  if (valLabels.length === 0) throw new UserError('--weights auto needs a non-empty val split to fit on');
  const equal = valMembers.map(() => 1 / count);
  const equalNll = negativeLogLikelihood(ensembleProbabilities(valMembers, equal), valLabels, numClasses);
  if (count === 1) return { weights: [1], nll: equalNll, equalNll, candidates: 1 };
  const divisions = count <= 4 ? 20 : count <= 6 ? 10 : 5;
  const grid = simplexGrid(count, divisions);
  const distanceToEqual = (w: number[]) => w.reduce((s, v) => s + (v - 1 / count) ** 2, 0);
  let best = { weights: equal, nll: equalNll };
  for (const weights of grid) {
    const nll = negativeLogLikelihood(ensembleProbabilities(valMembers, weights), valLabels, numClasses);
    const better = nll < best.nll - 1e-12 || (Math.abs(nll - best.nll) <= 1e-12 && distanceToEqual(weights) < distanceToEqual(best.weights));
    if (better) best = { weights, nll };
  }
  return { weights: best.weights, nll: best.nll, equalNll, candidates: grid.length };
}
