/**
 * `osteo calibrate`: temperature scaling of each run, fitted on the val split of the dataset the run
 * was trained on (never on test), and stored in RUN/calibration.json (runs/). eval and predict then
 * report calibrated probabilities. The temperature is fitted on the outputs the run produces with
 * the chosen checkpoint and TTA setting, which the record keeps.
 */
import { resolve } from 'node:path';
import { classNames, readSplitManifest, splitManifestPath } from '../data/index.js';
import { evalOptions, type EvalSplit } from '../config/index.js';
import { inferenceWorkers } from '../engine/index.js';
import type { BackendHandle } from '../backend/index.js';
import { applyTemperature, calibrationReport, checkTarget, fitOperatingPoints, requireEveryClass, fitTemperature, type CalibrationReport, type FittedTemperature, type ScreeningTargets } from '../report/index.js';
import { checkpointWeightsSha256, manifestSha256, readRunSplit, writeRunCalibration, type RunCalibrationRecord } from '../runs/index.js';
import { UserError } from '../util/index.js';
import { manifestContentHashes, predictRows } from './evaluate.js';
import { disambiguateNames, disposeModels, loadAll, loadRunForInference, type CheckpointChoice, type LoadedModel } from './inference.js';

export interface CalibrateOptions {
  backend: BackendHandle;
  runs: string[];
  dataDir: string;
  checkpoint?: CheckpointChoice;
  tta?: boolean;
  batchSize?: number;
  workers?: number;
  /** The targets of the screening operating points chosen with the temperature (default: the eval table's). */
  targets?: ScreeningTargets;
  onWarning?: (message: string) => void;
  onProgress?: (event: { split: EvalSplit; done: number; total: number }) => void;
}

export interface RunCalibration {
  run: string;
  name: string;
  file: string;
  record: RunCalibrationRecord;
  fitted: FittedTemperature;
  /** The val split's calibration metrics before and after scaling. */
  before: CalibrationReport;
  after: CalibrationReport;
}

/**
 * The val split must be the run's own: a run trained with this dataset's current manifest (its
 * split.json), since a val image of another split may be one it trained on.
 */
async function checkOwnSplit(run: string, dataDir: string, warn: (message: string) => void): Promise<void> {
  const record = await readRunSplit(run);
  const current = await manifestSha256(dataDir);
  if (record === undefined) {
    warn(`run ${run} has no split record (split.json): osteo cannot check that the val split of ${splitManifestPath(dataDir)} is the one it was trained with`);
    return;
  }
  if (record.data !== resolve(dataDir) || record.manifestSha256 !== current) {
    throw new UserError(
      `run ${run} was trained on ${record.data} (splits.csv SHA-256 ${record.manifestSha256}), not on ${resolve(dataDir)} (SHA-256 ${current}): ` +
        "a temperature is fitted on the run's own val split only; give --data the folder the run was trained on, with the splits.csv it was trained with",
    );
  }
}

export async function calibrateRuns(options: CalibrateOptions): Promise<RunCalibration[]> {
  const checkpoint = options.checkpoint ?? 'best';
  const tta = options.tta ?? evalOptions.tta.default;
  const warn = options.onWarning ?? (() => undefined);
  const manifest = await readSplitManifest(options.dataDir);
  const valRows = manifest.filter((r) => r.split === 'val');
  if (valRows.length === 0) throw new UserError(`the val split of ${options.dataDir} is empty: a temperature is fitted on val; re-split with a val fraction (\`osteo data split --val 0.15\`)`);
  const targets = options.targets ?? { sensitivity: evalOptions.targetSensitivity.default, specificity: evalOptions.targetSpecificity.default };
  checkTarget('sensitivity', targets.sensitivity);
  checkTarget('specificity', targets.specificity);
  // Refused before any model runs: the thresholds are chosen with the temperature, on the same images.
  requireEveryClass(valRows.map((r) => r.label), classNames, `the val split of ${options.dataDir}`);
  for (const run of options.runs) await checkOwnSplit(run, options.dataDir, warn);
  const hashes = await manifestContentHashes(options.dataDir);
  const models: LoadedModel[] = [];
  try {
    const workers = inferenceWorkers(options.workers, valRows.length, options.backend.capabilities);
    models.push(...(await loadAll(options.runs.map((run) => () => loadRunForInference(run, { backend: options.backend, checkpoint, workers })))));
    disambiguateNames(models);
    const probabilities = await predictRows(models, options.dataDir, valRows, 'val', hashes, { tta, batchSize: options.batchSize, onProgress: options.onProgress });
    const labels = valRows.map((r) => r.label);
    const data = { split: 'val' as const, data: resolve(options.dataDir), manifestSha256: await manifestSha256(options.dataDir), images: valRows.length, tta };
    const results: RunCalibration[] = [];
    // Every run's record is made before any is written: a refusal (a view no threshold fits) writes nothing.
    for (const [i, m] of models.entries()) {
      const fitted = fitTemperature(probabilities[i]!, labels, m.numClasses);
      if (fitted.atBracketEdge) {
        const why = fitted.temperature > 1 ? 'the val NLL falls all the way towards uniform probabilities, so the outputs are no better than chance on val' : 'the val NLL falls all the way towards one-hot probabilities: every val image is right';
        warn(`${m.name}: the fitted temperature ${fitted.temperature.toPrecision(4)} lies on the edge of the search bracket [${fitted.bracket.join(', ')}]: ${why}`);
      }
      const calibrated = applyTemperature(probabilities[i]!, m.numClasses, fitted.temperature);
      const operatingPoints = fitOperatingPoints(calibrated, labels, classNames, targets, `the val split of ${options.dataDir} (${m.name})`);
      const record: RunCalibrationRecord = {
        format: 'osteo-calibration',
        version: 1,
        method: 'temperature',
        temperature: fitted.temperature,
        checkpoint,
        weightsSha256: await checkpointWeightsSha256(m.run!, checkpoint),
        fittedOn: data,
        nllBefore: fitted.nllBefore,
        nllAfter: fitted.nllAfter,
        operatingPoints,
      };
      const before = calibrationReport(probabilities[i]!, labels, m.numClasses);
      const after = calibrationReport(calibrated, labels, m.numClasses);
      results.push({ run: m.run!, name: m.name, file: '', record, fitted, before, after });
    }
    for (const r of results) r.file = await writeRunCalibration(r.run, r.record);
    return results;
  } finally {
    await disposeModels(models);
  }
}
