/** weights: PyTorch `.pth` and `.safetensors` state dicts and ONNX models (graph + torchvision-keyed initializers) in and out, the torchvision key map, building a model with given weights, and fetching the checkpoints of weight tags. */
import { extname } from 'node:path';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { ModelBuildOptions, ModelEntry } from '../models/index.js';
import { UserError } from '../util/index.js';
import { readPth } from './pth.js';
import { readSafetensors } from './safetensors.js';
import { loadStateDict, type LoadReport } from './keymap.js';
import type { StateDict } from './types.js';

export { readPth, writePth } from './pth.js';
export { readSafetensors, readSafetensorsMetadata, writeSafetensors } from './safetensors.js';
export { loadStateDict, modelToStateDict, weightSlots, type LoadOptions, type LoadReport, type WeightSlot } from './keymap.js';
export type { StateDict, StateTensor } from './types.js';
export { decodeOnnx, encodeOnnx, modelToOnnx, onnxIrVersion, onnxWeightsFor, readOnnx, readOnnxStateDict, writeOnnx, type OnnxFile } from './onnx.js';

export const stateDictExtensions = ['.pth', '.pt', '.safetensors'] as const;

/** Reads a state dict by extension: .pth/.pt (torch.save zip) or .safetensors. */
export function readStateDict(path: string): Promise<StateDict> {
  const extension = extname(path).toLowerCase();
  if (extension === '.pth' || extension === '.pt') return readPth(path);
  if (extension === '.safetensors') return readSafetensors(path);
  throw new UserError(`cannot tell the format of ${path} from its extension: use ${stateDictExtensions.join(', ')}`);
}

/**
 * The one way a trained model comes back to life: build the architecture (no random init: every
 * weight is about to be overwritten) and load `dict` into it strictly — every key must fit. The
 * caller owns (and disposes) the model; on any load error it is disposed here.
 */
export function buildWithWeights(entry: ModelEntry, dict: StateDict, options: Omit<ModelBuildOptions, 'initialize'>): { model: tfl.LayersModel; report: LoadReport } {
  const model = entry.build({ ...options, initialize: false });
  try {
    return { model, report: loadStateDict(model, entry.name, dict, { strict: true }) };
  } catch (error) {
    model.dispose();
    throw error;
  }
}
export { defaultWeightsDir, fetchPretrainedWeights, fetchCheckpoint, checkpointUrl, pretrainedPath, sha256File, type Checkpoint, type FetchWeightsOptions, type FetchWeightsResult } from './fetch.js';
