/**
 * `osteo eval`: every run's best model on one split of the manifest, plus the soft-vote ensemble,
 * with the report files. Ensemble weights `auto` are fitted on the val split BEFORE any image of the
 * evaluated split is read, from val predictions only.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import {
  applyEvalTransform,
  classNames,
  manifestContentHashes,
  decodeUnderWindows,
  verifyContentHash,
  type ManifestHash,
  readSplitManifest,
  splitManifestPath,
  type DicomWindow,
  type EvalTransform,
  type ManifestRow,
  type RgbImage,
} from '../data/index.js';
import { DataError, UserError, checkWritableFolder, createRng, environmentUserError, errorMessage, recoverStagedFolder, sha256File, stageFolder, writeJsonAtomic, type StagedFolder } from '../util/index.js';
import { ageBandEdges, evalOptions, type EvalSplit } from '../config/index.js';
import { calibrateMembers, calibrationSection, fitEnsembleTemperature, freshCalibrations } from './calibrated.js';
import { ensembleProbabilities, fitEnsembleWeights, parseEnsembleWeights } from './ensemble.js';
import { operatingPointsNeedVal, operatingPointsSection, storedOperatingPoints, type ScreeningSettings } from './operating-points.js';
import { disambiguateNames, disposeModels, inputKey, loadAll, loadRunForInference, predictProbabilities, windowKey, type CheckpointChoice, type LoadedModel } from './inference.js';
import { inferenceWorkers } from '../engine/index.js';
import type { BackendHandle } from '../backend/index.js';
import {
  applyTemperature,
  compareWithEnsemble,
  externalSection,
  metricRegistry,
  operatingPointsJson,
  pairedRecordKeys,
  reportSummaryJson,
  subgroupResults,
  subgroupsSection,
  summarize,
  writeEvaluationReport,
  type OverallMetric,
  type EvaluationReport,
  type ModelSummary,
  type ReportSection,
  type ScreeningTargets,
  type TrainOverlap,
  type WrittenReport,
} from '../report/index.js';
import { externalResults, prepareExternal, type ExternalData } from './external.js';
import { checkTrainOverlap } from './overlap.js';
import { readSubgroupMetadata, type SubgroupMetadata } from './subgroups.js';

export type { EvalSplit };

/** What an evaluation scores: a split of the manifest, or every image of an external folder. */
export type EvaluatedSet = EvalSplit | 'external';

/**
 * What to evaluate, validated by the caller (`osteo eval` through the eval option table, a pipeline
 * through its config); an absent setting takes the eval table's default, so none is written here.
 */
export interface EvaluateOptions {
  /** The backend the command chose: every model's inference engine computes on it. */
  backend: BackendHandle;
  runs: string[];
  dataDir: string;
  split?: EvalSplit;
  /** Evaluate every image of dataDir, a labelled folder never split, after matching it against each run's training images (eval/external.ts). */
  external?: boolean;
  /** A CSV of per-image attributes (eval/subgroups.ts): metrics per subgroup. */
  metadata?: string;
  /** Edges of the age bands, e.g. '50,60,70' (the eval table's ageBands). */
  ageBands?: string;
  /** Fewest images of a subgroup reported with numbers. */
  minSubgroup?: number;
  /** Which checkpoint of each run (default best). */
  checkpoint?: CheckpointChoice;
  tta?: boolean;
  /** --dicom-window: how DICOM files become gray levels for every run (default: each run's recorded window). */
  dicomWindow?: DicomWindow;
  /** `auto` | `equal` | `w1,w2,…` (one weight per run, in order). */
  weights?: string;
  /** Where the report goes; null writes nothing. Default: defaultEvalOutDir. */
  outDir?: string | null;
  /** The caller owns outDir (reproduce's OUT/eval): whatever report is there is replaced whole instead of refused. */
  replaceReport?: boolean;
  batchSize?: number;
  /** Worker threads per model (default: inferenceWorkers' — one per core on wasm when there are images enough). */
  workers?: number;
  /** Seed of the bootstrap resampling. */
  seed?: number;
  resamples?: number;
  /** The targets of the screening operating points (default: the eval table's). */
  targets?: ScreeningTargets;
  /** Also give PPV and NPV at this prevalence. */
  prevalence?: number;
  /** false: no operating-point section (and no val predictions for it): a caller that reads only the headline metrics. */
  operatingPoints?: boolean;
  /** How an image file becomes a normalized crop (tests substitute one that records what is read; it skips the content-hash check). */
  readImage?: (file: string, transform: EvalTransform) => Promise<Float32Array>;
  /** Progress: which split is being predicted, images done so far. */
  onProgress?: (event: { split: EvaluatedSet; done: number; total: number }) => void;
  /** Told the loaded models, before any image is read (tests check where they run: `engine.workers`). */
  onModelsLoaded?: (models: readonly LoadedModel[]) => void;
  /** Called once the ensemble weights are fixed (tests check no evaluated image was read before). */
  onWeightsFitted?: (weights: number[]) => void;
  /** Evaluate although some evaluated images are training images of the runs (default: refused); the count is reported either way. */
  allowTrainOverlap?: boolean;
  /** Warnings: a run without a split record, a manifest without content hashes. */
  onWarning?: (message: string) => void;
}

