import type * as tfl from '@tensorflow/tfjs-layers';
import type { ModelName } from './registry.js';
import type { WeightsTag } from './tags.js';

export type { ModelName };

/**
 * The classifier on top of the backbone. 'torchvision' is torchvision's own head, the shape of the
 * ImageNet checkpoints (ResNet `fc = Linear(in, C)`; EfficientNet `Dropout(p) → Linear(in, C)`).
 * 'mlp' (EfficientNets) puts a hidden layer in between: `Dropout(p) → Linear(in, 512) → ReLU →
 * Dropout(p) → Linear(512, C)`, the published EfficientNet-B3 recipe's head. Each entry lists the
 * heads it builds and the one it builds by default.
 */
export type HeadKind = 'torchvision' | 'mlp';

export interface ModelBuildOptions {
  numClasses?: number; // default 3
  imageSize?: number; // default entry.defaultImageSize; input is [null, S, S, 3] NHWC, ImageNet-normalized
  /**
   * A stage name: that stage and all before it are frozen (trainable=false, and their BatchNorms ALWAYS
   * run in inference mode, even when the model is called with training=true).
   */
  freezeUntil?: string;
  seed?: number; // weight init and the model's own randomness (dropout, stochastic depth); default 0
  head?: HeadKind; // default entry.defaultHead; one of entry.heads
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

/**
 * Everything osteo knows about one architecture; train, eval and export read these facts instead of
 * branching on the name. `Name` is the entry's literal name, so that the registry's list of entries
 * yields ModelName (a default of ModelName here would be circular, hence the alias below).
 */
export interface ModelEntryOf<Name extends string> {
  name: Name;
  build(options?: ModelBuildOptions): tfl.LayersModel; // outputs logits [null, numClasses] (no softmax)
  /** The crop of its default weights' eval transform: 224 for most, 300 for B3. */
  defaultImageSize: number;
  stages: readonly string[]; // ordered stage names valid for freezeUntil
  classifierName: string; // torchvision prefix of the head: 'fc' | 'classifier'
  /** The heads build() accepts, and the one it builds without `head`. */
  heads: readonly HeadKind[];
  defaultHead: HeadKind;
  /**
   * torchvision's ImageNet checkpoints for this architecture, each with its eval transform; the first
   * is torchvision's DEFAULT: what `osteo weights fetch NAME` downloads and whose transform a run
   * uses unless it starts from another of these files.
   */
  weights: readonly [WeightsTag, ...WeightsTag[]];
  /** Its built-in training recipe: a file name in configs/ (`osteo train --model NAME` reads it unless --config says otherwise). */
  recipe: string;
  /**
   * torchvision's parameter count (torch's `sum(p.numel() for p in model.parameters())`, buffers
   * excluded) of the default build: 3 classes, the default head. Data, not derived: a test compares
   * it with the built model's, and the parity test with torchvision's.
   */
  parameterCount: number;
  /** The layer whose output Grad-CAM weighs: the last spatial feature map, right before global pooling. */
  gradCamLayer: string;
  /** The stage a layer (by name) belongs to, or null for the input. */
  stageOf(layerName: string): string | null;
  /**
   * Ranks of the named (non-numeric) module names, so that sorting layer names segment by segment
   * (numbers numerically, names by this table) gives torchvision's state-dict key order.
   */
  moduleOrder: readonly string[];
  /**
   * An older spelling of state-dict keys in the published checkpoints, mapped to today's (DenseNet's
   * 'norm.1' → 'norm1'); applied to every key read. Absent: keys are read as they are.
   */
  renameCheckpointKey?(key: string): string;
}

/** A registered model's entry. */
export type ModelEntry = ModelEntryOf<ModelName>;
