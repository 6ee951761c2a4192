/**
 * RUN/calibration.json, beside best/: the temperature fitted on the val split's outputs of one
 * checkpoint (`osteo calibrate`), and the screening thresholds stored with it. It names the
 * checkpoint's weights by SHA-256, so a calibration of weights that have since changed (training
 * resumed and found a better epoch) is recognised as stale instead of silently applied.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { readConfigFile } from '../config/index.js';
import type { FittedOperatingPoints } from '../report/index.js';
import { DataError, writeJsonAtomic } from '../util/index.js';
import type { CheckpointName } from './checkpoint.js';
import { runWeightsPath } from './run.js';

export interface RunCalibrationRecord {
  format: 'osteo-calibration';
  version: 1;
  method: 'temperature';
  /** softmax(logits / temperature) are the calibrated probabilities. */
  temperature: number;
  checkpoint: CheckpointName;
  /** SHA-256 of the checkpoint's model.safetensors the temperature was fitted on. */
  weightsSha256: string;
  /** What it was fitted on: the val split of a dataset (absolute path, its manifest's hash). */
  fittedOn: { split: 'val'; data: string; manifestSha256: string; images: number; tta: boolean };
  /** Mean NLL on those images before and after. */
  nllBefore: number;
  nllAfter: number;
  /**
   * The screening thresholds chosen on the same val images' calibrated probabilities (report/screening.ts):
   * each binary view's operating points at the targets recorded.
   */
  operatingPoints?: FittedOperatingPoints;
}

export function runCalibrationPath(run: string): string {
  return join(run, 'calibration.json');
}

/** SHA-256 (hex) of a run checkpoint's weights file, streamed. */
export async function checkpointWeightsSha256(run: string, checkpoint: CheckpointName): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(runWeightsPath(run, checkpoint))) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function writeRunCalibration(run: string, record: RunCalibrationRecord): Promise<string> {
  const file = runCalibrationPath(run);
  await writeJsonAtomic(file, record);
  return file;
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isFraction = (v: unknown): boolean => isNumber(v) && v > 0 && v < 1;

/** The shape predict and eval read: targets in (0, 1), and per view its positive classes and named, finite thresholds. */
function validOperatingPoints(value: unknown): boolean {
  const o = value as Partial<FittedOperatingPoints> | null;
  return (
    typeof o === 'object' &&
    o !== null &&
    isFraction(o.targets?.sensitivity) &&
    isFraction(o.targets?.specificity) &&
    Array.isArray(o.views) &&
    o.views.every(
      (v) =>
        typeof v?.view === 'string' &&
        Array.isArray(v.positiveClasses) &&
        v.positiveClasses.every(Number.isInteger) &&
        Array.isArray(v.points) &&
        v.points.every((p) => typeof p?.name === 'string' && isNumber(p.threshold)),
    )
  );
}

/** RUN/calibration.json, or undefined when the run has none; a damaged one is a DataError naming it. */
export async function readRunCalibration(run: string): Promise<RunCalibrationRecord | undefined> {
  const file = runCalibrationPath(run);
  if (!existsSync(file)) return undefined;
  const json = (await readConfigFile(file, 'run calibration')) as Partial<RunCalibrationRecord> | null;
  const fitted = json?.fittedOn;
  const valid =
    json?.format === 'osteo-calibration' &&
    json.version === 1 &&
    json.method === 'temperature' &&
    isNumber(json.temperature) &&
    json.temperature > 0 &&
    (json.checkpoint === 'best' || json.checkpoint === 'last') &&
    typeof json.weightsSha256 === 'string' &&
    typeof fitted?.data === 'string' &&
    typeof fitted.manifestSha256 === 'string' &&
    isNumber(fitted.images) &&
    isNumber(json.nllBefore) &&
    isNumber(json.nllAfter) &&
    (json.operatingPoints === undefined || validOperatingPoints(json.operatingPoints));
  if (!valid) throw new DataError(file, 'is not an osteo calibration record (version 1, a positive temperature): re-run `osteo calibrate` for this run');
  return json as RunCalibrationRecord;
}
