import { DataError } from '../util/index.js';

/** A tensor of a PyTorch state dict, in PyTorch's layout (row-major, torch's dimension order). */
export interface StateTensor {
  dtype: 'float32' | 'int64';
  shape: number[];
  data: Float32Array | BigInt64Array;
}

/** torchvision keys → tensors, in torchvision's key order. */
export type StateDict = Map<string, StateTensor>;

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function float32Tensor(shape: number[], data: Float32Array): StateTensor {
  return { dtype: 'float32', shape, data };
}

export function int64Tensor(shape: number[], data: BigInt64Array): StateTensor {
  return { dtype: 'int64', shape, data };
}

/** Checks that a tensor's data matches its dtype and shape; a bug (not bad input) if it does not. */
export function assertWellFormed(key: string, tensor: StateTensor): void {
  const expected = tensor.dtype === 'float32' ? Float32Array : BigInt64Array;
  if (!(tensor.data instanceof expected)) throw new Error(`${key}: dtype ${tensor.dtype} but data is a ${tensor.data.constructor.name}`);
  if (!tensor.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new Error(`${key}: bad shape [${tensor.shape.join(', ')}]`);
  if (tensor.data.length !== numel(tensor.shape)) throw new Error(`${key}: shape [${tensor.shape.join(', ')}] but ${tensor.data.length} values`);
}

/**
 * Refuses a float tensor holding NaN or ±Infinity (also a float64 value beyond float32's range, which
 * the downcast made infinite). No trained weight is non-finite; one that loads gives confident
 * predictions from damaged weights, since a ReLU turns NaN into 0 in tfjs (PyTorch keeps the NaN).
 */
export function assertFinite(key: string, tensor: StateTensor, file: string): void {
  if (!(tensor.data instanceof Float32Array)) return;
  const data = tensor.data;
  for (let i = 0; i < data.length; i++) {
    const value = data[i]!;
    if (value - value !== 0) {
      throw new DataError(file, `${key}: element ${i} is ${value}: weights must be finite float32 numbers (a float64 beyond ±3.4e38 becomes Infinity); the file is damaged, or comes from a training run that diverged`);
    }
  }
}
