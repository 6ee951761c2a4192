/**
 * The model-card settings: one option table for the `osteo card` flags, their validation and the
 * docs. The checkpoint means what it means for `osteo eval`, so it is eval's record.
 */
import { z } from 'zod';
import { evalOptions } from './eval.js';
import { OptionValues, applyFlags, optional, required, schemaOf, validateValues, type ConfigOf } from './options.js';

export const cardOptions = {
  run: required(z.array(z.string().min(1)).min(1), 'training run directories the card describes (several: the runs and their soft-vote ensemble)', { flag: '--run <dir...>' }),
  eval: optional(
    z.array(z.string().min(1)).min(1),
    "`osteo eval` report folders of exactly these runs, in --run order: a report on the runs' own data is their performance, one on other data their external validation (default: the runs' default test report, eval-test-<run names>, when it exists)",
    { flag: '--eval <report...>' },
  ),
  checkpoint: evalOptions.checkpoint,
  out: optional(z.string().min(1), 'folder for model-card.md and model-card.json (default: card-<run names> beside the first run); a card osteo did not write there is never overwritten', { flag: '--out <dir>' }),
} as const;

export type CardConfig = ConfigOf<typeof cardOptions>;

export const cardConfigSchema = schemaOf(cardOptions);

/** The card settings from `osteo card` flags (by key): errors name the flag. */
export function resolveCardConfig(flags: Readonly<Record<string, unknown>>): CardConfig {
  const values = new OptionValues(cardOptions);
  applyFlags(values, flags);
  return validateValues(values, cardConfigSchema) as CardConfig;
}
