/**
 * The training engine: one optimizer step per logical batch, whatever the backend.
 *
 * The logical batch is cut into micro-batches of a fixed size (gradient accumulation), which are
 * handed out in contiguous blocks to the replicas: the main thread's own replica, or — with
 * workers > 1 — one replica per worker thread, each with its own wasm backend. Parameters and
 * running statistics live in SharedArrayBuffers that every replica loads from, each worker writes
 * its summed gradient into its own shared slice; then each worker adds up all the slices (in worker
 * order) for its share of the parameters, the main thread turns the partial squared norms into the
 * clipping coefficient, and each worker applies the optimizer step to its share. One optimizer step,
 * computed in parallel; replicas therefore hold bit-identical weights.
 *
 * BatchNorm follows PyTorch: statistics per micro-batch (as DDP computes them per GPU). The running
 * statistics are combined as if the micro-batches had run one after another in batch order — every
 * micro-batch starts from the step's running values and reports its update, and the engine composes
 * the updates (EMA: R_K = keep^K·R_0 + Σ_k keep^(K−k)·(D_k − keep·R_0)). Random masks are seeded by
 * (seed, step, micro-batch index). So for a fixed micro-batch size the result of a step does not
 * depend on the number of workers, except through float reassociation of the gradient sum.
 */
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../../backend/index.js';
import { UserError } from '../../util/index.js';
import { lossCoefficients, lossDenominator, validateLossSpec, type LossSpec } from './loss.js';
import { FlatOptimizer, clipGradients, globalNorm } from './optimizer.js';
import type { BufferRule, Layout } from './params.js';
import { WorkerClient } from './pool.js';
import { loadProvider, type ModelProvider } from './provider.js';
import { Replica, type MicroBatch, type MicroResult } from './replica.js';
import type { EngineBatch, EngineOptions, EngineState, LoadReport, StateDict, StepResult, TrainingEngine } from './types.js';

/**
 * Wasm heap bytes a training pass takes per float of layer output: tfjs keeps every intermediate of
 * the forward pass and every gradient until the backward pass ends. Measured high-water marks (whole
 * heap ÷ activation floats, BatchNorm as the fused op that keeps only its input): ResNet50 224² 12.0 B
 * at 4 images, 13.2 B at 3; EfficientNet-B3 300² 14.9 B at 2 images, 16.8 B at 1 (BENCHMARKS.md);
 * 18 leaves room for fragmentation.
 */
const wasmBytesPerActivationFloat = 18;
/** What a micro-batch may use of the 4 GiB wasm heap; weights, optimizer-free replicas and XNNPACK's packed copies need the rest. */
const wasmActivationBudget = 3 * 1024 ** 3;

interface Executor {
  /** where this executor's summed gradient lands (a worker's shared slice, or a local array) */
  readonly gradBuffer: Float32Array;
  gradients(version: number, micro: MicroBatch[], scale: number, seed: number, step: number, gradOut: Float32Array): Promise<MicroResult[]>;
  predict(version: number, images: Float32Array, size: number, chunk: number): Promise<Float32Array>;
  numTensors(): Promise<number>;
  dispose(): Promise<void>;
}

/** The replica in this thread; it doubles as the engine's master model. */
class LocalExecutor implements Executor {
  private loaded = -1;
  private buffersCurrent = false;
  readonly gradBuffer: Float32Array;
  constructor(
    private readonly replica: Replica,
    private readonly params: Float32Array,
    private readonly buffers: Float32Array,
  ) {
    this.gradBuffer = new Float32Array(replica.layout.paramCount);
  }
  sync(version: number): void {
    if (version !== this.loaded) {
      this.replica.writeParams(this.params);
      this.loaded = version;
      this.buffersCurrent = false;
    }
    if (!this.buffersCurrent) this.replica.writeBuffers(this.buffers);
    this.buffersCurrent = true;
  }
  async gradients(version: number, micro: MicroBatch[], scale: number, seed: number, step: number, gradOut: Float32Array): Promise<MicroResult[]> {
    this.sync(version);
    const results = this.replica.gradients(micro, scale, seed, step, this.buffers, gradOut);
    this.buffersCurrent = false;
    return results;
  }
  async predict(version: number, images: Float32Array, size: number, chunk: number): Promise<Float32Array> {
    this.sync(version);
    return this.replica.predict(images, size, chunk);
  }
  async numTensors(): Promise<number> {
    return tf.memory().numTensors;
  }
  async dispose(): Promise<void> {}
}

