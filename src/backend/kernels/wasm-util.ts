/**
 * The small toolkit the wasm training kernels are written with. A kernel receives TensorInfos that
 * live on the wasm heap; it may call the backend's own (already set-up) kernels through `call`, and
 * must release every intermediate it makes exactly once (`Scope`), because the engine only tracks the
 * output. Typed-array views onto the heap are taken only after the last allocation of a step: any
 * malloc may grow the wasm memory, which detaches the old ArrayBuffer and every view on it.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

export type Info = tf.TensorInfo;
export type Shape4 = [number, number, number, number];

/** Run one of the wasm backend's registered kernels directly (no engine, no tape). */
export function call(backend: BackendWasm, kernelName: string, inputs: Record<string, Info>, attrs: Record<string, unknown> = {}): Info {
  const kernel = tf.getKernel(kernelName, 'wasm');
  if (!kernel) throw new Error(`wasm kernel '${kernelName}' is not registered`);
  const out = kernel.kernelFunc({ inputs: inputs as tf.NamedTensorInfoMap, attrs: attrs as tf.NamedAttrMap, backend });
  if (Array.isArray(out)) throw new Error(`wasm kernel '${kernelName}' returned several outputs`);
  return out;
}

/** Owns intermediates: everything `keep`-ed is disposed by `dispose()` except what is returned. */
export class Scope {
  private readonly owned: Info[] = [];
  constructor(readonly backend: BackendWasm) {}
  keep<T extends Info>(info: T): T {
    this.owned.push(info);
    return info;
  }
  call(kernelName: string, inputs: Record<string, Info>, attrs: Record<string, unknown> = {}): Info {
    return this.keep(call(this.backend, kernelName, inputs, attrs));
  }
  output(shape: number[]): Info {
    return this.keep(this.backend.makeOutput(shape, 'float32'));
  }
  /** A zero-copy view with a new shape (the wasm Reshape kernel only bumps the reference count). */
  reshape(x: Info, shape: number[]): Info {
    return this.call('Reshape', { x }, { shape });
  }
  /** Dispose every intermediate except `result`, which is handed to the caller. */
  finish(result: Info): Info {
    for (const info of this.owned) if (info !== result) this.backend.disposeData(info.dataId);
    this.owned.length = 0;
    return result;
  }
  dispose(): void {
    for (const info of this.owned) this.backend.disposeData(info.dataId);
    this.owned.length = 0;
  }
}

export function view(backend: BackendWasm, info: Info): Float32Array {
  if (info.dtype !== 'float32') throw new Error(`expected a float32 tensor, got ${info.dtype}`);
  return backend.typedArrayFromHeap(info) as Float32Array;
}

/** [A, B, C] → [B, A, C]: moves contiguous runs of C. */
export function swapOuter(input: Float32Array, a: number, b: number, c: number, out: Float32Array): void {
  let dst = 0;
  if (c >= 32) {
    for (let j = 0; j < b; j++)
      for (let i = 0; i < a; i++, dst += c) {
        const src = (i * b + j) * c;
        out.set(input.subarray(src, src + c), dst);
      }
    return;
  }
  for (let j = 0; j < b; j++)
    for (let i = 0; i < a; i++) {
      let src = (i * b + j) * c;
      for (let k = 0; k < c; k++) out[dst++] = input[src++]!;
    }
}

/** [rows, cols] → [cols, rows], in 32×32 tiles so both sides stay in cache. */
export function transpose2(input: Float32Array, rows: number, cols: number, out: Float32Array): void {
  const block = 32;
  for (let r0 = 0; r0 < rows; r0 += block) {
    const r1 = Math.min(rows, r0 + block);
    for (let c0 = 0; c0 < cols; c0 += block) {
      const c1 = Math.min(cols, c0 + block);
      for (let c = c0; c < c1; c++) {
        let o = c * rows + r0;
        let i = r0 * cols + c;
        for (let r = r0; r < r1; r++, i += cols) out[o++] = input[i]!;
      }
    }
  }
}
