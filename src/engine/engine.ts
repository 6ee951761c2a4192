/**
 * The training engine: one optimizer step per logical batch, whatever the backend.
 *
 * The logical batch is cut into micro-batches of a fixed size (gradient accumulation), which are
 * handed out in contiguous blocks to the replicas: the main thread's own replica, or — with
 * workers > 1, on a backend that trains in worker threads — one replica per worker thread, each with
 * its own instance of the backend. Parameters and running statistics live in SharedArrayBuffers that
 * every replica loads from, each worker writes its summed gradient into its own shared slice; then
 * each worker runs the replica reduce (reduce.ts) on its share of the parameters, the main thread
 * turns the partial squared norms into the clipping coefficient, and each worker applies the
 * optimizer step to its share. One optimizer step, computed in parallel; replicas therefore hold
 * bit-identical weights. Without workers the main thread runs the same reduce over everything.
 *
 * Which backend runs is not this file's business: it is handed the backend's handle and reads its
 * capabilities (worker threads, activation memory) and how its out-of-memory failure shows.
 *
 * BatchNorm follows PyTorch: statistics per micro-batch (as DDP computes them per GPU). The running
 * statistics are combined as if the micro-batches had run one after another in batch order — every
 * micro-batch starts from the step's running values and reports its update, and the engine composes
 * the updates (EMA: R_K = keep^K·R_0 + Σ_k keep^(K−k)·(D_k − keep·R_0)). Random masks are seeded by
 * (seed, step, micro-batch index). So for a fixed micro-batch size the result of a step does not
 * depend on the number of workers, except through float reassociation of the gradient sum.
 */
import * as tf from '@tensorflow/tfjs-core';
import { activateBackend, type ActivationMemory, type BackendHandle } from '../backend/index.js';
import { UserError } from '../util/index.js';
import { lossCoefficients, lossDenominator, validateLossSpec, type LossSpec } from './loss.js';
import { FlatOptimizer, clipCoefficient } from './optimizer.js';
import type { BufferRule, Layout } from './params.js';
import { blocks, sharedFloats, throwPendingFault, translateFault, workerCount, type PassContext } from './parallel.js';
import { WorkerClient, startClients } from './pool.js';
import { loadProvider, type ModelProvider } from './provider.js';
import { ReplicaReduce } from './reduce.js';
import { BoundReplica, Replica, type MicroBatch, type MicroResult } from './replica.js';
import type { EngineBatch, EngineOptions, EngineState, LoadReport, StateDict, StepResult, TrainingEngine } from './types.js';

interface Executor {
  /** where this executor's summed gradient lands (a worker's shared slice, or a local array) */
  readonly gradBuffer: Float32Array;
  gradients(version: number, micro: MicroBatch[], scale: number, seed: number, step: number): Promise<MicroResult[]>;
  predict(version: number, images: Float32Array, size: number, chunk: number): Promise<Float32Array>;
  /** the replica reduce over parameters [from, to): see reduce.ts */
  reduce(from: number, to: number): Promise<number>;
  update(from: number, to: number, lr: number, t: number, coefficient: number): Promise<void>;
  numTensors(): Promise<number>;
  dispose(): Promise<void>;
}

/** The replica in this thread; it doubles as the engine's master model. */
class LocalExecutor implements Executor {
  constructor(
    private readonly replica: BoundReplica,
    readonly gradBuffer: Float32Array,
    private readonly reducer: ReplicaReduce,
  ) {}
  async gradients(version: number, micro: MicroBatch[], scale: number, seed: number, step: number): Promise<MicroResult[]> {
    return this.replica.gradients(version, micro, scale, seed, step, this.gradBuffer);
  }
  async predict(version: number, images: Float32Array, size: number, chunk: number): Promise<Float32Array> {
    return this.replica.predict(version, images, size, chunk);
  }
  async reduce(from: number, to: number): Promise<number> {
    return this.reducer.reduce(from, to);
  }
  async update(from: number, to: number, lr: number, t: number, coefficient: number): Promise<void> {
    this.reducer.update(from, to, lr, t, coefficient);
  }
  async numTensors(): Promise<number> {
    return tf.memory().numTensors;
  }
  async dispose(): Promise<void> {}
}