class WorkerExecutor implements Executor {
  constructor(
    private readonly client: WorkerClient,
    readonly gradBuffer: Float32Array,
  ) {}
  /** The worker writes its gradient straight into `gradBuffer` (shared memory); `gradOut` is that same buffer. */
  gradients(version: number, micro: MicroBatch[], scale: number, seed: number, step: number): Promise<MicroResult[]> {
    return this.client.gradients(version, micro, scale, seed, step);
  }
  predict(version: number, images: Float32Array, size: number, chunk: number): Promise<Float32Array> {
    return this.client.predict(version, images, size, chunk);
  }
  reduce(from: number, to: number): Promise<number> {
    return this.client.reduce(from, to);
  }
  update(from: number, to: number, lr: number, t: number, coefficient: number): Promise<void> {
    return this.client.update(from, to, lr, t, coefficient);
  }
  numTensors(): Promise<number> {
    return this.client.numTensors();
  }
  dispose(): Promise<void> {
    return this.client.terminate();
  }
}

function sharedFloats(count: number, shared: boolean): Float32Array {
  return shared ? new Float32Array(new SharedArrayBuffer(count * 4)) : new Float32Array(count);
}

/** Compose the buffer updates of micro-batches that each started from `start`, in batch order. */
export function combineBuffers(start: Float32Array, layout: Layout, updates: Float32Array[], out: Float32Array): void {
  const k = updates.length;
  if (k === 1) {
    out.set(updates[0]!);
    return;
  }
  layout.buffers.forEach((slot, index) => {
    const rule: BufferRule = layout.bufferRules[index]!;
    for (let j = slot.offset; j < slot.offset + slot.size; j++) {
      const r0 = start[j]!;
      let value: number;
      if (rule.kind === 'ema') {
        value = rule.keep ** k * r0;
        updates.forEach((d, i) => {
          value += rule.keep ** (k - 1 - i) * (d[j]! - rule.keep * r0);
        });
      } else {
        value = r0;
        for (const d of updates) value += d[j]! - r0;
      }
      out[j] = value;
    }
  });
}

/** Split [0, n) into `parts` contiguous blocks as equal as possible. */
function blocks(n: number, parts: number): Array<[number, number]> {
  return Array.from({ length: parts }, (_, w) => [Math.floor((w * n) / parts), Math.floor(((w + 1) * n) / parts)] as [number, number]);
}

class Engine implements TrainingEngine {
  private version = 0;
  private stepCount = 0;
  private readonly gradSlices: Float32Array[];
  private readonly gradSum: Float32Array;
  private disposed = false;

  constructor(
    private readonly options: EngineOptions,
    private readonly provider: ModelProvider,
    private readonly master: Replica,
    private readonly executors: Executor[],
    private readonly params: Float32Array,
    private readonly buffers: Float32Array,
    private readonly optimizer: FlatOptimizer,
    private readonly lossSpec: LossSpec,
    readonly microBatchLimit: number | undefined,
    readonly backend: string,
    gradSum: Float32Array,
  ) {
    this.gradSlices = executors.map((e) => e.gradBuffer);
    this.gradSum = gradSum;
  }

  get workers(): number {
    return this.executors.length;
  }

  get layout(): Layout {
    return this.master.layout;
  }

  /**
   * The micro-batches of a logical batch, as image ranges per executor. An explicit micro-batch size
   * cuts the batch the same way whatever the number of workers (so results do not depend on it);
   * the default gives each worker its shard, split into as few near-equal passes as the heap allows.
   */
  private partition(size: number): Array<Array<[number, number]>> {
    const workers = this.executors.length;
    const ranges = (start: number, end: number, parts: number): Array<[number, number]> =>
      blocks(end - start, parts).map(([a, b]) => [start + a, start + b] as [number, number]).filter(([a, b]) => b > a);
    if (this.options.microBatch !== undefined) {
      const m = this.microBatchSize(size);
      const all: Array<[number, number]> = [];
      for (let start = 0; start < size; start += m) all.push([start, Math.min(size, start + m)]);
      return blocks(all.length, workers).map(([a, b]) => all.slice(a, b));
    }
    const cap = this.microBatchSize(size);
    return blocks(size, workers).map(([start, end]) => (end > start ? ranges(start, end, Math.ceil((end - start) / cap)) : []));
  }

