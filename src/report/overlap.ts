/**
 * How many evaluated images are training images of the evaluated runs: the same decoded pixels (the
 * content hash of the manifest's row and of the run's recorded training set), whatever their file
 * names or folders. Metrics on such images are inflated, so the report says how many there were.
 */

export interface TrainOverlap {
  /** Evaluated images that are a training image of at least one run; null when some run's training set (or the images' hashes) is unknown. */
  images: number | null;
  /** How many images were evaluated. */
  of: number;
  /** Per run, in --run order: its training images among the evaluated ones (null: unknown, and why). */
  runs: { run: string; images: number | null; unknown?: string }[];
  /** The evaluation went on although some images are training images (--allow-train-overlap). */
  allowed: boolean;
}

/** The sentence of results.md (and the human summary) that gives the count. */
export function trainOverlapText(overlap: TrainOverlap): string {
  const unknown = overlap.runs.filter((r) => r.images === null);
  if (overlap.images === null) {
    return `Training images among the evaluated: not known for ${unknown.map((r) => `${r.run} (${r.unknown ?? 'no record'})`).join(', ')}; the metrics may include images the model trained on.`;
  }
  if (overlap.images === 0) return `Training images among the evaluated: 0 of ${overlap.of} (content hashes checked against every run's training set).`;
  const perRun = overlap.runs.filter((r) => (r.images ?? 0) > 0).map((r) => `${r.images} of ${r.run}`).join(', ');
  return `Training images among the evaluated: ${overlap.images} of ${overlap.of} are training images (${perRun}), evaluated as asked (--allow-train-overlap): the metrics include images the model trained on and overstate its accuracy.`;
}