/** A worker thread's replica; it writes its gradient straight into `gradBuffer` (shared memory). */
class WorkerExecutor implements Executor {
  constructor(
    private readonly client: WorkerClient,
    readonly gradBuffer: Float32Array,
  ) {}
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

class Engine implements TrainingEngine {
  private version = 0;
  private stepCount = 0;
  private readonly gradSlices: Float32Array[];
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
    private readonly handle: BackendHandle,
  ) {
    this.gradSlices = executors.map((e) => e.gradBuffer);
  }

  /** The backend's name, for logs and results. */
  get backend(): string {
    return this.handle.name;
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
   * the default gives each worker its shard, split into as few near-equal passes as the backend's activation memory allows.
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

  /** Per-step data comes from the data pipeline, not from validated config: it is checked here. */
  private checkBatch(batch: EngineBatch, lr: number): void {
    const { size, labels, targets } = batch;
    const per = this.master.imageSize * this.master.imageSize * 3;
    const classes = this.master.numClasses;
    if (!(size > 0)) throw new UserError('a training batch needs at least one image');
    if (batch.images.length !== size * per) throw new UserError(`batch images hold ${batch.images.length} floats; ${size} images of ${this.master.imageSize}² need ${size * per}`);
    if (labels.length < size) throw new UserError(`batch has ${labels.length} labels for ${size} images`);
    for (let i = 0; i < size; i++) if (!(labels[i]! >= 0 && labels[i]! < classes)) throw new UserError(`label ${labels[i]} is outside 0..${classes - 1}`);
    if (targets && targets.length !== size * classes) throw new UserError(`soft targets hold ${targets.length} values; need ${size}×${classes}`);
    if (!(lr >= 0) || !Number.isFinite(lr)) throw new UserError(`learning rate must be a finite number ≥ 0, got ${lr}`);
  }

  /** The micro-batches of each executor, numbered in batch order. */
  private cut(batch: EngineBatch, coefficients: Float32Array): MicroBatch[][] {
    const per = this.master.imageSize * this.master.imageSize * 3;
    const classes = this.master.numClasses;
    let index = 0;
    return this.partition(batch.size).map((shard) =>
      shard.map(([start, end]) => ({
        index: index++,
        size: end - start,
        images: batch.images.slice(start * per, end * per),
        labels: batch.labels.slice(start, end),
        coefficients: coefficients.slice(start * classes, end * classes),
      })),
    );
  }

  /** Every executor's forward/backward passes over its micro-batches; the results in batch order. */
  private async gradients(shards: MicroBatch[][], scale: number): Promise<MicroResult[]> {
    const perPass = Math.max(...shards.flat().map((m) => m.size));
    const replies = await Promise.all(
      this.executors.map((executor, w) => {
        const shard = shards[w]!;
        if (shard.length === 0) {
          this.gradSlices[w]!.fill(0);
          return Promise.resolve([] as MicroResult[]);
        }
        return executor.gradients(this.version, shard, scale, this.options.seed, this.stepCount);
      }),
    ).catch((error: unknown) => {
      throw translateFault(this.handle.faults, error, this.pass('training', perPass));
    });
    throwPendingFault(this.handle.faults, this.pass('training', perPass));
    return replies.flat().sort((a, b) => a.index - b.index);
  }

  private pass(doing: string, perPass: number): PassContext {
    return { doing, model: this.options.model, imageSize: this.master.imageSize, perPass };
  }

  async step(batch: EngineBatch, lr: number): Promise<StepResult> {
    this.checkOpen();
    this.checkBatch(batch, lr);
    const { size, labels, targets } = batch;
    const denominator = lossDenominator(this.lossSpec, labels, size, targets);
    const scale = denominator > 0 ? 1 / denominator : 0;
    const shards = this.cut(batch, lossCoefficients(this.lossSpec, labels, size, targets));
    const started = performance.now();
    const results = await this.gradients(shards, scale);
    const computed = performance.now();
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
   * The replica reduce, each executor on its share of the parameters: sum the replicas' gradients,
   * then — once the global norm and with it the clip coefficient are known — apply the optimizer.
   */
  private async update(lr: number): Promise<number> {
    const shares = blocks(this.master.layout.paramCount, this.executors.length);
    const squares = await Promise.all(this.executors.map((e, i) => e.reduce(...shares[i]!)));
    const norm = Math.sqrt(squares.reduce((a, b) => a + b, 0));
    const coefficient = clipCoefficient(norm, this.options.clipGradNorm);
    const t = this.optimizer.advance();
    await Promise.all(this.executors.map((e, i) => e.update(...shares[i]!, lr, t, coefficient)));
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
    ).catch((error: unknown) => {
      throw translateFault(this.handle.faults, error, this.pass('running', chunk));
    });
    throwPendingFault(this.handle.faults, this.pass('running', chunk));
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
    await this.master.readParams(this.params);
    await this.master.readBuffers(this.buffers);
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
    await this.master.readParams(this.params);
    await this.master.readBuffers(this.buffers);
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

type CreatedEngine = TrainingEngine & { readonly layout: Layout; microBatchSize(size: number): number; readonly backend: string };

/** Options arrive validated (train config, bench flags); what is checked here depends on the model or the backend. */
export async function createEngine(options: EngineOptions): Promise<CreatedEngine> {
  const handle = options.backend;
  await activateBackend(handle);
  const workers = workerCount(options.workers, handle.capabilities.workerThreads);
  const provider = await loadProvider(options.providerModule);
  const build = { ...options.build, seed: options.build.seed ?? options.seed };
  const master = new Replica(provider, options.model, build);
  const lossSpec: LossSpec = { numClasses: master.numClasses, labelSmoothing: options.labelSmoothing ?? 0, classWeights: options.classWeights };
  const layout = master.layout;
  const shared = workers > 1;
  let optimizer: FlatOptimizer;
  try {
    validateLossSpec(lossSpec);
    optimizer = new FlatOptimizer(options.optimizer, layout.paramCount, shared);
  } catch (error) {
    master.dispose();
    throw new UserError((error as Error).message);
  }
  const params = sharedFloats(layout.paramCount, shared);
  const buffers = sharedFloats(layout.bufferCount, shared);
  await master.readParams(params);
  await master.readBuffers(buffers);
  const limit = microBatchLimit(master, handle.capabilities.activationMemory);
  // the summed gradient: shared so that workers can reduce slices of it in place
  const reduced = sharedFloats(layout.paramCount, shared);
  let executors: Executor[];
  if (!shared) {
    const grads = new Float32Array(layout.paramCount);
    const reducer = new ReplicaReduce(options.optimizer, { replicaGrads: [grads], reduced, params, slots: optimizer.slotArrays });
    executors = [new LocalExecutor(new BoundReplica(master, params, buffers), grads, reducer)];
  } else {
    try {
      executors = await startWorkers(workers, { ...options, build }, { params, buffers, reduced, slots: optimizer.slotArrays });
    } catch (error) {
      master.dispose();
      throw error;
    }
  }
  return new Engine(options, provider, master, executors, params, buffers, optimizer, lossSpec, limit, handle);
}

/**
 * The most images one pass may hold: the activation budget over what an image's pass holds, and —
 * where the backend caps a single tensor (a GPU's storage-binding limit) — that cap over the largest
 * layer output of one image.
 */
export function microBatchLimit(master: Pick<Replica, 'activationFloatsPerImage' | 'largestActivationFloatsPerImage'>, memory: ActivationMemory | undefined): number | undefined {
  if (!memory) return undefined;
  let limit = Math.floor(memory.budgetBytes / (master.activationFloatsPerImage() * memory.bytesPerActivationFloat));
  if (memory.maxTensorBytes !== undefined) limit = Math.min(limit, Math.floor(memory.maxTensorBytes / (master.largestActivationFloatsPerImage() * 4)));
  return Math.max(1, limit);
}

/** Start one worker thread per replica, each with views onto the shared memory; all or none. */
async function startWorkers(
  workers: number,
  options: EngineOptions,
  memory: { params: Float32Array; buffers: Float32Array; reduced: Float32Array; slots: Readonly<Record<string, Float32Array>> },
): Promise<WorkerExecutor[]> {
  const allGrads = Array.from({ length: workers }, () => sharedFloats(memory.params.length, true));
  const shareOf = (values: Float32Array) => values.buffer as SharedArrayBuffer;
  const clients = await startClients(
    allGrads.map((grads) => ({
      providerModule: options.providerModule,
      model: options.model,
      build: { ...options.build, initialize: false },
      backend: options.backend.name,
      params: shareOf(memory.params),
      buffers: shareOf(memory.buffers),
      training: {
        grads: shareOf(grads),
        allGrads: allGrads.map(shareOf),
        reduced: shareOf(memory.reduced),
        optimizer: options.optimizer,
        slots: Object.fromEntries(Object.entries(memory.slots).map(([name, values]) => [name, shareOf(values)])),
      },
    })),
  );
  return clients.map((client, i) => new WorkerExecutor(client, allGrads[i]!));
}
