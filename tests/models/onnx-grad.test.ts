/**
 * The window ops' gradient rules (src/models/onnx/window-grad.ts) one op at a time against PyTorch
 * (tests/fixtures/torch/op_grads.py, float64): convolutions with stride, padding, dilation, odd and
 * non-square sizes (where the forward's floor drops rows, so the input gradient needs
 * output_padding and the filter gradient a cut), depthwise groups, in every formulation the rule
 * can write; max pooling on ReLU-like input (ties broken as torch: the first maximum) with overlapping
 * windows; average pooling. Each graph is the op, then appendBackward seeded by a random ∂y, run on
 * onnxruntime's CPU provider; every gradient must be within 1e-5 of PyTorch's, relative to its
 * largest magnitude.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { onnxruntime } from '../../src/backend/onnxruntime.js';
import { int, ints, type Attribute as OnnxAttribute } from '../../src/models/onnx/graph.js';
import { windowOpGradientGraph } from '../../src/models/onnx/op-graph.js';
import type { ConvFormulation } from '../../src/models/onnx/rule.js';
import { SeededRandom } from '../../src/models/random.js';
import { encodeOnnx } from '../../src/weights/index.js';
import { once, referenceTest, runPython, temporaryDirectory } from '../fixtures/torch/python.js';

const tolerance = 1e-5;
const dir = temporaryDirectory('onnx-grad');

interface OpCase {
  name: string;
  op: 'conv' | 'maxpool' | 'avgpool';
  x: number[];
  w?: number[];
  bias?: boolean;
  kernel?: [number, number];
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
  /** ReLU-like input: many exact zeros, so max pooling meets ties */
  relu?: boolean;
}

const conv = (name: string, x: number[], w: number[], stride: number, padding: number, options: Partial<OpCase> = {}): OpCase => ({
  name, op: 'conv', x, w, bias: true, stride: [stride, stride], padding: [padding, padding], dilation: [1, 1], groups: 1, ...options,
});

const cases: OpCase[] = [
  conv('conv3x3_s1', [2, 3, 9, 7], [4, 3, 3, 3], 1, 1),
  conv('conv3x3_s2_odd', [2, 3, 9, 8], [4, 3, 3, 3], 2, 1),
  conv('conv1x1_s2', [2, 5, 9, 10], [6, 5, 1, 1], 2, 0, { bias: false }),
  conv('conv7x7_s2_stem', [2, 3, 11, 12], [4, 3, 7, 7], 2, 3, { bias: false }),
  conv('conv4x4_s4_patchify', [2, 3, 13, 12], [5, 3, 4, 4], 4, 0),
  conv('conv2x2_s2_downsample', [2, 4, 7, 6], [6, 4, 2, 2], 2, 0),
  conv('conv3x3_dilated', [2, 3, 10, 9], [4, 3, 3, 3], 1, 2, { dilation: [2, 2] }),
  conv('depthwise3x3_s1', [2, 4, 9, 7], [4, 1, 3, 3], 1, 1, { groups: 4, bias: false }),
  conv('depthwise5x5_s2', [2, 4, 11, 10], [4, 1, 5, 5], 2, 2, { groups: 4, bias: false }),
  conv('depthwise7x7_s1', [2, 3, 9, 9], [3, 1, 7, 7], 1, 3, { groups: 3 }),
  { name: 'maxpool3x3_s2', op: 'maxpool', x: [2, 3, 9, 8], kernel: [3, 3], stride: [2, 2], padding: [1, 1], dilation: [1, 1], groups: 1, relu: true },
  { name: 'maxpool2x2_s2', op: 'maxpool', x: [2, 3, 7, 6], kernel: [2, 2], stride: [2, 2], padding: [0, 0], dilation: [1, 1], groups: 1, relu: true },
  { name: 'avgpool2x2_s2', op: 'avgpool', x: [2, 3, 9, 8], kernel: [2, 2], stride: [2, 2], padding: [0, 0], dilation: [1, 1], groups: 1 },
];

