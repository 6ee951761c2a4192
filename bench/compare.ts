/**
 * osteo against PyTorch on the same workload, in one invocation, same cores:
 *
 *   node --import tsx bench/compare.ts train --model resnet18 --image-size 224 --batch-size 8 --steps 5 [--workers 2]
 *
 * Runs `osteo bench` (the engine on the backend osteo picks, or --backend) and then
 * bench/torch_reference.py with as many torch threads as osteo used workers, and prints both and
 * images/s osteo ÷ images/s PyTorch. --json prints one object. The load average is recorded: other
 * processes on the machine make both numbers noisy.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runBench } from '../src/train/engine/bench.js';
import type { BackendPreference } from '../src/backend/index.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string', default: 'resnet18' },
    'image-size': { type: 'string' },
    'batch-size': { type: 'string', default: '8' },
    steps: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    backend: { type: 'string', default: 'wasm' },
    workers: { type: 'string' },
    'micro-batch': { type: 'string' },
    'torch-threads': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const mode = (positionals[0] ?? 'train') as 'train' | 'infer';
if (mode !== 'train' && mode !== 'infer') throw new Error(`usage: compare.ts train|infer [options]`);
const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const log = (line: string) => {
  if (!values.json) console.error(line);
};

const loadBefore = loadavg()[0]!;
log(`osteo: ${mode} ${values.model} …`);
const osteo = await runBench({
  mode,
  model: values.model!,
  imageSize: num(values['image-size']),
  batchSize: Number(values['batch-size']),
  steps: Number(values.steps),
  warmup: Number(values.warmup),
  backend: values.backend as BackendPreference,
  workers: num(values.workers),
  microBatch: num(values['micro-batch']),
  onStep: (i, ms, warm) => log(`  step ${i + 1}: ${ms.toFixed(0)} ms${warm ? ' (warm-up)' : ''}`),
});
const threads = num(values['torch-threads']) ?? osteo.workers;
log(`pytorch: ${mode} ${values.model} on ${threads} thread(s) …`);
const script = fileURLToPath(new URL('./torch_reference.py', import.meta.url));
let torchOut: string;
try {
  torchOut = execFileSync(
    '/usr/bin/python3',
    [script, mode, '--model', osteo.model, '--image-size', String(osteo.imageSize), '--batch-size', String(osteo.batchSize), '--steps', values.steps!, '--warmup', values.warmup!, '--threads', String(threads)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
} catch (error) {
  throw new Error(`the PyTorch reference failed (is python3-torch installed for /usr/bin/python3?): ${(error as Error).message}`);
}
const torch = JSON.parse(torchOut) as { medianStepMs: number; imagesPerSec: number; threads: number; framework: string };
const ratio = osteo.imagesPerSec / torch.imagesPerSec;
const report = {
  date: new Date().toISOString(),
  machine: { cpus: availableParallelism(), model: cpus()[0]?.model ?? 'unknown', loadAverageBefore: loadBefore, loadAverageAfter: loadavg()[0] },
  mode,
  osteo: { ...osteo, stepMs: undefined },
  pytorch: torch,
  ratio,
};
if (values.json) console.log(JSON.stringify(report, null, 2));
else {
  console.log(`${mode} ${osteo.model} ${osteo.imageSize}² batch ${osteo.batchSize}`);
  console.log(`  osteo ${osteo.backend} ×${osteo.workers} (micro-batch ${osteo.microBatch}): ${osteo.medianStepMs.toFixed(0)} ms/step, ${osteo.imagesPerSec.toFixed(2)} images/s`);
  console.log(`  ${torch.framework} ×${torch.threads} thread(s): ${torch.medianStepMs.toFixed(0)} ms/step, ${torch.imagesPerSec.toFixed(2)} images/s`);
  console.log(`  ratio osteo/PyTorch: ${ratio.toFixed(3)}   (load average ${loadBefore.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after)`);
}
