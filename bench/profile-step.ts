/**
 * Per-kernel profile of training (or inference) steps of one replica, alone or with other replicas
 * running the same steps at the same time in other threads (the data-parallel engine's situation):
 *
 *   node --import tsx bench/profile-step.ts --model resnet18 --image-size 224 --batch 4 --steps 3 [--threads 2] [--mode infer] [--json]
 *
 * Every wasm kernel is wrapped with a wall-clock timer (exclusive time: a kernel that calls other
 * kernels, like the convolution gradients, is charged only for its own work; the inclusive time is
 * kept too). Convolution-like kernels also get their FLOPs counted, so the table shows GFLOP/s per
 * kernel. Each step writes fresh parameter values first, as the engine does (new tensors, so the
 * backend's cached XNNPACK operators for the old filters are dropped).
 *
 * --threads N runs N replicas, each in its own worker thread, steps started together (a barrier):
 * comparing --threads 1 with --threads 2 shows what the two workers cost each other.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { startScriptWorker, threadClock, threadFaults } from './util.js';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/backend/index.js';
import { Replica } from '../src/engine/replica.js';
import { modelProvider } from '../src/engine/registry-provider.js';
import { syntheticBatch, median } from '../src/engine/bench.js';
import { lossCoefficients } from '../src/engine/loss.js';

export interface Options {
  model: string;
  imageSize: number;
  batch: number;
  steps: number;
  warmup: number;
  mode: 'train' | 'infer';
  /** keep the parameters between steps (no fresh tensors): what inference does */
  sameParams: boolean;
  barrier?: SharedArrayBuffer;
  threads: number;
  /** 'cpu': this thread's CPU time (robust to other processes); 'wall': elapsed time */
  clock: 'cpu' | 'wall';
}

export interface KernelStat {
  calls: number;
  /** minor page faults taken inside the kernel (first touches of fresh memory) */
  faults?: number;
  /** exclusive ms over the timed steps */
  ms: number;
  inclusiveMs: number;
  flops: number;
}

export interface ProfileResult {
  stepMs: number[];
  /** minor page faults per timed step (this thread) */
  stepFaults: number[];
  kernels: Record<string, KernelStat>;
  /** forward-conv GFLOP/s by layer shape, keyed "kind HxWxCi→Co kKsS" */
  shapes: Record<string, KernelStat>;
}

type Shape4 = [number, number, number, number];

function convFlops(name: string, inputs: Record<string, tf.TensorInfo>, attrs: Record<string, unknown>, out: tf.TensorInfo): number {
  const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);
  if (name === 'Conv2D' || name === 'FusedConv2D') {
    const f = inputs['filter']!.shape;
    return 2 * prod(out.shape) * f[0]! * f[1]! * f[2]!;
  }
  if (name === 'Conv2DBackpropInput') {
    const f = inputs['filter']!.shape; // [kh, kw, ci, co]; dy = forward output
    return 2 * prod(inputs['dy']!.shape) * f[0]! * f[1]! * f[2]!;
  }
  if (name === 'Conv2DBackpropFilter') {
    const f = attrs['filterShape'] as Shape4;
    return 2 * prod(inputs['dy']!.shape) * f[0] * f[1] * f[2];
  }
  if (name === 'BatchMatMul' || name === '_FusedMatMul') {
    const a = inputs['a']!.shape;
    const b = inputs['b']!.shape;
    const ta = attrs['transposeA'] === true;
    const tb = attrs['transposeB'] === true;
    const m = ta ? a[a.length - 1]! : a[a.length - 2]!;
    const k = ta ? a[a.length - 2]! : a[a.length - 1]!;
    const n = tb ? b[b.length - 2]! : b[b.length - 1]!;
    return 2 * m * k * n * prod(a.slice(0, -2));
  }
  return 0;
}

function shapeKey(name: string, inputs: Record<string, tf.TensorInfo>, attrs: Record<string, unknown>): string | null {
  if (name !== 'Conv2D' && name !== 'FusedConv2D' && name !== 'Conv2DBackpropInput' && name !== 'Conv2DBackpropFilter') return null;
  const strides = attrs['strides'];
  const s = Array.isArray(strides) ? strides[0] : strides;
  if (name === 'Conv2DBackpropFilter') {
    const x = inputs['x']!.shape;
    const f = attrs['filterShape'] as Shape4;
    return `${name} ${x[1]}x${x[2]}x${f[2]}→${f[3]} k${f[0]}s${s}`;
  }
  if (name === 'Conv2DBackpropInput') {
    const x = attrs['inputShape'] as Shape4;
    const f = inputs['filter']!.shape;
    return `${name} ${x[1]}x${x[2]}x${f[2]}→${f[3]} k${f[0]}s${s}`;
  }
  const x = inputs['x']!.shape;
  const f = inputs['filter']!.shape;
  return `${name} ${x[1]}x${x[2]}x${f[2]}→${f[3]} k${f[0]}s${s}`;
}

