/**
 * A model's variables as flat float32 arrays: the trainable parameters in one, the buffers
 * (BatchNorm running statistics, frozen weights, counters) in another. The flat layout is what the
 * optimizer updates and what workers share through SharedArrayBuffers, so every replica reads the
 * exact same bits.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

export interface Slot {
  name: string; // the variable's scoped name without tfjs' uniqueness suffix: stable across processes
  shape: number[];
  offset: number;
  size: number;
}

export interface Layout {
  params: Slot[];
  buffers: Slot[];
  paramCount: number;
  bufferCount: number;
  /** How each buffer combines across micro-batches: an exponential moving average (keep = its momentum) or a counter. */
  bufferRules: BufferRule[];
}

export type BufferRule = { kind: 'ema'; keep: number } | { kind: 'sum' };

type Variable = tfl.LayerVariable;

function slots(variables: Variable[]): { slots: Slot[]; count: number } {
  let offset = 0;
  const out = variables.map((v) => {
    const size = (v.shape as number[]).reduce((a, b) => a * b, 1);
    const slot = { name: v.originalName, shape: v.shape as number[], offset, size };
    offset += size;
    return slot;
  });
  return { slots: out, count: offset };
}

/** Running-statistic buffers move as an EMA; everything else that changes in a forward pass is summed. */
function bufferRules(model: tfl.LayersModel): BufferRule[] {
  const ema = new Map<string, number>();
  for (const layer of model.layers) {
    const bn = layer as unknown as { movingMean?: Variable; movingVariance?: Variable; momentum?: number };
    if (bn.movingMean && bn.movingVariance && typeof bn.momentum === 'number') {
      ema.set(bn.movingMean.originalName, bn.momentum);
      ema.set(bn.movingVariance.originalName, bn.momentum);
    }
  }
  return model.nonTrainableWeights.map((v) => {
    const keep = ema.get(v.originalName);
    return keep === undefined ? { kind: 'sum' } : { kind: 'ema', keep };
  });
}

export function layoutOf(model: tfl.LayersModel): Layout {
  const params = slots(model.trainableWeights);
  const buffers = slots(model.nonTrainableWeights);
  const names = new Set<string>();
  for (const s of [...params.slots, ...buffers.slots]) {
    if (names.has(s.name)) throw new Error(`two variables share the name ${s.name}`);
    names.add(s.name);
  }
  return { params: params.slots, buffers: buffers.slots, paramCount: params.count, bufferCount: buffers.count, bufferRules: bufferRules(model) };
}

/** Copy variables into a flat array: every read in flight at once (a GPU backend reads only asynchronously). */
export async function readVariables(variables: Variable[], slotsOf: Slot[], out: Float32Array): Promise<void> {
  const values = await Promise.all(variables.map((v) => v.read().data()));
  values.forEach((data, i) => out.set(data as Float32Array, slotsOf[i]!.offset));
}

/** Overwrite variables from a flat array. */
export function writeVariables(variables: Variable[], slotsOf: Slot[], values: Float32Array): void {
  variables.forEach((v, i) => {
    const slot = slotsOf[i]!;
    const t = tf.tensor(values.slice(slot.offset, slot.offset + slot.size), slot.shape, 'float32');
    v.write(t);
    t.dispose();
  });
}
