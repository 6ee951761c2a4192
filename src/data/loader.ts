/**
 * The training and evaluation data loader: split manifest → sampler → cached resize → augmentation →
 * normalised NHWC batches, with the next batch prepared while the current one trains.
 *
 * Determinism: the sample order depends only on (seed, epoch), each sample's augmentation only on
 * (seed, epoch, its position in the epoch), and mixup only on (seed, epoch, batch index). So batches
 * are identical however many images are in flight, and a resumed run can rebuild any epoch.
 *
 * The weighted sampler is PyTorch's WeightedRandomSampler with weight 1/(count of the sample's class):
 * each epoch draws as many samples as the split holds, with replacement, so every class is drawn
 * equally often in expectation.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { UserError, mapLimit, beta, createRng, deriveSeed, shuffleInPlace } from '../util/index.js';
import { mixupBatch, mixupPartners } from './augment-pixels.js';
import { applyAugmentation, sampleAugmentation, type AugmentConfig } from './augment.js';
import { createResizedCache, type CacheOptions, type ResizedCache } from './cache.js';
import { numClasses } from './classes.js';
import { cropAndNormalizeInto, type EvalTransform } from './image.js';
import { missingManifestError, parseSplitManifest, splitManifestPath, type ManifestRow, type Split } from './split.js';

export interface Batch {
  /** N×S×S×3, NHWC, normalised. */
  images: Float32Array;
  labels: Int32Array;
  size: number;
  /** N×C soft targets, present when the augmentation config has mixup. */
  targets?: Float32Array;
  paths: string[];
}

export type SamplerKind = 'sequential' | 'shuffle' | 'weighted';

export interface LoaderOptions {
  dataDir: string;
  split: Split;
  imageSize: number;
  transform: EvalTransform;
  augment?: AugmentConfig;
  batchSize: number;
  sampler: SamplerKind;
  seed: number;
  epoch: number;
  dropLast?: boolean;
  /** Use these rows instead of reading DIR/splits.csv (already filtered or not: the split is applied). */
  rows?: ManifestRow[];
  /** Batches prepared ahead of the consumer (default 1). */
  prefetch?: number;
  /** Images decoded/augmented at once within a batch (default 4: the libuv pool that sharp uses). */
  concurrency?: number;
  /** A shared resize cache (e.g. one per run across epochs); made from `cacheOptions` if absent. */
  cache?: ResizedCache;
  cacheOptions?: CacheOptions;
}

export interface Loader extends AsyncIterable<Batch> {
  /** Batches per epoch. */
  readonly length: number;
  /** Samples per epoch (drawn, for the weighted sampler). */
  readonly samples: number;
  readonly cache: ResizedCache;
}

export function classCounts(rows: readonly { label: number }[]): number[] {
  const counts = new Array<number>(numClasses).fill(0);
  for (const row of rows) counts[row.label]!++;
  return counts;
}

/** Loss weights ∝ 1/count, scaled to mean 1 over the classes present; absent classes get 0. */
export function inverseFrequencyWeights(counts: readonly number[]): number[] {
  const inverse = counts.map((n) => (n > 0 ? 1 / n : 0));
  const present = counts.filter((n) => n > 0).length;
  const mean = inverse.reduce((s, w) => s + w, 0) / Math.max(present, 1);
  return inverse.map((w) => (mean > 0 ? w / mean : 0));
}

/** Indices into `rows` for one epoch. */
export function sampleOrder(rows: readonly { label: number }[], sampler: SamplerKind, seed: number, epoch: number): number[] {
  const n = rows.length;
  if (sampler === 'sequential') return Array.from({ length: n }, (_, i) => i);
  if (sampler === 'shuffle') return shuffleInPlace(Array.from({ length: n }, (_, i) => i), createRng(deriveSeed(seed, epoch, 1)));
  const counts = classCounts(rows);
  const cumulative = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += 1 / counts[rows[i]!.label]!;
    cumulative[i] = total;
  }
  const rng = createRng(deriveSeed(seed, epoch, 2));
  const order = new Array<number>(n);
  for (let k = 0; k < n; k++) {
    const target = rng.next() * total;
    let low = 0;
    let high = n - 1;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (cumulative[mid]! > target) high = mid;
      else low = mid + 1;
    }
    order[k] = low;
  }
  return order;
}

