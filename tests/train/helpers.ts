/** Shared fixtures of the training tests: a small phantom dataset, configs at tiny sizes, weight comparisons. */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import * as assert from 'uvu/assert';
import { useBackend, type BackendHandle } from '../../src/backend/index.js';
import { resolveTrainConfig } from '../../src/config/index.js';
import { splitDataset, synthesizePhantom } from '../../src/data/index.js';
import type { TrainConfig, TrainEvent } from '../../src/train/index.js';
import { readSafetensors, type StateDict } from '../../src/weights/index.js';

/**
 * A slow fixture, made on first use and shared after: each test asks for what it needs, so none
 * depends on an earlier test having run (or having passed). Tests treat what it returns as read-only.
 */
export function memo<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make());
}

/**
 * 60 distinct films per class at 48 px (plus the planted copies), split 65/25/10: 119 train images
 * (8 steps of 16) and 45 val images, 15 per class.
 */
export async function phantomDataset(root: string): Promise<string> {
  const dataDir = join(root, 'phantom');
  await synthesizePhantom({ dest: dataDir, perClass: 60, size: 48, seed: 1 });
  await splitDataset({ dataDir, val: 0.25, test: 0.1 });
  return dataDir;
}

/** A config at the tests' sizes: 32 px on wasm in one thread, no augmentation unless asked. */
export function tinyConfig(dataDir: string, out: string, flags: Record<string, string> = {}, sets: string[] = []): Promise<TrainConfig> {
  return resolveTrainConfig({
    flags: { model: 'resnet18', data: dataDir, out, imageSize: '32', batchSize: '16', backend: 'wasm', workers: '1', seed: '0', ...flags },
    sets: ['augment=none', ...sets],
  });
}

/** The backend tinyConfig asks for, chosen as `osteo train` chooses it: what trainModel is handed. */
export const wasm = (): Promise<BackendHandle> => useBackend('wasm');

/** A module of a small convnet that stands in for the config's model (see fixtures/small-provider.ts). */
export const smallModel = new URL('./fixtures/small-provider.ts', import.meta.url).href;

/** Copy a checkpoint's files the moment it is written (the next save replaces them). */
export function snapshotOn(run: string, which: 'last' | 'best', epoch: number, batch: number, into: string): (event: TrainEvent) => void {
  return (event) => {
    if (event.type !== 'checkpoint' || event.which !== which || event.epoch !== epoch || event.batch !== batch) return;
    mkdirSync(into, { recursive: true });
    for (const file of ['model.safetensors', 'optimizer.safetensors', 'state.json']) {
      try {
        copyFileSync(join(run, which, file), join(into, file));
      } catch {
        // best/ has no optimizer.safetensors
      }
    }
  };
}

/** RUN/metrics.csv's rows without the wall-clock columns, which differ between runs; everything else must not. */
export function metricsRows(run: string): Record<string, string>[] {
  const rows = parse(readFileSync(join(run, 'metrics.csv'), 'utf8'), { columns: true }) as Record<string, string>[];
  return rows.map(({ seconds: _s, images_per_sec: _r, ...rest }) => rest);
}

export function readWeights(file: string): Promise<StateDict> {
  return readSafetensors(file);
}

export function assertSameDict(actual: StateDict, expected: StateDict, label: string): void {
  assert.equal([...actual.keys()], [...expected.keys()], `${label}: keys`);
  for (const [key, tensor] of expected) {
    const other = actual.get(key)!;
    assert.equal(other.shape, tensor.shape, `${label}: ${key} shape`);
    const a = other.data;
    const b = tensor.data;
    for (let i = 0; i < b.length; i++) {
      if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) {
        assert.unreachable(`${label}: ${key}[${i}] = ${a[i]}, expected ${b[i]} (bitwise)`);
      }
    }
  }
}

export function sameValues(a: ArrayLike<number | bigint>, b: ArrayLike<number | bigint>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
