/**
 * Four SIMD loops that run inside the wasm backend's own memory.
 *
 * The per-channel passes of BatchNorm and the reductions it needs are memory-bound, and a JavaScript
 * loop over a Float32Array runs them at 3–5 ns per element; wasm SIMD128 does four lanes per
 * instruction. tfjs-backend-wasm exports no such primitives and no compiler is available at install
 * time, so this file assembles a tiny WebAssembly module by hand (the binary format is small and
 * stable) and instantiates it against the backend's exported `memory`, so it reads and writes tensors
 * in place. All loops walk rows of `c` floats with `c` a multiple of 4; callers fall back to
 * JavaScript otherwise.
 *
 *   sums(a, b, rows, c, accA, accAB)        accA[k] += Σ_r a[r,k];  accAB[k] += Σ_r a[r,k]·b[r,k]
 *   affine(x, out, rows, c, mul, add)       out[r,k] = x[r,k]·mul[k] + add[k]
 *   affine2(p, q, out, rows, c, s, t, u)    out[r,k] = p[r,k]·s[k] + q[r,k]·t[k] + u[k]
 *   colsum(a, rows, c, acc)                 acc[k] += Σ_r a[r,k]
 *   dot(a, b, rows, c, acc)                 acc[k] += Σ_r a[r,k]·b[r,k]
 *
 * Pointers are byte offsets into the heap; accumulators are float32 and callers flush them into
 * float64 every few hundred rows.
 */
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

export interface SimdKernels {
  sums(a: number, b: number, rows: number, c: number, accA: number, accAB: number): void;
  affine(x: number, out: number, rows: number, c: number, mul: number, add: number): void;
  affine2(p: number, q: number, out: number, rows: number, c: number, s: number, t: number, u: number): void;
  colsum(a: number, rows: number, c: number, acc: number): void;
  dot(a: number, b: number, rows: number, c: number, acc: number): void;
}

// --- a minimal assembler -------------------------------------------------------------------------

const I32 = 0x7f;
const V128 = 0x7b;

function uleb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