export const ensembleName = 'ensemble (soft vote)';

/** The report folder's record of what it evaluated: another evaluation must not write over it. */
export const evaluationRecordFile = 'evaluation.json';

export interface EvaluationRecord {
  format: 'osteo-evaluation';
  version: 2;
  split: EvaluatedSet;
  data: string;
  /** Absolute run directories, in --run order. */
  runs: string[];
  checkpoint: CheckpointChoice;
  /** SHA-256 of each run's evaluated weights file, in --run order: which weights these metrics are of (the web viewer matches by them). */
  weightsSha256: string[];
  /** How many evaluated images are training images of the runs (report/overlap.ts; an external folder's copies are in its own section). */
  trainOverlap?: TrainOverlap;
  /** The report's numbers, as `osteo eval --json` prints them (report/results.ts, reportSummaryJson), less the operating points, which have a key of their own. */
  summary?: unknown;
}

/**
 * `eval-<split>-<run names>` beside the first run: each set of runs gets its own folder, so one
 * evaluation never lands on another's report. Very long name lists end in a short hash instead.
 */
export function defaultEvalOutDir(runs: string[], split: EvaluatedSet, checkpoint: CheckpointChoice = 'best', dataDir?: string): string {
  // An external folder's report names the folder too: two external sets of the same runs get two reports.
  const set = split === 'external' && dataDir !== undefined ? `external-${basename(resolve(dataDir)).replace(/[^A-Za-z0-9_.-]+/g, '_')}` : split;
  return runSetFolder(`eval-${set}`, runs, checkpoint);
}

/** `<prefix>-<run names>` beside the first run (`-last` for the last checkpoints): a folder of its own for each set of runs. */
export function runSetFolder(prefix: string, runs: readonly string[], checkpoint: CheckpointChoice = 'best'): string {
  const absolute = runs.map((r) => resolve(r));
  let names = absolute.map((r) => basename(r).replace(/[^A-Za-z0-9_.-]+/g, '_')).join('+');
  if (names.length > 80) names = `${names.slice(0, 60)}-${createHash('sha256').update(absolute.join('\n')).digest('hex').slice(0, 10)}`;
  return join(dirname(absolute[0]!), `${prefix}-${names}${checkpoint === 'last' ? '-last' : ''}`);
}

/** Files an osteo evaluation writes: a folder holding only these (and no record) is an older report of ours. */
const reportEntry = /^(results\.csv|results\.md|predictions\.csv|comparisons\.csv|reliability\.png|(confusion|roc|calibration|pr|decision_curve)_[a-z0-9_]+\.png|evaluation\.json)$/;

