/**
 * The calibration settings: one option table for the `osteo calibrate` flags, their validation and
 * the docs. The checkpoint, TTA, batch and worker settings mean what they mean for `osteo eval`, so
 * they are eval's records.
 */
import { evalOptions } from './eval.js';
import { OptionValues, applyFlags, required, schemaOf, validateValues, type ConfigOf } from './options.js';
import { checkInferenceWorkers } from './train.js';
import { z } from 'zod';

export const calibrateOptions = {
  run: required(z.array(z.string().min(1)).min(1), "training run directories: each gets its own temperature, written to RUN/calibration.json", { flag: '--run <dir...>' }),
  data: required(z.string().min(1), "the runs' dataset directory with splits.csv (its val split is fitted on)", { flag: '--data <dir>' }),
  checkpoint: evalOptions.checkpoint,
  tta: evalOptions.tta,
  batchSize: evalOptions.batchSize,
  workers: evalOptions.workers,
  targetSensitivity: evalOptions.targetSensitivity,
  targetSpecificity: evalOptions.targetSpecificity,
} as const;

export type CalibrateConfig = ConfigOf<typeof calibrateOptions>;

export const calibrateConfigSchema = schemaOf(calibrateOptions);

/** The calibration settings from `osteo calibrate` flags (by key): errors name the flag. */
export function resolveCalibrateConfig(flags: Readonly<Record<string, unknown>>, backend = 'auto'): CalibrateConfig {
  const values = new OptionValues(calibrateOptions);
  applyFlags(values, flags);
  const config = validateValues(values, calibrateConfigSchema) as CalibrateConfig;
  checkInferenceWorkers(config.workers, backend, values.get('workers')?.origin);
  return config;
}
