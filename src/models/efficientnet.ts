/**
 * torchvision's EfficientNet (v1), NHWC: MBConv blocks with squeeze-excitation and SiLU, one B0 stage
 * table, and variants that differ only by a width and a depth multiplier applied to it, rounded as
 * torchvision's `_efficientnet_conf` / `adjust_channels` / `adjust_depth` round them.
 *
 * BatchNorm: torchvision builds B0–B4 with nn.BatchNorm2d's defaults (eps 1e-5, momentum 0.1); only
 * B5–B7 and the V2 family pass eps=1e-3. B3 therefore uses 1e-5 (checked by the PyTorch parity test).
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import {
  activation,
  add,
  batchNorm,
  conv2d,
  depthwiseConv2d,
  dropout,
  globalAveragePool,
  linear,
  multiply,
  reshape,
  stochasticDepth,
  type BuildContext,
  type Symbolic,
} from './blocks.js';
import { buildContext, finishModel, imageInput, resolveOptions } from './common.js';
import { torchvisionTag } from './tags.js';
import type { ModelBuildOptions, ModelEntryOf } from './types.js';

/** One row of the EfficientNet paper's Table 1 (torchvision's MBConvConfig before scaling). */
interface StageRow {
  expandRatio: number;
  kernel: number;
  stride: number;
  inChannels: number;
  outChannels: number;
  layers: number;
}

const b0Stages: readonly StageRow[] = [
  { expandRatio: 1, kernel: 3, stride: 1, inChannels: 32, outChannels: 16, layers: 1 },
  { expandRatio: 6, kernel: 3, stride: 2, inChannels: 16, outChannels: 24, layers: 2 },
  { expandRatio: 6, kernel: 5, stride: 2, inChannels: 24, outChannels: 40, layers: 2 },
  { expandRatio: 6, kernel: 3, stride: 2, inChannels: 40, outChannels: 80, layers: 3 },
  { expandRatio: 6, kernel: 5, stride: 1, inChannels: 80, outChannels: 112, layers: 3 },
  { expandRatio: 6, kernel: 5, stride: 2, inChannels: 112, outChannels: 192, layers: 4 },
  { expandRatio: 6, kernel: 3, stride: 1, inChannels: 192, outChannels: 320, layers: 1 },
];

interface EfficientNetConfig {
  widthMult: number;
  depthMult: number;
  dropout: number;
}

export const efficientnetTable = {
  efficientnet_b0: { widthMult: 1.0, depthMult: 1.0, dropout: 0.2 },
  efficientnet_b3: { widthMult: 1.2, depthMult: 1.4, dropout: 0.3 },
} as const satisfies Record<string, EfficientNetConfig>;

/** torchvision's `_make_divisible(v, 8)`: round to a multiple of 8, never more than 10% down. */
export function makeDivisible(value: number, divisor = 8): number {
  let rounded = Math.max(divisor, Math.floor(Math.trunc(value + divisor / 2) / divisor) * divisor);
  if (rounded < 0.9 * value) rounded += divisor;
  return rounded;
}

export const adjustChannels = (channels: number, widthMult: number): number => makeDivisible(channels * widthMult);
export const adjustDepth = (layers: number, depthMult: number): number => Math.ceil(layers * depthMult);

/** One block as built: the stage table scaled, stage by stage. */
interface BlockPlan {
  prefix: string; // features.<stage>.<index>
  inChannels: number;
  outChannels: number;
  expandRatio: number;
  kernel: number;
  stride: number;
  stochasticDepth: number;
}