/** What makes a report folder this evaluation's own: the same split (and for an external folder, the same folder), runs and checkpoint (new weights of them replace it). */
type ReportIdentity = Pick<EvaluationRecord, 'split' | 'data' | 'runs' | 'checkpoint'>;

const sameRecord = (a: ReportIdentity, b: ReportIdentity) =>
  a.split === b.split && (a.split !== 'external' || a.data === b.data) && a.checkpoint === b.checkpoint && a.runs.length === b.runs.length && a.runs.every((r, i) => r === b.runs[i]);

/**
 * Refuse an output folder that is not this evaluation's to replace: a file, a folder of other
 * files, or another evaluation's report (other runs, split or checkpoint).
 */
async function checkReportFolder(outDir: string, record: ReportIdentity): Promise<void> {
  if (!existsSync(outDir)) return;
  if (!(await stat(outDir)).isDirectory()) throw new UserError(`--out ${outDir} is a file, not a folder: give a folder for the report`);
  const entries = (await readdir(outDir)).filter((e) => !e.startsWith('.'));
  if (entries.length === 0) return;
  const recordFile = join(outDir, evaluationRecordFile);
  if (existsSync(recordFile)) {
    let previous: EvaluationRecord;
    try {
      previous = JSON.parse(await readFile(recordFile, 'utf8')) as EvaluationRecord;
    } catch (error) {
      throw new DataError(recordFile, `not valid JSON (${errorMessage(error)}): move the folder aside or give another --out`);
    }
    if (previous?.format === 'osteo-evaluation' && Array.isArray(previous.runs) && sameRecord(previous, record)) return;
    const what = Array.isArray(previous?.runs) ? `the ${previous.split} split of ${previous.runs.join(', ')} (${previous.checkpoint} checkpoint)` : 'another evaluation';
    throw new UserError(`--out ${outDir} holds the report of ${what}, not of these runs: give another --out (or omit it: the default folder names the runs), or delete that folder`);
  }
  const foreign = entries.filter((e) => !reportEntry.test(e));
  if (foreign.length > 0) {
    throw new UserError(`--out ${outDir} holds files osteo eval did not write (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''}): give an empty or new folder for the report`);
  }
}

/** File-system conditions (read-only, full, not a folder, no permission) are the user's to fix. */
function environmentError(path: string, error: unknown): unknown {
  return environmentUserError(error, path) ?? error;
}

/**
 * Each model's probabilities on `rows`, images decoded once and preprocessed once per distinct
 * transform, a batch at a time; reading ahead never goes beyond `rows`.
 */
