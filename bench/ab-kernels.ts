/**
 * In-process A/B of two versions of the convolution kernels on the ResNet18 layer shapes:
 *
 *   node --import tsx bench/ab-kernels.ts --a /path/to/old/src/backend/kernels --b src/backend/kernels [--reps 20] [--batch 4] [--set resnet18|resnet50-1x1] [--layers stem,layer4]
 *
 * Both versions' conv-grad.ts (and conv-forward.ts where present) are imported into one process and
 * called alternately, call by call, on the same inputs (a fresh dy and filter tensor for every call,
 * made outside the timed region, as in a training step), so that the load of other jobs on a shared
 * machine falls on both alike. Times are this thread's CPU time summed over the repetitions.
 */
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { useBackend } from '../src/backend/index.js';
import { resnet18Layers, resnet50PointwiseLayers, threadClock } from './util.js';

type Kernel = (args: { inputs: Record<string, tf.TensorInfo>; backend: BackendWasm; attrs: Record<string, unknown> }, fallback?: unknown) => tf.TensorInfo;

interface Version {
  filterGrad: Kernel;
  inputGrad: Kernel;
  forward: Kernel | null;
}

async function load(dir: string): Promise<Version> {
  const grad = (await import(pathToFileURL(resolve(dir, 'conv-grad.ts')).href)) as { conv2DBackpropFilter: Kernel; conv2DBackpropInput: Kernel };
  const forwardFile = resolve(dir, 'conv-forward.ts');
  const forward = existsSync(forwardFile) ? ((await import(pathToFileURL(forwardFile).href)) as { fusedConv2D: Kernel }).fusedConv2D : null;
  return { filterGrad: grad.conv2DBackpropFilter, inputGrad: grad.conv2DBackpropInput, forward };
}

const { values } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string', default: 'src/backend/kernels' },
    reps: { type: 'string', default: '12' },
    batch: { type: 'string', default: '4' },
    layers: { type: 'string' },
    set: { type: 'string', default: 'resnet18' },
  },
});
if (!values.a) throw new Error('usage: ab-kernels.ts --a DIR [--b DIR]');
await useBackend('wasm');
const backend = tf.backend() as unknown as BackendWasm;
const versions = { A: await load(values.a), B: await load(values.b!) };
const clock = threadClock();
const reps = Number(values.reps);
const n = Number(values.batch);
// the built-in forward: Conv2D (osteo replaces FusedConv2D; without bias or activation the two are one XNNPACK call)
const builtInForward = tf.getKernel(tf.Conv2D, 'wasm')!;
const table = values.set === 'resnet50-1x1' ? resnet50PointwiseLayers : resnet18Layers;
const layers = values.layers ? table.filter((l) => values.layers!.split(',').some((p) => l.name.includes(p))) : table;

console.log(`batch ${n}, ${reps} interleaved calls each; CPU ms per call, A → B (B/A)`);
console.log('layer            forward                   dx                        dW');
let totals = { A: 0, B: 0 };
for (const l of layers) {
  const x = tf.randomUniform([n, l.h, l.h, l.ci], -1, 1);
  const filter0 = tf.randomUniform([l.k, l.k, l.ci, l.co], -0.1, 0.1);
  const y = tf.conv2d(x as tf.Tensor4D, filter0 as tf.Tensor4D, l.s, l.pad);
  const dy0 = tf.randomUniform(y.shape, -1, 1);
  const attrs = { strides: l.s, pad: l.pad, dataFormat: 'NHWC', dilations: 1, activation: 'linear' };
  const ms = { forward: { A: 0, B: 0 }, dx: { A: 0, B: 0 }, dw: { A: 0, B: 0 } };
  const fallback = (args: unknown) => builtInForward.kernelFunc(args as Parameters<tf.KernelFunc>[0]);
  for (let r = 0; r <= reps; r++) {
    for (const name of (r % 2 ? ['A', 'B'] : ['B', 'A']) as Array<'A' | 'B'>) {
      const v = versions[name];
      const run = (kind: 'forward' | 'dx' | 'dw', f: () => tf.TensorInfo) => {
        const start = clock();
        const out = f();
        const elapsed = clock() - start;
        backend.disposeData(out.dataId);
        if (r > 0) ms[kind][name] += elapsed;
      };
      const dy = tf.add(dy0, 0);
      const filter = tf.add(filter0, 0);
      run('forward', () => (v.forward ? v.forward({ inputs: { x, filter }, backend, attrs }, fallback) : (fallback({ inputs: { x, filter }, backend, attrs }) as tf.TensorInfo)));
      run('dx', () => v.inputGrad({ inputs: { dy, filter }, backend, attrs: { ...attrs, inputShape: x.shape } }));
      run('dw', () => v.filterGrad({ inputs: { x, dy }, backend, attrs: { ...attrs, filterShape: filter0.shape } }));
      tf.dispose([dy, filter]);
    }
  }
  const cell = (k: 'forward' | 'dx' | 'dw') => `${(ms[k].A / reps).toFixed(1).padStart(6)} → ${(ms[k].B / reps).toFixed(1).padStart(6)} (${(ms[k].B / ms[k].A).toFixed(2)})`.padEnd(26);
  console.log(`${l.name.padEnd(16)} ${cell('forward')} ${cell('dx')} ${cell('dw')}`);
  for (const k of ['forward', 'dx', 'dw'] as const) {
    totals.A += ms[k].A / reps;
    totals.B += ms[k].B / reps;
  }
  tf.dispose([x, filter0, y, dy0]);
}
console.log(`sum over these layers (one call each): ${totals.A.toFixed(1)} → ${totals.B.toFixed(1)} ms (${(totals.B / totals.A).toFixed(3)})`);
totals = { A: 0, B: 0 };
