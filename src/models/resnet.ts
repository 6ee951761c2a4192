/**
 * torchvision's ResNet (v1.5: the stride of a downsampling Bottleneck sits on its 3×3 conv), NHWC.
 * Two blocks and one stage table; resnet18 and resnet50 are rows of it.
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import {
  activation,
  add,
  batchNorm,
  conv2d,
  globalAveragePool,
  linear,
  maxPoolAfterRelu,
  type BuildContext,
  type Symbolic,
} from './blocks.js';
import { buildContext, finishModel, imageInput, resolveOptions, stageByFirstSegment } from './common.js';
import { torchvisionTag, type WeightsTag } from './tags.js';
import type { ModelBuildOptions, ModelEntryOf } from './types.js';

type BlockKind = 'basic' | 'bottleneck';

interface ResNetConfig {
  block: BlockKind;
  /** Blocks in layer1..layer4. */
  layers: readonly [number, number, number, number];
}

export const resnetTable = {
  resnet18: { block: 'basic', layers: [2, 2, 2, 2] },
  resnet50: { block: 'bottleneck', layers: [3, 4, 6, 3] },
} as const satisfies Record<string, ResNetConfig>;

/** torchvision's ResNet weights (`ResNet18_Weights`, `ResNet50_Weights`), DEFAULT first. */
const resnetWeights = {
  resnet18: [torchvisionTag('resnet18', 'IMAGENET1K_V1', 'resnet18-f37072fd.pth', { crop: 224, resize: 256, interpolation: 'bilinear' })],
  resnet50: [
    // V2 (torchvision's new recipe) is the DEFAULT and the published ResNet50's weights; it evaluates at resize 232.
    torchvisionTag('resnet50', 'IMAGENET1K_V2', 'resnet50-11ad3fa6.pth', { crop: 224, resize: 232, interpolation: 'bilinear' }),
    torchvisionTag('resnet50', 'IMAGENET1K_V1', 'resnet50-0676ba61.pth', { crop: 224, resize: 256, interpolation: 'bilinear' }),
  ],
} as const satisfies Record<keyof typeof resnetTable, readonly [WeightsTag, ...WeightsTag[]]>;

const expansion: Record<BlockKind, number> = { basic: 1, bottleneck: 4 };

/** torchvision's ResNet uses nn.BatchNorm2d's defaults. */
const bnEpsilon = 1e-5;
const bnMomentum = 0.9; // torch momentum 0.1

/** conv → bn, with the optional ReLU that follows inside a block. */
function convBn(x: Symbolic, prefix: string, index: number, filters: number, kernel: number, stride: number, context: BuildContext) {
  const y = conv2d(x, `${prefix}.conv${index}`, { filters, kernel, stride });
  return batchNorm(y, `${prefix}.bn${index}`, context);
}

/** The identity path, or downsample = Sequential(conv1x1(stride), BatchNorm2d) when the shape changes. */
function shortcut(x: Symbolic, prefix: string, inChannels: number, outChannels: number, stride: number, context: BuildContext): Symbolic {
  if (stride === 1 && inChannels === outChannels) return x;
  const y = conv2d(x, `${prefix}.downsample.0`, { filters: outChannels, kernel: 1, stride });
  return batchNorm(y, `${prefix}.downsample.1`, context);
}

function basicBlock(x: Symbolic, prefix: string, inChannels: number, planes: number, stride: number, context: BuildContext): Symbolic {
  let y = activation(convBn(x, prefix, 1, planes, 3, stride, context), `${prefix}.relu1`, 'relu');
  y = convBn(y, prefix, 2, planes, 3, 1, context);
  const identity = shortcut(x, prefix, inChannels, planes, stride, context);
  return activation(add([y, identity], `${prefix}.add`), `${prefix}.relu`, 'relu');
}

function bottleneck(x: Symbolic, prefix: string, inChannels: number, planes: number, stride: number, context: BuildContext): Symbolic {
  let y = activation(convBn(x, prefix, 1, planes, 1, 1, context), `${prefix}.relu1`, 'relu');
  y = activation(convBn(y, prefix, 2, planes, 3, stride, context), `${prefix}.relu2`, 'relu');
  y = convBn(y, prefix, 3, planes * 4, 1, 1, context);
  const identity = shortcut(x, prefix, inChannels, planes * 4, stride, context);
  return activation(add([y, identity], `${prefix}.add`), `${prefix}.relu`, 'relu');
}

const stages = ['conv1', 'layer1', 'layer2', 'layer3', 'layer4', 'fc'] as const;
// The stem's bn1, relu and maxpool belong to the 'conv1' stage; avgpool to 'layer4'.
const stageOf = stageByFirstSegment({ bn1: 'conv1', relu: 'conv1', maxpool: 'conv1', avgpool: 'layer4' }, stages);

function buildResNet(entry: ModelEntryOf<string>, config: ResNetConfig, options?: ModelBuildOptions): tfl.LayersModel {
  const resolved = resolveOptions(entry, options);
  const context = buildContext(resolved, bnEpsilon, bnMomentum);
  const input = imageInput(resolved.imageSize);
  let x = conv2d(input, 'conv1', { filters: 64, kernel: 7, stride: 2 });
  x = activation(batchNorm(x, 'bn1', context), 'relu', 'relu');
  x = maxPoolAfterRelu(x, 'maxpool');
  const block = config.block === 'basic' ? basicBlock : bottleneck;
  let channels = 64;
  config.layers.forEach((blocks, stage) => {
    const planes = 64 * 2 ** stage;
    for (let b = 0; b < blocks; b++) {
      const stride = stage > 0 && b === 0 ? 2 : 1;
      x = block(x, `layer${stage + 1}.${b}`, channels, planes, stride, context);
      channels = planes * expansion[config.block];
    }
  });
  x = globalAveragePool(x, 'avgpool');
  const logits = linear(x, 'fc', resolved.numClasses);
  return finishModel(entry, input, logits, resolved, { linear: () => 'torch-default' });
}

/** The facts of a variant that are data rather than consequences of its stage table row. */
type VariantFacts = Pick<ModelEntryOf<string>, 'parameterCount'>;

function resnetEntry<Name extends keyof typeof resnetTable>(name: Name, facts: VariantFacts): ModelEntryOf<Name> {
  const config: ResNetConfig = resnetTable[name];
  const weights = resnetWeights[name];
  const entry: ModelEntryOf<Name> = {
    name,
    build: (options) => buildResNet(entry, config, options),
    defaultImageSize: weights[0].evalTransform.crop,
    stages,
    classifierName: 'fc',
    heads: ['torchvision'],
    defaultHead: 'torchvision',
    weights,
    recipe: `${name}.json`,
    ...facts,
    // The last block's closing ReLU: layer4's output, before avgpool.
    gradCamLayer: `layer4.${config.layers[3] - 1}.relu`,
    stageOf,
    moduleOrder: ['conv1', 'bn1', 'conv2', 'bn2', 'conv3', 'bn3', 'downsample', 'layer1', 'layer2', 'layer3', 'layer4', 'fc'],
  };
  return entry;
}

export const resnet18 = resnetEntry('resnet18', { parameterCount: 11_178_051 });
export const resnet50 = resnetEntry('resnet50', { parameterCount: 23_514_179 });