function sleb(value: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = value & 0x7f;
    value >>= 7;
    const done = (value === 0 && (byte & 0x40) === 0) || (value === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const name = (text: string): number[] => [...uleb(text.length), ...[...text].map((ch) => ch.charCodeAt(0))];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

const op = {
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  tee: (i: number) => [0x22, ...uleb(i)],
  i32: (v: number) => [0x41, ...sleb(v)],
  add: [0x6a],
  mul: [0x6c],
  shl: [0x74],
  geU: [0x4f],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  br: (depth: number) => [0x0c, ...uleb(depth)],
  brIf: (depth: number) => [0x0d, ...uleb(depth)],
  end: [0x0b],
  load: [0xfd, ...uleb(0), 2, 0], // v128.load, align hint 4 bytes, offset 0
  store: [0xfd, ...uleb(11), 2, 0], // v128.store
  fadd: [0xfd, ...uleb(228)], // f32x4.add
  fmul: [0xfd, ...uleb(230)], // f32x4.mul
};

/** pointer += 16 */
const bump = (i: number) => [...op.get(i), ...op.i32(16), ...op.add, ...op.set(i)];

/**
 * for (row of rows) { reset the per-channel pointers; for (k < c step 4) body; } — `x` walks the
 * whole [rows, c] block; the body advances every data pointer itself.
 */
function rowsLoop(x: number, rows: number, c: number, end: number, rowEnd: number, reset: number[], body: number[]): number[] {
  return [
    ...op.get(x), ...op.get(rows), ...op.get(c), ...op.mul, ...op.i32(2), ...op.shl, ...op.add, ...op.set(end),
    ...op.block, ...op.loop,
    ...op.get(x), ...op.get(end), ...op.geU, ...op.brIf(1),
    ...op.get(x), ...op.get(c), ...op.i32(2), ...op.shl, ...op.add, ...op.set(rowEnd),
    ...reset,
    ...op.block, ...op.loop,
    ...op.get(x), ...op.get(rowEnd), ...op.geU, ...op.brIf(1),
    ...body,
    ...op.br(0), ...op.end, ...op.end,
    ...op.br(0), ...op.end, ...op.end,
  ];
}

function func(locals: Array<[number, number]>, body: number[]): number[] {
  const code = [...vec(locals.map(([count, type]) => [...uleb(count), type])), ...body, ...op.end];
  return [...uleb(code.length), ...code];
}

function assemble(): Uint8Array<ArrayBuffer> {
  // sums(a0 b1 rows2 c3 accA4 accAB5) locals: end6 rowEnd7 pA8 pAB9 va10(v128)
  const sums = func(
    [[4, I32], [1, V128]],
    rowsLoop(0, 2, 3, 6, 7, [...op.get(4), ...op.set(8), ...op.get(5), ...op.set(9)], [
      ...op.get(8), ...op.get(8), ...op.load, ...op.get(0), ...op.load, ...op.tee(10), ...op.fadd, ...op.store,
      ...op.get(9), ...op.get(9), ...op.load, ...op.get(10), ...op.get(1), ...op.load, ...op.fmul, ...op.fadd, ...op.store,
      ...bump(0), ...bump(1), ...bump(8), ...bump(9),
    ]),
  );
  // affine(x0 out1 rows2 c3 mul4 add5) locals: end6 rowEnd7 pM8 pA9
  const affine = func(
    [[4, I32]],
    rowsLoop(0, 2, 3, 6, 7, [...op.get(4), ...op.set(8), ...op.get(5), ...op.set(9)], [
      ...op.get(1), ...op.get(0), ...op.load, ...op.get(8), ...op.load, ...op.fmul, ...op.get(9), ...op.load, ...op.fadd, ...op.store,
      ...bump(0), ...bump(1), ...bump(8), ...bump(9),
    ]),
  );
  // affine2(p0 q1 out2 rows3 c4 s5 t6 u7) locals: end8 rowEnd9 pS10 pT11 pU12
  const affine2 = func(
    [[5, I32]],
    rowsLoop(0, 3, 4, 8, 9, [...op.get(5), ...op.set(10), ...op.get(6), ...op.set(11), ...op.get(7), ...op.set(12)], [
      ...op.get(2),
      ...op.get(0), ...op.load, ...op.get(10), ...op.load, ...op.fmul,
      ...op.get(1), ...op.load, ...op.get(11), ...op.load, ...op.fmul, ...op.fadd,
      ...op.get(12), ...op.load, ...op.fadd, ...op.store,
      ...bump(0), ...bump(1), ...bump(2), ...bump(10), ...bump(11), ...bump(12),
    ]),
  );
  // colsum(a0 rows1 c2 acc3) locals: end4 rowEnd5 pA6
  const colsum = func(
    [[3, I32]],
    rowsLoop(0, 1, 2, 4, 5, [...op.get(3), ...op.set(6)], [
      ...op.get(6), ...op.get(6), ...op.load, ...op.get(0), ...op.load, ...op.fadd, ...op.store,
      ...bump(0), ...bump(6),
    ]),
  );
  // dot(a0 b1 rows2 c3 acc4) locals: end5 rowEnd6 pA7
  const dot = func(
    [[3, I32]],
    rowsLoop(0, 2, 3, 5, 6, [...op.get(4), ...op.set(7)], [
      ...op.get(7), ...op.get(7), ...op.load, ...op.get(0), ...op.load, ...op.get(1), ...op.load, ...op.fmul, ...op.fadd, ...op.store,
      ...bump(0), ...bump(1), ...bump(7),
    ]),
  );
  const types = [
    [0x60, ...vec(Array(6).fill([I32])), ...vec([])], // 0: six i32 → ()
    [0x60, ...vec(Array(8).fill([I32])), ...vec([])], // 1: eight i32 → ()
    [0x60, ...vec(Array(4).fill([I32])), ...vec([])], // 2: four i32 → ()
    [0x60, ...vec(Array(5).fill([I32])), ...vec([])], // 3: five i32 → ()
  ];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, ...uleb(1)]])), // memory, min 1 page, no max
    ...section(3, vec([uleb(0), uleb(0), uleb(1), uleb(2), uleb(3)])),
    ...section(7, vec([[...name('sums'), 0x00, 0], [...name('affine'), 0x00, 1], [...name('affine2'), 0x00, 2], [...name('colsum'), 0x00, 3], [...name('dot'), 0x00, 4]])),
    ...section(10, vec([sums, affine, affine2, colsum, dot])),
  ];
  return new Uint8Array(bytes);
}