export async function predictRows<S extends EvaluatedSet>(
  models: LoadedModel[],
  dataDir: string,
  rows: readonly Pick<ManifestRow, 'path'>[],
  split: S,
  hashes: Map<string, ManifestHash>,
  options: Pick<EvaluateOptions, 'tta' | 'batchSize' | 'readImage'> & { onProgress?: (event: { split: S; done: number; total: number }) => void },
): Promise<Float32Array[]> {
  const batchSize = options.batchSize ?? evalOptions.batchSize.default;
  const outputs = models.map((m) => new Float32Array(rows.length * m.numClasses));
  const groups = new Map<string, LoadedModel[]>();
  for (const m of models) groups.set(inputKey(m), [...(groups.get(inputKey(m)) ?? []), m]);
  const windows = models.map((m) => m.dicomWindow ?? 'auto');
  /** The row's pixels under each window the models use, checked against the index under the index's window. */
  const decodeVerified = async (row: Pick<ManifestRow, 'path'>): Promise<Map<string, RgbImage>> => {
    const file = join(dataDir, row.path);
    const { images } = await decodeUnderWindows(file, windows);
    const expected = hashes.get(row.path);
    await verifyContentHash(file, images, expected, splitManifestPath(dataDir), split === 'external' ? 'its pixels changed since the folder was scanned for copies of training images, during this evaluation: run it again' : undefined);
    return images;
  };
  /** The batch's images, once per distinct window and transform. */
  const prepare = async ([start, end]: [number, number]): Promise<Map<string, Float32Array>> => {
    const batch = rows.slice(start, end);
    const decoded = options.readImage ? [] : await Promise.all(batch.map(decodeVerified));
    const inputs = new Map<string, Float32Array>();
    for (const [key, group] of groups) {
      const transform = group[0]!.transform;
      const pixels = transform.crop * transform.crop * 3;
      const images = new Float32Array(batch.length * pixels);
      for (let i = 0; i < batch.length; i++) {
        const crop = options.readImage
          ? await options.readImage(join(dataDir, batch[i]!.path), transform)
          : await applyEvalTransform(decoded[i]!.get(windowKey(group[0]!))!, transform);
        images.set(crop, i * pixels);
      }
      inputs.set(key, images);
    }
    return inputs;
  };
  /** The batch through every model at once (each model's replicas are threads of their own). */
  const predict = async ([start, end]: [number, number], inputs: Map<string, Float32Array>): Promise<void> => {
    await Promise.all(
      models.map(async (m, i) => {
        const probabilities = await predictProbabilities(m, inputs.get(inputKey(m))!, end - start, { tta: options.tta, batchSize });
        outputs[i]!.set(probabilities, start * m.numClasses);
      }),
    );
  };
  // Two batches in flight: a worker that finishes its block of one batch goes on with its block of
  // the next instead of waiting for the others, and the batch after is read meanwhile.
  const ranges = batchRanges(rows.length, batchSize);
  if (ranges.length === 0) return outputs;
  let next = prepare(ranges[0]!);
  let previous: { done: Promise<void>; end: number } | undefined;
  for (const [index, range] of ranges.entries()) {
    const inputs = await next;
    if (index + 1 < ranges.length) next = settledLater(prepare(ranges[index + 1]!));
    const done = settledLater(predict(range, inputs));
    if (previous) {
      await previous.done;
      options.onProgress?.({ split, done: previous.end, total: rows.length });
    }
    previous = { done, end: range[1] };
  }
  await previous!.done;
  options.onProgress?.({ split, done: rows.length, total: rows.length });
  return outputs;
}

/**
 * A promise awaited later than it may settle: should the work before it fail first, its own failure
 * is moot and must not surface as an unhandled rejection. Awaiting it still gives its outcome.
 */
function settledLater<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

function batchRanges(count: number, size: number): [number, number][] {
  const ranges: [number, number][] = [];
  for (let start = 0; start < count; start += size) ranges.push([start, Math.min(count, start + size)]);
  return ranges;
}

export interface EvaluationResult {
  report: EvaluationReport;
  written: WrittenReport | null;
}

