/**
 * Reverse-mode differentiation over an emitted ONNX graph, as more ONNX nodes: onnxruntime has no
 * training API, so a training step is an ordinary inference graph whose backward half osteo writes
 * itself. The forward nodes are walked from the last to the first; each node that lies between a
 * weight to train and a seeded value hands its output's gradient to the one rule of its op type
 * (`rules` below), which emits the gradients of its inputs. A value read by several nodes sums
 * their contributions (Add, or Sum for more than two).
 *
 * A sub-graph can carry its own backward (`GradientOverride`): BatchNorm with batch statistics and
 * the loss are emitted as several primitive ops but differentiated as one, by their closed forms,
 * which are cheaper and rounder than the chain of their parts.
 *
 * Every rule works on static shapes (shapes.ts): the step graph is built for one batch size.
 */
import { attr, int, intOf, ints, intsOf, type GraphNode } from './graph.js';
import { product, unbroadcast, wanted, type GradientOverride, type Rule, type RuleContext } from './rule.js';
import { averagePoolRule, convRule, maxPoolRule } from './window-grad.js';

export type { GradientOverride, RuleContext } from './rule.js';

/** Reshapes `g` to the shape of `like` (the op only moves elements: Reshape, Flatten, Unsqueeze). */
const reshapeBack: Rule = (node, dy, ctx) => [ctx.b.node('Reshape', [dy, ctx.b.int64(ctx.shape(node.inputs[0]!))], `${node.name}_grad`)];

function binary(make: (node: GraphNode, dy: string, ctx: RuleContext, index: number) => string): Rule {
  return (node, dy, ctx) => {
    const out = ctx.shape(node.outputs[0]!);
    return wanted(node, ctx, (i) => unbroadcast(ctx, make(node, dy, ctx, i), out, ctx.shape(node.inputs[i]!), `${node.name}_grad${i}`));
  };
}

const addRule = binary((_node, dy) => dy);
const subRule = binary((node, dy, ctx, i) => (i === 0 ? dy : ctx.b.node('Neg', [dy], `${node.name}_neg`)));
const mulRule = binary((node, dy, ctx, i) => ctx.b.node('Mul', [dy, node.inputs[1 - i]!], `${node.name}_grad${i}_product`));
const divRule = binary((node, dy, ctx, i) => {
  const b = ctx.b;
  const [, denominator] = node.inputs as [string, string];
  if (i === 0) return b.node('Div', [dy, denominator], `${node.name}_grad0_quotient`);
  // ∂(a/b)/∂b = −(a/b)/b
  return b.node('Neg', [b.node('Mul', [dy, b.node('Div', [node.outputs[0]!, denominator], `${node.name}_y_over_b`)], `${node.name}_grad1_product`)], `${node.name}_grad1_neg`);
});

/** ReLU: the gradient where the input was positive (0 at 0, as torch takes it). */
const reluRule: Rule = (node, dy, ctx) => {
  const b = ctx.b;
  const positive = b.node('Greater', [node.inputs[0]!, b.float32([0])], `${node.name}_positive`);
  return [b.node('Where', [positive, dy, b.float32([0])], `${node.name}_grad`)];
};

/** σ' = σ·(1 − σ), from the output. */
const sigmoidRule: Rule = (node, dy, ctx) => {
  const b = ctx.b;
  const y = node.outputs[0]!;
  const slope = b.node('Mul', [y, b.node('Sub', [b.float32([1]), y], `${node.name}_complement`)], `${node.name}_slope`);
  return [b.node('Mul', [dy, slope], `${node.name}_grad`)];
};

/** erf'(x) = 2/√π · exp(−x²). */
const erfRule: Rule = (node, dy, ctx) => {
  const b = ctx.b;
  const x = node.inputs[0]!;
  const gauss = b.node('Exp', [b.node('Neg', [b.node('Mul', [x, x], `${node.name}_square`)], `${node.name}_neg_square`)], `${node.name}_gauss`);
  return [b.node('Mul', [dy, b.node('Mul', [gauss, b.float32([2 / Math.sqrt(Math.PI)])], `${node.name}_slope`)], `${node.name}_grad`)];
};

