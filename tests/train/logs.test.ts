/** What a run writes besides checkpoints: the training curves' epoch axis. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { lineChartSvg, niceTicks } from '../../src/report/index.js';
import { curveCharts, type EpochMetrics } from '../../src/train/logs.js';

const row = (epoch: number): EpochMetrics => ({
  epoch,
  step: epoch * 8,
  lr: 1e-3,
  trainLoss: 1 / epoch,
  trainAccuracy: 0.4,
  valLoss: 1.1 / epoch,
  valAccuracy: 0.5,
  valBalancedAccuracy: 0.5,
  valMacroF1: 0.5,
  valRecall: [0.5, 0.5, 0.5],
  seconds: 1,
  imagesPerSec: 100,
});

/** The labels under the x axis: middle-anchored tick text (the y labels are end-anchored). */
function xTickLabels(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*text-anchor="middle" fill="#333"[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!);
}

test('integer ticks: whole numbers only, still covering the range', () => {
  assert.equal(niceTicks(1, 3), [1, 1.5, 2, 2.5, 3], 'the plain ticks that made curves.png show half epochs');
  assert.equal(niceTicks(1, 3, 6, true), [1, 2, 3]);
  assert.equal(niceTicks(1, 2, 6, true), [1, 2]);
  assert.equal(niceTicks(1, 1, 6, true), [0, 1, 2], 'one epoch: padded by a whole epoch each side');
  assert.equal(niceTicks(1, 25, 6, true), [0, 5, 10, 15, 20, 25]);
});

test('curves.png: both charts label the epoch axis with whole epochs only, for short and long runs', () => {
  for (const epochs of [1, 2, 3, 5, 7, 25]) {
    const rows = Array.from({ length: epochs }, (_, i) => row(i + 1));
    for (const chart of curveCharts(rows, 'resnet18')) {
      const labels = xTickLabels(lineChartSvg(chart));
      assert.ok(labels.length >= 2, `${epochs} epochs: labels ${labels.join(' ')}`);
      for (const label of labels) assert.ok(/^\d+$/.test(label), `${epochs} epochs, '${chart.title}': x tick '${label}' is not a whole epoch`);
    }
  }
});

test.run();
