/**
 * `osteo bench train|infer`: the engine's throughput on synthetic data, warm-up excluded, median of
 * the timed steps. The same workload runs in PyTorch through bench/torch_reference.py.
 */
import type { BackendHandle } from '../backend/index.js';
import { getModel, type ModelName } from '../models/index.js';
import { UserError } from '../util/index.js';
import { createEngine } from './engine.js';
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

export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const entry = getModel(options.model);
  const imageSize = options.imageSize ?? entry.defaultImageSize;
  for (const [name, value] of [['batch size', options.batchSize], ['steps', options.steps]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new UserError(`${name} must be a positive integer, got ${value}`);
  }
  const warmup = options.warmup ?? 1;
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
    const times: number[] = [];
    let tensorsBefore: number[] = [];
    for (let i = 0; i < warmup + options.steps; i++) {
      const start = performance.now();
      const timing = options.mode === 'train' ? (await engine.step(batch, 1e-4)).timing : (await engine.predict(batch.images, batch.size), undefined);
      const ms = performance.now() - start;
      const isWarmup = i < warmup;
      options.onStep?.(i, ms, isWarmup, timing);
      if (!isWarmup) times.push(ms);
      if (i === warmup) tensorsBefore = await engine.numTensors();
    }
    const tensorsAfter = await engine.numTensors();
    const medianStepMs = median(times);
    return {
      mode: options.mode,
      model: entry.name,
      backend: engine.backend,
      workers: engine.workers,
      imageSize,
      batchSize: options.batchSize,
      microBatch: engine.microBatchSize(options.batchSize),
      stepsTimed: times.length,
      medianStepMs,
      imagesPerSec: options.batchSize / (medianStepMs / 1000),
      stepMs: times,
      tensorsBefore,
      tensorsAfter,
    };
  } finally {
    await engine.dispose();
  }
}
