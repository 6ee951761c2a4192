/**
 * How the engine obtains models: by name, from a module that both the main thread and every worker
 * import. The default is osteo's registry; tests point `providerModule` at a module of tiny models.
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import type { ModelBuildOptions } from '../models/index.js';
import type { LoadReport, StateDict } from './types.js';

export interface ModelProvider {
  build(name: string, options: ModelBuildOptions): tfl.LayersModel;
  /** Draw every random mask inside the model from this seed from now on. */
  seedRandomness(model: tfl.LayersModel, seed: number): void;
  toStateDict(model: tfl.LayersModel, name: string): Promise<StateDict>;
  loadStateDict(model: tfl.LayersModel, name: string, dict: StateDict, options: { allowHeadSwap?: boolean }): Promise<LoadReport>;
}

export const registryProviderModule = new URL(`./registry-provider${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href;

export async function loadProvider(module: string | undefined): Promise<ModelProvider> {
  const imported = (await import(module ?? registryProviderModule)) as { modelProvider?: ModelProvider };
  if (!imported.modelProvider) throw new Error(`${module}: exports no modelProvider`);
  return imported.modelProvider;
}
