/**
 * The gradient rules of the window ops: convolution (input and filter), max and average pooling.
 */
import { int, intOf, ints, intsOf, text, type GraphNode } from './graph.js';
import { product, wanted, type ConvFormulation, type Rule, type RuleContext } from './rule.js';
import { windowSize } from './shapes.js';

/** The window attributes of a 2-D window op, with ONNX's defaults filled in. */
function windowOf(node: GraphNode) {
  const kernel = intsOf(node, 'kernel_shape', []);
  return {
    kernel,
    strides: intsOf(node, 'strides', [1, 1]),
    dilations: intsOf(node, 'dilations', [1, 1]),
    pads: intsOf(node, 'pads', [0, 0, 0, 0]),
    group: intOf(node, 'group', 1),
  };
}

/** The transposed window op that maps a gradient of `out`'s shape back onto `input`'s (output_padding restores what the forward's floor dropped). */
function transposedWindow(node: GraphNode, ctx: RuleContext, dy: string, filter: string, group: number, stem: string): string {
  const { kernel, strides, dilations, pads } = windowOf(node);
  const attributes = { kernel_shape: ints(kernel), strides: ints(strides), pads: ints(pads), dilations: ints(dilations), group: int(group), output_padding: ints(outputPadding(node, ctx)) };
  return ctx.b.node('ConvTranspose', [dy, filter], stem, attributes);
}

/**
 * ∂W of a convolution as another convolution: x with its channels as the batch, correlated with dy
 * (its channels as filters), the forward's stride as dilation and its dilation as stride. Depthwise
 * convolutions fold the batch into the channels and group by channel. The result can overhang the
 * kernel by the rows the forward's stride skipped at the end; they are cut off.
 */
function convFilterGradient(node: GraphNode, ctx: RuleContext, dy: string): string {
  const b = ctx.b;
  const { kernel, strides, dilations, pads, group } = windowOf(node);
  const [x, w] = node.inputs as [string, string];
  const xs = ctx.shape(x);
  const ws = ctx.shape(w);
  const out = ctx.shape(node.outputs[0]!);
  const { depthwise } = convKind(node, ctx);
  const swap = { perm: ints([1, 0, 2, 3]) };
  const xt = b.node('Transpose', [x], `${node.name}_x_cnhw`, swap);
  const input = depthwise ? b.node('Reshape', [xt, b.int64([1, xs[1]! * xs[0]!, xs[2]!, xs[3]!])], `${node.name}_x_folded`) : xt;
  const filters = b.node('Transpose', [dy], `${node.name}_dy_cnhw`, swap);
  const correlated = b.node('Conv', [input, filters], `${node.name}_grad_weight_full`, {
    kernel_shape: ints([out[2]!, out[3]!]), strides: ints(dilations), dilations: ints(strides), pads: ints(pads), group: int(depthwise ? group : 1),
  });
  const full = windowSize(xs, { kernel: [out[2]!, out[3]!], strides: dilations, dilations: strides, pads });
  const cut = full[0] === kernel[0] && full[1] === kernel[1]
    ? correlated
    : b.node('Slice', [correlated, b.int64([0, 0]), b.int64([kernel[0]!, kernel[1]!]), b.int64([2, 3])], `${node.name}_grad_weight_cut`);
  if (depthwise) return b.node('Reshape', [cut, b.int64(ws)], `${node.name}_grad_weight`);
  return b.node('Transpose', [cut], `${node.name}_grad_weight`, swap);
}

/** ONNX's Slice, with steps where given. */
function slice(ctx: RuleContext, v: string, starts: number[], ends: number[], axes: number[], stem: string, steps?: number[]): string {
  const b = ctx.b;
  const operands = [v, b.int64(starts), b.int64(ends), b.int64(axes), ...(steps === undefined ? [] : [b.int64(steps)])];
  return b.node('Slice', operands, stem);
}

