/**
 * Augmentation configs as files: the presets in configs/augment/ and any JSON file, read through the
 * one config reader and validated against the schema that data/ builds from its ops list. Errors name
 * the file and the key.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { augmentConfigSchema, type AugmentConfig } from '../data/index.js';
import { UserError } from '../util/index.js';
import { readConfigFile } from './files.js';
import { actionableIssues, describeValue } from './options.js';

export const augmentPresets = ['none', 'seed', 'strong'] as const;

/** configs/augment/ — two levels above this file both in src/config and in dist/config. */
export const augmentPresetDir = fileURLToPath(new URL('../../configs/augment/', import.meta.url));

/** The value at a schema issue's path inside `root`, for the message (undefined where it is absent). */
function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const part of path) value = typeof value === 'object' && value !== null ? (value as Record<PropertyKey, unknown>)[part] : undefined;
  return value;
}

function describeIssue(issue: z.core.$ZodIssue, root: unknown): string {
  const where = issue.path.length === 0 ? 'at the top level' : `in "${issue.path.join('.')}"`;
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => `unknown key "${key}" ${where}`).join('; ');
  }
  const value = valueAt(root, issue.path);
  const got = value === undefined ? '' : ` (got ${describeValue(value)})`;
  return `${issue.path.join('.') || '(config)'}: ${issue.message}${got}`;
}

/** Validate a parsed config object; `source` (a file, or what the object is) names it in errors. */
export function parseAugmentConfig(value: unknown, source = 'augmentation config'): AugmentConfig {
  const parsed = augmentConfigSchema.safeParse(value);
  if (!parsed.success) {
    const allowed = Object.keys(augmentConfigSchema.shape).join(', ');
    throw new UserError(`${source}: ${actionableIssues(parsed.error.issues).map((issue) => describeIssue(issue, value)).join('; ')} (keys: ${allowed})`);
  }
  return parsed.data;
}

/** 'none' | 'seed' | 'strong' (configs/augment/<name>.json) or a path to a JSON file. */
export async function loadAugmentConfig(fileOrPreset: string): Promise<AugmentConfig> {
  const isPreset = (augmentPresets as readonly string[]).includes(fileOrPreset);
  const file = isPreset ? `${augmentPresetDir}${fileOrPreset}.json` : fileOrPreset;
  // A name that is neither a preset nor a file is most often a mistyped preset: say which exist.
  if (!isPreset && !existsSync(file)) throw new UserError(`no augmentation config '${fileOrPreset}': give a preset (${augmentPresets.join(', ')}) or a JSON file`);
  return parseAugmentConfig(await readConfigFile(file, 'augmentation config'), file);
}