export async function evaluateRuns(options: EvaluateOptions): Promise<EvaluationResult> {
  const split: EvaluatedSet = options.external ? 'external' : (options.split ?? evalOptions.split.default);
  const checkpoint = options.checkpoint ?? 'best';
  const warn = options.onWarning ?? (() => undefined);
  const weightSpec = parseEnsembleWeights(options.weights ?? evalOptions.weights.default, options.runs.length);
  if (weightSpec.kind === 'auto' && split === 'val') {
    throw new UserError('--weights auto is fitted on the val split, so evaluating it on val would be biased: use --split test, or --weights equal|w1,w2,…');
  }
  if (weightSpec.kind === 'auto' && options.external) {
    throw new UserError('--weights auto is fitted on a val split, and nothing is fitted on an --external folder: evaluate the test split with --weights auto, then pass the weights it reports as --weights w1,w2,…');
  }
  const seed = options.seed ?? evalOptions.seed.default;
  const resamples = options.resamples ?? evalOptions.resamples.default;
  // Read and checked before any model runs: a bad metadata table loses no work.
  const metadata = options.metadata === undefined ? undefined : await readSubgroupMetadata(options.metadata);
  const external = options.external ? await prepareExternal(options.runs, options.dataDir) : undefined;
  const manifest: ManifestRow[] = external ? [] : await readSplitManifest(options.dataDir);
  const rows = external ? external.rows : manifest.filter((r) => r.split === split);
  if (rows.length === 0) throw new UserError(`the ${split} split of ${options.dataDir} is empty: re-run \`osteo data split --data ${options.dataDir}\``);
  const valRows = manifest.filter((r) => r.split === 'val');
  if (weightSpec.kind === 'auto' && valRows.length === 0) throw new UserError(`--weights auto needs a val split, and ${options.dataDir} has none`);
  // The external scan hashed every file under auto (data/external.ts, through the index's inspectFile).
  const hashes = external ? new Map([...external.hashes].map(([path, hash]): [string, ManifestHash] => [path, { hash, dicomWindow: 'auto' }])) : await manifestContentHashes(options.dataDir);
  if (hashes.size === 0 && !options.readImage) warn(`${splitManifestPath(options.dataDir)} has no contentHash column, so the images cannot be checked against the index: re-run \`osteo data split --data ${options.dataDir}\``);
  // An external folder counts its copies of training images itself, and reports with and without them (eval/external.ts).
  const trainOverlap = external ? undefined : await checkTrainOverlap(options.runs, options.dataDir, split, rows, hashes, { allowTrainOverlap: options.allowTrainOverlap ?? evalOptions.allowTrainOverlap.default, warn });

  const outDir = options.outDir === undefined ? defaultEvalOutDir(options.runs, split, checkpoint, options.dataDir) : options.outDir;
  const runs = options.runs.map((r) => resolve(r));
  if (outDir !== null) {
    await recoverStagedFolder(outDir).catch((error: unknown) => {
      throw environmentError(outDir, error);
    });
    if (!options.replaceReport) await checkReportFolder(outDir, { split, data: resolve(options.dataDir), runs, checkpoint });
    // Plots are tens of kB each, predictions.csv a line per image and model: a generous bound, checked before any model runs.
    await checkWritableFolder(dirname(resolve(outDir)), 4 * 2 ** 20 + rows.length * (options.runs.length + 1) * 256);
  }

  const models: LoadedModel[] = [];
  // The report folder is written whole beside its destination and switched in, so an interrupted
  // evaluation leaves the previous report untouched and no stale plot of an earlier one survives.
  let staged: StagedFolder | undefined;
  try {
    const workers = inferenceWorkers(options.workers, rows.length + (weightSpec.kind === 'auto' ? valRows.length : 0), options.backend.capabilities);
    models.push(...(await loadAll(options.runs.map((run) => () => loadRunForInference(run, { backend: options.backend, checkpoint, workers, dicomWindow: options.dicomWindow })))));
    disambiguateNames(models);
    options.onModelsLoaded?.(models);
    const numClasses = models[0]!.numClasses;
    if (models.some((m) => m.numClasses !== numClasses)) throw new UserError('the runs disagree on the number of classes; they cannot be ensembled');
    if (numClasses !== classNames.length) throw new UserError(`the runs have ${numClasses} classes but the data has ${classNames.length}`);
    if (outDir !== null) staged = await stageFolder(outDir);
    const calibrations = await freshCalibrations(models, checkpoint, warn);
    // A calibrated ensemble fits its own temperature on val, as --weights auto fits its weights there;
    // an external folder has no val split, so there the ensemble is the vote of the calibrated members.
    const ensembleCalibrated = calibrations !== null && models.length > 1 && !external;
    if (ensembleCalibrated && valRows.length === 0) throw new UserError(`the runs are calibrated, and the ensemble's own temperature is fitted on the val split, but ${options.dataDir} has none`);
    const tta = options.tta ?? evalOptions.tta.default;
    const screening: ScreeningSettings | undefined =
      options.operatingPoints === false ? undefined : { targets: options.targets ?? { sensitivity: evalOptions.targetSensitivity.default, specificity: evalOptions.targetSpecificity.default }, prevalence: options.prevalence };
    const stored = screening === undefined ? [] : storedOperatingPoints(models, calibrations, screening, tta, warn);
    const screeningVal = screening !== undefined && valRows.length > 0 && operatingPointsNeedVal(models, stored);
    // Thresholds are never chosen on an external folder: only those the runs stored apply there.
    const externalWithoutThresholds = external !== undefined && screening !== undefined && operatingPointsNeedVal(models, stored);
    if (externalWithoutThresholds) {
      warn("no screening operating points on an external folder: nothing is chosen on it, and they come only from thresholds each run stored with `osteo calibrate` (an ensemble's are chosen on a val split)");
    }
    // Fitting sees val rows only; the evaluated split is not read until the weights, the ensemble's temperature and the thresholds are fixed.
    const valRaw = weightSpec.kind === 'auto' || ensembleCalibrated || screeningVal ? await predictRows(models, options.dataDir, valRows, 'val', hashes, options) : undefined;
    const valProbabilities = valRaw && calibrations ? calibrateMembers(valRaw, models, calibrations) : valRaw;

    let ensembleWeights: EvaluationReport['ensembleWeights'];
    if (weightSpec.kind === 'auto') {
      const fitted = fitEnsembleWeights(
        valProbabilities!,
        valRows.map((r) => r.label),
        numClasses,
      );
      ensembleWeights = { mode: 'auto', weights: fitted.weights, fittedOn: 'val', valNll: fitted.nll, equalValNll: fitted.equalNll };
    } else if (weightSpec.kind === 'fixed') {
      ensembleWeights = { mode: 'fixed', weights: weightSpec.weights };
    } else {
      ensembleWeights = { mode: 'equal', weights: models.map(() => 1 / models.length) };
    }
    const ensembleTemperature = ensembleCalibrated ? fitEnsembleTemperature(valProbabilities!, ensembleWeights.weights, valRows.map((r) => r.label), numClasses) : undefined;
    options.onWeightsFitted?.(ensembleWeights.weights);

    const raw = await predictRows(models, options.dataDir, rows, split, hashes, options);
    const probabilities = calibrations ? calibrateMembers(raw, models, calibrations) : raw;
    const labels = rows.map((r) => r.label);
    // An external folder may hold a subset of the classes: its metrics score those (report/registry.ts, MetricInput.classes).
    const classes = external?.folder.present;
    // Every summary resamples with the same seed, so the intervals are paired: same resampled images.
    const summaries: ModelSummary[] = models.map((m, i) =>
      summarize(m.name, 'model', probabilities[i]!, labels, numClasses, { rng: createRng(seed), resamples, run: m.run, classNames, classes }),
    );
    let ensemble: Float32Array | undefined;
    if (models.length > 1) {
      const vote = ensembleProbabilities(probabilities, ensembleWeights.weights);
      ensemble = ensembleTemperature === undefined ? vote : applyTemperature(vote, numClasses, ensembleTemperature);
      summaries.push(summarize(ensembleName, 'ensemble', ensemble, labels, numClasses, { rng: createRng(seed), resamples, classNames, classes }));
    }
    const calibration =
      calibrations === null
        ? undefined
        : calibrationSection(
            { names: models.map((m) => m.name), raw, calibrated: probabilities, records: calibrations },
            ensemble && ensembleTemperature !== undefined ? { name: ensembleName, raw: ensembleProbabilities(raw, ensembleWeights.weights), calibrated: ensemble, temperature: ensembleTemperature } : undefined,
            labels,
            numClasses,
            { split, dataDir: options.dataDir },
          );
    const operatingPoints =
      screening === undefined || externalWithoutThresholds
        ? undefined
        : await operatingPointsSection({
            models,
            stored,
            val: valProbabilities === undefined ? undefined : { probabilities: valProbabilities, labels: valRows.map((r) => r.label) },
            ensemble: ensemble === undefined ? undefined : { name: ensembleName, weights: ensembleWeights.weights, temperature: ensembleTemperature },
            evaluated: { names: summaries.map((m) => m.name), probabilities: summaries.map((m) => m.probabilities), labels, groups: rows.map((r) => r.group) },
            records: calibrations,
            checkpoint,
            split,
            dataDir: options.dataDir,
            settings: screening,
            rng: () => createRng(seed),
            resamples,
            warn,
          });
    const report: EvaluationReport = {
      split,
      dataDir: options.dataDir,
      classNames,
      tta,
      ensembleWeights,
      bootstrap: { resamples, seed },
      images: rows.map((r) => ({ path: r.path, label: r.label })),
      models: summaries,
      comparisons: compareWithEnsemble(summaries, labels, rows.map((r) => r.group), classNames, {
        records: pairedRecordKeys.map((k) => metricRegistry.get(k) as OverallMetric),
        rng: () => createRng(seed),
        resamples,
      }),
      ...(calibration === undefined ? {} : { calibration }),
      ...(trainOverlap === undefined ? {} : { trainOverlap }),
      ...(operatingPoints === undefined ? {} : { operatingPoints }),
      ...(external === undefined || external.folder.absent.length === 0 ? {} : { absentClasses: external.folder.absent }),
    };
    const sections = reportSections(report, { external, metadata, ensembleUncalibratedVote: calibrations !== null && ensemble !== undefined, seed, options });
    if (sections.length > 0) report.sections = sections;
    for (const section of sections) if (section.banner !== undefined) warn(section.banner);
    let written: WrittenReport | null = null;
    if (staged !== undefined && outDir !== null) {
      try {
        const files = (await writeEvaluationReport(report, staged.dir)).files;
        const weightsSha256 = await Promise.all(models.map((m) => sha256File(m.weightsFile)));
        const record: EvaluationRecord = { format: 'osteo-evaluation', version: 2, split, data: resolve(options.dataDir), runs, checkpoint, weightsSha256, ...(trainOverlap === undefined ? {} : { trainOverlap }) };
        // The record, the report's numbers (what --json prints, less what has a key of its own: a model card is
        // filled from them), the ensemble's thresholds (it has no run folder: predict --eval reads them here),
        // and each section's results under its key (docs/evaluation.md, *evaluation.json*).
        const sectionJson = Object.fromEntries(sections.map((section) => [section.key, section.json]));
        const summary = Object.fromEntries(Object.entries(reportSummaryJson(report) as Record<string, unknown>).filter(([key]) => key !== 'operatingPoints' && !(key in sectionJson)));
        const recorded = { ...record, summary, ...(operatingPoints === undefined ? {} : { operatingPoints: operatingPointsJson(operatingPoints) }), ...sectionJson };
        await writeJsonAtomic(join(staged.dir, evaluationRecordFile), recorded);
        await staged.commit();
        written = { dir: outDir, files: [...files, evaluationRecordFile] };
      } catch (error) {
        throw environmentError(outDir, error);
      }
    }
    return { report, written };
  } finally {
    await disposeModels(models);
    await staged?.abandon();
  }
}

/** The external-validation and subgroup sections of a report, where they were asked for. */
function reportSections(
  report: EvaluationReport,
  context: { external: ExternalData | undefined; metadata: SubgroupMetadata | undefined; ensembleUncalibratedVote: boolean; seed: number; options: EvaluateOptions },
): ReportSection[] {
  const { external, metadata, seed } = context;
  const resamples = report.bootstrap.resamples;
  const sections: ReportSection[] = [];
  if (external !== undefined) {
    const results = externalResults(external, report.models, { classNames, rng: () => createRng(seed), resamples, ensembleUncalibratedVote: context.ensembleUncalibratedVote });
    sections.push(externalSection(report, results));
  }
  if (metadata !== undefined) {
    const results = subgroupResults({
      metadataFile: metadata.file,
      metadata: metadata.byPath,
      attributes: metadata.attributes,
      images: report.images,
      models: report.models,
      classNames,
      minSize: context.options.minSubgroup ?? evalOptions.minSubgroup.default,
      ageBands: ageBandEdges(context.options.ageBands ?? evalOptions.ageBands.default),
      rng: () => createRng(seed),
      resamples,
    });
    sections.push(subgroupsSection(report, results));
  }
  return sections;
}