/** undefined: the rule's own choice by shape (defaultConvFormulation). */
const formulations: (ConvFormulation | undefined)[] = [
  undefined,
  { input: 'transpose', filter: 'conv' },
  { input: 'conv', filter: 'patches' },
  { input: 'patches', filter: 'conv' },
];

function readF32(path: string): Float32Array {
  const bytes = readFileSync(path);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
/** The op's graph, its backward seeded by `dy`, and its gradients as outputs `dx`, `dw`, `db`. */
function opGraph(c: OpCase, formulation: ConvFormulation | undefined) {
  const pads = ints([c.padding[0], c.padding[1], c.padding[0], c.padding[1]]);
  const attributes: Record<string, OnnxAttribute> = c.op === 'conv'
    ? { kernel_shape: ints(c.w!.slice(2)), strides: ints(c.stride), pads, dilations: ints(c.dilation), group: int(c.groups) }
    : { kernel_shape: ints(c.kernel!), strides: ints(c.stride), pads, ...(c.op === 'avgpool' ? { count_include_pad: int(1) } : {}) };
  const opType = c.op === 'conv' ? 'Conv' : c.op === 'maxpool' ? 'MaxPool' : 'AveragePool';
  return windowOpGradientGraph({ name: c.name, opType, x: c.x, ...(c.w ? { w: c.w } : {}), bias: c.bias === true, attributes, ...(formulation ? { formulation } : {}) });
}

const operands = once(() => {
  const random = new SeededRandom(42);
  const values = new Map<string, Float32Array>();
  for (const c of cases) {
    const { inputs } = opGraph(c, undefined);
    for (const input of inputs) {
      const data = Float32Array.from({ length: numel(input.shape as number[]) }, () => random.nextNormal());
      if (input.name === 'x' && c.relu) for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.round(data[i]! * 4) / 4);
      values.set(`${c.name}_${input.name}`, data);
      writeFileSync(join(dir.path, `${c.name}_${input.name}.bin`), data);
    }
  }
  writeFileSync(join(dir.path, 'cases.json'), JSON.stringify(cases));
  runPython('op_grads.py', [dir.path]);
  return values;
});

for (const c of cases) {
  const choices = c.op === 'conv' ? formulations.filter((f) => !(c.groups > 1 && f?.input === 'patches')) : [undefined];
  for (const formulation of choices) {
    const label = c.op !== 'conv' ? c.name : formulation ? `${c.name} (input: ${formulation.input}, filter: ${formulation.filter})` : `${c.name} (chosen by shape)`;
    referenceTest(test, `${label}: onnxruntime's gradients equal PyTorch's`, async () => {
      const values = operands();
      const { graph, inputs } = opGraph(c, formulation);
      const ort = await onnxruntime();
      const session = await ort.InferenceSession.create(encodeOnnx(graph, new Map()), { intraOpNumThreads: 1, logSeverityLevel: 3 });
      try {
        const feeds = Object.fromEntries(inputs.map((i) => [i.name, new ort.Tensor('float32', values.get(`${c.name}_${i.name}`)!, i.shape as number[])]));
        const results = await session.run(feeds);
        for (const output of ['y', ...inputs.filter((i) => i.name !== 'dy').map((i) => `d${i.name}`)]) {
          const ours = results[output]!.data as Float32Array;
          const theirs = readF32(join(dir.path, `${c.name}_${output}.torch.bin`));
          assert.is(ours.length, theirs.length, `${label} ${output}: size`);
          let scale = 0;
          let diff = 0;
          for (let i = 0; i < ours.length; i++) {
            scale = Math.max(scale, Math.abs(theirs[i]!));
            diff = Math.max(diff, Math.abs(ours[i]! - theirs[i]!));
          }
          assert.ok(scale > 0, `${label} ${output}: PyTorch's value is zero`);
          assert.ok(diff <= tolerance * scale, `${label} ${output}: max |Δ| ${diff} > ${tolerance} × ${scale}`);
        }
      } finally {
        await session.release();
      }
    });
  }
}

test.after(() => dir.remove());

test.run();
