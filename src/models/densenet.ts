/**
 * torchvision's DenseNet (Huang et al. 2017), NHWC: dense layers (BN → ReLU → 1×1 conv → BN → ReLU →
 * 3×3 conv) whose inputs are the concatenation of every earlier output in their block, transitions
 * (BN → ReLU → 1×1 conv → 2×2 average pool) halving channels and size, and a closing BN, ReLU and
 * global pool. densenet121 is one row of the table (growth 32, blocks 6/12/24/16, 64 stem features).
 *
 * Concatenation is torchvision's `memory_efficient=False` path: each dense layer concatenates its
 * inputs afresh (torch.cat), so the graph, and the gradients, are the same ones torch computes.
 * BatchNorm: nn.BatchNorm2d's defaults (eps 1e-5, momentum 0.1). Dropout: torchvision's drop_rate 0.
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import {
  activation,
  averagePool2x2,
  batchNorm,
  concatenate,
  conv2d,
  globalAveragePool,
  linear,
  maxPoolAfterRelu,
  type BuildContext,
  type Symbolic,
} from './blocks.js';
import { buildContext, finishModel, imageInput, resolveOptions } from './common.js';
import { torchvisionTag } from './tags.js';
import type { ModelBuildOptions, ModelEntryOf } from './types.js';

interface DenseNetConfig {
  growthRate: number;
  /** Dense layers in denseblock1..4. */
  blocks: readonly [number, number, number, number];
  stemFeatures: number;
  /** The 1×1 bottleneck's width is bottleneckFactor · growthRate (torchvision's bn_size). */
  bottleneckFactor: number;
}

export const densenetTable = {
  densenet121: { growthRate: 32, blocks: [6, 12, 24, 16], stemFeatures: 64, bottleneckFactor: 4 },
} as const satisfies Record<string, DenseNetConfig>;

const bnEpsilon = 1e-5;
const bnMomentum = 0.9; // torch momentum 0.1

/** BN → ReLU → conv, the pre-activation unit every DenseNet module is made of, as `<prefix>.<norm|relu|conv><suffix>`. */
function normReluConv(x: Symbolic, prefix: string, suffix: string, filters: number, kernel: number, context: BuildContext): Symbolic {
  let y = batchNorm(x, `${prefix}.norm${suffix}`, context);
  y = activation(y, `${prefix}.relu${suffix}`, 'relu');
  return conv2d(y, `${prefix}.conv${suffix}`, { filters, kernel });
}

/** _DenseLayer: the concatenated features so far → growthRate new channels. */
function denseLayer(features: Symbolic[], prefix: string, config: DenseNetConfig, context: BuildContext): Symbolic {
  // A copy: the layer keeps the list it was applied to, and the block goes on appending to `features`.
  const input = features.length === 1 ? features[0]! : concatenate([...features], `${prefix}.concat`);
  const bottleneck = normReluConv(input, prefix, '1', config.bottleneckFactor * config.growthRate, 1, context);
  return normReluConv(bottleneck, prefix, '2', config.growthRate, 3, context);
}

/** _DenseBlock: returns torch.cat([input, every layer's output], 1). */
function denseBlock(x: Symbolic, prefix: string, layers: number, config: DenseNetConfig, context: BuildContext): Symbolic {
  const features = [x];
  for (let index = 1; index <= layers; index++) features.push(denseLayer(features, `${prefix}.denselayer${index}`, config, context));
  return concatenate(features, `${prefix}.concat`);
}

