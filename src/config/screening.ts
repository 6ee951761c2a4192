/**
 * The screening settings: the targets the operating points are chosen for (`osteo calibrate` and
 * `osteo eval`), the prevalence eval also gives PPV and NPV at, and predict's choice of operating
 * point with the eval report its ensemble's thresholds come from.
 */
import { z } from 'zod';
import { OptionValues, applyFlags, optional, option, schemaOf, validateValues, type ConfigOf } from './options.js';

/** Strictly between 0 and 1: a sensitivity of 1 is reached by calling everyone positive, 0 by no one. */
const fraction = z.number().gt(0).lt(1);

export const screeningTargetOptions = {
  targetSensitivity: option(fraction, 0.9, 'the sensitivity the sens operating point reaches on val (the highest threshold with val sensitivity ≥ it), in (0, 1)', {
    flag: '--target-sensitivity <p>',
  }),
  targetSpecificity: option(fraction, 0.9, 'the specificity the spec operating point reaches on val (the lowest threshold with val specificity ≥ it), in (0, 1)', {
    flag: '--target-specificity <p>',
  }),
} as const;

export const prevalenceOption = optional(fraction, 'also give PPV and NPV at this prevalence, in (0, 1) (Bayes from the test sensitivity and specificity)', { flag: '--prevalence <p>' });

/** `sens90`, `spec92.5`, `youden`: the names the operating points get from their rule and target. */
export const operatingPointPattern = /^(?:(?:sens|spec)\d{1,2}(?:\.\d{1,2})?|youden)$/;

export const predictScreeningOptions = {
  operatingPoint: optional(
    z.string().regex(operatingPointPattern, 'expected sensNN, specNN or youden (e.g. sens90)'),
    "print each image's screening decision at this operating point (sens90, spec90, youden: the names RUN/calibration.json gives them), for both binary views",
    { flag: '--operating-point <name>' },
  ),
  eval: optional(z.string().min(1), "an osteo eval report folder of exactly these runs: the ensemble's decision uses its thresholds, weights and temperature", { flag: '--eval <dir>' }),
} as const;

export type PredictScreeningConfig = ConfigOf<typeof predictScreeningOptions>;

/** predict's screening flags (by key), validated: errors name the flag. */
export function resolvePredictScreening(flags: Readonly<Record<string, unknown>>): PredictScreeningConfig {
  const values = new OptionValues(predictScreeningOptions);
  applyFlags(values, flags);
  return validateValues(values, schemaOf(predictScreeningOptions)) as PredictScreeningConfig;
}
