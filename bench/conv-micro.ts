/**
 * Isolated convolution and GEMM timings on the wasm backend, for the ResNet18 layer shapes at batch 4:
 *
 *   node --import tsx bench/conv-micro.ts [--reps 5] [--batch 4] [--threads 2] [--json]
 *
 * For each shape: the forward convolution with a cached XNNPACK operator (same filter tensor every
 * call: the packed weights are reused), with a fresh filter tensor every call (what a training step
 * does: tfjs-wasm transposes the filter and XNNPACK packs it again), with the caches flushed before
 * the call (a 48 MiB write in between, as the activations of other layers do in a step), and the two
 * gradients. Times are this thread's CPU time per call, averaged over ≥ --reps calls and ≥ 250 ms. --threads N runs the same in N
 * threads at once (memory-bandwidth and shared-cache contention).
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../src/backend/index.js';
import { resnet18Layers, startScriptWorker, threadClock, uniformNoise as random, type Layer } from './util.js';

interface Row {
  layer: string;
  gflop: number;
  cachedMs: number;
  freshMs: number;
  coldMs: number;
  dxMs: number;
  dwMs: number;
}

async function measure(batch: number, reps: number, layers: Layer[]): Promise<Row[]> {
  await useBackend('wasm');
  // This thread's CPU time, summed over enough calls to pass 250 ms (the schedstat clock advances in
  // 4 ms ticks on this VM), so that other jobs on the machine do not count; per-call mean.
  const clock = threadClock();
  const time = (f: () => tf.Tensor, before?: () => void): number => {
    before?.();
    f().dispose(); // warm-up
    let total = 0;
    let calls = 0;
    while (calls < reps || total < 250) {
      before?.();
      const start = clock();
      const out = f();
      total += clock() - start;
      out.dispose();
      calls++;
    }
    return total / calls;
  };
  const rows: Row[] = [];
  for (const l of layers) {
    const x = tf.tensor4d(random(batch * l.h * l.h * l.ci, 1), [batch, l.h, l.h, l.ci]);
    const filterValues = random(l.k * l.k * l.ci * l.co, 2);
    const filter = tf.tensor4d(filterValues, [l.k, l.k, l.ci, l.co]);
    const y = tf.conv2d(x, filter, l.s, l.pad);
    const dy = tf.tensor4d(random(y.size, 3), y.shape);
    const gflop = (2 * y.size * l.k * l.k * l.ci) / 1e9;
    const cachedMs = time(() => tf.conv2d(x, filter, l.s, l.pad));
    const freshMs = time(() => {
      const f = tf.tensor4d(filterValues, [l.k, l.k, l.ci, l.co]);
      const out = tf.conv2d(x, f, l.s, l.pad);
      f.dispose();
      return out;
    });
    const coldMs = time(
      () => tf.conv2d(x, filter, l.s, l.pad),
      () => {
        tf.fill([12 * 1024 * 1024], 1).dispose(); // evict x, the packed filter and the output
      },
    );
    // a fresh dy (and filter) for every gradient call, made outside the timed region: a step never
    // sees the same dy twice, and tfjs-wasm caches a GEMM's packed right operand on its tensor
    let freshDy = dy;
    let freshFilter = filter;
    const refresh = () => {
      if (freshDy !== dy) tf.dispose([freshDy, freshFilter]);
      freshDy = tf.add(dy, 0);
      freshFilter = tf.add(filter, 0);
    };
    const dxMs = time(() => tf.conv2dTranspose(freshDy, freshFilter, x.shape, l.s, l.pad), refresh);
    const dwMs = time(() => tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy: freshDy }, { strides: l.s, pad: l.pad, dataFormat: 'NHWC', filterShape: filter.shape }) as tf.Tensor, refresh);
    tf.dispose([freshDy, freshFilter]);
    rows.push({ layer: l.name, gflop, cachedMs, freshMs, coldMs, dxMs, dwMs });
    tf.dispose([x, filter, y, dy]);
  }
  // the reference GEMM: 1024² (the weights cached)
  const a = tf.tensor2d(random(1024 * 1024, 4), [1024, 1024]);
  const b = tf.tensor2d(random(1024 * 1024, 5), [1024, 1024]);
  const gemmMs = time(() => tf.matMul(a, b));
  const gemmFreshMs = time(() => {
    const fresh = tf.add(b, 0);
    const out = tf.matMul(a, fresh);
    fresh.dispose();
    return out;
  });
  rows.push({ layer: 'matmul 1024²', gflop: (2 * 1024 ** 3) / 1e9, cachedMs: gemmMs, freshMs: gemmFreshMs, coldMs: NaN, dxMs: NaN, dwMs: NaN });
  tf.dispose([a, b]);
  return rows;
}

if (isMainThread) {
  const { values } = parseArgs({
    options: {
      reps: { type: 'string', default: '5' },
      batch: { type: 'string', default: '4' },
      threads: { type: 'string', default: '1' },
      layers: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const layers = values.layers ? resnet18Layers.filter((l) => values.layers!.split(',').some((p) => l.name.includes(p))) : resnet18Layers;
  const threads = Number(values.threads);
  const all = await Promise.all(
    Array.from({ length: threads }, () => {
      const worker = startScriptWorker(import.meta.url, { micro: { batch: Number(values.batch), reps: Number(values.reps), layers } });
      return new Promise<Row[]>((resolve, reject) => {
        worker.once('message', (rows: Row[]) => {
          resolve(rows);
          void worker.terminate();
        });
        worker.on('error', reject);
      });
    }),
  );
  if (values.json) console.log(JSON.stringify(all, null, 2));
  else {
    console.log(`batch ${values.batch}, ${threads} thread(s) at once; CPU ms per call (GFLOP/s), thread 1`);
    console.log('layer            GFLOP   fwd cached       fwd fresh filter   fwd cold cache    dx               dW');
    const cell = (ms: number, gflop: number) => (Number.isNaN(ms) ? '' : `${ms.toFixed(1).padStart(7)} (${(gflop / (ms / 1000)).toFixed(1).padStart(4)})`).padEnd(17);
    for (const r of all[0]!) console.log(`${r.layer.padEnd(15)} ${r.gflop.toFixed(3).padStart(6)}  ${cell(r.cachedMs, r.gflop)}  ${cell(r.freshMs, r.gflop)}  ${cell(r.coldMs, r.gflop)} ${cell(r.dxMs, r.gflop)} ${cell(r.dwMs, r.gflop)}`);
  }
} else if ((workerData as { micro?: unknown }).micro) {
  const { batch, reps, layers } = (workerData as { micro: { batch: number; reps: number; layers: Layer[] } }).micro;
  parentPort!.postMessage(await measure(batch, reps, layers));
}
