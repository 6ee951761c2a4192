/**
 * Models by name (timm's register_model / create_model, strict): registering a name twice is a bug and
 * throws; asking for an unknown name is a UserError that lists the valid ones.
 */
import { UserError } from '../util/index.js';
import { efficientnetB3 } from './efficientnet.js';
import { resnet18, resnet50 } from './resnet.js';
import type { ModelEntry } from './types.js';

export class ModelRegistry {
  private readonly entries = new Map<string, ModelEntry>();

  register(entry: ModelEntry): void {
    if (this.entries.has(entry.name)) throw new Error(`model '${entry.name}' is already registered`);
    this.entries.set(entry.name, entry);
  }

  get(name: string): ModelEntry {
    const entry = this.entries.get(name);
    if (entry === undefined) {
      const known = [...this.entries.keys()];
      throw new UserError(`unknown model '${name}': choose one of ${known.length > 0 ? known.join(', ') : '(none registered)'}`);
    }
    return entry;
  }

  list(): readonly ModelEntry[] {
    return [...this.entries.values()];
  }
}

export const registry = new ModelRegistry();
for (const entry of [resnet18, resnet50, efficientnetB3]) registry.register(entry);

export function getModel(name: string): ModelEntry {
  return registry.get(name);
}

export function listModels(): readonly ModelEntry[] {
  return registry.list();
}