function readManifestSync(dataDir: string): ManifestRow[] {
  const file = splitManifestPath(dataDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw missingManifestError(dataDir);
  }
  return parseSplitManifest(text, file);
}

export function createLoader(options: LoaderOptions): Loader {
  const dataDir = resolve(options.dataDir);
  const { imageSize: size, transform, batchSize, augment } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UserError(`batch size must be a positive integer, got ${batchSize}`);
  if (transform.resize < size) throw new UserError(`the transform resizes to ${transform.resize} px, smaller than the ${size} px image size`);
  const rows = (options.rows ?? readManifestSync(dataDir)).filter((row) => row.split === options.split);
  if (rows.length === 0) throw new UserError(`the ${options.split} split of ${dataDir} is empty`);
  const order = sampleOrder(rows, options.sampler, options.seed, options.epoch);
  const dropLast = options.dropLast ?? false;
  const length = dropLast ? Math.floor(order.length / batchSize) : Math.ceil(order.length / batchSize);
  const cache = options.cache ?? createResizedCache(dataDir, transform.resize, options.cacheOptions);
  const pixels = size * size * 3;

  const prepare = async (batchIndex: number): Promise<Batch> => {
    const start = batchIndex * batchSize;
    const positions = order.slice(start, Math.min(start + batchSize, order.length));
    const n = positions.length;
    const images = new Float32Array(n * pixels);
    const labels = new Int32Array(n);
    const paths: string[] = [];
    await mapLimit(positions, options.concurrency ?? 4, async (rowIndex, k) => {
      const row = rows[rowIndex]!;
      labels[k] = row.label;
      paths[k] = row.path;
      const image = await cache.get(row.path);
      // Without augmentation a sample is the eval transform's second stage on the cached resize: the
      // same values as preprocessForModel gives for the file (crop at the loader's image size).
      if (augment === undefined) return cropAndNormalizeInto(image, { ...transform, crop: size }, images, k * pixels);
      const params = sampleAugmentation(augment, createRng(deriveSeed(options.seed, options.epoch, 3, start + k)), image.width, image.height, size);
      applyAugmentation(image, params, size, transform, images, k * pixels);
    });
    const batch: Batch = { images, labels, size: n, paths };
    if (augment?.mixup !== undefined) {
      const rng = createRng(deriveSeed(options.seed, options.epoch, 4, batchIndex));
      const { p, alpha } = augment.mixup;
      if (rng.next() < p && n > 1) {
        const lambda = beta(rng, alpha, alpha);
        batch.targets = mixupBatch(images, labels, numClasses, lambda, mixupPartners(n, rng));
      } else {
        batch.targets = new Float32Array(n * numClasses);
        for (let i = 0; i < n; i++) batch.targets[i * numClasses + labels[i]!] = 1;
      }
    }
    return batch;
  };

  return {
    length,
    samples: order.length,
    cache,
    [Symbol.asyncIterator](): AsyncIterator<Batch> {
      const depth = Math.max(0, options.prefetch ?? 1);
      const inFlight = new Map<number, Promise<Batch>>();
      let next = 0;
      const launch = (index: number) => {
        if (index < length && !inFlight.has(index)) {
          const promise = prepare(index);
          promise.catch(() => {}); // surfaced when awaited; avoids an unhandled rejection while queued
          inFlight.set(index, promise);
        }
      };
      return {
        async next(): Promise<IteratorResult<Batch>> {
          if (next >= length) return { done: true, value: undefined };
          const index = next++;
          launch(index);
          // Start the following batches before handing this one over, so they load while it trains.
          for (let ahead = 1; ahead <= depth; ahead++) launch(index + ahead);
          const batch = await inFlight.get(index)!;
          inFlight.delete(index);
          return { done: false, value: batch };
        },
        async return(): Promise<IteratorResult<Batch>> {
          next = length;
          await Promise.allSettled(inFlight.values());
          inFlight.clear();
          return { done: true, value: undefined };
        },
      };
    },
  };
}