/** The blocks of features.1 … features.7, with torchvision's linearly growing stochastic-depth rate. */
export function blockPlan(config: EfficientNetConfig, stochasticDepthRate = 0.2): BlockPlan[] {
  const scaled = b0Stages.map((row) => ({
    ...row,
    inChannels: adjustChannels(row.inChannels, config.widthMult),
    outChannels: adjustChannels(row.outChannels, config.widthMult),
    layers: adjustDepth(row.layers, config.depthMult),
  }));
  const total = scaled.reduce((sum, row) => sum + row.layers, 0);
  const plan: BlockPlan[] = [];
  scaled.forEach((row, stage) => {
    for (let index = 0; index < row.layers; index++) {
      plan.push({
        prefix: `features.${stage + 1}.${index}`,
        inChannels: index === 0 ? row.inChannels : row.outChannels,
        outChannels: row.outChannels,
        expandRatio: row.expandRatio,
        kernel: row.kernel,
        stride: index === 0 ? row.stride : 1,
        stochasticDepth: (stochasticDepthRate * plan.length) / total,
      });
    }
  });
  return plan;
}

const stemChannels = (config: EfficientNetConfig) => adjustChannels(b0Stages[0]!.inChannels, config.widthMult);
const lastChannels = (config: EfficientNetConfig) => 4 * adjustChannels(b0Stages[b0Stages.length - 1]!.outChannels, config.widthMult);
const squeezeChannels = (block: BlockPlan) => Math.max(1, Math.floor(block.inChannels / 4));
const expandedChannels = (block: BlockPlan) => makeDivisible(block.inChannels * block.expandRatio);
/** The 'mlp' head's hidden layer between pooled features and logits. */
const mlpHidden = 512;

/** Conv2dNormActivation: conv (no bias) → BatchNorm → optional SiLU, as `<prefix>.0/.1/.2`. */
function convNormActivation(
  x: Symbolic,
  prefix: string,
  filters: number,
  kernel: number,
  stride: number,
  context: BuildContext,
  withActivation = true,
  depthwise = false,
): Symbolic {
  let y = depthwise ? depthwiseConv2d(x, `${prefix}.0`, kernel, stride) : conv2d(x, `${prefix}.0`, { filters, kernel, stride });
  y = batchNorm(y, `${prefix}.1`, context);
  return withActivation ? activation(y, `${prefix}.2`, 'silu') : y;
}

/** SqueezeExcitation(expanded, squeeze, activation=SiLU): x · sigmoid(fc2(silu(fc1(avgpool(x))))). */
function squeezeExcitation(x: Symbolic, prefix: string, channels: number, squeeze: number): Symbolic {
  let scale = globalAveragePool(x, `${prefix}.avgpool`);
  scale = reshape(scale, `${prefix}.reshape`, [1, 1, channels]);
  scale = conv2d(scale, `${prefix}.fc1`, { filters: squeeze, kernel: 1, bias: true });
  scale = activation(scale, `${prefix}.activation`, 'silu');
  scale = conv2d(scale, `${prefix}.fc2`, { filters: channels, kernel: 1, bias: true });
  scale = activation(scale, `${prefix}.scale_activation`, 'sigmoid');
  return multiply([x, scale], `${prefix}.scale`);
}

function mbConv(x: Symbolic, block: BlockPlan, context: BuildContext): Symbolic {
  const expanded = expandedChannels(block);
  let index = 0;
  let y = x;
  if (expanded !== block.inChannels) y = convNormActivation(y, `${block.prefix}.block.${index++}`, expanded, 1, 1, context);
  y = convNormActivation(y, `${block.prefix}.block.${index++}`, expanded, block.kernel, block.stride, context, true, true);
  y = squeezeExcitation(y, `${block.prefix}.block.${index++}`, expanded, squeezeChannels(block));
  y = convNormActivation(y, `${block.prefix}.block.${index++}`, block.outChannels, 1, 1, context, false);
  if (block.stride !== 1 || block.inChannels !== block.outChannels) return y;
  y = stochasticDepth(y, `${block.prefix}.stochastic_depth`, block.stochasticDepth, context);
  return add([y, x], `${block.prefix}.add`);
}

/** The 1×1 conv to 4× the last stage's channels that follows the MBConv stages. */
const lastStage = `features.${b0Stages.length + 1}`;

/** torchvision's EfficientNet uses nn.BatchNorm2d's defaults for B0–B4. */
const bnEpsilon = 1e-5;
const bnMomentum = 0.9; // torch momentum 0.1