  /** Images per forward/backward pass for a logical batch of `size` (the largest, when passes differ). */
  microBatchSize(size: number): number {
    const shard = Math.ceil(size / this.executors.length);
    return Math.max(1, Math.min(this.options.microBatch ?? shard, this.microBatchLimit ?? Infinity));
  }

  private checkOpen(): void {
    if (this.disposed) throw new Error('the training engine has been disposed');
  }

  async step(batch: EngineBatch, lr: number): Promise<StepResult> {
    this.checkOpen();
    const { size, labels, targets } = batch;
    const per = this.master.imageSize * this.master.imageSize * 3;
    const classes = this.master.numClasses;
    if (!(size > 0)) throw new UserError('a training batch needs at least one image');
    if (batch.images.length !== size * per) throw new UserError(`batch images hold ${batch.images.length} floats; ${size} images of ${this.master.imageSize}² need ${size * per}`);
    if (labels.length < size) throw new UserError(`batch has ${labels.length} labels for ${size} images`);
    for (let i = 0; i < size; i++) if (!(labels[i]! >= 0 && labels[i]! < classes)) throw new UserError(`label ${labels[i]} is outside 0..${classes - 1}`);
    if (targets && targets.length !== size * classes) throw new UserError(`soft targets hold ${targets.length} values; need ${size}×${classes}`);
    if (!(lr >= 0) || !Number.isFinite(lr)) throw new UserError(`learning rate must be a finite number ≥ 0, got ${lr}`);

    const coefficients = lossCoefficients(this.lossSpec, labels, size, targets);
    const denominator = lossDenominator(this.lossSpec, labels, size, targets);
    const scale = denominator > 0 ? 1 / denominator : 0;
    const micro: MicroBatch[] = [];
    const assignment: Array<[number, number]> = [];
    for (const shard of this.partition(size)) {
      const first = micro.length;
      for (const [start, end] of shard) {
        const n = end - start;
        micro.push({
          index: micro.length,
          size: n,
          images: batch.images.slice(start * per, end * per),
          labels: labels.slice(start, end),
          coefficients: coefficients.slice(start * classes, end * classes),
        });
      }
      assignment.push([first, micro.length]);
    }
    const seed = this.options.seed;
    const step = this.stepCount;
    const started = performance.now();
    const replies = await Promise.all(
      this.executors.map((executor, w) => {
        const [from, to] = assignment[w]!;
        if (from === to) {
          this.gradSlices[w]!.fill(0);
          return Promise.resolve([] as MicroResult[]);
        }
        return executor.gradients(this.version, micro.slice(from, to), scale, seed, step, this.gradSlices[w]!);
      }),
    ).catch((error: unknown) => {
      // emscripten's abort() is how a wasm heap past 4 GiB shows; the replica is unusable afterwards
      if (/Aborted\(|out of memory/i.test(String((error as Error)?.message ?? error))) {
        throw new UserError(
          `the wasm heap (4 GiB per worker) ran out at ${Math.max(...micro.map((m) => m.size))} images per pass of ${this.options.model}; ` +
            'pass a smaller --micro-batch (the engine must be recreated)',
        );
      }
      throw error;
    });
    const computed = performance.now();
    const results = replies.flat().sort((a, b) => a.index - b.index);
    let lossSum = 0;
    let correct = 0;
    for (const r of results) {
      lossSum += r.lossSum;
      correct += r.correct;
    }
    combineBuffers(this.buffers.slice(), this.master.layout, results.map((r) => r.buffers), this.buffers);
    const gradNorm = await this.update(lr);
    this.stepCount += 1;
    this.version += 1;
    return { loss: lossSum * scale, correct, size, gradNorm, timing: { gradientsMs: computed - started, updateMs: performance.now() - computed } };
  }

  /**
   * Sum the gradients in worker order (the only place the number of workers shows: float
   * reassociation), clip, and apply the optimizer. With workers each one does this for its own slice
   * of the parameters, in parallel, on the shared buffers; otherwise the main thread does all of it.
   */
  private async update(lr: number): Promise<number> {
    const clip = this.options.clipGradNorm;
    const workers = this.executors.filter((e): e is WorkerExecutor => e instanceof WorkerExecutor);
    if (workers.length === this.executors.length && workers.length > 1) {
      const slices = blocks(this.master.layout.paramCount, workers.length);
      const squares = await Promise.all(workers.map((w, i) => w.reduce(...slices[i]!)));
      const norm = Math.sqrt(squares.reduce((a, b) => a + b, 0));
      const coefficient = clip !== undefined ? Math.min(1, clip / (norm + 1e-6)) : 1;
      const t = this.optimizer.advance();
      await Promise.all(workers.map((w, i) => w.update(...slices[i]!, lr, t, coefficient)));
      return norm;
    }
    const grads = this.gradSum;
    grads.set(this.gradSlices[0]!);
    for (let w = 1; w < this.gradSlices.length; w++) {
      const slice = this.gradSlices[w]!;
      for (let i = 0; i < grads.length; i++) grads[i] = grads[i]! + slice[i]!;
    }
    const norm = clip !== undefined ? clipGradients(grads, clip) : globalNorm(grads);
    this.optimizer.apply(this.params, grads, lr);
    return norm;
  }

  async predict(images: Float32Array, size: number): Promise<Float32Array> {
    this.checkOpen();
    const per = this.master.imageSize * this.master.imageSize * 3;
    if (images.length !== size * per) throw new UserError(`images hold ${images.length} floats; ${size} images of ${this.master.imageSize}² need ${size * per}`);
    const chunk = this.microBatchSize(Math.max(1, size));
    const parts = blocks(size, this.executors.length);
    const logits = await Promise.all(
      this.executors.map((executor, w) => {
        const [from, to] = parts[w]!;
        if (from === to) return Promise.resolve(new Float32Array(0));
        return executor.predict(this.version, images.slice(from * per, to * per), to - from, chunk);
      }),
    );
    const out = new Float32Array(size * this.master.numClasses);
    let offset = 0;
    for (const part of logits) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }

  /** Bring the master model up to date with the shared parameters (workers mode: it is not a replica that trains). */
  private syncMaster(): void {
    this.master.writeParams(this.params);
    this.master.writeBuffers(this.buffers);
  }

  async getState(): Promise<EngineState> {
    this.checkOpen();
    this.syncMaster();
    const weights = await this.provider.toStateDict(this.master.model, this.options.model);
    const exported = this.optimizer.exportState();
    const optimizer: StateDict = new Map();
    optimizer.set('step', { dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(exported.step)) });
    for (const [slotName, values] of Object.entries(exported.slots)) {
      for (const slot of this.master.layout.params) {
        optimizer.set(`${slotName}/${slot.name}`, { dtype: 'float32', shape: slot.shape, data: values.slice(slot.offset, slot.offset + slot.size) });
      }
    }
    return { weights, optimizer, step: this.stepCount, rng: { seed: this.options.seed, step: this.stepCount } };
  }

