/**
 * The two binary screening views of the three ordered classes (Normal < Osteopenia < Osteoporosis):
 * - *low bone density*: every class above the first against the first (Osteopenia + Osteoporosis vs
 *   Normal), scored by the summed probability of those classes;
 * - *top class vs rest*: the last class against the others (Osteoporosis vs the rest), scored by its
 *   probability.
 * The views are defined by class position, so report/ needs no class names of its own; the names
 * shown are built from the caller's.
 */
import { UserError } from '../util/index.js';

export interface BinaryView {
  /** Stable key for files and JSON: `lowBoneDensity` | `topClass`. */
  key: 'lowBoneDensity' | 'topClass';
  /** Human name, e.g. "Osteopenia + Osteoporosis vs Normal". */
  name: string;
  /** The class indices counted as positive. */
  positiveClasses: number[];
}

export function binaryViews(classNames: readonly string[]): BinaryView[] {
  const k = classNames.length;
  if (k < 2) throw new UserError(`binary views need at least two classes, got ${k}`);
  const above = Array.from({ length: k - 1 }, (_, i) => i + 1);
  const views: BinaryView[] = [{ key: 'lowBoneDensity', name: `${above.map((c) => classNames[c]).join(' + ')} vs ${classNames[0]}`, positiveClasses: above }];
  // With two classes both views are the same one.
  if (k > 2) views.push({ key: 'topClass', name: `${classNames[k - 1]} vs rest`, positiveClasses: [k - 1] });
  return views;
}

/** The view's score per image (summed probability of its positive classes) and whether each label is positive. */
export function binaryScores(view: BinaryView, probabilities: ArrayLike<number>, labels: ArrayLike<number>, numClasses: number): { scores: Float64Array; positive: boolean[] } {
  const n = labels.length;
  if (probabilities.length !== n * numClasses) throw new UserError(`binary view: ${probabilities.length} probabilities for ${n} labels × ${numClasses} classes`);
  const scores = new Float64Array(n);
  const positive = new Array<boolean>(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (const c of view.positiveClasses) s += probabilities[i * numClasses + c]!;
    scores[i] = s;
    positive[i] = view.positiveClasses.includes(labels[i]!);
  }
  return { scores, positive };
}
