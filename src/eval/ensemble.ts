/**
 * Soft-vote ensemble: the (weighted) mean of the members' softmax probabilities (report/'s
 * `softVote`), argmax, and the confidence is that mean probability — what the dashboard computes
 * with equal weights; plus the `--weights` spec and the weights fitted on val.
 */
import { UserError } from '../util/index.js';
import { negativeLogLikelihood, normalizeWeights, softVote } from '../report/index.js';

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

/** eval's name for the soft vote (report/'s `softVote`, the one every ensemble row uses). */
export { normalizeWeights, softVote as ensembleProbabilities };

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
  const equalNll = negativeLogLikelihood(softVote(valMembers, equal), valLabels, numClasses);
  if (count === 1) return { weights: [1], nll: equalNll, equalNll, candidates: 1 };
  const divisions = count <= 4 ? 20 : count <= 6 ? 10 : 5;
  const grid = simplexGrid(count, divisions);
  const distanceToEqual = (w: number[]) => w.reduce((s, v) => s + (v - 1 / count) ** 2, 0);
  let best = { weights: equal, nll: equalNll };
  for (const weights of grid) {
    const nll = negativeLogLikelihood(softVote(valMembers, weights), valLabels, numClasses);
    const better = nll < best.nll - 1e-12 || (Math.abs(nll - best.nll) <= 1e-12 && distanceToEqual(weights) < distanceToEqual(best.weights));
    if (better) best = { weights, nll };
  }
  return { weights: best.weights, nll: best.nll, equalNll, candidates: grid.length };
}
