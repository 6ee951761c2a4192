/**
 * Models by name (timm's register_model / create_model, strict): registering a name twice is a bug and
 * throws; asking for an unknown name is a UserError that lists the valid ones. The list below is the
 * one place an architecture is registered; ModelName, help texts and CLI choices all derive from it.
 */
import { UserError } from '../util/index.js';
import { convnextTiny } from './convnext.js';
import { densenet121 } from './densenet.js';
import { efficientnetB0, efficientnetB3 } from './efficientnet.js';
import { resnet18, resnet50 } from './resnet.js';
import type { WeightsTag } from './tags.js';
import type { ModelEntry, ModelEntryOf } from './types.js';

/** Every architecture osteo builds, in the order help texts list them (the first is the default where one is needed). */
const registeredModels = [resnet18, resnet50, efficientnetB3, densenet121, efficientnetB0, convnextTiny] as const;

/** A registered architecture's name ('resnet18' | 'resnet50' | …), read from the list above. */
export type ModelName = (typeof registeredModels)[number]['name'];

export class ModelRegistry<Name extends string = string> {
  private readonly entries = new Map<string, ModelEntryOf<Name>>();

  register(entry: ModelEntryOf<Name>): void {
    if (this.entries.has(entry.name)) throw new Error(`model '${entry.name}' is already registered`);
    const tags = [...this.entries.values()].flatMap((other) => other.weights);
    for (const tag of entry.weights) {
      if (tag.architecture !== entry.name) throw new Error(`model '${entry.name}' lists weights ${tag.name} of ${tag.architecture}`);
      const clash = tags.find((other) => other.name === tag.name || other.fileName === tag.fileName);
      if (clash !== undefined) throw new Error(`weights ${tag.name} (${tag.fileName}) are already registered as ${clash.name} (${clash.fileName})`);
      tags.push(tag);
    }
    this.entries.set(entry.name, entry);
  }

  get(name: string): ModelEntryOf<Name> {
    const entry = this.entries.get(name);
    if (entry === undefined) {
      const known = [...this.entries.keys()];
      throw new UserError(`unknown model '${name}': choose one of ${known.length > 0 ? known.join(', ') : '(none registered)'}`);
    }
    return entry;
  }

  list(): readonly ModelEntryOf<Name>[] {
    return [...this.entries.values()];
  }
}

export const registry = new ModelRegistry<ModelName>();
for (const entry of registeredModels) registry.register(entry);

export function getModel(name: string): ModelEntry {
  return registry.get(name);
}

export function listModels(): readonly ModelEntry[] {
  return registry.list();
}

/** The registered names, non-empty (what a zod enum or a commander choice list takes). */
export function modelNames(): [ModelName, ...ModelName[]] {
  return registeredModels.map((entry) => entry.name) as [ModelName, ...ModelName[]];
}

/** Every weight tag of every registered model, in registry order (each model's DEFAULT first). */
export function listWeightTags(): readonly WeightsTag[] {
  return listModels().flatMap((entry) => entry.weights);
}

/**
 * A tag by its name (`resnet50.imagenet1k_v1`) or a model name (its DEFAULT tag, `resnet50` →
 * `resnet50.imagenet1k_v2`); an unknown name is a UserError that lists both kinds.
 */
export function getWeightsTag(name: string): WeightsTag {
  const tag = listWeightTags().find((t) => t.name === name);
  if (tag !== undefined) return tag;
  if (modelNames().includes(name as ModelName)) return getModel(name).weights[0];
  const known = [...modelNames(), ...listWeightTags().map((t) => t.name)];
  throw new UserError(`unknown weights '${name}': choose a model (its default weights) or a tag: ${known.join(', ')}`);
}

/** The tag whose checkpoint has this file name (`resnet50-0676ba61.pth`), if any: how a --pretrained file is recognised. */
export function weightsTagOfFile(fileName: string): WeightsTag | undefined {
  return listWeightTags().find((tag) => tag.fileName === fileName);
}
