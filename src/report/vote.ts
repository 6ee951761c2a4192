/**
 * The soft vote: the (weighted) mean of the members' softmax probabilities — what the dashboard
 * computes with equal weights. eval's ensemble and cross-validation's out-of-fold ensemble both use
 * this one function, so an ensemble row means the same number everywhere.
 */
import { UserError } from '../util/index.js';

/** Weights scaled to sum to 1; refused unless they are non-negative with a positive sum. */
export function normalizeWeights(weights: readonly number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (!(sum > 0) || weights.some((w) => !(w >= 0))) throw new UserError(`ensemble weights must be non-negative with a positive sum, got [${weights.join(', ')}]`);
  return weights.map((w) => w / sum);
}

/** Weighted mean of row-major [n, C] probability arrays; equal weights when none are given. */
export function softVote(members: readonly Float32Array[], weights?: readonly number[]): Float32Array {
  if (members.length === 0) throw new UserError('an ensemble needs at least one model');
  const length = members[0]!.length;
  if (members.some((m) => m.length !== length)) throw new UserError('ensemble members disagree on the number of predictions');
  const w = normalizeWeights(weights ?? members.map(() => 1));
  if (w.length !== members.length) throw new UserError(`${w.length} weights for ${members.length} ensemble members`);
  const broken = members.findIndex((m) => !m.every(Number.isFinite));
  // A NaN would win no argmax and pass silently as class 0 with a NaN confidence.
  if (broken >= 0) throw new UserError(`ensemble member ${broken + 1} of ${members.length} has non-finite probabilities (NaN or infinity): its weights are damaged or its training diverged`);
  const out = new Float32Array(length);
  // Accumulate in float64 and round once, so the mean of identical members is exactly that member.
  for (let i = 0; i < length; i++) {
    let sum = 0;
    for (let m = 0; m < members.length; m++) sum += w[m]! * members[m]![i]!;
    out[i] = sum;
  }
  return out;
}
