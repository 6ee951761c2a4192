/**
 * torchvision's ConvNeXt (Liu et al. 2022), NHWC: a 4×4 stride-4 patchify stem with LayerNorm2d, four
 * stages of CNBlocks (7×7 depthwise conv → LayerNorm → Linear 4× → GELU → Linear → layer scale →
 * stochastic depth → residual add) separated by LayerNorm2d + 2×2 stride-2 downsampling convs, then
 * global pooling, LayerNorm2d and the Linear classifier. convnext_tiny is one row of the table.
 *
 * torchvision's block permutes NCHW to channels-last around its LayerNorm and Linears; in NHWC the
 * tensor already is channels-last, so those Linears act on the last axis directly and LayerNorm2d and
 * the block's LayerNorm are the same layer. LayerNorm eps 1e-6 everywhere; GELU is the exact (erf) one;
 * layer scale starts at 1e-6; stochastic depth grows linearly with the block's index over all stages.
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import {
  activation,
  add,
  conv2d,
  depthwiseConv2d,
  globalAveragePool,
  layerNorm,
  layerScale,
  linear,
  stochasticDepth,
  type BuildContext,
  type Symbolic,
} from './blocks.js';
import { buildContext, finishModel, imageInput, resolveOptions } from './common.js';
import { torchvisionTag } from './tags.js';
import type { ModelBuildOptions, ModelEntryOf } from './types.js';

/** torchvision's CNBlockConfig: the stage's width, the next stage's (null after the last), its blocks. */
interface StageRow {
  channels: number;
  nextChannels: number | null;
  blocks: number;
}

interface ConvNeXtConfig {
  stages: readonly StageRow[];
  stochasticDepth: number;
}

export const convnextTable = {
  convnext_tiny: {
    stages: [
      { channels: 96, nextChannels: 192, blocks: 3 },
      { channels: 192, nextChannels: 384, blocks: 3 },
      { channels: 384, nextChannels: 768, blocks: 9 },
      { channels: 768, nextChannels: null, blocks: 3 },
    ],
    stochasticDepth: 0.1,
  },
} as const satisfies Record<string, ConvNeXtConfig>;

const layerNormEpsilon = 1e-6;
const layerScaleInit = 1e-6;
/** ConvNeXt has no BatchNorm; the context still carries torch's defaults for the shared helpers. */
const unusedBnEpsilon = 1e-5;
const unusedBnMomentum = 0.9;

/** CNBlock at `prefix` (features.<stage>.<index>): its branch is `<prefix>.block.<0,2,3,4,5>`. */
function cnBlock(x: Symbolic, prefix: string, channels: number, dropRate: number, context: BuildContext): Symbolic {
  let y = depthwiseConv2d(x, `${prefix}.block.0`, 7, 1, true);
  y = layerNorm(y, `${prefix}.block.2`, layerNormEpsilon, context);
  y = linear(y, `${prefix}.block.3`, 4 * channels);
  y = activation(y, `${prefix}.block.4`, 'gelu');
  y = linear(y, `${prefix}.block.5`, channels);
  y = layerScale(y, `${prefix}.layer_scale`, layerScaleInit, context);
  y = stochasticDepth(y, `${prefix}.stochastic_depth`, dropRate, context);
  return add([y, x], `${prefix}.add`);
}

/** The index in `features` of each stage's block sequence: 1, 3, 5, 7 (downsampling sits between). */
const stageFeature = (stage: number) => 2 * stage + 1;

function buildConvNeXt(entry: ModelEntryOf<string>, config: ConvNeXtConfig, options?: ModelBuildOptions): tfl.LayersModel {
  const resolved = resolveOptions(entry, options);
  const context = buildContext(resolved, unusedBnEpsilon, unusedBnMomentum);
  const input = imageInput(resolved.imageSize);
  let x = conv2d(input, 'features.0.0', { filters: config.stages[0]!.channels, kernel: 4, stride: 4, bias: true, padding: 0 });
  x = layerNorm(x, 'features.0.1', layerNormEpsilon, context);
  const totalBlocks = config.stages.reduce((sum, row) => sum + row.blocks, 0);
  let blockIndex = 0;
  config.stages.forEach((row, stage) => {
    for (let index = 0; index < row.blocks; index++) {
      const dropRate = (config.stochasticDepth * blockIndex++) / (totalBlocks - 1);
      x = cnBlock(x, `features.${stageFeature(stage)}.${index}`, row.channels, dropRate, context);
    }
    if (row.nextChannels === null) return;
    const prefix = `features.${stageFeature(stage) + 1}`;
    x = layerNorm(x, `${prefix}.0`, layerNormEpsilon, context);
    x = conv2d(x, `${prefix}.1`, { filters: row.nextChannels, kernel: 2, stride: 2, bias: true, padding: 0 });
  });
  x = globalAveragePool(x, 'avgpool');
  x = layerNorm(x, 'classifier.0', layerNormEpsilon, context);
  x = linear(x, 'classifier.2', resolved.numClasses);
  // ConvNeXt.__init__: trunc_normal_(std=0.02) for every Conv2d and Linear weight, zero biases.
  return finishModel(entry, input, x, resolved, { conv: 'trunc-normal', linear: () => 'trunc-normal' });
}

function stagesOf(config: ConvNeXtConfig): string[] {
  const features = 2 * config.stages.length; // stem, then a block sequence and a downsample per stage but the last
  return [...Array.from({ length: features }, (_, index) => `features.${index}`), 'classifier'];
}

function stageFinder(stages: readonly string[]) {
  return (layerName: string): string | null => {
    if (layerName === 'input') return null;
    if (layerName === 'avgpool') return stages[stages.length - 2]!;
    const [first, second] = layerName.split('.');
    const stage = first === 'classifier' ? 'classifier' : `${first}.${second}`;
    if (!stages.includes(stage)) throw new Error(`layer ${layerName} belongs to no stage`);
    return stage;
  };
}

type VariantFacts = Pick<ModelEntryOf<string>, 'parameterCount' | 'weights'>;

function convnextEntry<Name extends keyof typeof convnextTable>(name: Name, facts: VariantFacts): ModelEntryOf<Name> {
  const config: ConvNeXtConfig = convnextTable[name];
  const stages = stagesOf(config);
  const lastStage = stageFeature(config.stages.length - 1);
  const entry: ModelEntryOf<Name> = {
    name,
    build: (options) => buildConvNeXt(entry, config, options),
    defaultImageSize: facts.weights[0].evalTransform.crop,
    stages,
    classifierName: 'classifier',
    heads: ['torchvision'],
    defaultHead: 'torchvision',
    recipe: `${name}.json`,
    ...facts,
    // The last block's residual sum: the final feature map, before avgpool.
    gradCamLayer: `features.${lastStage}.${config.stages[config.stages.length - 1]!.blocks - 1}.add`,
    stageOf: stageFinder(stages),
    // A CNBlock's own parameter (layer_scale) comes before its child module's in torch's state dict.
    moduleOrder: ['features', 'layer_scale', 'block', 'classifier'],
  };
  return entry;
}

export const convnextTiny = convnextEntry('convnext_tiny', {
  weights: [torchvisionTag('convnext_tiny', 'IMAGENET1K_V1', 'convnext_tiny-983f1562.pth', { crop: 224, resize: 236, interpolation: 'bilinear' })],
  parameterCount: 27_822_435,
});