  async setState(state: EngineState): Promise<void> {
    this.checkOpen();
    await this.provider.loadStateDict(this.master.model, this.options.model, state.weights, { allowHeadSwap: false });
    this.master.readParams(this.params);
    this.master.readBuffers(this.buffers);
    const slots: Record<string, Float32Array> = {};
    for (const slotName of this.optimizer.slotNames()) {
      const values = new Float32Array(this.master.layout.paramCount);
      for (const slot of this.master.layout.params) {
        const entry = state.optimizer.get(`${slotName}/${slot.name}`);
        if (!entry || entry.dtype !== 'float32' || entry.data.length !== slot.size) {
          throw new UserError(`optimizer state has no ${slotName} for ${slot.name} (was it saved with another optimizer or model?)`);
        }
        values.set(entry.data as Float32Array, slot.offset);
      }
      slots[slotName] = values;
    }
    const savedStep = state.optimizer.get('step');
    const optimizerStep = savedStep ? Number((savedStep.data as BigInt64Array)[0]) : state.step;
    this.optimizer.importState({ step: optimizerStep, slots });
    const rng = state.rng as { step?: number } | undefined;
    this.stepCount = typeof rng?.step === 'number' ? rng.step : state.step;
    this.version += 1;
  }

  async loadWeights(dict: StateDict, options: { allowHeadSwap?: boolean } = {}): Promise<LoadReport> {
    this.checkOpen();
    this.syncMaster();
    const report = await this.provider.loadStateDict(this.master.model, this.options.model, dict, options);
    this.master.readParams(this.params);
    this.master.readBuffers(this.buffers);
    this.version += 1;
    return report;
  }

