/**
 * `osteo bench train|infer`: the library function and the CLI's JSON document (the keys
 * docs/benchmarks.md documents), on resnet18 at 32² so that it runs in seconds.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { captureMain } from '../helpers/cli.js';
import { median, runBench, syntheticBatch } from '../../src/engine/bench.js';
import { useBackend } from '../../src/backend/index.js';

/** The backend these tests run on, as a command passes it down. */
const wasm = await useBackend('wasm');

test('median and synthetic batches', () => {
  assert.is(median([5, 1, 3]), 3);
  assert.is(median([4, 1, 3, 2]), 2.5);
  const a = syntheticBatch(4, 8, 3, 1);
  const b = syntheticBatch(4, 8, 3, 1);
  assert.equal(Array.from(a.images), Array.from(b.images));
  assert.equal(Array.from(a.labels), [0, 1, 2, 0]);
  assert.ok(a.images.some((v) => v !== 0));
});

test('runBench times training steps after the warm-up and reports a stable tensor count', async () => {
  const steps: boolean[] = [];
  const result = await runBench({ mode: 'train', model: 'resnet18', imageSize: 32, batchSize: 2, steps: 2, warmup: 1, backend: wasm, workers: 1, onStep: (_i, _ms, warmup) => steps.push(warmup) });
  assert.equal(steps, [true, false, false]);
  assert.is(result.stepsTimed, 2);
  assert.is(result.stepMs.length, 2);
  assert.is(result.medianStepMs, median(result.stepMs));
  assert.ok(Math.abs(result.imagesPerSec - 2 / (result.medianStepMs / 1000)) < 1e-9);
  assert.is(result.backend, 'wasm');
  assert.is(result.workers, 1);
  assert.equal(result.tensorsAfter, result.tensorsBefore);
});

test('osteo bench infer --json prints the documented keys', async () => {
  const { code, stdout } = await captureMain(['bench', 'infer', '--model', 'resnet18', '--image-size', '32', '--batch-size', '2', '--steps', '1', '--warmup', '0', '--backend', 'wasm', '--workers', '1', '--json']);
  assert.is(code, 0);
  const json = JSON.parse(stdout) as Record<string, unknown>;
  for (const key of ['model', 'backend', 'workers', 'imageSize', 'batchSize', 'stepsTimed', 'medianStepMs', 'imagesPerSec']) assert.ok(key in json, key);
  assert.is(json['model'], 'resnet18');
  assert.is(json['imageSize'], 32);
  assert.is(json['stepsTimed'], 1);
});

test('bad bench options are user errors', async () => {
  const { code, stderr } = await captureMain(['bench', 'train', '--model', 'vgg16', '--backend', 'cpu']);
  assert.is(code, 1);
  assert.match(stderr, /unknown model 'vgg16'/);
});

test.run();
