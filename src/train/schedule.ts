/**
 * Learning-rate schedules, evaluated before every optimizer step (a pure function of the step, so a
 * resumed run needs only the step count to continue the schedule exactly).
 *
 * - step: torch's StepLR stepped once per epoch — lr · gamma^⌊epoch / stepSize⌋.
 * - cosine: lr decays from its peak to minLr along half a cosine over the steps after warm-up
 *   (timm's CosineLRScheduler with t_in_epochs=False, no restarts).
 * - constant.
 * Any of them may start with a linear warm-up: step k of W warm-up steps runs at (k + 1)/W of the
 * scheduled rate, so the first step is small but not zero and the last warm-up step reaches it.
 */
import type { TrainConfig } from '../config/index.js';

export type ScheduleConfig = TrainConfig['schedule'];

export interface ScheduleSpan {
  stepsPerEpoch: number;
  totalSteps: number;
}

export function warmupSteps(schedule: ScheduleConfig, stepsPerEpoch: number): number {
  return Math.round(schedule.warmupEpochs * stepsPerEpoch);
}

/** The learning rate of global step `step` (0-based). */
export function learningRate(schedule: ScheduleConfig, peak: number, step: number, span: ScheduleSpan): number {
  const warmup = warmupSteps(schedule, span.stepsPerEpoch);
  let lr: number;
  switch (schedule.type) {
    case 'constant':
      lr = peak;
      break;
    case 'step': {
      const epoch = Math.floor(step / span.stepsPerEpoch);
      lr = peak * schedule.gamma ** Math.floor(epoch / schedule.stepSize);
      break;
    }
    case 'cosine': {
      const length = Math.max(1, span.totalSteps - warmup);
      const progress = Math.min(1, Math.max(0, step - warmup) / length);
      lr = schedule.minLr + (peak - schedule.minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
      break;
    }
  }
  return step < warmup ? (lr * (step + 1)) / warmup : lr;
}
