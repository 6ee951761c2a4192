/**
 * osteo against PyTorch on the same workload, in one invocation, same cores:
 *
 *   node --import tsx bench/compare.ts train --model resnet18 --image-size 224 --batch-size 8 --steps 5 [--workers 2]
 *
 * Runs `osteo bench` (the engine on the backend osteo picks, or --backend) and then
 * bench/torch_reference.py with as many torch threads as osteo used workers, and prints both and
 * images/s osteo ÷ images/s PyTorch. --json prints one object. The load average is recorded: other
 * processes on the machine make both numbers noisy. Each side's process CPU time per step is recorded
 * too, and their ratio (cpuRatio), which other jobs disturb far less than the wall-clock ratio.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median, runBench } from '../src/engine/bench.js';
import { useBackend, type BackendPreference } from '../src/backend/index.js';

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
// process CPU time per step (main thread and workers): other jobs on a shared machine stretch wall
// time far more than CPU time, so both are reported
const cpuStepMs: number[] = [];
let cpuMark = process.cpuUsage();
const osteo = await runBench({
  mode,
  model: values.model!,
  imageSize: num(values['image-size']),
  batchSize: Number(values['batch-size']),
  steps: Number(values.steps),
  warmup: Number(values.warmup),
  backend: await useBackend(values.backend as BackendPreference),
  workers: num(values.workers),
  microBatch: num(values['micro-batch']),
  onStep: (i, ms, warm) => {
    const used = process.cpuUsage(cpuMark);
    cpuMark = process.cpuUsage();
    const cpuMs = (used.user + used.system) / 1000;
    if (!warm) cpuStepMs.push(cpuMs);
    log(`  step ${i + 1}: ${ms.toFixed(0)} ms, ${cpuMs.toFixed(0)} ms CPU${warm ? ' (warm-up)' : ''}`);
  },
});
const osteoCpuMs = median(cpuStepMs);
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
const torch = JSON.parse(torchOut) as { medianStepMs: number; medianCpuStepMs?: number; imagesPerSec: number; threads: number; framework: string };
const ratio = osteo.imagesPerSec / torch.imagesPerSec;
// images per CPU-second, osteo ÷ PyTorch: an upper bound of the idle-machine ratio (osteo's main thread
// waits while the workers compute, and PyTorch's OpenMP threads spin while they wait)
const cpuRatio = torch.medianCpuStepMs ? torch.medianCpuStepMs / osteoCpuMs : undefined;
const report = {
  date: new Date().toISOString(),
  machine: { cpus: availableParallelism(), model: cpus()[0]?.model ?? 'unknown', loadAverageBefore: loadBefore, loadAverageAfter: loadavg()[0] },
  mode,
  osteo: { ...osteo, stepMs: undefined, medianCpuStepMs: osteoCpuMs },
  pytorch: torch,
  ratio,
  cpuRatio,
};
if (values.json) console.log(JSON.stringify(report, null, 2));
else {
  console.log(`${mode} ${osteo.model} ${osteo.imageSize}² batch ${osteo.batchSize}`);
  console.log(`  osteo ${osteo.backend} ×${osteo.workers} (micro-batch ${osteo.microBatch}): ${osteo.medianStepMs.toFixed(0)} ms/step, ${osteo.imagesPerSec.toFixed(2)} images/s`);
  console.log(`  ${torch.framework} ×${torch.threads} thread(s): ${torch.medianStepMs.toFixed(0)} ms/step, ${torch.imagesPerSec.toFixed(2)} images/s`);
  console.log(`  ratio osteo/PyTorch: ${ratio.toFixed(3)}   (load average ${loadBefore.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after)`);
  if (cpuRatio) console.log(`  CPU time per step: osteo ${osteoCpuMs.toFixed(0)} ms, PyTorch ${torch.medianCpuStepMs!.toFixed(0)} ms; CPU-time ratio ${cpuRatio.toFixed(3)}`);
}
