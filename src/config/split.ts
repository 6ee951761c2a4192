/**
 * The split settings (`osteo data split` flags, a pipeline config's `data` keys): one option table whose
 * defaults are the data room's splitDefaults, so the published 70/15/15, seed 42 is written once.
 */
import { z } from 'zod';
import { splitDefaults } from '../data/index.js';
import { UserError } from '../util/index.js';
import { OptionValues, applyFlags, keyAt, option, schemaOf, validateValues, type ConfigOf } from './options.js';

const fraction = z.number().min(0).lt(1);

export const splitOptions = {
  val: option(fraction, splitDefaults.val, 'validation fraction', { flag: '--val <fraction>' }),
  test: option(fraction, splitDefaults.test, 'test fraction', { flag: '--test <fraction>' }),
  seed: option(z.int().min(0), splitDefaults.seed, 'seed of the shuffle that deals duplicate groups to splits', { flag: '--seed <n>' }),
} as const;

export type SplitConfig = ConfigOf<typeof splitOptions>;

export const splitConfigSchema = schemaOf(splitOptions);

/**
 * What the schema of one key cannot say: val and test together must leave images for training.
 * `prefix` is where the split keys sit in the config (`data.` in a pipeline config).
 */
export function checkSplitFractions(config: SplitConfig, values: OptionValues, prefix = ''): void {
  if (config.val + config.test < 1) return;
  const key = `${prefix}${values.get(`${prefix}test`)!.layer >= values.get(`${prefix}val`)!.layer ? 'test' : 'val'}`;
  throw new UserError(`invalid config: ${keyAt(values.get(key)!.origin, key)}: val + test must leave images for training (got ${config.val} + ${config.test})`);
}

/** The split settings from `osteo data split` flags (by key; absent ones take the table's defaults). */
export function resolveSplitConfig(flags: Readonly<Record<string, unknown>> = {}): SplitConfig {
  const values = new OptionValues(splitOptions);
  applyFlags(values, flags);
  const config = validateValues(values, splitConfigSchema) as SplitConfig;
  checkSplitFractions(config, values);
  return config;
}
