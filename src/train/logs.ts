/**
 * What a run writes besides checkpoints: one metrics row per epoch (metrics.csv), every event as a
 * JSON line (events.jsonl), and the training curves (curves.png: loss and accuracy, train vs val).
 */
import { appendFile } from 'node:fs/promises';
import sharp from 'sharp';
import { classNames } from '../data/index.js';
import { lineChartPng, type LineChartOptions } from '../report/index.js';
import { formatCsv, writeFileAtomic } from '../util/index.js';

export interface EpochMetrics {
  epoch: number; // 1-based
  step: number; // optimizer steps done at the end of the epoch
  lr: number; // the learning rate of the epoch's last step
  trainLoss: number;
  trainAccuracy: number;
  valLoss: number;
  valAccuracy: number;
  valBalancedAccuracy: number;
  valMacroF1: number;
  /** Recall per class on val, in class order (Osteopenia's is the one to watch). */
  valRecall: number[];
  seconds: number; // training time of the epoch, validation excluded
  imagesPerSec: number;
}

export const metricsColumns = [
  'epoch',
  'step',
  'lr',
  'train_loss',
  'train_accuracy',
  'val_loss',
  'val_accuracy',
  'val_balanced_accuracy',
  'val_macro_f1',
  ...classNames.map((name) => `val_recall_${name.toLowerCase()}`),
  'seconds',
  'images_per_sec',
] as const;

function metricsRecord(row: EpochMetrics): (string | number)[] {
  return [
    row.epoch,
    row.step,
    row.lr,
    row.trainLoss,
    row.trainAccuracy,
    row.valLoss,
    row.valAccuracy,
    row.valBalancedAccuracy,
    row.valMacroF1,
    ...row.valRecall,
    Number(row.seconds.toFixed(3)),
    Number(row.imagesPerSec.toFixed(3)),
  ];
}

export function metricsCsv(rows: readonly EpochMetrics[]): string {
  return formatCsv([[...metricsColumns], ...rows.map(metricsRecord)]);
}

/** Rewritten whole from the checkpointed history, so it always agrees with RUN/last. */
export async function writeMetricsCsv(file: string, rows: readonly EpochMetrics[]): Promise<void> {
  await writeFileAtomic(file, metricsCsv(rows));
}

export async function appendEvent(file: string, event: object): Promise<void> {
  await appendFile(file, JSON.stringify({ time: new Date().toISOString(), ...event }) + '\n');
}

/** The two charts of curves.png: loss (train, val) and accuracy (train, val, val balanced), by whole epoch. */
export function curveCharts(rows: readonly EpochMetrics[], title: string, width = 560, height = 400): [LineChartOptions, LineChartOptions] {
  const epochs = rows.map((row) => row.epoch);
  const loss: LineChartOptions = {
    title: `${title}: loss`,
    xLabel: 'epoch',
    xIntegerTicks: true,
    yLabel: 'cross-entropy',
    width,
    height,
    series: [
      { name: 'train', x: epochs, y: rows.map((row) => row.trainLoss) },
      { name: 'val', x: epochs, y: rows.map((row) => row.valLoss) },
    ],
  };
  const accuracy: LineChartOptions = {
    title: `${title}: accuracy`,
    xLabel: 'epoch',
    xIntegerTicks: true,
    yLabel: 'accuracy',
    width,
    height,
    yRange: [0, 1],
    legend: 'bottom-right',
    series: [
      { name: 'train', x: epochs, y: rows.map((row) => row.trainAccuracy) },
      { name: 'val', x: epochs, y: rows.map((row) => row.valAccuracy) },
      { name: 'val balanced', x: epochs, y: rows.map((row) => row.valBalancedAccuracy) },
    ],
  };
  return [loss, accuracy];
}

/** The two charts side by side. */
export async function curvesPng(rows: readonly EpochMetrics[], title: string): Promise<Buffer> {
  const width = 560;
  const height = 400;
  const [loss, accuracy] = await Promise.all(curveCharts(rows, title, width, height).map((chart) => lineChartPng(chart)));
  return sharp({ create: { width: width * 2, height, channels: 3, background: '#ffffff' } })
    .composite([
      { input: loss!, left: 0, top: 0 },
      { input: accuracy!, left: width, top: 0 },
    ])
    .png()
    .toBuffer();
}
