/**
 * What an export's metadata says about the run's temperature (RUN/calibration.json): the
 * temperature and the SHA-256 of the weights it was fitted on, and whether it applies to the
 * exported weights. A calibration of other weights (training went on since) is carried with
 * `applied: false` and the reason, so a reader of the metadata never scales by a stale T.
 */
import { readRunCalibration } from '../runs/index.js';

export interface ExportCalibration {
  method: 'temperature';
  /** softmax(logits / temperature) are the calibrated probabilities, when `applied`. */
  temperature: number;
  /** SHA-256 of the checkpoint weights (model.safetensors) the temperature was fitted on. */
  weightsSha256: string;
  /** True when `weightsSha256` is the exported weights' source hash: the temperature belongs to these weights. */
  applied: boolean;
  /** Why a temperature is not applied (absent when it is). */
  reason?: string;
  /** The val split it was fitted on: images, whether TTA was on, and the manifest's SHA-256. */
  fittedOn: { split: 'val'; images: number; tta: boolean; manifestSha256: string };
  nllBefore: number;
  nllAfter: number;
}

/** The run's calibration as an export describes it, or null when the run has none (`osteo calibrate` never ran). */
export async function exportCalibration(run: string, exportedWeightsSha256: string): Promise<ExportCalibration | null> {
  const record = await readRunCalibration(run);
  if (record === undefined) return null;
  const applied = record.weightsSha256 === exportedWeightsSha256;
  return {
    method: record.method,
    temperature: record.temperature,
    weightsSha256: record.weightsSha256,
    applied,
    ...(applied
      ? {}
      : {
          reason:
            `the run's calibration.json was fitted on weights of SHA-256 ${record.weightsSha256.slice(0, 12)}…, not on the exported ones (${exportedWeightsSha256.slice(0, 12)}…): ` +
            'its temperature is not applied; re-run `osteo calibrate` on this run and export again',
        }),
    fittedOn: { split: record.fittedOn.split, images: record.fittedOn.images, tta: record.fittedOn.tta, manifestSha256: record.fittedOn.manifestSha256 },
    nllBefore: record.nllBefore,
    nllAfter: record.nllAfter,
  };
}

/** The notes an export's metadata carries about its calibration: which T to apply, or why none is (none for a run never calibrated: `calibration` is null). */
export function calibrationNotes(calibration: ExportCalibration | null): string[] {
  if (calibration === null) return [];
  if (!calibration.applied) return [`not calibrated: ${calibration.reason}`];
  return [`calibrated: softmax(logits / ${calibration.temperature}) are the probabilities \`osteo predict\` reports (temperature scaling, fitted on ${calibration.fittedOn.images} val images${calibration.fittedOn.tta ? ' averaged with their mirrors, as `--tta` does' : ''})`];
}

/** What an export warns of: each model whose calibration.json is not applied, and why. */
export function calibrationWarnings(models: readonly [string, ExportCalibration | null][]): string[] {
  return models.flatMap(([name, calibration]) => (calibration !== null && !calibration.applied ? [`${name}: ${calibration.reason}`] : []));
}