const transposeRule: Rule = (node, dy, ctx) => {
  const perm = intsOf(node, 'perm', []);
  const inverse = perm.map((_, i) => perm.indexOf(i));
  return [ctx.b.node('Transpose', [dy], `${node.name}_grad`, { perm: ints(inverse) })];
};

/** A mean over `axes`: the gradient spread evenly over the averaged elements. */
function spreadMean(node: GraphNode, dy: string, ctx: RuleContext, axes: readonly number[], keepdims: boolean): string {
  const b = ctx.b;
  const input = ctx.shape(node.inputs[0]!);
  const kept = input.map((d, i) => (axes.includes(i) ? 1 : d));
  const g = keepdims ? dy : b.node('Reshape', [dy, b.int64(kept)], `${node.name}_grad_kept`);
  const count = product(axes.map((a) => input[a]!));
  return b.node('Mul', [b.node('Expand', [g, b.int64(input)], `${node.name}_grad_spread`), b.float32([1 / count])], `${node.name}_grad`);
}

const globalAveragePoolRule: Rule = (node, dy, ctx) => {
  const rank = ctx.shape(node.inputs[0]!).length;
  return [spreadMean(node, dy, ctx, Array.from({ length: rank - 2 }, (_, i) => i + 2), true)];
};

const reduceMeanRule: Rule = (node, dy, ctx) => {
  const rank = ctx.shape(node.inputs[0]!).length;
  const axes = intsOf(node, 'axes', Array.from({ length: rank }, (_, i) => i)).map((a) => (a < 0 ? a + rank : a));
  return [spreadMean(node, dy, ctx, axes, intOf(node, 'keepdims', 1) === 1)];
};

/** Constant padding: the gradient is the unpadded window. */
const padRule: Rule = (node, dy, ctx) => {
  if (node.inputs.length > 2 || (attr(node, 'mode') ?? 'constant') !== 'constant') throw new Error(`${node.name}: only zero padding has a gradient rule`);
  const x = ctx.shape(node.inputs[0]!);
  const begins = ctx.constant(node.inputs[1]!).slice(0, x.length);
  const b = ctx.b;
  const ends = begins.map((p, i) => p + x[i]!);
  return [b.node('Slice', [dy, b.int64(begins), b.int64(ends), b.int64(x.map((_, i) => i))], `${node.name}_grad`)];
};

const concatRule: Rule = (node, dy, ctx) => {
  const rank = ctx.shape(node.inputs[0]!).length;
  const axis = (intOf(node, 'axis', 0) + rank) % rank;
  const sizes = node.inputs.map((input) => ctx.shape(input)[axis]!);
  const parts = ctx.b.nodeWithOutputs('Split', [dy, ctx.b.int64(sizes)], node.inputs.map((_, i) => `${node.name}_grad${i}`), { axis: int(axis) });
  return parts;
};

/** y = α·A'·B' + β·C with A' = A or Aᵀ, B' = B or Bᵀ (α = β = 1, as the emitters write it). */
const gemmRule: Rule = (node, dy, ctx) => {
  if ((attr(node, 'alpha') ?? 1) !== 1 || (attr(node, 'beta') ?? 1) !== 1 || intOf(node, 'transA', 0) !== 0) throw new Error(`${node.name}: Gemm's gradient rule takes alpha = beta = 1 and transA = 0`);
  const b = ctx.b;
  const [x, w] = node.inputs as [string, string, string?];
  const transB = intOf(node, 'transB', 0) === 1;
  return wanted(node, ctx, (i) => {
    if (i === 0) return b.node('Gemm', [dy, w], `${node.name}_grad_input`, { transB: int(transB ? 0 : 1) });
    if (i === 1) return transB ? b.node('Gemm', [dy, x], `${node.name}_grad_weight`, { transA: int(1) }) : b.node('Gemm', [x, dy], `${node.name}_grad_weight`, { transA: int(1) });
    return unbroadcast(ctx, dy, ctx.shape(node.outputs[0]!), ctx.shape(node.inputs[2]!), `${node.name}_grad_bias`);
  });
};

