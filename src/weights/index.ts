/**
 * The weights room: PyTorch `.pth` and `.safetensors` state dicts in and out, and the map between
 * them and the models' tfjs weights.
 */
import { extname } from 'node:path';
import { UserError } from '../errors.js';
import { readPth } from './pth.js';
import { readSafetensors } from './safetensors.js';
import type { StateDict } from './types.js';

export { readPth, writePth } from './pth.js';
export { readSafetensors, readSafetensorsMetadata, writeSafetensors } from './safetensors.js';
export { loadStateDict, modelToStateDict, weightSlots, type LoadOptions, type LoadReport, type WeightSlot } from './keymap.js';
export type { StateDict, StateTensor } from './types.js';

export const stateDictExtensions = ['.pth', '.pt', '.safetensors'] as const;

/** Reads a state dict by extension: .pth/.pt (torch.save zip) or .safetensors. */
export function readStateDict(path: string): Promise<StateDict> {
  const extension = extname(path).toLowerCase();
  if (extension === '.pth' || extension === '.pt') return readPth(path);
  if (extension === '.safetensors') return readSafetensors(path);
  throw new UserError(`cannot tell the format of ${path} from its extension: use ${stateDictExtensions.join(', ')}`);
}
