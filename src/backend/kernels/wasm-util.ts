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

/**
 * out[d0][d1][d2][d3] = in[...] for a 4-D permutation. The loop runs in output order with the
 * innermost input stride hoisted, which V8 compiles to a tight strided copy; for the permutations
 * used here it runs at memory speed and several times faster than the wasm backend's Transpose.
 */
export function transpose4(input: Float32Array, shape: Shape4, perm: Shape4, out: Float32Array): Shape4 {
  const strides = [shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3], 1];
  const outShape = perm.map((p) => shape[p]!) as Shape4;
  const s0 = strides[perm[0]]!;
  const s1 = strides[perm[1]]!;
  const s2 = strides[perm[2]]!;
  const s3 = strides[perm[3]]!;
  const [n0, n1, n2, n3] = outShape;
  let o = 0;
  if (s3 === 1) {
    for (let a = 0; a < n0; a++)
      for (let b = 0; b < n1; b++)
        for (let c = 0; c < n2; c++) {
          const base = a * s0 + b * s1 + c * s2;
          out.set(input.subarray(base, base + n3), o);
          o += n3;
        }
    return outShape;
  }
  for (let a = 0; a < n0; a++)
    for (let b = 0; b < n1; b++)
      for (let c = 0; c < n2; c++) {
        let i = a * s0 + b * s1 + c * s2;
        for (let d = 0; d < n3; d++, i += s3) out[o++] = input[i]!;
      }
  return outShape;
}

/**
 * [A, B, C] → [C, B, A]: the layout change between NHWC activations and the "channels as batch"
 * layout the filter gradient is computed in. The loop walks B outermost so that each step reads A
 * contiguous runs of C and writes C runs of A, both small enough to stay in cache.
 */
export function swapOuterInner(input: Float32Array, a: number, b: number, c: number, out: Float32Array): void {
  const inA = b * c;
  const outC = b * a;
  for (let j = 0; j < b; j++) {
    for (let i = 0; i < a; i++) {
      let src = i * inA + j * c;
      let dst = j * a + i;
      for (let k = 0; k < c; k++, src++, dst += outC) out[dst] = input[src]!;
    }
  }
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

/** A new wasm tensor holding a permutation of a 4-D one. */
export function permute(scope: Scope, x: Info, perm: Shape4): Info {
  const shape = x.shape as Shape4;
  const outShape = perm.map((p) => shape[p]!);
  const out = scope.output(outShape);
  transpose4(view(scope.backend, x), shape, perm, view(scope.backend, out));
  return out;
}
