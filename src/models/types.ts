import type * as tfl from '@tensorflow/tfjs-layers';
import type { EvalTransform } from '../data/index.js';

export type ModelName = 'resnet18' | 'resnet50' | 'efficientnet_b3';

/**
 * The classifier on top of the backbone. 'dashboard' is what the dashboard builds (and the default):
 * ResNet `fc = Linear(in, C)`; EfficientNet-B3 `Dropout(0.3) → Linear(1536, 512) → ReLU → Dropout(0.3)
 * → Linear(512, C)`. 'torchvision' is torchvision's own head (the same for ResNets; `Dropout(0.3) →
 * Linear(1536, C)` for B3), the shape of the ImageNet checkpoints.
 */
export type HeadKind = 'dashboard' | 'torchvision';

export interface ModelBuildOptions {
  numClasses?: number; // default 3
  imageSize?: number; // default entry.defaultImageSize; input is [null, S, S, 3] NHWC, ImageNet-normalized
  /**
   * A stage name: that stage and all before it are frozen (trainable=false, and their BatchNorms ALWAYS
   * run in inference mode, even when the model is called with training=true).
   */
  freezeUntil?: string;
  seed?: number; // weight init and the model's own randomness (dropout, stochastic depth); default 0
  head?: HeadKind; // default 'dashboard'
  /**
   * Default true. false skips the random initialisation (convolutions and linears stay zero, BatchNorms
   * identity): for replicas that receive their weights right after building, where drawing ~10^7
   * normal numbers would be wasted work.
   */
  initialize?: boolean;
  /**
   * Default false. true builds from stock tfjs-layers classes only (BatchNormalization, Dropout, no
   * stochastic depth): the same function at inference, loadable by tf.loadLayersModel in an app that
   * has never heard of osteo. For export only: its BatchNorms do not follow PyTorch in training.
   */
  portable?: boolean;
}

export interface PretrainedCheckpoint {
  url: string;
  fileName: string;
  /** The first hex digits of the file's SHA-256, as torchvision puts them in the file name. */
  sha256Prefix: string;
}

export interface ModelEntry {
  name: ModelName;
  build(options?: ModelBuildOptions): tfl.LayersModel; // outputs logits [null, numClasses] (no softmax)
  defaultImageSize: number; // 224 for ResNets, 300 for B3
  cropFraction: number; // 224/256 = 0.875 ResNets; 300/320 B3
  transform(imageSize?: number): EvalTransform; // {resize, crop, mean, std}: resize = round(crop / cropFraction)
  stages: readonly string[]; // ordered stage names valid for freezeUntil
  classifierName: string; // torchvision prefix of the head: 'fc' | 'classifier'
  pretrained: PretrainedCheckpoint; // torchvision ImageNet checkpoint (torchvision's DEFAULT weights)
  /** Its built-in training recipe: a file name in configs/ (`osteo train --model NAME` reads it unless --config says otherwise). */
  recipe: string;
  parameterCount(numClasses?: number, head?: HeadKind): number;
  /** The stage a layer (by name) belongs to, or null for the input. */
  stageOf(layerName: string): string | null;
  /**
   * Ranks of the named (non-numeric) module names, so that sorting layer names segment by segment
   * (numbers numerically, names by this table) gives torchvision's state-dict key order.
   */
  moduleOrder: readonly string[];
}
