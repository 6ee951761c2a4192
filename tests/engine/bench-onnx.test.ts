/**
 * `osteo bench infer` on an onnxruntime handle times the inference engine's session: `--workers` are
 * its threads, one session built and released, the warm-up excluded; `bench train` is refused there.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { median, runBench } from '../../src/engine/bench.js';
import { onnxTestHandle } from '../helpers/onnx-handle.js';
import { refusal } from '../helpers/refusal.js';

test('bench infer on onnxruntime times one session over the batch, with --workers as its threads', async () => {
  const { handle, counts } = onnxTestHandle('cpu', 2);
  const steps: boolean[] = [];
  const result = await runBench({ mode: 'infer', model: 'resnet18', imageSize: 32, batchSize: 3, steps: 2, warmup: 1, backend: handle, workers: 1, onStep: (_i, _ms, warmup) => steps.push(warmup) });
  assert.equal(steps, [true, false, false]);
  assert.equal([result.backend, result.workers, result.batchSize, result.microBatch, result.stepsTimed], ['onnxruntime-cpu', 1, 3, 3, 2]);
  assert.is(result.medianStepMs, median(result.stepMs));
  assert.equal(result.tensorsAfter, result.tensorsBefore);
  assert.equal(counts, { created: 1, released: 1, batches: [3, 3, 3] });
  const defaults = await runBench({ mode: 'infer', model: 'resnet18', imageSize: 32, batchSize: 1, steps: 1, warmup: 0, backend: handle });
  assert.is(defaults.workers, 2, "the provider's default threads");
});

test('bench train on an inference-only onnxruntime handle is refused, naming the backend', async () => {
  const { handle, counts } = onnxTestHandle('cpu');
  await refusal(runBench({ mode: 'train', model: 'resnet18', imageSize: 32, batchSize: 2, steps: 1, backend: handle }), /onnxruntime-cpu backend runs inference only/);
  assert.is(counts.created, 0);
});

test.run();