/** [N, C, H, W] with s − 1 zeros between neighbours along H and W: [N, C, (H − 1)·s + 1, (W − 1)·s + 1]. */
function zeroInserted(ctx: RuleContext, v: string, shape: readonly number[], strides: readonly number[], stem: string): string {
  if (strides.every((s) => s === 1)) return v;
  const b = ctx.b;
  const [n, c, h, w] = shape as [number, number, number, number];
  const [sh, sw] = strides as [number, number];
  const spread = b.node('Pad', [b.node('Unsqueeze', [v, b.int64([3, 5])], `${stem}_unsqueezed`), b.int64([0, 0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0, sw - 1])], `${stem}_spread`);
  const flat = b.node('Reshape', [spread, b.int64([n, c, h * sh, w * sw])], `${stem}_interleaved`);
  return slice(ctx, flat, [0, 0], [(h - 1) * sh + 1, (w - 1) * sw + 1], [2, 3], stem);
}

/** What the forward's floor dropped at the end of each spatial axis (ConvTranspose's output_padding). */
function outputPadding(node: GraphNode, ctx: RuleContext): number[] {
  const { kernel, strides, dilations, pads } = windowOf(node);
  const input = ctx.shape(node.inputs[0]!);
  const out = ctx.shape(node.outputs[0]!);
  return [0, 1].map((i) => input[2 + i]! - ((out[2 + i]! - 1) * strides[i]! + dilations[i]! * (kernel[i]! - 1) + 1 - pads[i]! - pads[i + 2]!));
}

/** A convolution that is group 1 or depthwise (one filter per channel); other groups have no rule. */
function convKind(node: GraphNode, ctx: RuleContext): { depthwise: boolean } {
  const { group } = windowOf(node);
  const xs = ctx.shape(node.inputs[0]!);
  const ws = ctx.shape(node.inputs[1]!);
  const depthwise = group > 1 && group === xs[1] && ws[1] === 1 && ws[0] === group;
  if (group > 1 && !depthwise) throw new Error(`${node.name}: a grouped convolution's gradient has a rule for depthwise convolutions only`);
  return { depthwise };
}

/** ∂x as a Conv: the zero-inserted gradient correlated with the spatially flipped filter, its in/out channels swapped. */
function convInputGradient(node: GraphNode, ctx: RuleContext, dy: string): string {
  const b = ctx.b;
  const { kernel, strides, dilations, pads, group } = windowOf(node);
  const { depthwise } = convKind(node, ctx);
  const flipped = slice(ctx, node.inputs[1]!, [-1, -1], [-(kernel[0]! + 1), -(kernel[1]! + 1)], [2, 3], `${node.name}_filter_flipped`, [-1, -1]);
  const filter = depthwise ? flipped : b.node('Transpose', [flipped], `${node.name}_filter_swapped`, { perm: ints([1, 0, 2, 3]) });
  const spread = zeroInserted(ctx, dy, ctx.shape(node.outputs[0]!), strides, `${node.name}_dy_spread`);
  const extra = outputPadding(node, ctx);
  const reach = [0, 1].map((i) => dilations[i]! * (kernel[i]! - 1));
  const convPads = [reach[0]! - pads[0]!, reach[1]! - pads[1]!, reach[0]! - pads[2]! + extra[0]!, reach[1]! - pads[3]! + extra[1]!];
  if (convPads.some((p) => p < 0)) throw new Error(`${node.name}: padding beyond the kernel's reach has no Conv input-gradient rule`);
  return b.node('Conv', [spread, filter], `${node.name}_grad_input`, { kernel_shape: ints(kernel), dilations: ints(dilations), pads: ints(convPads), group: int(group) });
}

