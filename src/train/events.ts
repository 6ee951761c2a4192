/** What a training run reports while it runs: the lines of events.jsonl and the progress display's input. */
import type { TrainStatus } from '../runs/index.js';
import type { EpochMetrics } from './logs.js';

/** How a session ends is the run lifecycle's vocabulary (src/runs/lifecycle.ts): inspectRun reads it back from events.jsonl. */
export type { TrainStatus };

export interface BestRecord {
  metric: string;
  value: number;
  epoch: number;
  step: number;
}

export type TrainEvent =
  | {
      type: 'start';
      run: string;
      model: string;
      backend: string;
      workers: number;
      trainImages: number;
      valImages: number;
      stepsPerEpoch: number;
      epochs: number;
      resumed: boolean;
    }
  | { type: 'recovered'; actions: string[] }
  | { type: 'restarted'; reason: string; removed: string[] }
  | { type: 'pretrained'; file: string; loaded: number; headReinitialised: string[] }
  | { type: 'resume'; epoch: number; batch: number; step: number }
  | { type: 'stage'; stage: 'head' | 'main'; freezeUntil: string | null; epoch: number }
  | { type: 'epoch-start'; epoch: number; epochs: number; steps: number; firstBatch: number }
  | { type: 'step'; epoch: number; batch: number; steps: number; step: number; loss: number; lr: number; gradNorm: number; images: number; seconds: number }
  | { type: 'epoch-end'; metrics: EpochMetrics; improved: boolean; best: BestRecord | null; tensors: number[] }
  | { type: 'checkpoint'; which: 'last' | 'best'; epoch: number; batch: number; step: number }
  | { type: 'stop'; status: TrainStatus; message: string };
