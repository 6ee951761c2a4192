/**
 * BatchMatMul with a transposed operand. tfjs-backend-wasm 4.22 sends only the untransposed product
 * to XNNPACK's GEMM; transposeA or transposeB takes a scalar loop 10–20× slower (profile in
 * bench/BENCHMARKS.md). Every matMul gradient asks for one: d(x·W) is dy·Wᵀ and xᵀ·dy, so a Dense
 * layer's backward pass ran at that speed (ConvNeXt's pointwise Linears: ~90% of its step).
 * Here a transposed operand is copied transposed (one cache-blocked pass, cheap next to the
 * product) and the product runs on the fast path. Batched products (batch > 1), which no osteo
 * model's gradient produces, go to the kernel this replaces.
 */
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { Fallback } from './fast-ops.js';
import { Scope, transpose2, view, type Info } from './wasm-util.js';

interface BatchMatMulArgs {
  inputs: { a: Info; b: Info };
  backend: BackendWasm;
  attrs: { transposeA: boolean; transposeB: boolean };
}

const batchOf = (shape: number[]) => shape.slice(0, -2).reduce((size, d) => size * d, 1);

export function batchMatMul(args: BatchMatMulArgs, fallback: Fallback): Info | Info[] {
  const { inputs, backend, attrs } = args;
  const { a, b } = inputs;
  const { transposeA, transposeB } = attrs;
  const plain = fallback as unknown as (args: BatchMatMulArgs) => Info;
  if ((!transposeA && !transposeB) || a.dtype !== 'float32' || b.dtype !== 'float32') return plain(args);
  if (a.shape.length < 2 || b.shape.length < 2 || batchOf(a.shape) !== 1 || batchOf(b.shape) !== 1) return plain(args);
  const scope = new Scope(backend);
  try {
    const [aRows, aCols] = a.shape.slice(-2) as [number, number];
    const [bRows, bCols] = b.shape.slice(-2) as [number, number];
    const left = transposeA ? scope.output([1, aCols, aRows]) : scope.reshape(a, [1, aRows, aCols]);
    const right = transposeB ? scope.output([1, bCols, bRows]) : scope.reshape(b, [1, bRows, bCols]);
    // Heap views only after the last allocation (a malloc may grow and detach the heap).
    if (transposeA) transpose2(view(backend, a), aRows, aCols, view(backend, left));
    if (transposeB) transpose2(view(backend, b), bRows, bCols, view(backend, right));
    const product = scope.keep(plain({ inputs: { a: left, b: right }, backend, attrs: { transposeA: false, transposeB: false } }));
    const rank = Math.max(a.shape.length, b.shape.length);
    const outShape = [...Array<number>(rank - 2).fill(1), transposeA ? aCols : aRows, transposeB ? bRows : bCols];
    return scope.finish(scope.reshape(product, outShape));
  } finally {
    scope.dispose();
  }
}