function buildEfficientNet(entry: ModelEntryOf<string>, config: EfficientNetConfig, options?: ModelBuildOptions): tfl.LayersModel {
  const resolved = resolveOptions(entry, options);
  const mlpHead = resolved.head === 'mlp';
  const context = buildContext(resolved, bnEpsilon, bnMomentum);
  const input = imageInput(resolved.imageSize);
  let x = convNormActivation(input, 'features.0', stemChannels(config), 3, 2, context);
  for (const block of blockPlan(config)) x = mbConv(x, block, context);
  x = convNormActivation(x, lastStage, lastChannels(config), 1, 1, context);
  x = globalAveragePool(x, 'avgpool');
  x = dropout(x, 'classifier.0', config.dropout, context);
  if (mlpHead) {
    x = linear(x, 'classifier.1', mlpHidden);
    x = activation(x, 'classifier.2', 'relu');
    x = dropout(x, 'classifier.3', config.dropout, context);
    x = linear(x, 'classifier.4', resolved.numClasses);
  } else {
    x = linear(x, 'classifier.1', resolved.numClasses);
  }
  // This head is assigned after torchvision builds the model (`model.classifier = nn.Sequential(…)`),
  // so its Linears keep nn.Linear's own init rather than EfficientNet's.
  const linearInit = mlpHead ? 'torch-default' : 'efficientnet';
  return finishModel(entry, input, x, resolved, { linear: () => linearInit });
}

const stages = ['features.0', 'features.1', 'features.2', 'features.3', 'features.4', 'features.5', 'features.6', 'features.7', 'features.8', 'classifier'] as const;

function stageOf(layerName: string): string | null {
  if (layerName === 'input') return null;
  if (layerName === 'avgpool') return 'features.8';
  const [first, second] = layerName.split('.');
  const stage = first === 'classifier' ? 'classifier' : `${first}.${second?.replace(/_pad$/, '')}`;
  if (!(stages as readonly string[]).includes(stage)) throw new Error(`layer ${layerName} belongs to no stage`);
  return stage;
}

/** The facts of a variant that are data rather than consequences of its table row. */
type VariantFacts = Pick<ModelEntryOf<string>, 'parameterCount' | 'weights' | 'defaultHead'>;

function efficientnetEntry<Name extends keyof typeof efficientnetTable>(name: Name, facts: VariantFacts): ModelEntryOf<Name> {
  const config: EfficientNetConfig = efficientnetTable[name];
  const entry: ModelEntryOf<Name> = {
    name,
    build: (options) => buildEfficientNet(entry, config, options),
    defaultImageSize: facts.weights[0].evalTransform.crop,
    stages,
    classifierName: 'classifier',
    heads: ['mlp', 'torchvision'],
    recipe: `${name}.json`,
    ...facts,
    // The final 1×1 conv stage's SiLU (Conv2dNormActivation's `.2`), before avgpool.
    gradCamLayer: `${lastStage}.2`,
    stageOf,
    moduleOrder: ['features', 'block', 'fc1', 'fc2', 'classifier'],
  };
  return entry;
}

// torchvision's EfficientNet V1 weights (`EfficientNet_B0_Weights`, `EfficientNet_B3_Weights`) were trained in
// pytorch-image-models and ported; torchvision evaluates them bicubic.
export const efficientnetB0 = efficientnetEntry('efficientnet_b0', {
  weights: [torchvisionTag('efficientnet_b0', 'IMAGENET1K_V1', 'efficientnet_b0_rwightman-3dd342df.pth', { crop: 224, resize: 256, interpolation: 'bicubic' })],
  defaultHead: 'torchvision',
  parameterCount: 4_011_391,
});

export const efficientnetB3 = efficientnetEntry('efficientnet_b3', {
  weights: [torchvisionTag('efficientnet_b3', 'IMAGENET1K_V1', 'efficientnet_b3_rwightman-cf984f9c.pth', { crop: 300, resize: 320, interpolation: 'bicubic' })],
  // The published B3 recipe trains the 'mlp' head (configs/efficientnet_b3.json).
  defaultHead: 'mlp',
  parameterCount: 11_484_715,
});
