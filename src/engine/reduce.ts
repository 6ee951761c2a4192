/**
 * The replica reduce: where the replicas' gradients become one optimizer step. The main thread runs
 * it over every parameter when it is the only replica; with worker threads each worker runs it over
 * its own share of the shared memory, in parallel, between two barriers kept by the engine (all
 * shares summed before the clip coefficient is known, all updated before the next step).
 */
import { scaleRange, updateRange } from './optimizer.js';
import type { OptimizerConfig } from './types.js';

export interface ReduceMemory {
  /** each replica's summed gradient, in replica order */
  replicaGrads: Float32Array[];
  /** their sum: the gradient the optimizer applies */
  reduced: Float32Array;
  params: Float32Array;
  /** the optimizer's per-parameter state */
  slots: Readonly<Record<string, Float32Array>>;
}

export class ReplicaReduce {
  constructor(
    private readonly optimizer: OptimizerConfig,
    private readonly memory: ReduceMemory,
  ) {}

  /**
   * Sum parameters [from, to) of the replicas' gradients, always in replica order so that the
   * number of workers shows only through that float reassociation. Returns the share's sum of
   * squares (of the float32 values stored), a term of the global norm.
   */
  reduce(from: number, to: number): number {
    const { replicaGrads, reduced } = this.memory;
    let squares = 0;
    for (let i = from; i < to; i++) {
      let g = replicaGrads[0]![i]!;
      for (let r = 1; r < replicaGrads.length; r++) g += replicaGrads[r]![i]!;
      reduced[i] = g;
      squares += Math.fround(g) * Math.fround(g);
    }
    return squares;
  }

  /** Clip parameters [from, to) of the summed gradient by `coefficient` and apply optimizer step t to them. */
  update(from: number, to: number, lr: number, t: number, coefficient: number): void {
    const { reduced, params, slots } = this.memory;
    scaleRange(reduced, coefficient, from, to);
    updateRange(this.optimizer, slots, params, reduced, lr, t, from, to);
  }
}
