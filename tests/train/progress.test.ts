/** The progress display: plain lines when the stream is not a terminal, one summary per epoch. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { progressReporter, type EpochMetrics, type TrainEvent } from '../../src/train/index.js';
import { formatDuration } from '../../src/util/index.js';

const metrics: EpochMetrics = {
  epoch: 1,
  step: 20,
  lr: 1e-4,
  trainLoss: 1.0986,
  trainAccuracy: 0.4,
  valLoss: 1.05,
  valAccuracy: 0.5,
  valBalancedAccuracy: 0.45,
  valMacroF1: 0.41,
  valRecall: [0.6, 0.2, 0.55],
  seconds: 12,
  imagesPerSec: 26.7,
};

test('not a TTY: about ten lines per epoch with images/s, loss and ETA, then the epoch summary', () => {
  const lines: string[] = [];
  const report = progressReporter({ isTTY: false, write: (text: string) => lines.push(...text.trimEnd().split('\n')) });
  const events: TrainEvent[] = [
    { type: 'start', run: 'runs/x', model: 'resnet18', backend: 'wasm', workers: 2, trainImages: 320, valImages: 60, stepsPerEpoch: 20, epochs: 3, resumed: false },
    { type: 'epoch-start', epoch: 1, epochs: 3, steps: 20, firstBatch: 0 },
    ...Array.from({ length: 20 }, (_, i): TrainEvent => ({ type: 'step', epoch: 1, batch: i + 1, steps: 20, step: i + 1, loss: 1, lr: 1e-4, gradNorm: 1, images: 16, seconds: 0.1 })),
    { type: 'epoch-end', metrics, improved: true, best: { metric: 'valBalancedAccuracy', value: 0.45, epoch: 1, step: 20 }, tensors: [100] },
    { type: 'stop', status: 'completed', message: 'done' },
  ];
  for (const event of events) report(event);
  assert.match(lines[0]!, /^training resnet18 in runs\/x on wasm \(2 workers\): 320 train \/ 60 val images, 20 steps per epoch, 3 epochs$/);
  const progress = lines.filter((line) => line.startsWith('epoch 1/3 step'));
  assert.is(progress.length, 10, lines.join('\n'));
  assert.match(progress[0]!, /^epoch 1\/3 step 2\/20 \| [\d.]+ img\/s \| loss 1\.000 \| ETA \S+$/);
  assert.match(progress.at(-1)!, /step 20\/20 .* ETA 0s$/);
  assert.is(lines.at(-1), 'epoch 1/3 * train loss 1.099 acc 0.400 | val loss 1.050 acc 0.500 bal 0.450 F1 0.410 | 26.7 img/s | best valBalancedAccuracy 0.450 (epoch 1)');
});

test('durations read as seconds, minutes or hours', () => {
  assert.equal([formatDuration(5.4), formatDuration(75), formatDuration(3725), formatDuration(Number.NaN)], ['5s', '1m15s', '1h02m', '?']);
});

test('a restarted run says why and what of its own it removed, before the start line', () => {
  const lines: string[] = [];
  const report = progressReporter({ isTTY: false, write: (text: string) => lines.push(...text.trimEnd().split('\n')) });
  report({ type: 'restarted', reason: 'runs/x holds no saved training: starting it from scratch', removed: ['best', 'metrics.csv'] });
  assert.equal(lines, ['runs/x holds no saved training: starting it from scratch (removed its best, metrics.csv)']);
});

test.run();
