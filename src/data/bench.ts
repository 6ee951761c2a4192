/**
 * `osteo bench data`: decode + augment throughput of the loader, in images per second, three ways:
 *   cold   — every image decoded and resized by sharp (empty cache), augmented, batched;
 *   disk   — resized images read back from DIR/.cache, augmented, batched (a normal epoch);
 *   memory — resized images already in memory: augmentation and batching alone (the JS cost).
 * Without --data it generates a phantom at film-like size in a temporary folder.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { UserError } from '../util/index.js';
import type { AugmentConfig } from './augment.js';
import { createResizedCache } from './cache.js';
import { imagenetNormalization, type EvalTransform } from './image.js';
import { createLoader } from './loader.js';
import { readImage } from './readers.js';
import { synthesizePhantom } from './phantom.js';
import { readSplitManifest, splitDataset } from './split.js';

export interface BenchDataOptions {
  dataDir?: string;
  imageSize?: number;
  batchSize?: number;
  /** The augmentation to time, read by the caller (config's loadAugmentConfig), and the name the result gives it. */
  augment: { name: string; config: AugmentConfig };
  /** Images per measurement (default 96): the train rows used (capped by the split) and the minimum timed. */
  images?: number;
  log?: (line: string) => void;
}

export interface BenchDataResult {
  dataDir: string;
  generated: boolean;
  augment: string;
  imageSize: number;
  resize: number;
  batchSize: number;
  images: number;
  sourceSize: string;
  imagesPerSec: { cold: number; disk: number; memory: number };
  machine: { cpus: number; model: string; node: string };
  date: string;
}

export async function benchData(options: BenchDataOptions): Promise<BenchDataResult> {
  const imageSize = options.imageSize ?? 224;
  const batchSize = options.batchSize ?? 16;
  const log = options.log ?? (() => {});
  const scratch = await mkdtemp(join(tmpdir(), 'osteo-bench-data-'));
  try {
    let dataDir: string;
    const generated = options.dataDir === undefined;
    if (options.dataDir === undefined) {
      dataDir = join(scratch, 'phantom');
      log('generating a phantom (16 per class, 640 px films) …');
      await synthesizePhantom({ dest: dataDir, perClass: 16, size: 640, seed: 1 });
      await splitDataset({ dataDir, val: 0.1, test: 0.1 });
    } else dataDir = resolve(options.dataDir);
    const augment = options.augment.config;
    const transform: EvalTransform = { resize: Math.round(imageSize / 0.875), crop: imageSize, ...imagenetNormalization };
    const train = (await readSplitManifest(dataDir)).filter((row) => row.split === 'train');
    const rows = train.slice(0, Math.min(options.images ?? 96, train.length));
    if (rows.length === 0) throw new UserError(`the train split of ${dataDir} is empty`);
    // A private cache folder, so an existing DIR/.cache cannot make the cold pass warm.
    const cacheRoot = join(scratch, 'cache');

    // Passes over the rows until at least `minimum` images went through (the cold pass is one pass:
    // after it the cache is warm).
    const time = async (label: string, cache: ReturnType<typeof createResizedCache>, minimum: number): Promise<number> => {
      const started = performance.now();
      let count = 0;
      for (let epoch = 0; count < minimum; epoch++) {
        const loader = createLoader({ dataDir, split: 'train', rows, imageSize, transform, augment, batchSize, sampler: 'shuffle', seed: 0, epoch, cache });
        for await (const batch of loader) count += batch.size;
      }
      const rate = count / ((performance.now() - started) / 1000);
      log(`${label.padEnd(7)} ${rate.toFixed(1)} images/s over ${count} images`);
      return rate;
    };
    const minimum = options.images ?? 96;
    const cold = await time('cold', createResizedCache(dataDir, transform.resize, { root: cacheRoot, memoryBytes: 0 }), 1);
    const disk = await time('disk', createResizedCache(dataDir, transform.resize, { root: cacheRoot, memoryBytes: 0 }), minimum);
    const memoryCache = createResizedCache(dataDir, transform.resize, { disk: false });
    for (const row of rows) await memoryCache.get(row.path);
    const memory = await time('memory', memoryCache, minimum);
    const first = (await readImage(join(dataDir, rows[0]!.path))).facts;
    return {
      dataDir,
      generated,
      augment: options.augment.name,
      imageSize,
      resize: transform.resize,
      batchSize,
      images: rows.length,
      sourceSize: `${first.width}×${first.height}`,
      imagesPerSec: { cold, disk, memory },
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
      date: new Date().toISOString(),
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
