/**
 * An ONNX graph as plain data: nodes in topological order, the graph's inputs and outputs, small
 * constants with their values, and the weights it reads declared by name and shape only. Weight
 * values live in a torchvision state dict (src/weights/ fills them in when it serialises), so the same
 * graph can be written with any checkpoint, and a later pass (a gradient rule per op) can walk it
 * without touching protobuf.
 */

/** ONNX's default-domain opset the emitters target: 17 adds LayerNormalization. */
export const onnxOpset = 17;

export type Attribute =
  | { kind: 'int'; value: number }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string };

export interface GraphNode {
  opType: string;
  name: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes: Readonly<Record<string, Attribute>>;
}

/** A graph input or output: float32 with a symbolic (string) or fixed dimension per axis. */
export interface ValueInfo {
  name: string;
  shape: readonly (number | string)[];
}

/** A weight the graph reads: a torchvision state-dict key and its torch-layout shape. */
export interface WeightRef {
  name: string;
  shape: readonly number[];
}

/** A small tensor whose values are part of the graph (axes, shapes, pads, scalars). */
export interface Constant {
  name: string;
  dtype: 'float32' | 'int64';
  shape: readonly number[];
  values: readonly number[];
}

export interface OnnxGraph {
  name: string;
  opset: number;
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
  nodes: readonly GraphNode[];
  weights: readonly WeightRef[];
  constants: readonly Constant[];
}

export const int = (value: number): Attribute => ({ kind: 'int', value });
export const ints = (value: readonly number[]): Attribute => ({ kind: 'ints', value });
export const float = (value: number): Attribute => ({ kind: 'float', value });
export const text = (value: string): Attribute => ({ kind: 'string', value });

/** A node's attribute value, and typed readers with ONNX's default where it is absent. */
export const attr = (node: GraphNode, key: string): Attribute['value'] | undefined => node.attributes[key]?.value;
export const intsOf = (node: GraphNode, key: string, fallback: readonly number[]): readonly number[] => (attr(node, key) as readonly number[] | undefined) ?? fallback;
export const intOf = (node: GraphNode, key: string, fallback: number): number => (attr(node, key) as number | undefined) ?? fallback;

/** Collects nodes, weights and constants with unique names; `finish` returns the graph. */
export class GraphBuilder {
  private readonly nodes: GraphNode[] = [];
  private readonly weights = new Map<string, WeightRef>();
  private readonly constants = new Map<string, Constant>();
  private readonly used = new Set<string>();

  /** A value name not taken yet, from a readable stem (the tfjs layer's name). */
  fresh(stem: string): string {
    let name = stem;
    for (let i = 1; this.used.has(name); i++) name = `${stem}_${i}`;
    this.used.add(name);
    return name;
  }

  /** Adds one node with one output, named after `stem` (exactly `stem` with `exact`, which must be free); returns the output's name. */
  node(opType: string, inputs: readonly string[], stem: string, attributes: Record<string, Attribute> = {}, options: { exact?: boolean } = {}): string {
    if (options.exact && this.used.has(stem)) throw new Error(`value name ${stem} is taken`);
    const output = this.fresh(stem);
    this.nodes.push({ opType, name: output, inputs, outputs: [output], attributes });
    return output;
  }

  /** Adds one node with several outputs, one per stem; returns their names. */
  nodeWithOutputs(opType: string, inputs: readonly string[], stems: readonly string[], attributes: Record<string, Attribute> = {}): string[] {
    const outputs = stems.map((stem) => this.fresh(stem));
    this.nodes.push({ opType, name: outputs[0]!, inputs, outputs, attributes });
    return outputs;
  }

  /** Declares a weight (once; a second declaration must agree on the shape). */
  weight(name: string, shape: readonly number[]): string {
    const known = this.weights.get(name);
    if (known !== undefined) {
      if (known.shape.join(',') !== shape.join(',')) throw new Error(`weight ${name} declared as [${known.shape.join(', ')}] and [${shape.join(', ')}]`);
      return name;
    }
    if (this.used.has(name)) throw new Error(`weight ${name} collides with a value of the same name`);
    this.used.add(name);
    this.weights.set(name, { name, shape: [...shape] });
    return name;
  }

  /** An int64 constant (axes, shapes, pads), shared by every node that needs the same values. */
  int64(values: readonly number[], shape: readonly number[] = [values.length]): string {
    return this.constant('int64', values, shape);
  }

  /** A float32 constant (a scalar unless `shape` says otherwise). */
  float32(values: readonly number[], shape: readonly number[] = []): string {
    return this.constant('float32', values, shape);
  }

  private constant(dtype: Constant['dtype'], values: readonly number[], shape: readonly number[]): string {
    const key = `${dtype}:${shape.join('x')}:${values.join(',')}`;
    const known = this.constants.get(key);
    if (known !== undefined) return known.name;
    const name = this.fresh(`const_${dtype}_${values.length <= 4 ? values.join('_').replaceAll('.', 'p').replaceAll('-', 'm') : this.constants.size}`);
    this.constants.set(key, { name, dtype, shape: [...shape], values: [...values] });
    return name;
  }

  finish(name: string, inputs: ValueInfo[], outputs: ValueInfo[]): OnnxGraph {
    return { name, opset: onnxOpset, inputs, outputs, nodes: [...this.nodes], weights: [...this.weights.values()], constants: [...this.constants.values()] };
  }
}
