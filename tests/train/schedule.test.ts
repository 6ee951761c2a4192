/**
 * Learning-rate schedules against PyTorch's own schedulers, stepped as the trainer steps them: StepLR
 * once per epoch; LinearLR warm-up then CosineAnnealingLR (SequentialLR) once per optimizer step.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { learningRate, type ScheduleConfig } from '../../src/train/index.js';
import { referenceTest, runPython } from '../fixtures/torch/python.js';

const script = `
import json, sys, warnings
warnings.filterwarnings('ignore')  # SequentialLR's internal use of the deprecated epoch argument
import torch
kind, peak, spe, epochs, a, b, c = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
lrs = []
if kind == 'step':
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(a), gamma=b)
    for epoch in range(epochs):
        for _ in range(spe):
            lrs.append(opt.param_groups[0]['lr']); opt.step()
        sched.step()
else:
    warmup, total = int(a), spe * epochs
    linear = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=c)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [linear, cosine], milestones=[warmup])
    for _ in range(total):
        lrs.append(opt.param_groups[0]['lr']); opt.step(); sched.step()
print(json.dumps(lrs))
`;

function torchSchedule(kind: 'step' | 'cosine', peak: number, stepsPerEpoch: number, epochs: number, a: number, b: number, c: number): number[] {
  const out = runPython({ code: script }, [kind, String(peak), String(stepsPerEpoch), String(epochs), String(a), String(b), String(c)]);
  return JSON.parse(out) as number[];
}

const schedule = (overrides: Partial<ScheduleConfig>): ScheduleConfig => ({ type: 'step', stepSize: 7, gamma: 0.1, warmupEpochs: 0, minLr: 0, ...overrides });

function ours(config: ScheduleConfig, peak: number, stepsPerEpoch: number, epochs: number): number[] {
  const span = { stepsPerEpoch, totalSteps: stepsPerEpoch * epochs };
  return Array.from({ length: span.totalSteps }, (_, step) => learningRate(config, peak, step, span));
}

function assertClose(actual: number[], expected: number[], label: string): void {
  assert.is(actual.length, expected.length, `${label}: length`);
  actual.forEach((value, i) => assert.ok(Math.abs(value - expected[i]!) <= 1e-12 * Math.max(1, Math.abs(expected[i]!)), `${label}: step ${i}: ${value} vs torch ${expected[i]}`));
}

referenceTest(test, 'step decay = torch StepLR stepped once per epoch (the ResNet18 recipe: ×0.1 every 7 epochs)', () => {
  const expected = torchSchedule('step', 1e-4, 5, 25, 7, 0.1, 0);
  assertClose(ours(schedule({ type: 'step', stepSize: 7, gamma: 0.1 }), 1e-4, 5, 25), expected, 'step');
  assert.is(expected[7 * 5 - 1], 1e-4);
  assert.ok(Math.abs(expected[7 * 5]! - 1e-5) < 1e-18, 'the decay lands on the first step of epoch 8');
});

referenceTest(test, 'cosine with linear warm-up = torch LinearLR → CosineAnnealingLR (SequentialLR), per step', () => {
  const expected = torchSchedule('cosine', 3e-4, 7, 6, 10, 0, 1e-6);
  const config = schedule({ type: 'cosine', warmupEpochs: 10 / 7, minLr: 1e-6 });
  assertClose(ours(config, 3e-4, 7, 6), expected, 'cosine');
  assert.ok(Math.abs(expected[0]! - 3e-5) < 1e-15, 'the first warm-up step runs at peak / warm-up steps');
});

test('warm-up scales any schedule; constant is constant', () => {
  const span = { stepsPerEpoch: 4, totalSteps: 40 };
  const warm = schedule({ type: 'step', stepSize: 1, gamma: 0.5, warmupEpochs: 2 });
  // 8 warm-up steps: step k runs at (k+1)/8 of the step schedule's value (0.5^epoch).
  assert.is(learningRate(warm, 1, 0, span), 1 / 8);
  assert.is(learningRate(warm, 1, 5, span), (6 / 8) * 0.5);
  assert.is(learningRate(warm, 1, 8, span), 0.25);
  for (const step of [0, 7, 39]) assert.is(learningRate(schedule({ type: 'constant' }), 0.01, step, span), 0.01);
});

test.run();
