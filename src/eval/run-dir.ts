/**
 * Reading a training run directory (the layout of the team contract: RUN/config.json,
 * RUN/best/model.safetensors). Interim: the training room's openRun replaces this once it lands,
 * so that there is one loader; until then eval reads the fields it needs and validates them.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { EvalTransform } from '../data/index.js';
import { DataError, UserError } from '../errors.js';
import { getModel, type ModelName } from '../models/index.js';

export interface RunInfo {
  dir: string;
  config: Record<string, unknown>;
  model: ModelName;
  imageSize: number;
  transform: EvalTransform;
  numClasses: number;
}

export function runWeightsPath(dir: string, which: 'best' | 'last' = 'best'): string {
  return join(dir, which, 'model.safetensors');
}

export async function openRun(dir: string): Promise<RunInfo> {
  const configFile = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(configFile, 'utf8');
  } catch {
    throw new UserError(`${dir} is not a training run: ${configFile} is missing (runs are written by \`osteo train\`)`);
  }
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw new DataError(configFile, `not valid JSON: ${(error as Error).message}`);
  }
  if (typeof config.model !== 'string') throw new DataError(configFile, 'has no "model" name');
  const entry = getModel(config.model);
  const imageSize = config.imageSize ?? entry.defaultImageSize;
  if (typeof imageSize !== 'number' || !Number.isInteger(imageSize)) throw new DataError(configFile, `"imageSize" must be an integer, got ${JSON.stringify(imageSize)}`);
  const numClasses = config.numClasses ?? 3;
  if (typeof numClasses !== 'number' || !Number.isInteger(numClasses) || numClasses < 1) throw new DataError(configFile, `"numClasses" must be a positive integer`);
  const weights = runWeightsPath(dir, 'best');
  try {
    await stat(weights);
  } catch {
    throw new UserError(`run ${dir} has no best checkpoint (${weights}): it has not finished an epoch`);
  }
  return { dir: resolve(dir), config, model: entry.name, imageSize, transform: entry.transform(imageSize), numClasses };
}