function buildDenseNet(entry: ModelEntryOf<string>, config: DenseNetConfig, options?: ModelBuildOptions): tfl.LayersModel {
  const resolved = resolveOptions(entry, options);
  const context = buildContext(resolved, bnEpsilon, bnMomentum);
  const input = imageInput(resolved.imageSize);
  let x = conv2d(input, 'features.conv0', { filters: config.stemFeatures, kernel: 7, stride: 2 });
  x = activation(batchNorm(x, 'features.norm0', context), 'features.relu0', 'relu');
  x = maxPoolAfterRelu(x, 'features.pool0');
  let channels = config.stemFeatures;
  config.blocks.forEach((layers, index) => {
    x = denseBlock(x, `features.denseblock${index + 1}`, layers, config, context);
    channels += layers * config.growthRate;
    if (index === config.blocks.length - 1) return;
    const prefix = `features.transition${index + 1}`;
    channels = Math.floor(channels / 2);
    x = averagePool2x2(normReluConv(x, prefix, '', channels, 1, context), `${prefix}.pool`);
  });
  x = batchNorm(x, 'features.norm5', context);
  // DenseNet.forward's F.relu after `features`: the last feature map, where Grad-CAM looks.
  x = activation(x, 'features.relu5', 'relu');
  x = globalAveragePool(x, 'avgpool');
  x = linear(x, 'classifier', resolved.numClasses);
  // DenseNet.__init__: plain kaiming_normal_ (fan_in) for convs; Linear keeps its weight init, bias 0.
  return finishModel(entry, input, x, resolved, { conv: 'kaiming-fan-in', linear: () => 'zero-bias' });
}

function stagesOf(config: DenseNetConfig): string[] {
  const stages = ['features.conv0'];
  config.blocks.forEach((_, index) => {
    stages.push(`features.denseblock${index + 1}`);
    if (index < config.blocks.length - 1) stages.push(`features.transition${index + 1}`);
  });
  return [...stages, 'features.norm5', 'classifier'];
}

/** The stem's norm/relu/pool belong to conv0's stage; the closing ReLU and pooling to norm5's. */
const stageAliases: Record<string, string> = {
  'features.norm0': 'features.conv0',
  'features.relu0': 'features.conv0',
  'features.pool0': 'features.conv0',
  'features.relu5': 'features.norm5',
  avgpool: 'features.norm5',
};

function stageFinder(stages: readonly string[]) {
  return (layerName: string): string | null => {
    if (layerName === 'input') return null;
    const [first, second] = layerName.split('.');
    const module = (first === 'features' ? `${first}.${second}` : first!).replace(/_pad$/, '');
    const stage = stageAliases[module] ?? module;
    if (!stages.includes(stage)) throw new Error(`layer ${layerName} belongs to no stage`);
    return stage;
  };
}

/** torchvision's module registration order, for the names that are not plain indices. */
function moduleOrderOf(config: DenseNetConfig): string[] {
  const mostLayers = Math.max(...config.blocks);
  return [
    'features',
    'conv0',
    'norm0',
    ...stagesOf(config).slice(1, -2).map((stage) => stage.slice('features.'.length)),
    'norm5',
    ...Array.from({ length: mostLayers }, (_, index) => `denselayer${index + 1}`),
    'norm1',
    'conv1',
    'norm2',
    'conv2',
    'norm',
    'conv',
    'classifier',
  ];
}

type VariantFacts = Pick<ModelEntryOf<string>, 'parameterCount' | 'weights'>;

function densenetEntry<Name extends keyof typeof densenetTable>(name: Name, facts: VariantFacts): ModelEntryOf<Name> {
  const config: DenseNetConfig = densenetTable[name];
  const stages = stagesOf(config);
  const entry: ModelEntryOf<Name> = {
    name,
    build: (options) => buildDenseNet(entry, config, options),
    defaultImageSize: facts.weights[0].evalTransform.crop,
    stages,
    classifierName: 'classifier',
    heads: ['torchvision'],
    defaultHead: 'torchvision',
    recipe: `${name}.json`,
    ...facts,
    gradCamLayer: 'features.relu5',
    stageOf: stageFinder(stages),
    moduleOrder: moduleOrderOf(config),
    // torchvision's DenseNet checkpoints predate the ban on '.' in module names: 'norm.1' for 'norm1'
    // (densenet.py's _load_state_dict rewrites them the same way).
    renameCheckpointKey: (key) => key.replace(/^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$/, '$1$2'),
  };
  return entry;
}

export const densenet121 = densenetEntry('densenet121', {
  weights: [torchvisionTag('densenet121', 'IMAGENET1K_V1', 'densenet121-a639ec97.pth', { crop: 224, resize: 256, interpolation: 'bilinear' })],
  parameterCount: 6_956_931,
});