/** ∂x as a MatMul onto patches (Wᵀ·dy), each kernel offset's patch zero-inserted, padded into place and summed (col2im). */
function patchesInputGradient(node: GraphNode, ctx: RuleContext, dy: string): string {
  const b = ctx.b;
  const n = node.name;
  const { kernel, strides, dilations, pads } = windowOf(node);
  if (convKind(node, ctx).depthwise) throw new Error(`${n}: the patches input gradient has no depthwise rule`);
  const [batch, cin, h, w] = ctx.shape(node.inputs[0]!) as [number, number, number, number];
  const [cout] = ctx.shape(node.inputs[1]!) as [number];
  const [, , ho, wo] = ctx.shape(node.outputs[0]!) as [number, number, number, number];
  const offsets = product(kernel);
  const weightRows = b.node('Reshape', [node.inputs[1]!, b.int64([cout, cin * offsets])], `${n}_filter_rows`);
  const columns = b.node('MatMul', [b.node('Transpose', [weightRows], `${n}_filter_columns`, { perm: ints([1, 0]) }), b.node('Reshape', [dy, b.int64([batch, cout, ho * wo])], `${n}_dy_rows`)], `${n}_patch_grads`);
  const byOffset = b.node('Reshape', [columns, b.int64([batch, cin, offsets, ho, wo])], `${n}_patch_grads_by_offset`);
  const pieces = b.nodeWithOutputs('Split', [byOffset, b.int64(Array.from({ length: offsets }, () => 1))], Array.from({ length: offsets }, (_, k) => `${n}_patch_grad_${k}`), { axis: int(2) });
  const [hp, wp] = [h + pads[0]! + pads[2]!, w + pads[1]! + pads[3]!];
  const placed = pieces.map((piece, k) => {
    const [i, j] = [Math.floor(k / kernel[1]!) * dilations[0]!, (k % kernel[1]!) * dilations[1]!];
    const shaped = b.node('Reshape', [piece, b.int64([batch, cin, ho, wo])], `${n}_patch_grad_${k}_map`);
    const spread = zeroInserted(ctx, shaped, [batch, cin, ho, wo], strides, `${n}_patch_grad_${k}_spread`);
    const [sh, sw] = [(ho - 1) * strides[0]! + 1, (wo - 1) * strides[1]! + 1];
    return b.node('Pad', [spread, b.int64([0, 0, i, j, 0, 0, hp - i - sh, wp - j - sw])], `${n}_patch_grad_${k}_placed`);
  });
  const total = placed.length === 1 ? placed[0]! : b.node('Sum', placed, `${n}_patch_grad_sum`);
  return slice(ctx, total, [pads[0]!, pads[1]!], [pads[0]! + h, pads[1]! + w], [2, 3], `${n}_grad_input`);
}

/** ∂W as a MatMul of the re-laid gradient [Cout, N·Ho·Wo] with the input's patches [Cin·K, N·Ho·Wo] (batched per channel when depthwise). */
function patchesFilterGradient(node: GraphNode, ctx: RuleContext, dy: string): string {
  const b = ctx.b;
  const n = node.name;
  const { kernel, strides, dilations, pads } = windowOf(node);
  const { depthwise } = convKind(node, ctx);
  const ws = ctx.shape(node.inputs[1]!);
  const [, cin] = ctx.shape(node.inputs[0]!) as [number, number];
  const [batch, cout, ho, wo] = ctx.shape(node.outputs[0]!) as [number, number, number, number];
  const swap = { perm: ints([1, 0, 2, 3]) };
  const xt = b.node('Transpose', [node.inputs[0]!], `${n}_x_cnhw`, swap);
  const padded = pads.some((p) => p !== 0) ? b.node('Pad', [xt, b.int64([0, 0, pads[0]!, pads[1]!, 0, 0, pads[2]!, pads[3]!])], `${n}_x_padded`) : xt;
  const offsets = product(kernel);
  const patches = Array.from({ length: offsets }, (_, k) => {
    const [i, j] = [Math.floor(k / kernel[1]!) * dilations[0]!, (k % kernel[1]!) * dilations[1]!];
    const taken = slice(ctx, padded, [i, j], [i + (ho - 1) * strides[0]! + 1, j + (wo - 1) * strides[1]! + 1], [2, 3], `${n}_patch_${k}`, [strides[0]!, strides[1]!]);
    return b.node('Unsqueeze', [taken, b.int64([1])], `${n}_patch_${k}_row`);
  });
  const stacked = patches.length === 1 ? patches[0]! : b.node('Concat', patches, `${n}_patches`, { axis: int(1) });
  const positions = batch * ho * wo;
  const dyt = b.node('Transpose', [dy], `${n}_dy_cnhw`, swap);
  if (depthwise) {
    const columns = b.node('Reshape', [stacked, b.int64([cin, offsets, positions])], `${n}_patch_columns`);
    const product3 = b.node('MatMul', [columns, b.node('Reshape', [dyt, b.int64([cout, positions, 1])], `${n}_dy_columns`)], `${n}_grad_weight_rows`);
    return b.node('Reshape', [product3, b.int64(ws)], `${n}_grad_weight`);
  }
  const columns = b.node('Reshape', [stacked, b.int64([cin * offsets, positions])], `${n}_patch_columns`);
  const rows = b.node('Gemm', [b.node('Reshape', [dyt, b.int64([cout, positions])], `${n}_dy_rows`), columns], `${n}_grad_weight_rows`, { transB: int(1) });
  return b.node('Reshape', [rows, b.int64(ws)], `${n}_grad_weight`);
}

