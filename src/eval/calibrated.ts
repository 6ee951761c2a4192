/**
 * How eval uses the runs' calibration: each run's RUN/calibration.json temperature, when it is
 * fresh (fitted on the very weights being evaluated), and the ensemble's own temperature, fitted on
 * the val split's soft vote of the calibrated members (on the vote's probabilities: softmax of
 * log(vote) / T).
 */
import { resolve } from 'node:path';
import { applyTemperature, calibrationReport, fitTemperature, softVote, type CalibrationSection, type ModelCalibration } from '../report/index.js';
import { checkpointWeightsSha256, readRunCalibration, runCalibrationPath, type RunCalibrationRecord } from '../runs/index.js';
import type { CheckpointChoice, LoadedModel } from './inference.js';

/**
 * Every model's fresh calibration record, or null (uncalibrated evaluation) when one lacks it; a
 * stale or partial set is said in a warning, never silently applied or silently dropped.
 */
export async function freshCalibrations(models: readonly LoadedModel[], checkpoint: CheckpointChoice, warn: (message: string) => void): Promise<RunCalibrationRecord[] | null> {
  const records: (RunCalibrationRecord | undefined)[] = [];
  for (const m of models) {
    const record = m.run === undefined ? undefined : await readRunCalibration(m.run);
    if (record !== undefined && (record.checkpoint !== checkpoint || record.weightsSha256 !== (await checkpointWeightsSha256(m.run!, checkpoint)))) {
      warn(`${runCalibrationPath(m.run!)} was fitted on other weights than the ${checkpoint} checkpoint evaluated now (training went on since, or another checkpoint): it is not used; re-run \`osteo calibrate --run ${m.run}\``);
      records.push(undefined);
      continue;
    }
    records.push(record);
  }
  const missing = models.filter((_, i) => records[i] === undefined);
  if (missing.length === 0) return records as RunCalibrationRecord[];
  if (missing.length < models.length) {
    warn(`not every run is calibrated (${missing.map((m) => m.name).join(', ')} ${missing.length === 1 ? 'is' : 'are'} not): the report gives uncalibrated probabilities; run \`osteo calibrate\` on every run`);
  }
  return null;
}

/** The calibrated probabilities of each member (softmax(log p / T)). */
export function calibrateMembers(probabilities: readonly Float32Array[], models: readonly LoadedModel[], records: readonly RunCalibrationRecord[]): Float32Array[] {
  return probabilities.map((p, i) => applyTemperature(p, models[i]!.numClasses, records[i]!.temperature));
}

/** The ensemble's own temperature, fitted on the val soft vote of the calibrated members. */
export function fitEnsembleTemperature(valCalibrated: readonly Float32Array[], weights: readonly number[], valLabels: ArrayLike<number>, numClasses: number): number {
  return fitTemperature(softVote(valCalibrated, weights), valLabels, numClasses).temperature;
}

/** The report's calibration section: each member and the ensemble, before and after, on the evaluated images. */
export function calibrationSection(
  input: { names: string[]; raw: readonly Float32Array[]; calibrated: readonly Float32Array[]; records: readonly RunCalibrationRecord[] },
  ensemble: { name: string; raw: Float32Array; calibrated: Float32Array; temperature: number } | undefined,
  labels: ArrayLike<number>,
  numClasses: number,
  evaluated: { split: string; dataDir: string },
): CalibrationSection {
  const models: ModelCalibration[] = input.names.map((name, i) => ({
    name,
    temperature: input.records[i]!.temperature,
    fittedOn: `val split of ${input.records[i]!.fittedOn.data} (${input.records[i]!.fittedOn.images} images)`,
    before: calibrationReport(input.raw[i]!, labels, numClasses),
    after: calibrationReport(input.calibrated[i]!, labels, numClasses),
  }));
  if (ensemble !== undefined) {
    models.push({
      name: ensemble.name,
      temperature: ensemble.temperature,
      fittedOn: `val split of ${resolve(evaluated.dataDir)}, on the soft vote of the calibrated members`,
      before: calibrationReport(ensemble.raw, labels, numClasses),
      after: calibrationReport(ensemble.calibrated, labels, numClasses),
    });
  }
  const fittedOnEvaluatedSplit = evaluated.split === 'val' && input.records.some((r) => r.fittedOn.data === resolve(evaluated.dataDir));
  return { models, fittedOnEvaluatedSplit };
}