/** A[…, K]·B[K, M] (B a matrix): ∂A = dy·Bᵀ, ∂B = A_flatᵀ·dy_flat. */
const matMulRule: Rule = (node, dy, ctx) => {
  const b = ctx.b;
  const [a, m] = node.inputs as [string, string];
  const [k, n] = ctx.shape(m) as [number, number];
  return wanted(node, ctx, (i) => {
    if (i === 0) return b.node('MatMul', [dy, b.node('Transpose', [m], `${node.name}_bt`, { perm: ints([1, 0]) })], `${node.name}_grad_input`);
    const flatA = b.node('Reshape', [a, b.int64([-1, k])], `${node.name}_a_rows`);
    const flatDy = b.node('Reshape', [dy, b.int64([-1, n])], `${node.name}_dy_rows`);
    return b.node('Gemm', [flatA, flatDy], `${node.name}_grad_weight`, { transA: int(1) });
  });
};

/** A BatchNorm in inference mode (a frozen stage): a fixed per-channel scale; its parameters do not train. */
const batchNormInferenceRule: Rule = (node, dy, ctx) => {
  const b = ctx.b;
  const [, gamma, , , variance] = node.inputs as [string, string, string, string, string];
  const rank = ctx.shape(node.inputs[0]!).length;
  const epsilon = (attr(node, 'epsilon') as number | undefined) ?? 1e-5;
  const scale = b.node('Div', [gamma, b.node('Sqrt', [b.node('Add', [variance, b.float32([epsilon])], `${node.name}_var_eps`)], `${node.name}_sigma`)], `${node.name}_scale`);
  const shaped = rank === 2 ? scale : b.node('Reshape', [scale, b.int64([-1, ...Array.from({ length: rank - 2 }, () => 1)])], `${node.name}_scale_shaped`);
  return [ctx.needs(node.inputs[0]!) ? b.node('Mul', [dy, shaped], `${node.name}_grad`) : undefined];
};

/**
 * LayerNormalization over the last axis: x̂ = (x − μ)/σ, y = γ·x̂ + β;
 * ∂x = (g − mean(g) − x̂·mean(g·x̂))/σ with g = dy·γ, ∂γ = Σ dy·x̂, ∂β = Σ dy over every other axis.
 */
const layerNormRule: Rule = (node, dy, ctx) => {
  const b = ctx.b;
  const n = node.name;
  const [x, gamma] = node.inputs as [string, string, string];
  if (intOf(node, 'axis', -1) !== -1 && intOf(node, 'axis', -1) !== ctx.shape(x).length - 1) throw new Error(`${n}: LayerNormalization's gradient rule normalises the last axis`);
  const epsilon = (attr(node, 'epsilon') as number | undefined) ?? 1e-5;
  const mean = (v: string, stem: string) => b.node('ReduceMean', [v], stem, { axes: ints([-1]), keepdims: int(1) });
  const centred = b.node('Sub', [x, mean(x, `${n}_mean`)], `${n}_centred`);
  const variance = mean(b.node('Mul', [centred, centred], `${n}_squares`), `${n}_variance`);
  const inverseStd = b.node('Reciprocal', [b.node('Sqrt', [b.node('Add', [variance, b.float32([epsilon])], `${n}_variance_eps`)], `${n}_sigma`)], `${n}_inverse_std`);
  const xHat = b.node('Mul', [centred, inverseStd], `${n}_xhat`);
  const rest = b.int64(ctx.shape(x).slice(0, -1).map((_, i) => i));
  return wanted(node, ctx, (i) => {
    if (i === 2) return b.node('ReduceSum', [dy, rest], `${n}_grad_bias`, { keepdims: int(0) });
    if (i === 1) return b.node('ReduceSum', [b.node('Mul', [dy, xHat], `${n}_dy_xhat`), rest], `${n}_grad_weight`, { keepdims: int(0) });
    const g = b.node('Mul', [dy, gamma], `${n}_g`);
    const projection = b.node('Mul', [xHat, mean(b.node('Mul', [g, xHat], `${n}_g_xhat`), `${n}_g_xhat_mean`)], `${n}_projection`);
    const centredG = b.node('Sub', [g, mean(g, `${n}_g_mean`)], `${n}_g_centred`);
    return b.node('Mul', [b.node('Sub', [centredG, projection], `${n}_numerator`), inverseStd], `${n}_grad_input`);
  });
};