/**
 * The formulation used where the context does not choose, by shape, from bench/onnx-conv-grad.ts
 * (bench/BENCHMARKS.md, "ONNX convolution gradients": ResNet18 at 224², batch 8, 2 threads). Input
 * gradient: ConvTranspose for strided and 1×1 convolutions, where it was 2–10× cheaper; the
 * zero-inserted Conv for stride-1 k×k, where it was level or slightly ahead. Filter gradient: the
 * MatMul on patches for kernels up to 5×5 (up to 6× cheaper on the 1×1 and deep 3×3 layers); the
 * re-laid Conv for the 7×7 stem, whose 49 patches cost twice as much. Depthwise convolutions were not
 * measured and keep ConvTranspose and the re-laid Conv.
 */
export function defaultConvFormulation(node: GraphNode): ConvFormulation {
  const { kernel, strides, dilations, pads, group } = windowOf(node);
  if (group > 1) return { input: 'transpose', filter: 'conv' };
  const reach = kernel.map((k, i) => dilations[i]! * (k - 1));
  const within = pads.every((p, i) => p <= reach[i % 2]!);
  const stride1 = strides.every((s) => s === 1) && kernel.some((k) => k > 1) && within;
  return { input: stride1 ? 'conv' : 'transpose', filter: product(kernel) <= 25 ? 'patches' : 'conv' };
}

export const convRule: Rule = (node, dy, ctx) => {
  const { group } = windowOf(node);
  const formulation = (ctx.convFormulation ?? defaultConvFormulation)(node);
  return wanted(node, ctx, (i) => {
    if (i === 0) {
      if (formulation.input === 'conv') return convInputGradient(node, ctx, dy);
      if (formulation.input === 'patches') return patchesInputGradient(node, ctx, dy);
      return transposedWindow(node, ctx, dy, node.inputs[1]!, group, `${node.name}_grad_input`);
    }
    if (i === 1) return formulation.filter === 'patches' ? patchesFilterGradient(node, ctx, dy) : convFilterGradient(node, ctx, dy);
    return ctx.b.node('ReduceSum', [dy, ctx.b.int64([0, 2, 3])], `${node.name}_grad_bias`, { keepdims: int(0) });
  });
};

/**
 * Max pooling: the pooled gradient goes to the position each window took its maximum from (the
 * first one on ties, as torch), summed where windows overlap — a MaxPool that also returns its
 * indices, then ScatterElements with reduction 'add' into zeros.
 */
export const maxPoolRule: Rule = (node, dy, ctx) => {
  const b = ctx.b;
  const input = ctx.shape(node.inputs[0]!);
  const [, indices] = b.nodeWithOutputs('MaxPool', node.inputs, [`${node.name}_again`, `${node.name}_indices`], { ...node.attributes });
  const row = b.int64([-1]);
  const zeros = b.node('ConstantOfShape', [b.int64([product(input)])], `${node.name}_zeros`);
  const flatIndices = b.node('Reshape', [indices!, row], `${node.name}_indices_row`);
  const flatDy = b.node('Reshape', [dy, row], `${node.name}_dy_row`);
  const scattered = b.node('ScatterElements', [zeros, flatIndices, flatDy], `${node.name}_scattered`, { axis: int(0), reduction: text('add') });
  return [b.node('Reshape', [scattered, b.int64(input)], `${node.name}_grad`)];
};

/** Average pooling: each window's gradient spread evenly over it, a depthwise transposed convolution with a constant filter. */
export const averagePoolRule: Rule = (node, dy, ctx) => {
  const { kernel, pads } = windowOf(node);
  if (pads.some((p) => p !== 0) && intOf(node, 'count_include_pad', 0) !== 1) throw new Error(`${node.name}: average pooling over padding it does not count has no gradient rule`);
  const channels = ctx.shape(node.inputs[0]!)[1]!;
  const size = product(kernel);
  const filter = ctx.b.float32(Array.from({ length: channels * size }, () => 1 / size), [channels, 1, kernel[0]!, kernel[1]!]);
  return [transposedWindow(node, ctx, dy, filter, channels, `${node.name}_grad`)];
};