let compiled: WebAssembly.Module | null | undefined;
const instances = new WeakMap<object, SimdKernels | null>();

/** The SIMD loops bound to this backend's memory, or null where WebAssembly SIMD is unavailable. */
export function simdKernels(backend: BackendWasm): SimdKernels | null {
  const cached = instances.get(backend);
  if (cached !== undefined) return cached;
  let kernels: SimdKernels | null = null;
  try {
    if (compiled === undefined) compiled = new WebAssembly.Module(assemble());
    const memory = (backend.wasm as unknown as { asm?: { memory?: WebAssembly.Memory } }).asm?.memory;
    if (compiled && memory instanceof WebAssembly.Memory) {
      kernels = new WebAssembly.Instance(compiled, { env: { memory } }).exports as unknown as SimdKernels;
    }
  } catch {
    compiled = null; // no SIMD in this runtime: the JavaScript loops serve
  }
  instances.set(backend, kernels);
  return kernels;
}

/** Bytes of the backend's heap for a TensorInfo's data. */
export function heapOffset(backend: BackendWasm, dataId: object): number {
  return backend.getMemoryOffset(dataId);
}

type Heap = { _malloc(bytes: number): number; _free(pointer: number): void; HEAPF32: Float32Array };

function heapOf(backend: BackendWasm): Heap {
  return backend.wasm as unknown as Heap;
}

/** Rows summed in float32 before a flush into the float64 totals. */
const flushRows = 256;

/**
 * Per-column totals of an [rows, c] block at byte offset `a` (and of a·b when `b` is given), added
 * into float64 arrays: float32 SIMD partial sums over ≤ 256 rows, then float64.
 */
export function columnSums(backend: BackendWasm, kernels: SimdKernels, a: number, b: number | null, rows: number, c: number, totalA: Float64Array, totalAB: Float64Array | null): void {
  const heap = heapOf(backend);
  const scratch = heap._malloc(c * 8) >>> 0; // emscripten returns pointers past 2 GiB as negative i32
  try {
    const rowBytes = c * 4;
    for (let r0 = 0; r0 < rows; r0 += flushRows) {
      const n = Math.min(flushRows, rows - r0);
      const f32 = new Float32Array(heap.HEAPF32.buffer, scratch, 2 * c);
      f32.fill(0);
      if (b === null) kernels.colsum(a + r0 * rowBytes, n, c, scratch);
      else kernels.sums(a + r0 * rowBytes, b + r0 * rowBytes, n, c, scratch, scratch + c * 4);
      const after = new Float32Array(heap.HEAPF32.buffer, scratch, 2 * c);
      for (let k = 0; k < c; k++) totalA[k] += after[k]!;
      if (totalAB) for (let k = 0; k < c; k++) totalAB[k] += after[c + k]!;
    }
  } finally {
    heap._free(scratch);
  }
}

/** Copy per-channel float vectors into a scratch block on the heap; returns their byte offsets and a release function. */
export function channelVectors(backend: BackendWasm, vectors: ArrayLike<number>[]): { offsets: number[]; release(): void } {
  const heap = heapOf(backend);
  const c = vectors[0]!.length;
  const base = heap._malloc(Math.max(16, vectors.length * c * 4)) >>> 0;
  const view = new Float32Array(heap.HEAPF32.buffer, base, vectors.length * c);
  vectors.forEach((v, i) => view.set(v, i * c));
  return { offsets: vectors.map((_, i) => base + i * c * 4), release: () => heap._free(base) };
}
