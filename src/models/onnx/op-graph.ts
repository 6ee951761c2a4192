/**
 * One window op and the backward of the operands asked for, as a graph of its own: what
 * bench/onnx-conv-grad.ts times per formulation and tests/models/onnx-grad.test.ts checks against
 * PyTorch. Inputs: `x`, `w` and `b` (where the op has them) and `dy` (the seed ∂loss/∂y); outputs:
 * `y` and `dx` / `dw` / `db` for each operand in `wrt`.
 */
import { GraphBuilder, type Attribute, type OnnxGraph, type ValueInfo } from './graph.js';
import { appendBackward } from './grad.js';
import type { ConvFormulation } from './rule.js';
import { inferShapes } from './shapes.js';

export interface WindowOpSpec {
  name: string;
  opType: 'Conv' | 'MaxPool' | 'AveragePool';
  x: readonly number[];
  /** the filter's shape (Conv) */
  w?: readonly number[];
  bias?: boolean;
  attributes: Record<string, Attribute>;
  /** the operands whose gradients the graph returns (default: all) */
  wrt?: readonly ('x' | 'w' | 'b')[];
  formulation?: ConvFormulation;
}

export function windowOpGradientGraph(spec: WindowOpSpec): { graph: OnnxGraph; inputs: ValueInfo[] } {
  const b = new GraphBuilder();
  const operands: ValueInfo[] = [{ name: b.fresh('x'), shape: spec.x }];
  if (spec.w !== undefined) operands.push({ name: b.fresh('w'), shape: spec.w });
  if (spec.bias === true && spec.w !== undefined) operands.push({ name: b.fresh('b'), shape: [spec.w[0]!] });
  const y = b.node(spec.opType, operands.map((operand) => operand.name), 'y_forward', spec.attributes);
  const forward = b.finish(spec.name, operands, []);
  const shapes = inferShapes(forward, {});
  const dy: ValueInfo = { name: b.fresh('dy'), shape: shapes.get(y)! };
  const wrt = spec.wrt ?? operands.map((operand) => operand.name as 'x' | 'w' | 'b');
  const ctx = {
    b,
    shape: (name: string) => shapes.get(name)!,
    constant: (): readonly number[] => [],
    ...(spec.formulation ? { convFormulation: () => spec.formulation! } : {}),
  };
  const grads = appendBackward({ nodes: forward.nodes, ctx, wrt, seeds: [{ value: y, grad: dy.name }] });
  const outputs: ValueInfo[] = [{ name: b.node('Identity', [y], 'y', {}, { exact: true }), shape: dy.shape }];
  for (const name of wrt) outputs.push({ name: b.node('Identity', [grads.get(name)!], `d${name}`, {}, { exact: true }), shape: operands.find((o) => o.name === name)!.shape });
  const inputs = [...operands, dy];
  return { graph: b.finish(spec.name, inputs, outputs), inputs };
}
