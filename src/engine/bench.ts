/**
 * `osteo bench train|infer`: the engine's throughput on synthetic data, warm-up excluded, median of
 * the timed steps. The same workload runs in PyTorch through bench/torch_reference.py. On an
 * onnxruntime provider (the handle's capabilities carry onnxSessions) `bench infer` times the
 * inference engine's session instead: `--workers` is its intra-op threads.
 */
import { ensureGraphHost, type BackendHandle } from '../backend/index.js';
import { getModel, type ModelEntry, type ModelName } from '../models/index.js';
import { UserError } from '../util/index.js';
import { modelToStateDict, type StateDict } from '../weights/index.js';
import { createEngine } from './engine.js';
import { createInferenceEngine, inferenceWorkers } from './inference.js';
import { onnxPassImages } from './onnx-inference.js';
import type { EngineBatch } from './types.js';

export interface BenchOptions {
  mode: 'train' | 'infer';
  model: string;
  imageSize?: number;
  batchSize: number;
  steps: number;
  warmup?: number; // default 1
  /** The backend the command chose. */
  backend: BackendHandle;
  workers?: number;
  microBatch?: number;
  /** called after every step (timing: the engine's split of a training step) */
  onStep?: (index: number, ms: number, warmup: boolean, timing?: { gradientsMs: number; updateMs: number }) => void;
}

export interface BenchResult {
  mode: 'train' | 'infer';
  model: string;
  backend: string;
  workers: number;
  imageSize: number;
  batchSize: number;
  microBatch: number;
  stepsTimed: number;
  medianStepMs: number;
  imagesPerSec: number;
  stepMs: number[];
  /** tensors alive in each thread after the first timed step and after the last (a leak shows as growth) */
  tensorsBefore: number[];
  tensorsAfter: number[];
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Deterministic stand-in images (normalized-range noise) and balanced labels. */
export function syntheticBatch(size: number, imageSize: number, classes: number, seed: number): EngineBatch {
  const images = new Float32Array(size * imageSize * imageSize * 3);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < images.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    images[i] = ((state >>> 0) / 4294967296) * 4 - 2;
  }
  const labels = Int32Array.from({ length: size }, (_, i) => i % classes);
  return { images, labels, size };
}

/** What the timing loop needs of an engine: one timed call and its tensor count. */
interface Timed {
  run(): Promise<{ gradientsMs: number; updateMs: number } | undefined>;
  numTensors(): Promise<number[]>;
}

/** `warmup` untimed calls, then `steps` timed ones; the tensors after the first timed call and after the last. */
async function timeSteps(target: Timed, warmup: number, steps: number, onStep: BenchOptions['onStep']): Promise<{ times: number[]; tensorsBefore: number[]; tensorsAfter: number[] }> {
  const times: number[] = [];
  let tensorsBefore: number[] = [];
  for (let i = 0; i < warmup + steps; i++) {
    const start = performance.now();
    const timing = await target.run();
    const ms = performance.now() - start;
    const isWarmup = i < warmup;
    onStep?.(i, ms, isWarmup, timing);
    if (!isWarmup) times.push(ms);
    if (i === warmup) tensorsBefore = await target.numTensors();
  }
  return { times, tensorsBefore, tensorsAfter: await target.numTensors() };
}

function checkCounts(options: BenchOptions): void {
  for (const [name, value] of [['batch size', options.batchSize], ['steps', options.steps]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new UserError(`${name} must be a positive integer, got ${value}`);
  }
}

function result(options: BenchOptions, model: string, setup: { backend: string; workers: number; imageSize: number; microBatch: number }, timed: Awaited<ReturnType<typeof timeSteps>>): BenchResult {
  const medianStepMs = median(timed.times);
  return {
    mode: options.mode,
    model,
    ...setup,
    batchSize: options.batchSize,
    stepsTimed: timed.times.length,
    medianStepMs,
    imagesPerSec: options.batchSize / (medianStepMs / 1000),
    stepMs: timed.times,
    tensorsBefore: timed.tensorsBefore,
    tensorsAfter: timed.tensorsAfter,
  };
}

/**
 * `bench infer` on an onnxruntime provider: the model's ONNX graph with seeded random weights in the
 * inference engine (one session, `workers` intra-op threads), each timed step one predict of the batch.
 */
async function runOnnxBench(options: BenchOptions, entry: ModelEntry, imageSize: number, warmup: number): Promise<BenchResult> {
  if (options.mode !== 'infer') throw new UserError(`the ${options.backend.name} backend runs inference only: bench train needs a training backend (--backend wasm, webgpu, …)`);
  await ensureGraphHost();
  const built = entry.build({ imageSize, numClasses: 3, seed: 0 });
  let weights: StateDict;
  try {
    weights = await modelToStateDict(built, entry.name);
  } finally {
    built.dispose();
  }
  const workers = inferenceWorkers(options.workers, options.batchSize, options.backend.capabilities);
  const engine = await createInferenceEngine({ model: entry.name, imageSize, numClasses: 3, weights, backend: options.backend, workers });
  try {
    const batch = syntheticBatch(options.batchSize, imageSize, 3, 1);
    const timed = await timeSteps({ run: async () => (await engine.predict(batch.images, batch.size), undefined), numTensors: () => engine.numTensors() }, warmup, options.steps, options.onStep);
    return result(options, entry.name, { backend: options.backend.name, workers: engine.workers, imageSize, microBatch: Math.min(options.batchSize, onnxPassImages) }, timed);
  } finally {
    await engine.dispose();
  }
}

export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const entry = getModel(options.model);
  const imageSize = options.imageSize ?? entry.defaultImageSize;
  checkCounts(options);
  const warmup = options.warmup ?? 1;
  if (options.backend.capabilities.onnxSessions !== undefined) return runOnnxBench(options, entry, imageSize, warmup);
  const engine = await createEngine({
    model: entry.name as ModelName,
    build: { imageSize, numClasses: 3, seed: 0 },
    backend: options.backend,
    workers: options.workers,
    microBatch: options.microBatch,
    optimizer: { type: 'adam' },
    seed: 0,
  });
  try {
    const batch = syntheticBatch(options.batchSize, imageSize, 3, 1);
    const run = async () => (options.mode === 'train' ? (await engine.step(batch, 1e-4)).timing : (await engine.predict(batch.images, batch.size), undefined));
    const timed = await timeSteps({ run, numTensors: () => engine.numTensors() }, warmup, options.steps, options.onStep);
    return result(options, entry.name, { backend: engine.backend, workers: engine.workers, imageSize, microBatch: engine.microBatchSize(options.batchSize) }, timed);
  } finally {
    await engine.dispose();
  }
}
