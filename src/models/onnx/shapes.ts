/**
 * Static shapes of every value of an emitted graph at a fixed batch: the gradient rules (grad.ts)
 * need them to undo broadcasting, to size a transposed convolution's output and to spread a pooled
 * gradient. One rule per op type the emitters and the training graph use; any other op is a bug
 * (an emitter added without its shape).
 */
import { attr, intOf, intsOf, type Constant, type GraphNode, type OnnxGraph } from './graph.js';

export type Shape = readonly number[];
type ShapeRule = (node: GraphNode, shapes: (name: string) => Shape, constant: (name: string) => readonly number[]) => Shape[];


/** numpy broadcasting of two shapes. */
export function broadcastShapes(a: Shape, b: Shape, where: string): Shape {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const x = a[a.length - rank + i] ?? 1;
    const y = b[b.length - rank + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`${where}: shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

export interface Window {
  kernel: readonly number[];
  strides: readonly number[];
  dilations: readonly number[];
  /** [begin per spatial axis…, end per spatial axis…] */
  pads: readonly number[];
}

/** The spatial output size of a window op over an [N, C, …spatial] input. */
export function windowSize(input: Shape, window: Window): number[] {
  const spatial = input.slice(2);
  const { kernel, strides, dilations, pads } = window;
  return spatial.map((n, i) => Math.floor((n + pads[i]! + pads[i + spatial.length]! - dilations[i]! * (kernel[i]! - 1) - 1) / strides[i]!) + 1);
}

/** The spatial output size of a window op node (Conv, pooling), ONNX's defaults filled in. */
export function windowOutput(input: Shape, node: GraphNode): number[] {
  const spatial = input.slice(2);
  if (intOf(node, 'ceil_mode', 0) !== 0) throw new Error(`${node.name}: ceil_mode has no shape rule`);
  return windowSize(input, {
    kernel: intsOf(node, 'kernel_shape', []),
    strides: intsOf(node, 'strides', spatial.map(() => 1)),
    dilations: intsOf(node, 'dilations', spatial.map(() => 1)),
    pads: intsOf(node, 'pads', [...spatial.map(() => 0), ...spatial.map(() => 0)]),
  });
}

function normaliseAxes(axes: readonly number[], rank: number): number[] {
  return axes.map((a) => (a < 0 ? a + rank : a));
}

function reduced(input: Shape, axes: readonly number[] | undefined, keepdims: boolean): Shape {
  const all = axes === undefined || axes.length === 0;
  const set = new Set(all ? input.map((_, i) => i) : normaliseAxes(axes, input.length));
  return keepdims ? input.map((d, i) => (set.has(i) ? 1 : d)) : input.filter((_, i) => !set.has(i));
}

const same: ShapeRule = (node, shape) => [shape(node.inputs[0]!)];
const elementwise: ShapeRule = (node, shape) => [node.inputs.slice(1).reduce<Shape>((acc, input) => broadcastShapes(acc, shape(input), node.name), shape(node.inputs[0]!))];
const reduce: ShapeRule = (node, shape, constant) => {
  const axes = node.inputs[1] !== undefined ? constant(node.inputs[1]) : (attr(node, 'axes') as readonly number[] | undefined);
  return [reduced(shape(node.inputs[0]!), axes, intOf(node, 'keepdims', 1) === 1)];
};

const rules: Record<string, ShapeRule> = {
  Identity: same, Relu: same, Sigmoid: same, Erf: same, Sqrt: same, Reciprocal: same, Neg: same, Exp: same, LogSoftmax: same, Softmax: same,
  BatchNormalization: same, LayerNormalization: same,
  Add: elementwise, Sub: elementwise, Mul: elementwise, Div: elementwise,
  ReduceMean: reduce, ReduceSum: reduce,
  Conv: (node, shape) => {
    const [x, w] = [shape(node.inputs[0]!), shape(node.inputs[1]!)];
    return [[x[0]!, w[0]!, ...windowOutput(x, node)]];
  },
  MaxPool: (node, shape) => {
    const x = shape(node.inputs[0]!);
    const out = [x[0]!, x[1]!, ...windowOutput(x, node)];
    return node.outputs.map(() => out);
  },
  AveragePool: (node, shape) => {
    const x = shape(node.inputs[0]!);
    return [[x[0]!, x[1]!, ...windowOutput(x, node)]];
  },
  GlobalAveragePool: (node, shape) => [shape(node.inputs[0]!).map((d, i) => (i < 2 ? d : 1))],
  Flatten: (node, shape) => {
    const x = shape(node.inputs[0]!);
    const axis = intOf(node, 'axis', 1);
    return [[x.slice(0, axis).reduce((a, b) => a * b, 1), x.slice(axis).reduce((a, b) => a * b, 1)]];
  },
  Gemm: (node, shape) => {
    const [a, b] = [shape(node.inputs[0]!), shape(node.inputs[1]!)];
    const m = intOf(node, 'transA', 0) ? a[1]! : a[0]!;
    const n = intOf(node, 'transB', 0) ? b[0]! : b[1]!;
    return [[m, n]];
  },
  MatMul: (node, shape) => {
    const [a, b] = [shape(node.inputs[0]!), shape(node.inputs[1]!)];
    if (b.length !== 2) throw new Error(`${node.name}: MatMul's shape rule takes a matrix as its second operand`);
    return [[...a.slice(0, -1), b[1]!]];
  },
  Transpose: (node, shape) => {
    const x = shape(node.inputs[0]!);
    return [intsOf(node, 'perm', x.map((_, i) => x.length - 1 - i)).map((p) => x[p]!)];
  },
  Reshape: (node, shape, constant) => {
    const x = shape(node.inputs[0]!);
    const target = constant(node.inputs[1]!).map((d, i) => (d === 0 ? x[i]! : d));
    const known = target.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
    const total = x.reduce((a, b) => a * b, 1);
    return [target.map((d) => (d === -1 ? total / known : d))];
  },
  Unsqueeze: (node, shape, constant) => {
    const out = [...shape(node.inputs[0]!)];
    const axes = normaliseAxes(constant(node.inputs[1]!), out.length + constant(node.inputs[1]!).length).sort((a, b) => a - b);
    for (const axis of axes) out.splice(axis, 0, 1);
    return [out];
  },
  Pad: (node, shape, constant) => {
    const x = shape(node.inputs[0]!);
    const pads = constant(node.inputs[1]!);
    return [x.map((d, i) => d + pads[i]! + pads[i + x.length]!)];
  },
  Concat: (node, shape) => {
    const first = shape(node.inputs[0]!);
    const axis = normaliseAxes([intOf(node, 'axis', 0)], first.length)[0]!;
    const size = node.inputs.reduce((sum, input) => sum + shape(input)[axis]!, 0);
    return [first.map((d, i) => (i === axis ? size : d))];
  },
};

