/**
 * How eval gets each model's screening thresholds and scores them: a member's come from its fresh
 * RUN/calibration.json when that holds thresholds for the targets and TTA setting asked for (chosen
 * by `osteo calibrate` on the run's val split); otherwise eval chooses them on the val split of the
 * evaluated dataset, as it does always for the ensemble, whose thresholds live in the report
 * (evaluation.json's `operatingPoints`) with what `osteo predict` needs to make the same score.
 */
import { resolve } from 'node:path';
import { classNames } from '../data/index.js';
import {
  applyTemperature,
  evaluateOperatingPoints,
  fitOperatingPoints,
  type EnsembleScoreSource,
  type FittedOperatingPoints,
  type ModelOperatingPoints,
  type OperatingPointsSection,
  type RandomSource,
  type ScreeningTargets,
} from '../report/index.js';
import { checkpointWeightsSha256, runCalibrationPath, type RunCalibrationRecord } from '../runs/index.js';
import { UserError, errorMessage } from '../util/index.js';
import { ensembleProbabilities } from './ensemble.js';
import type { CheckpointChoice, LoadedModel } from './inference.js';

export interface ScreeningSettings {
  targets: ScreeningTargets;
  /** Also give PPV and NPV at this prevalence. */
  prevalence?: number;
}

const sameTargets = (a: ScreeningTargets, b: ScreeningTargets) => a.sensitivity === b.sensitivity && a.specificity === b.specificity;

/**
 * Each member's stored thresholds, or undefined where eval must choose them on val: no fresh
 * calibration, a record without thresholds, thresholds for other targets or another TTA setting
 * (said in a warning: the record is then not what the report uses).
 */
export function storedOperatingPoints(models: readonly LoadedModel[], records: readonly RunCalibrationRecord[] | null, settings: ScreeningSettings, tta: boolean, warn: (message: string) => void): (FittedOperatingPoints | undefined)[] {
  return models.map((m, i) => {
    const record = records?.[i];
    const stored = record?.operatingPoints;
    if (record === undefined || stored === undefined) return undefined;
    const differs = !sameTargets(stored.targets, settings.targets) ? `targets sensitivity ${stored.targets.sensitivity} / specificity ${stored.targets.specificity}` : record.fittedOn.tta !== tta ? `TTA ${record.fittedOn.tta ? 'on' : 'off'}` : undefined;
    if (differs === undefined) return stored;
    warn(`${runCalibrationPath(m.run!)} holds screening thresholds for ${differs}, not the ones asked for now: eval chooses ${m.name}'s on the val split instead`);
    return undefined;
  });
}

/** Whether eval must predict the val split for the operating points: an ensemble, or a member without stored thresholds. */
export function operatingPointsNeedVal(models: readonly LoadedModel[], stored: readonly (FittedOperatingPoints | undefined)[]): boolean {
  return models.length > 1 || stored.some((s) => s === undefined);
}

export interface OperatingPointsInput {
  models: readonly LoadedModel[];
  stored: readonly (FittedOperatingPoints | undefined)[];
  /** The members' val probabilities (calibrated when the evaluation is); undefined when val was not predicted or is empty. */
  val: { probabilities: readonly Float32Array[]; labels: number[] } | undefined;
  /** The ensemble: its weights and its own temperature (undefined: uncalibrated), with the names eval gives it. */
  ensemble: { name: string; weights: number[]; temperature: number | undefined } | undefined;
  /** Each summarised model's probabilities on the evaluated split, members first, the ensemble last. */
  evaluated: { names: string[]; probabilities: readonly Float32Array[]; labels: number[]; groups: string[] };
  records: readonly RunCalibrationRecord[] | null;
  checkpoint: CheckpointChoice;
  split: string;
  dataDir: string;
  settings: ScreeningSettings;
  rng: () => RandomSource;
  resamples: number;
  warn: (message: string) => void;
}

/**
 * The report's operating-point section, or undefined (with the reason in a warning) when the
 * thresholds cannot be chosen: no val split, or one that lacks a class or fits no threshold.
 */
export async function operatingPointsSection(input: OperatingPointsInput): Promise<OperatingPointsSection | undefined> {
  const { models, settings } = input;
  const where = `the val split of ${input.dataDir}`;
  let fitted: FittedOperatingPoints[];
  try {
    fitted = models.map((m, i) => input.stored[i] ?? fitOnVal(input, (val) => val.probabilities[i]!, `${where} (${m.name})`));
    const e = input.ensemble;
    if (e !== undefined) {
      const ensembleScores = (val: NonNullable<OperatingPointsInput['val']>) => {
        const vote = ensembleProbabilities(val.probabilities, e.weights);
        return e.temperature === undefined ? vote : applyTemperature(vote, classNames.length, e.temperature);
      };
      fitted.push(fitOnVal(input, ensembleScores, `${where} (${e.name})`));
    }
  } catch (error) {
    if (!(error instanceof UserError)) throw error;
    input.warn(`no screening operating points in this report: ${errorMessage(error)}`);
    return undefined;
  }
  const { evaluated } = input;
  const sections: ModelOperatingPoints[] = evaluated.names.map((name, i) => ({
    name,
    kind: i < models.length ? 'model' : 'ensemble',
    thresholdsFrom: i < models.length && input.stored[i] !== undefined ? runCalibrationPath(models[i]!.run!) : `${where}, chosen by osteo eval`,
    fitted: fitted[i]!,
    views: evaluateOperatingPoints(evaluated.probabilities[i]!, evaluated.labels, evaluated.groups, classNames, fitted[i]!, { rng: input.rng(), resamples: input.resamples, prevalence: settings.prevalence }),
  }));
  return {
    targets: settings.targets,
    prevalence: settings.prevalence ?? null,
    calibrated: input.records !== null,
    fittedOnEvaluatedSplit: input.split === 'val',
    models: sections,
    ...(input.ensemble === undefined ? {} : { ensemble: await ensembleSource(input) }),
  };
}

function fitOnVal(input: OperatingPointsInput, scores: (val: NonNullable<OperatingPointsInput['val']>) => Float32Array, where: string): FittedOperatingPoints {
  if (input.val === undefined || input.val.labels.length === 0) throw new UserError(`${where} is empty, and the screening thresholds are chosen on val`);
  return fitOperatingPoints(scores(input.val), input.val.labels, classNames, input.settings.targets, where);
}

/** What `osteo predict --eval` checks and uses to make the ensemble's score as eval made it. */
async function ensembleSource(input: OperatingPointsInput): Promise<EnsembleScoreSource> {
  const e = input.ensemble!;
  const members = [];
  for (const [i, m] of input.models.entries()) {
    members.push({ name: m.name, run: resolve(m.run!), checkpoint: input.checkpoint, weightsSha256: await checkpointWeightsSha256(m.run!, input.checkpoint), temperature: input.records?.[i]?.temperature ?? null });
  }
  return { weights: e.weights, temperature: e.temperature ?? null, members };
}
