import type * as tfl from '@tensorflow/tfjs-layers';
import type { EvalTransform } from '../data/index.js';
import type { ModelName } from './registry.js';

export type { ModelName };

/**
 * The classifier on top of the backbone. 'dashboard' is what the dashboard builds (and the default):
 * ResNet `fc = Linear(in, C)`; EfficientNet-B3 `Dropout(0.3) → Linear(1536, 512) → ReLU → Dropout(0.3)
 * → Linear(512, C)`. 'torchvision' is torchvision's own head (the same for ResNets; `Dropout(0.3) →
 * Linear(1536, C)` for B3), the shape of the ImageNet checkpoints. A model the dashboard does not
 * load (no `dashboard` entry) has torchvision's head under either name.
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

/** What the dashboard (docs/contracts.md, *The dashboard*) loads for an architecture: its file name and the module it builds. */
export interface DashboardFile {
  file: string;
  /** The torchvision code the dashboard runs to build the module, for metadata.json. */
  architecture: string;
}

/**
 * Everything osteo knows about one architecture; train, eval and export read these facts instead of
 * branching on the name. `Name` is the entry's literal name, so that the registry's list of entries
 * yields ModelName (a default of ModelName here would be circular, hence the alias below).
 */
export interface ModelEntryOf<Name extends string> {
  name: Name;
  build(options?: ModelBuildOptions): tfl.LayersModel; // outputs logits [null, numClasses] (no softmax)
  defaultImageSize: number; // 224 for ResNets, 300 for B3
  cropFraction: number; // 224/256 = 0.875 ResNets; 300/320 B3
  transform(imageSize?: number): EvalTransform; // {resize, crop, mean, std}: resize = round(crop / cropFraction)
  stages: readonly string[]; // ordered stage names valid for freezeUntil
  classifierName: string; // torchvision prefix of the head: 'fc' | 'classifier'
  pretrained: PretrainedCheckpoint; // torchvision ImageNet checkpoint (torchvision's DEFAULT weights)
  /** Its built-in training recipe: a file name in configs/ (`osteo train --model NAME` reads it unless --config says otherwise). */
  recipe: string;
  /**
   * torchvision's parameter count (torch's `sum(p.numel() for p in model.parameters())`, buffers
   * excluded) of the default build: 3 classes, the dashboard head. Data, not derived: a test compares
   * it with the built model's, and the parity test with torchvision's.
   */
  parameterCount: number;
  /** The layer whose output Grad-CAM weighs: the last spatial feature map, right before global pooling. */
  gradCamLayer: string;
  /** The file the dashboard loads for this architecture, if it loads one. */
  dashboard?: DashboardFile;
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
