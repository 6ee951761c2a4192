/** The default model provider: osteo's model registry and its torchvision weight mapping. */
import { getModel, seedModelRandomness, type ModelName } from '../models/index.js';
import type { ModelProvider } from './provider.js';

export const modelProvider: ModelProvider = {
  build: (name, options) => getModel(name).build(options),
  seedRandomness: seedModelRandomness,
  async toStateDict(model, name) {
    const weights = await import('../weights/index.js');
    return weights.modelToStateDict(model, name as ModelName);
  },
  async loadStateDict(model, name, dict, options) {
    const weights = await import('../weights/index.js');
    return weights.loadStateDict(model, name as ModelName, dict, { strict: true, allowHeadSwap: options.allowHeadSwap ?? false });
  },
};