/** Wrap every wasm kernel with a timer; returns the live statistics and a switch. */
export function instrumentWasmKernels(now: () => number = () => performance.now(), faults: () => number = () => 0): { kernels: Record<string, KernelStat>; shapes: Record<string, KernelStat>; setActive(on: boolean): void } {
  const kernels: Record<string, KernelStat> = {};
  const shapes: Record<string, KernelStat> = {};
  let active = false;
  const stack: number[] = []; // child time accumulated per open frame
  for (const config of tf.getKernelsForBackend('wasm')) {
    const original = config.kernelFunc;
    const name = config.kernelName;
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({
      ...config,
      setupFunc: undefined, // already set up on the live backend
      kernelFunc: (args) => {
        if (!active) return original(args);
        const start = now();
        const faultsBefore = faults();
        stack.push(0);
        let out: ReturnType<typeof original>;
        try {
          out = original(args);
        } finally {
          const elapsed = now() - start;
          const children = stack.pop()!;
          if (stack.length > 0) stack[stack.length - 1]! += elapsed;
          const stat = (kernels[name] ??= { calls: 0, ms: 0, inclusiveMs: 0, flops: 0 });
          stat.calls++;
          stat.ms += elapsed - children;
          stat.inclusiveMs += elapsed;
          stat.faults = (stat.faults ?? 0) + faults() - faultsBefore;
        }
        const inputs = args.inputs as Record<string, tf.TensorInfo>;
        const attrs = args.attrs as Record<string, unknown>;
        const first = (Array.isArray(out) ? out[0] : out) as tf.TensorInfo;
        const flops = convFlops(name, inputs, attrs, first);
        kernels[name]!.flops += flops;
        const key = shapeKey(name, inputs, attrs);
        if (key) {
          const stat = (shapes[key] ??= { calls: 0, ms: 0, inclusiveMs: 0, flops: 0 });
          stat.calls++;
          stat.flops += flops;
          stat.inclusiveMs += now() - start;
        }
        return out;
      },
    });
  }
  return { kernels, shapes, setActive: (on) => (active = on) };
}

/** One replica's steps, timed kernel by kernel. */
export async function profileReplica(options: Options, onStep?: (i: number, ms: number) => void): Promise<ProfileResult> {
  await useBackend('wasm');
  const replica = new Replica(modelProvider, options.model, { imageSize: options.imageSize, numClasses: 3, seed: 0 });
  const clock = options.clock === 'cpu' ? threadClock() : () => performance.now();
  const faults = threadFaults();
  const stats = instrumentWasmKernels(clock, faults);
  const params = new Float32Array(replica.layout.paramCount);
  replica.readParams(params);
  for (let i = 0; i < params.length; i++) if (params[i] === 0) params[i] = ((i * 2654435761) % 1000) / 1e5 - 0.005;
  const buffers = new Float32Array(replica.layout.bufferCount);
  replica.readBuffers(buffers);
  const grads = new Float32Array(replica.layout.paramCount);
  const batch = syntheticBatch(options.batch, options.imageSize, 3, 1);
  const coefficients = lossCoefficients({ numClasses: 3, labelSmoothing: 0 }, batch.labels, batch.size);
  const barrier = options.barrier ? new Int32Array(options.barrier) : null;
  const stepMs: number[] = [];
  const stepFaults: number[] = [];
  replica.writeParams(params);
  for (let step = 0; step < options.warmup + options.steps; step++) {
    if (barrier) {
      // every thread arrives, then all start together
      const generation = Atomics.load(barrier, 1);
      if (Atomics.add(barrier, 0, 1) + 1 === options.threads) {
        Atomics.store(barrier, 0, 0);
        Atomics.add(barrier, 1, 1);
        Atomics.notify(barrier, 1);
      } else Atomics.wait(barrier, 1, generation);
    }
    stats.setActive(step >= options.warmup);
    const start = clock();
    const faultsBefore = faults();
    if (options.mode === 'train') {
      if (!options.sameParams) {
        params[step % params.length] += 1e-6;
        replica.writeParams(params);
      }
      replica.gradients([{ index: 0, images: batch.images, size: batch.size, coefficients, labels: batch.labels }], 1, 0, step, buffers, grads);
    } else {
      replica.predict(batch.images, batch.size, batch.size);
    }
    const ms = clock() - start;
    stats.setActive(false);
    if (step >= options.warmup) {
      stepMs.push(ms);
      stepFaults.push(faults() - faultsBefore);
    }
    onStep?.(step, ms);
  }
  replica.dispose();
  return { stepMs, stepFaults, kernels: stats.kernels, shapes: stats.shapes };
}

