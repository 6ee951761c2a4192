/**
 * torch.optim.Adam, AdamW and SGD (momentum, Nesterov) on flat float32 arrays, with
 * clip_grad_norm_. They run in the main thread on the shared parameter buffer, so one update serves
 * every replica. The formulas are torch 1.13's single-tensor ("for-loop") implementations:
 *
 *   Adam:  g += wd·p;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;
 *          p −= lr/(1−β1^t) · m / (√v/√(1−β2^t) + eps)
 *   AdamW: p *= 1 − lr·wd; then Adam without the L2 term
 *   SGD:   g += wd·p;  b = g (first step) | μ·b + g;  g = nesterov ? g + μ·b : b;  p −= lr·g
 */
import type { OptimizerConfig } from './types.js';

export interface OptimizerSlots {
  step: number;
  /** named per-parameter state arrays, each as long as the parameter vector */
  slots: Record<string, Float32Array>;
}

export class FlatOptimizer {
  private stepCount = 0;
  private readonly slots: Record<string, Float32Array> = {};

  /** `shared`: keep the state in SharedArrayBuffers, so worker threads can update slices of it. */
  constructor(
    readonly config: OptimizerConfig,
    readonly size: number,
    shared = false,
  ) {
    validateOptimizer(config);
    const make = () => (shared ? new Float32Array(new SharedArrayBuffer(size * 4)) : new Float32Array(size));
    if (config.type === 'sgd') {
      if ((config.momentum ?? 0) !== 0) this.slots['momentum_buffer'] = make();
    } else {
      this.slots['exp_avg'] = make();
      this.slots['exp_avg_sq'] = make();
    }
  }

  get steps(): number {
    return this.stepCount;
  }

  /** The state arrays themselves (shared memory when constructed `shared`). */
  get slotArrays(): Readonly<Record<string, Float32Array>> {
    return this.slots;
  }

  /** Count a step whose update others (the workers, by slices) apply; returns its number t. */
  advance(): number {
    this.stepCount += 1;
    return this.stepCount;
  }

  exportState(): OptimizerSlots {
    const slots: Record<string, Float32Array> = {};
    for (const [name, values] of Object.entries(this.slots)) slots[name] = values.slice();
    return { step: this.stepCount, slots };
  }

  importState(state: OptimizerSlots): void {
    for (const name of Object.keys(this.slots)) {
      const values = state.slots[name];
      if (!values || values.length !== this.size) throw new RangeError(`optimizer state lacks '${name}' of ${this.size} values`);
      this.slots[name]!.set(values);
    }
    this.stepCount = state.step;
  }

  slotNames(): string[] {
    return Object.keys(this.slots);
  }
}

/** Step t of the optimizer on parameters [from, to) (ReplicaReduce.update calls it for its share). */
export function updateRange(
  c: OptimizerConfig, slots: Readonly<Record<string, Float32Array>>, params: Float32Array, grads: Float32Array, lr: number, t: number, from: number, to: number,
): void {
  const n = to - from;
  const p = params.subarray(from, to);
  const g = grads.subarray(from, to);
  if (c.type === 'sgd') {
    const buffer = slots['momentum_buffer'];
    if (buffer) sgdMomentum(p, g, buffer.subarray(from, to), n, lr, c.momentum ?? 0, c.nesterov ?? false, c.weightDecay ?? 0, t === 1);
    else sgdPlain(p, g, n, lr, c.weightDecay ?? 0);
    return;
  }
  const beta1 = c.beta1 ?? 0.9;
  const beta2 = c.beta2 ?? 0.999;
  adam(
    p, g, slots['exp_avg']!.subarray(from, to), slots['exp_avg_sq']!.subarray(from, to), n,
    beta1, beta2, c.eps ?? 1e-8, lr / (1 - beta1 ** t), Math.sqrt(1 - beta2 ** t),
    c.type === 'adamw' ? 0 : (c.weightDecay ?? 0), c.type === 'adamw' ? 1 - lr * c.weightDecay : 1,
  );
}

// The update loops are top-level functions with numeric arguments only: V8 keeps them monomorphic
// and runs them about twice as fast as the same loop inside a method (≈5 ns per parameter).

function adam(
  params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array, n: number,
  beta1: number, beta2: number, eps: number, stepSize: number, correction2Sqrt: number, l2: number, decay: number,
): void {
  const keep1 = 1 - beta1;
  const keep2 = 1 - beta2;
  for (let i = 0; i < n; i++) {
    const p = params[i]! * decay;
    const g = grads[i]! + l2 * params[i]!;
    const mi = Math.fround(beta1 * m[i]! + keep1 * g);
    const vi = Math.fround(beta2 * v[i]! + keep2 * g * g);
    m[i] = mi;
    v[i] = vi;
    params[i] = p - (stepSize * mi) / (Math.sqrt(vi) / correction2Sqrt + eps);
  }
}

function sgdMomentum(params: Float32Array, grads: Float32Array, buffer: Float32Array, n: number, lr: number, mu: number, nesterov: boolean, wd: number, first: boolean): void {
  for (let i = 0; i < n; i++) {
    const g = grads[i]! + wd * params[i]!;
    const b = first ? Math.fround(g) : Math.fround(mu * buffer[i]! + g);
    buffer[i] = b;
    params[i] = params[i]! - lr * (nesterov ? g + mu * b : b);
  }
}

function sgdPlain(params: Float32Array, grads: Float32Array, n: number, lr: number, wd: number): void {
  for (let i = 0; i < n; i++) params[i] = params[i]! - lr * (grads[i]! + wd * params[i]!);
}

/** torch.nn.utils.clip_grad_norm_'s factor for a gradient of global norm `norm`: min(1, max / (norm + 1e-6)); 1 without a maximum. */
export function clipCoefficient(norm: number, maxNorm: number | undefined): number {
  return maxNorm === undefined ? 1 : Math.min(1, maxNorm / (norm + 1e-6));
}

/** Multiply grads [from, to) by a clip coefficient (nothing to do at 1, the common case). */
export function scaleRange(grads: Float32Array, coefficient: number, from: number, to: number): void {
  if (coefficient < 1) for (let i = from; i < to; i++) grads[i] = grads[i]! * coefficient;
}

export function validateOptimizer(c: OptimizerConfig): void {
  const inRange = (name: string, value: number | undefined, low: number, high: number) => {
    if (value !== undefined && !(value >= low && value < high)) throw new RangeError(`${c.type} ${name} must be in [${low}, ${high}), got ${value}`);
  };
  if (c.type === 'sgd') {
    inRange('momentum', c.momentum, 0, 1);
    if (c.nesterov && !((c.momentum ?? 0) > 0)) throw new RangeError('Nesterov momentum requires momentum > 0');
  } else {
    inRange('beta1', c.beta1, 0, 1);
    inRange('beta2', c.beta2, 0, 1);
    if (c.eps !== undefined && !(c.eps > 0)) throw new RangeError(`${c.type} eps must be positive, got ${c.eps}`);
  }
  if (c.weightDecay !== undefined && !(c.weightDecay >= 0)) throw new RangeError(`${c.type} weightDecay must be ≥ 0, got ${c.weightDecay}`);
}