/** One rule per op type the emitters write. */
const rules: Record<string, Rule> = {
  Identity: (_node, dy) => [dy],
  Add: addRule, Sub: subRule, Mul: mulRule, Div: divRule,
  Relu: reluRule, Sigmoid: sigmoidRule, Erf: erfRule,
  Reshape: reshapeBack, Flatten: reshapeBack, Unsqueeze: reshapeBack,
  Transpose: transposeRule,
  GlobalAveragePool: globalAveragePoolRule, ReduceMean: reduceMeanRule,
  Pad: padRule, Concat: concatRule,
  Gemm: gemmRule, MatMul: matMulRule,
  Conv: convRule, MaxPool: maxPoolRule, AveragePool: averagePoolRule,
  BatchNormalization: batchNormInferenceRule, LayerNormalization: layerNormRule,
};

/** The op types with a gradient rule. */
export const gradientOpTypes: readonly string[] = Object.keys(rules);

export interface BackwardSpec {
  /** the forward nodes, in topological order */
  nodes: readonly GraphNode[];
  ctx: Omit<RuleContext, 'needs'>;
  /** the values whose gradients are wanted (the weights to train) */
  wrt: readonly string[];
  /** the gradients the walk starts from: ∂loss/∂value */
  seeds: readonly { value: string; grad: string }[];
  /** sub-graphs with their own backward, keyed by their output */
  overrides?: ReadonlyMap<string, GradientOverride>;
}

/** Which values depend on one of `wrt` (and so carry a gradient). */
function dependents(nodes: readonly GraphNode[], wrt: readonly string[]): Set<string> {
  const needs = new Set(wrt);
  for (const node of nodes) if (node.inputs.some((input) => needs.has(input))) for (const output of node.outputs) needs.add(output);
  return needs;
}

/** Appends the backward of `spec.nodes` to the builder; returns each of `spec.wrt`'s gradient (a missing one is a bug). */
export function appendBackward(spec: BackwardSpec): Map<string, string> {
  const needs = dependents(spec.nodes, spec.wrt);
  const ctx: RuleContext = { ...spec.ctx, needs: (name) => needs.has(name) };
  const parts = new Map<string, string[]>();
  const add = (value: string, grad: string) => parts.set(value, [...(parts.get(value) ?? []), grad]);
  const total = (value: string): string | undefined => {
    const list = parts.get(value);
    if (list === undefined || list.length === 0) return undefined;
    if (list.length === 1) return list[0];
    return list.length === 2 ? ctx.b.node('Add', list, `${value}_grad_sum`) : ctx.b.node('Sum', list, `${value}_grad_sum`);
  };
  for (const seed of spec.seeds) add(seed.value, seed.grad);
  for (const node of [...spec.nodes].reverse()) {
    const output = node.outputs[0]!;
    if (!needs.has(output)) continue;
    const dy = total(output);
    if (dy === undefined) continue;
    const override = spec.overrides?.get(output);
    const inputs = override?.inputs ?? node.inputs;
    const rule = rules[node.opType];
    if (override === undefined && rule === undefined) throw new Error(`${node.name}: ${node.opType} has no gradient rule`);
    const grads = override !== undefined ? override.backward(dy, ctx) : rule!(node, dy, ctx);
    inputs.forEach((input, i) => {
      const grad = grads[i];
      if (grad !== undefined && needs.has(input)) add(input, grad);
    });
  }
  const result = new Map<string, string>();
  for (const name of spec.wrt) {
    const grad = total(name);
    if (grad === undefined) throw new Error(`${name} gets no gradient: it does not reach the loss`);
    result.set(name, grad);
  }
  return result;
}
