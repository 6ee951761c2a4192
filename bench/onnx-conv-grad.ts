/**
 * The formulations of a convolution's gradients as ONNX graphs (src/models/onnx/window-grad.ts), timed
 * on onnxruntime's CPU provider for ResNet18's convolution shapes:
 *
 *   node --import tsx bench/onnx-conv-grad.ts [--size 224] [--batch 8] [--threads 2] [--reps 3] [--json]
 *
 * For each shape: the input gradient as a ConvTranspose, as a Conv of the zero-inserted gradient with
 * the flipped filter, and as a MatMul onto patches summed back in place; the filter gradient as a Conv
 * of the re-laid input with the re-laid gradient and as a MatMul of the gradient with the input's
 * patches. Each is a graph of its own (the forward Conv included, as in a step, and timed alone to be
 * subtracted), run `--reps` times after two warm-up runs; the figures are the median wall time and
 * the median CPU time of the process (all threads; onnxruntime's threads do not spin-wait here, so CPU
 * time is work done, which other jobs on a shared machine inflate far less than wall time). The
 * 1-minute load average is printed before and after: a wall time taken at a load above 1.5 is not a
 * result.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { onnxruntime } from '../src/backend/onnxruntime.js';
import { int, ints } from '../src/models/onnx/graph.js';
import { windowOpGradientGraph } from '../src/models/onnx/op-graph.js';
import type { ConvFormulation } from '../src/models/onnx/rule.js';
import { encodeOnnx } from '../src/weights/index.js';
import { uniformNoise } from './util.js';

interface Shape {
  name: string;
  ci: number;
  co: number;
  h: number;
  k: number;
  s: number;
  p: number;
  /** the stem reads the image, which needs no gradient */
  inputGradient: boolean;
}

/** ResNet18's distinct convolutions at 224²: [in, out, input size, kernel, stride, padding]. */
function resnet18Shapes(size: number): Shape[] {
  const at = (factor: number) => Math.ceil(size / factor);
  const rows: [string, number, number, number, number, number, number][] = [
    ['stem 7×7/2', 3, 64, size, 7, 2, 3],
    ['layer1 3×3', 64, 64, at(4), 3, 1, 1],
    ['layer2 3×3/2', 64, 128, at(4), 3, 2, 1],
    ['layer2 3×3', 128, 128, at(8), 3, 1, 1],
    ['layer2 1×1/2', 64, 128, at(4), 1, 2, 0],
    ['layer3 3×3/2', 128, 256, at(8), 3, 2, 1],
    ['layer3 3×3', 256, 256, at(16), 3, 1, 1],
    ['layer3 1×1/2', 128, 256, at(8), 1, 2, 0],
    ['layer4 3×3/2', 256, 512, at(16), 3, 2, 1],
    ['layer4 3×3', 512, 512, at(32), 3, 1, 1],
    ['layer4 1×1/2', 256, 512, at(16), 1, 2, 0],
  ];
  return rows.map(([name, ci, co, h, k, s, p]) => ({ name, ci, co, h, k, s, p, inputGradient: !name.startsWith('stem') }));
}

type Variant = { label: string; wrt: ('x' | 'w')[]; formulation: ConvFormulation };

const variants: Variant[] = [
  { label: 'forward only', wrt: [], formulation: { input: 'transpose', filter: 'conv' } },
  { label: 'dx ConvTranspose', wrt: ['x'], formulation: { input: 'transpose', filter: 'conv' } },
  { label: 'dx Conv (zero-inserted)', wrt: ['x'], formulation: { input: 'conv', filter: 'conv' } },
  { label: 'dx MatMul (patches)', wrt: ['x'], formulation: { input: 'patches', filter: 'conv' } },
  { label: 'dW Conv (re-laid)', wrt: ['w'], formulation: { input: 'transpose', filter: 'conv' } },
  { label: 'dW MatMul (patches)', wrt: ['w'], formulation: { input: 'transpose', filter: 'patches' } },
];

interface Timing {
  wallMs: number;
  cpuMs: number;
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function time(shape: Shape, variant: Variant, batch: number, threads: number, reps: number): Promise<Timing> {
  const ort = await onnxruntime();
  const attributes = { kernel_shape: ints([shape.k, shape.k]), strides: ints([shape.s, shape.s]), pads: ints([shape.p, shape.p, shape.p, shape.p]), group: int(1) };
  const { graph, inputs } = windowOpGradientGraph({ name: 'bench', opType: 'Conv', x: [batch, shape.ci, shape.h, shape.h], w: [shape.co, shape.ci, shape.k, shape.k], attributes, wrt: variant.wrt, formulation: variant.formulation });
  const session = await ort.InferenceSession.create(encodeOnnx(graph, new Map()), { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', logSeverityLevel: 3, extra: { session: { intra_op: { allow_spinning: '0' } } } });
  try {
    const feeds = Object.fromEntries(inputs.map((input, i) => {
      const dims = input.shape as number[];
      return [input.name, new ort.Tensor('float32', uniformNoise(dims.reduce((a, b) => a * b, 1), 7 + i), dims)];
    }));
    for (let i = 0; i < 2; i++) await session.run(feeds);
    const walls: number[] = [];
    const cpus: number[] = [];
    for (let i = 0; i < reps; i++) {
      const start = performance.now();
      const cpu = process.cpuUsage();
      await session.run(feeds);
      const used = process.cpuUsage(cpu);
      walls.push(performance.now() - start);
      cpus.push((used.user + used.system) / 1000);
    }
    return { wallMs: median(walls), cpuMs: median(cpus) };
  } finally {
    await session.release();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { size: { type: 'string', default: '224' }, batch: { type: 'string', default: '8' }, threads: { type: 'string', default: '2' }, reps: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } } });
  const [size, batch, threads, reps] = [values.size, values.batch, values.threads, values.reps].map(Number) as [number, number, number, number];
  const before = loadavg()[0]!;
  const rows: { shape: string; gflop: number; ms: Record<string, Timing | null> }[] = [];
  for (const shape of resnet18Shapes(size)) {
    const out = Math.floor((shape.h + 2 * shape.p - shape.k) / shape.s) + 1;
    const gflop = (2 * batch * shape.co * shape.ci * shape.k * shape.k * out * out) / 1e9;
    const ms: Record<string, Timing | null> = {};
    for (const variant of variants) ms[variant.label] = variant.wrt.includes('x') && !shape.inputGradient ? null : await time(shape, variant, batch, threads, reps);
    rows.push({ shape: shape.name, gflop, ms });
    if (!values.json) process.stderr.write(`${shape.name} done\n`);
  }
  const after = loadavg()[0]!;
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ size, batch, threads, reps, loadBefore: before, loadAfter: after, rows }, null, 2)}\n`);
    return;
  }
  const labels = variants.map((v) => v.label);
  process.stdout.write(`ResNet18 convolutions at ${size}², batch ${batch}, ${threads} onnxruntime threads, median of ${reps}, wall ms / CPU ms; load ${before.toFixed(2)} → ${after.toFixed(2)}\n`);
  process.stdout.write(`| shape | GFLOP (fwd) | ${labels.join(' | ')} |\n|${'---|'.repeat(labels.length + 2)}\n`);
  for (const row of rows) process.stdout.write(`| ${row.shape} | ${row.gflop.toFixed(2)} | ${labels.map((l) => (row.ms[l] === null ? '—' : `${row.ms[l]!.wallMs.toFixed(0)} / ${row.ms[l]!.cpuMs.toFixed(0)}`)).join(' | ')} |\n`);
}

await main();
