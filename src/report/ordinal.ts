/**
 * Ordinal agreement for ordered classes (osteo's Normal < Osteopenia < Osteoporosis): a prediction
 * two classes off is worse than one a class off, which accuracy and F1 do not see. Both functions
 * take the class index as the ordinal position, so the class order is the caller's (data/'s
 * `classNames`).
 */
import { confusionMatrix } from './metrics.js';

/**
 * Cohen's kappa with quadratic weights w_ij = (i − j)², scikit-learn's
 * `cohen_kappa_score(y, ŷ, weights='quadratic', labels=range(numClasses))`:
 * κ = 1 − Σ w·O / Σ w·E, with O the confusion matrix and E the outer product of its marginals over n.
 * null where Σ w·E is 0 (every label and prediction in one class: agreement beyond chance is
 * undefined; sklearn returns nan there).
 */
export function quadraticWeightedKappa(labels: ArrayLike<number>, predictions: ArrayLike<number>, numClasses: number): number | null {
  return kappaFromConfusion(confusionMatrix(labels, predictions, numClasses));
}

export function kappaFromConfusion(confusion: readonly (readonly number[])[]): number | null {
  const k = confusion.length;
  const rows = confusion.map((row) => row.reduce((a, b) => a + b, 0));
  const columns = Array.from({ length: k }, (_, j) => confusion.reduce((sum, row) => sum + row[j]!, 0));
  const n = rows.reduce((a, b) => a + b, 0);
  if (n === 0) return null;
  let observed = 0;
  let expected = 0;
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const w = (i - j) ** 2;
      observed += w * confusion[i]![j]!;
      expected += (w * rows[i]! * columns[j]!) / n;
    }
  }
  return expected === 0 ? null : 1 - observed / expected;
}

/**
 * Mean absolute class error: the mean of |y − ŷ| in class positions (0 when every prediction is
 * right, up to numClasses − 1); sklearn's `mean_absolute_error` on the class indices. 0 for no images.
 */
export function meanAbsoluteClassError(labels: ArrayLike<number>, predictions: ArrayLike<number>): number {
  const n = labels.length;
  if (n === 0) return 0;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.abs(labels[i]! - predictions[i]!);
  return sum / n;
}