/**
 * Every value's shape in `graph` (nodes, inputs, weights, constants), its symbolic dimensions bound
 * by `dimensions` (e.g. { batch: 4 }).
 */
export function inferShapes(graph: Pick<OnnxGraph, 'inputs' | 'nodes' | 'weights' | 'constants'>, dimensions: Record<string, number>): Map<string, Shape> {
  const shapes = new Map<string, Shape>();
  const constants = new Map<string, Constant>(graph.constants.map((c) => [c.name, c]));
  for (const input of graph.inputs) {
    shapes.set(input.name, input.shape.map((d) => {
      if (typeof d === 'number') return d;
      const bound = dimensions[d];
      if (bound === undefined) throw new Error(`${graph.inputs[0]?.name}: the dimension '${d}' has no value`);
      return bound;
    }));
  }
  for (const weight of graph.weights) shapes.set(weight.name, weight.shape);
  for (const constant of constants.values()) shapes.set(constant.name, constant.shape);
  const shape = (name: string): Shape => {
    const known = shapes.get(name);
    if (known === undefined) throw new Error(`shape inference: ${name} is read before it is made`);
    return known;
  };
  const constant = (name: string): readonly number[] => {
    const known = constants.get(name);
    if (known === undefined) throw new Error(`shape inference: ${name} must be a constant`);
    return known.values;
  };
  for (const node of graph.nodes) {
    const rule = rules[node.opType];
    if (rule === undefined) throw new Error(`${node.name}: ${node.opType} has no shape rule`);
    rule(node, shape, constant).forEach((s, i) => shapes.set(node.outputs[i]!, s));
  }
  return shapes;
}
