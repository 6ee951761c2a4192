/**
 * torch.nn.CrossEntropyLoss(weight, label_smoothing, reduction='mean'), split so that any partition
 * of a batch into micro-batches and workers sums to the same gradient.
 *
 * With hard labels torch computes (1−ε)·Σᵢ w[yᵢ]·(−log p_{i,yᵢ}) / Σᵢ w[yᵢ] + (ε/C)·Σᵢ Σ_c w_c·(−log p_{i,c}) / Σᵢ w[yᵢ]
 * (without weights, w ≡ 1 and the denominator is N). With probability targets t (mixup) it computes
 * Σᵢ Σ_c w_c·t'_{i,c}·(−log p_{i,c}) / N with t' = (1−ε)t + ε/C. Both are −Σ A ⊙ log p / D for a
 * coefficient matrix A and a denominator D that depend only on the labels, so each micro-batch
 * contributes −Σ_{its rows} A ⊙ log p / D_batch and the contributions add up exactly.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface LossSpec {
  numClasses: number;
  labelSmoothing: number;
  classWeights?: number[];
}

/** Row i of A for every sample: the coefficients of −log p. */
export function lossCoefficients(spec: LossSpec, labels: Int32Array, size: number, targets?: Float32Array): Float32Array {
  const c = spec.numClasses;
  const eps = spec.labelSmoothing;
  const w = spec.classWeights;
  const a = new Float32Array(size * c);
  for (let i = 0; i < size; i++) {
    for (let k = 0; k < c; k++) {
      const wk = w ? w[k]! : 1;
      if (targets) {
        a[i * c + k] = wk * ((1 - eps) * targets[i * c + k]! + eps / c);
      } else {
        const label = labels[i]!;
        a[i * c + k] = (k === label ? (1 - eps) * wk : 0) + (eps / c) * wk;
      }
    }
  }
  return a;
}

/** The batch-wide denominator D. */
export function lossDenominator(spec: LossSpec, labels: Int32Array, size: number, targets?: Float32Array): number {
  if (targets || !spec.classWeights) return size;
  let d = 0;
  for (let i = 0; i < size; i++) d += spec.classWeights[labels[i]!]!;
  return d;
}

/** −Σ A ⊙ log_softmax(logits) · scale, a scalar. */
export function weightedCrossEntropy(logits: tf.Tensor2D, coefficients: tf.Tensor2D, scale: number): tf.Scalar {
  return tf.tidy(() => tf.mul(tf.neg(tf.sum(tf.mul(coefficients, tf.logSoftmax(logits)))), scale) as tf.Scalar);
}

export function validateLossSpec(spec: LossSpec): void {
  if (!(spec.labelSmoothing >= 0 && spec.labelSmoothing < 1)) throw new RangeError(`labelSmoothing must be in [0, 1), got ${spec.labelSmoothing}`);
  if (spec.classWeights) {
    if (spec.classWeights.length !== spec.numClasses) throw new RangeError(`classWeights has ${spec.classWeights.length} entries for ${spec.numClasses} classes`);
    if (spec.classWeights.some((w) => !(w >= 0) || !Number.isFinite(w))) throw new RangeError('classWeights must be finite and non-negative');
  }
}