export function formatProfile(results: ProfileResult[], steps: number, top = 24): string {
  const lines: string[] = [];
  const names = new Set(results.flatMap((r) => Object.keys(r.kernels)));
  const rows = [...names].map((name) => {
    const per = results.map((r) => r.kernels[name]);
    const ms = per.reduce((a, s) => a + (s?.ms ?? 0), 0) / results.length / steps;
    const incl = per.reduce((a, s) => a + (s?.inclusiveMs ?? 0), 0) / results.length / steps;
    const calls = (per[0]?.calls ?? 0) / steps;
    const flops = (per[0]?.flops ?? 0) / steps;
    const faults = (per[0]?.faults ?? 0) / steps;
    return { name, ms, incl, calls, flops, faults };
  });
  rows.sort((a, b) => b.ms - a.ms);
  const total = rows.reduce((a, r) => a + r.ms, 0);
  lines.push(`kernel                                   calls   excl ms   incl ms   GFLOP  GFLOP/s(incl)  faults(incl)`);
  for (const r of rows.slice(0, top)) {
    const gf = r.flops / 1e9;
    lines.push(
      `${r.name.padEnd(40)} ${r.calls.toFixed(0).padStart(5)} ${r.ms.toFixed(1).padStart(9)} ${r.incl.toFixed(1).padStart(9)} ${gf ? gf.toFixed(2).padStart(7) : ''.padStart(7)} ${(gf ? (gf / (r.incl / 1000)).toFixed(1) : '').padStart(8)} ${r.faults.toFixed(0).padStart(12)}`,
    );
  }
  lines.push(`${'all kernels (exclusive)'.padEnd(40)} ${''.padStart(5)} ${total.toFixed(1).padStart(9)}`);
  const shapeNames = [...new Set(results.flatMap((r) => Object.keys(r.shapes)))].sort();
  lines.push('', `shape                                              calls   incl ms   GFLOP/s`);
  for (const key of shapeNames) {
    const per = results.map((r) => r.shapes[key]!).filter(Boolean);
    const ms = per.reduce((a, s) => a + s.inclusiveMs, 0) / per.length / steps;
    const flops = per[0]!.flops / steps;
    lines.push(`${key.padEnd(50)} ${(per[0]!.calls / steps).toFixed(0).padStart(5)} ${ms.toFixed(1).padStart(9)} ${(flops / 1e9 / (ms / 1000)).toFixed(1).padStart(8)}`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'resnet18' },
      'image-size': { type: 'string', default: '224' },
      batch: { type: 'string', default: '4' },
      steps: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '2' },
      threads: { type: 'string', default: '1' },
      mode: { type: 'string', default: 'train' },
      'same-params': { type: 'boolean', default: false },
      clock: { type: 'string', default: 'cpu' },
      json: { type: 'boolean', default: false },
    },
  });
  const threads = Number(values.threads);
  const options: Options = {
    model: values.model!,
    imageSize: Number(values['image-size']),
    batch: Number(values.batch),
    steps: Number(values.steps),
    warmup: Number(values.warmup),
    mode: values.mode as 'train' | 'infer',
    sameParams: values['same-params']!,
    barrier: new SharedArrayBuffer(8),
    threads,
    clock: values.clock === 'wall' ? 'wall' : 'cpu',
  };
  const load = loadavg()[0]!;
  const results = await Promise.all(
    Array.from({ length: threads }, (_, t) => {
      const worker = startScriptWorker(import.meta.url, { options, thread: t });
      return new Promise<ProfileResult>((resolve, reject) => {
        worker.on('message', (m: { step?: [number, number]; result?: ProfileResult }) => {
          if (m.step && !values.json) console.error(`  thread ${t} step ${m.step[0] + 1}: ${m.step[1].toFixed(0)} ms`);
          if (m.result) {
            resolve(m.result);
            void worker.terminate();
          }
        });
        worker.on('error', reject);
      });
    }),
  );
  const stepMedians = results.map((r) => median(r.stepMs));
  if (values.json) {
    console.log(JSON.stringify({ options: { ...options, barrier: undefined }, load: [load, loadavg()[0]], stepMedians, results }, null, 2));
    return;
  }
  console.log(`${options.mode} ${options.model} ${options.imageSize}² batch ${options.batch}, ${threads} thread(s): step median ${stepMedians.map((m) => m.toFixed(0)).join(' / ')} ms ${options.clock}, ${results.map((r) => median(r.stepFaults).toFixed(0)).join(' / ')} page faults (load ${load.toFixed(2)} → ${loadavg()[0]!.toFixed(2)})`);
  console.log(formatProfile(results, options.steps));
}

if (isMainThread) {
  await main();
} else if (workerData && (workerData as { options?: Options }).options) {
  const { options } = workerData as { options: Options; thread: number };
  const result = await profileReplica(options, (i, ms) => parentPort!.postMessage({ step: [i, ms] }));
  parentPort!.postMessage({ result });
}
