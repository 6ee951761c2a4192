/** What every architecture's builder shares: option checking, freezing, the input. */
import * as tfl from '@tensorflow/tfjs-layers';
import { UserError } from '../util/index.js';
import type { BuildContext } from './blocks.js';
import { initializeWeights, type InitRule } from './init.js';
import { isSeededLayer } from './layers.js';
import type { HeadKind, ModelBuildOptions, ModelEntryOf } from './types.js';

export interface ResolvedOptions {
  numClasses: number;
  imageSize: number;
  freezeUntil: string | undefined;
  seed: number;
  head: HeadKind;
  initialize: boolean;
  portable: boolean;
}

/** The smallest input every architecture here reduces without a zero-sized feature map. */
export const minImageSize = 32;

export function resolveOptions(entry: Pick<ModelEntryOf<string>, 'name' | 'defaultImageSize' | 'stages' | 'heads' | 'defaultHead'>, options: ModelBuildOptions = {}): ResolvedOptions {
  const numClasses = options.numClasses ?? 3;
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new UserError(`${entry.name}: numClasses must be a positive integer, got ${numClasses}`);
  const imageSize = options.imageSize ?? entry.defaultImageSize;
  if (!Number.isInteger(imageSize) || imageSize < minImageSize) {
    throw new UserError(`${entry.name}: image size must be an integer ≥ ${minImageSize}, got ${imageSize}`);
  }
  if (options.freezeUntil !== undefined && !entry.stages.includes(options.freezeUntil)) {
    throw new UserError(`${entry.name}: unknown stage '${options.freezeUntil}' to freeze until; stages are ${entry.stages.join(', ')}`);
  }
  const head = options.head ?? entry.defaultHead;
  if (!entry.heads.includes(head)) throw new UserError(`${entry.name} has no '${String(head)}' head: its heads are ${entry.heads.join(', ')}`);
  return {
    numClasses,
    imageSize,
    freezeUntil: options.freezeUntil,
    // The seed is checked where a user gives one (the config schema, the engine's options), not here.
    seed: options.seed ?? 0,
    head,
    initialize: options.initialize ?? true,
    portable: options.portable ?? false,
  };
}

export function buildContext(options: ResolvedOptions, bnEpsilon: number, bnMomentum: number): BuildContext {
  return { portable: options.portable, bnEpsilon, bnMomentum, seed: options.seed };
}

export function imageInput(imageSize: number): tfl.SymbolicTensor {
  return tfl.input({ shape: [imageSize, imageSize, 3], name: 'input' });
}

/** Wraps up a built graph: the model, its initial weights, and its frozen stages. */
export function finishModel(
  entry: Pick<ModelEntryOf<string>, 'name' | 'stages' | 'stageOf'>,
  input: tfl.SymbolicTensor,
  output: tfl.SymbolicTensor,
  options: ResolvedOptions,
  initRule: InitRule,
): tfl.LayersModel {
  const model = tfl.model({ inputs: input, outputs: output, name: entry.name });
  if (options.initialize) initializeWeights(model, options.seed, initRule);
  if (options.freezeUntil !== undefined) freezeUntilStage(model, entry, options.freezeUntil);
  return model;
}

/**
 * Freeze `stage` and every stage before it: their weights stop training and their BatchNorms use
 * running statistics even under training=true. Stages after it are made trainable again, so this can
 * be called again to move the boundary.
 */
export function freezeUntilStage(model: tfl.LayersModel, entry: Pick<ModelEntryOf<string>, 'name' | 'stages' | 'stageOf'>, stage: string): void {
  const last = entry.stages.indexOf(stage);
  if (last < 0) throw new UserError(`${entry.name}: unknown stage '${stage}' to freeze until; stages are ${entry.stages.join(', ')}`);
  for (const layer of model.layers) {
    const layerStage = entry.stageOf(layer.name);
    if (layerStage === null) continue;
    const index = entry.stages.indexOf(layerStage);
    if (index < 0) throw new Error(`${entry.name}: layer ${layer.name} maps to unknown stage ${layerStage}`);
    layer.trainable = index > last;
  }
}

/** Make every random draw inside the model (dropout, stochastic depth) come from this seed from now on. */
export function seedModelRandomness(model: tfl.LayersModel, seed: number): void {
  for (const layer of model.layers) if (isSeededLayer(layer)) layer.reseed(seed);
}

/** Stage of a layer in a model whose stages are top-level module names, with aliases for the stem. */
export function stageByFirstSegment(aliases: Record<string, string>, stages: readonly string[]) {
  return (layerName: string): string | null => {
    if (layerName === 'input') return null;
    const first = layerName.split('.')[0]!.replace(/_pad$/, '');
    const stage = aliases[first] ?? first;
    if (!stages.includes(stage)) throw new Error(`layer ${layerName} belongs to no stage`);
    return stage;
  };
}