  async numTensors(): Promise<number[]> {
    const local = tf.memory().numTensors;
    if (this.executors[0] instanceof LocalExecutor) return [local];
    return [local, ...(await Promise.all(this.executors.map((e) => e.numTensors())))];
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await Promise.all(this.executors.map((e) => e.dispose()));
    this.master.dispose();
  }
}

export async function createEngine(options: EngineOptions): Promise<TrainingEngine & { readonly layout: Layout; microBatchSize(size: number): number; readonly backend: string }> {
  if (!Number.isInteger(options.seed)) throw new UserError(`seed must be an integer, got ${options.seed}`);
  const selection = await useBackend(options.backend ?? 'auto');
  const backend = selection.backend;
  const workers = options.workers ?? (backend === 'wasm' ? availableParallelism() : 1);
  if (!Number.isInteger(workers) || workers < 1) throw new UserError(`workers must be a positive integer, got ${workers}`);
  if (workers > 1 && backend === 'tensorflow') {
    throw new UserError('--workers > 1 is for the wasm and cpu backends; tfjs-node already uses every core in one process');
  }
  if (options.microBatch !== undefined && !(Number.isInteger(options.microBatch) && options.microBatch > 0)) {
    throw new UserError(`micro-batch must be a positive integer, got ${options.microBatch}`);
  }
  const provider = await loadProvider(options.providerModule);
  const build = { ...options.build, seed: options.build.seed ?? options.seed };
  const master = new Replica(provider, options.model, build);
  const lossSpec: LossSpec = { numClasses: master.numClasses, labelSmoothing: options.labelSmoothing ?? 0, classWeights: options.classWeights };
  try {
    validateLossSpec(lossSpec);
  } catch (error) {
    master.dispose();
    throw new UserError((error as Error).message);
  }
  const layout = master.layout;
  const shared = workers > 1;
  const params = sharedFloats(layout.paramCount, shared);
  const buffers = sharedFloats(layout.bufferCount, shared);
  master.readParams(params);
  master.readBuffers(buffers);
  let optimizer: FlatOptimizer;
  try {
    optimizer = new FlatOptimizer(options.optimizer, layout.paramCount, shared);
  } catch (error) {
    master.dispose();
    throw new UserError((error as Error).message);
  }
  const limit = backend === 'wasm' ? Math.max(1, Math.floor(wasmActivationBudget / (master.activationFloatsPerImage() * wasmBytesPerActivationFloat))) : undefined;
  // the summed gradient: shared so that workers can reduce slices of it in place
  const gradSum = sharedFloats(layout.paramCount, shared);
  let executors: Executor[];
  if (!shared) {
    executors = [new LocalExecutor(master, params, buffers)];
  } else {
    const clients: WorkerExecutor[] = [];
    const allGrads = Array.from({ length: workers }, () => sharedFloats(layout.paramCount, true));
    const slots = Object.fromEntries(Object.entries(optimizer.slotArrays).map(([name, values]) => [name, values.buffer as SharedArrayBuffer]));
    try {
      for (let w = 0; w < workers; w++) {
        const grads = allGrads[w]!;
        const client = new WorkerClient({
          providerModule: options.providerModule,
          model: options.model,
          build: { ...build, initialize: false },
          backend,
          params: params.buffer as SharedArrayBuffer,
          buffers: buffers.buffer as SharedArrayBuffer,
          grads: grads.buffer as SharedArrayBuffer,
          allGrads: allGrads.map((g) => g.buffer as SharedArrayBuffer),
          reduced: gradSum.buffer as SharedArrayBuffer,
          optimizer: options.optimizer,
          slots,
        });
        clients.push(new WorkerExecutor(client, grads));
        await client.ready;
      }
    } catch (error) {
      await Promise.all(clients.map((c) => c.dispose()));
      master.dispose();
      throw error;
    }
    executors = clients;
  }
  return new Engine(options, provider, master, executors, params, buffers, optimizer, lossSpec, limit, backend, gradSum);
}
