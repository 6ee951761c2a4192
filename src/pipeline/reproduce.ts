/**
 * `osteo reproduce`: the published experiment in one command, under two protocols side by side.
 *
 *   published  as the seed project's notebooks state it: each model on its own random 70/15/15 split
 *              of every file (no de-duplication, its own seed), the ensemble scored on the first
 *              model's test set although the other members trained on some of it. `--check` compares
 *              these numbers with the published table: like with like.
 *   clean      one de-duplicated split shared by every model and the ensemble (and, with --cv K,
 *              grouped K-fold cross-validation on the same data): the honest numbers, always shown.
 *
 * The report counts, per model, the published protocol's test images that have an identical copy in
 * that model's training set: the leak. `npm start` runs both on the phantom (configs/demo.json),
 * whose planted copies make the leak visible.
 *
 * Running it again reuses finished runs, resumes interrupted ones and refuses a run made with another
 * config before anything is trained; `--fresh` removes what an earlier reproduce wrote in OUT first.
 *
 *   OUT/runs/<model>/                 clean-protocol runs        OUT/eval/        their evaluation
 *   OUT/published/<model>/{data,run}  published-protocol views and runs   OUT/published/eval/
 *   OUT/cv/                           --cv K (see cv.ts)         OUT/dashboard/   the dashboard's files
 *   OUT/data.json                     the fingerprint of the data the runs were trained on
 *   OUT/reproduce.md, reproduce.json
 *   OUT/.osteo-reproduce.json         what reproduce wrote there (out-record.ts): only that is ever replaced or removed
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rmdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import {
  countClassFiles,
  countLeakedTestImages,
  downloadKaggleDataset,
  formatIndexReport,
  formatSplitReport,
  indexDataset,
  publishedCounts,
  publishedSplit,
  readIndex,
  readSplitManifest,
  assignSplits,
  splitManifestPath,
  splitDataset,
  synthesizePhantom,
  writeManifestView,
  type IndexRow,
  type ManifestRow,
} from '../data/index.js';
import { type ProgressSink, DataError, UserError, environmentUserError, errorMessage, listSome } from '../util/index.js';
import { dashboardModels, ensembleName, evaluateRuns, exportDashboard, parseEnsembleWeights, type EvaluationResult } from '../eval/index.js';
import { getModel, type ModelName } from '../models/index.js';
import { loadPipelineConfig, locateConfigFile, resolveTrainConfig, type PipelineConfig, type TrainConfig } from '../config/index.js';
import { type TrainEvent } from '../train/index.js';
import { defaultWeightsDir, fetchPretrainedWeights } from '../weights/index.js';
import { useBackends, type BackendHandle, type BackendPreference } from '../backend/index.js';
import type { ModelSummary } from '../report/index.js';
import { LockHeldError, acquireRunLock, checkpointDir, runPaths } from '../runs/index.js';
import { executeRun, planRun, type PlannedRun } from './training.js';
import { assertCvPlanMatches, dataFingerprint, runCv, type CvExperiment } from './cv.js';
import { ensembleEntry, type Interval } from './cv-report.js';
import { OutRecord, type OutEntry } from './out-record.js';

/** The published table (README of the seed project) and what is known to be wrong with its protocol. */
export const publishedResults: readonly { row: ModelName | 'ensemble'; accuracy: number | null; recipe: string }[] = [
  { row: 'resnet18', accuracy: 0.83, recipe: 'ImageNet weights, all layers trained' },
  { row: 'resnet50', accuracy: 0.78, recipe: 'ImageNet weights, layer4 + fc trained' },
  { row: 'efficientnet_b3', accuracy: null, recipe: 'ImageNet weights, AdamW, CLAHE, class-weighted sampler' },
  { row: 'ensemble', accuracy: 0.85, recipe: 'mean of the softmax probabilities' },
];

export const publishedProtocolDefects: readonly string[] = [
  'each model was trained and tested on its own random split, so the ensemble row mixes test sets that other members trained on;',
  'no de-duplication: about half the Normal and Osteoporosis files are byte-identical copies, so a random split tests on training images;',
  'the ResNet50 notebook prints a test accuracy of 85.32% where the README table says 78%;',
  'no confidence intervals: on a test set of ~290 images a 95% interval is about ±4 points.',
];

export const protocols = ['published', 'clean', 'both'] as const;
export type Protocol = (typeof protocols)[number];

export interface ReproduceOptions {
  /** A pipeline config file (the pipeline option table, src/config/pipeline.ts, says what it may hold). */
  config: string;
  /** Use this dataset folder instead of the config's (it must hold Normal/, Osteopenia/, Osteoporosis/). */
  data?: string;
  out: string;
  /** Which protocols to run (default both). */
  protocol?: Protocol;
  /** Also run K-fold cross-validation under the clean protocol. */
  cv?: number;
  /** Remove what an earlier reproduce wrote in OUT (runs, evaluations, reports) and start over. */
  fresh?: boolean;
  /** Fail when one of our published-protocol accuracies is more than this many points below the published one. */
  check?: number;
  weightsDir?: string;
  backend?: BackendPreference;
  workers?: number;
  /** false: every model starts from random weights instead of its config's ImageNet checkpoint (offline machines). */
  pretrained?: boolean;
  /** Extra `key=value` overrides for every model (after the config's). */
  sets?: readonly string[];
  log?: (line: string) => void;
  /** Progress bars for downloads (bytes) and indexing (files). */
  progress?: (kind: 'download' | 'index') => ProgressSink;
  /** Training progress (events of every model's run); none under --json. */
  onTrainEvent?: (event: TrainEvent) => void;
  /** Ctrl-C: the model in training saves `last` and the pipeline stops. */
  signal?: AbortSignal;
}

/** One model's (or the ensemble's) test result under one protocol. */
export interface ProtocolResult {
  accuracy: number;
  interval: [number, number];
  balancedAccuracy: number;
  macroF1: number;
  osteopeniaRecall: number;
  testImages: number;
  /** Test images with an identical copy in the training set of this model (ensemble: of any member). */
  leaked: number;
}

export interface ReproduceRow {
  row: string;
  published: number | null;
  /** Ours under the published protocol; null when not run or failed. */
  publishedProtocol: ProtocolResult | null;
  /** Ours on the clean, de-duplicated split. */
  clean: ProtocolResult | null;
  /** Ours, clean K-fold CV (pooled out-of-fold), with --cv. */
  cv: { accuracy: Interval; balancedAccuracy: Interval; macroF1: Interval } | null;
  errors: string[];
}

export interface ReproduceResult {
  out: string;
  dataDir: string;
  protocol: Protocol;
  /** Whether the data is the Kaggle set, the only data the published table speaks about. */
  kaggle: boolean;
  rows: ReproduceRow[];
  runs: { clean: Record<string, string>; published: Record<string, string> };
  failures: { model: string; protocol: 'published' | 'clean' | 'cv'; error: string }[];
  checkFailures: string[];
  artefacts: { report: string; evaluation?: string; publishedEvaluation?: string; cv?: string; dashboard?: string[]; runs: string[] };
}

type PhantomSettings = { perClass?: number; size?: number; seed: number; duplicateRate?: number };

/** The settings recorded in DIR/phantom.json; undefined when DIR is not a phantom. */
async function phantomSettings(dataDir: string): Promise<PhantomSettings | undefined> {
  const file = join(dataDir, 'phantom.json');
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(await readFile(file, 'utf8')) as PhantomSettings;
  } catch {
    throw new DataError(file, 'is not readable JSON; remove the folder to let reproduce generate the phantom again');
  }
}

/** Absent settings are synthesizePhantom's defaults, which phantom.json records explicitly. */
function samePhantom(recorded: PhantomSettings, asked: PhantomSettings): boolean {
  return (
    recorded.seed === asked.seed &&
    (asked.perClass === undefined || recorded.perClass === asked.perClass) &&
    (asked.size === undefined || recorded.size === asked.size) &&
    (recorded.duplicateRate ?? 0) === (asked.duplicateRate ?? 0)
  );
}

async function prepareData(config: PipelineConfig, options: ReproduceOptions, log: (line: string) => void): Promise<void> {
  const dataDir = resolve(options.data ?? config.data.dir);
  if (options.data === undefined) {
    if (config.data.source === 'phantom') {
      const settings = { perClass: config.data.perClass, size: config.data.size, seed: config.data.seed, duplicateRate: config.data.duplicateRate };
      const counts = existsSync(dataDir) ? await countClassFiles(dataDir) : [0, 0, 0];
      const current = await phantomSettings(dataDir);
      const stale = current !== undefined && !samePhantom(current, settings);
      if (counts.every((n) => n === 0) || stale) {
        log(stale ? `regenerating the phantom dataset in ${dataDir}: the config asks for other settings` : `generating the phantom dataset in ${dataDir}`);
        const synth = await synthesizePhantom({ dest: dataDir, ...settings, force: stale });
        log(`  ${synth.files.join(' / ')} files in ${synth.seconds.toFixed(1)} s`);
      }
    } else {
      const result = await downloadKaggleDataset({ dest: dataDir, log, progress: options.progress?.('download') });
      log(`dataset: ${result.counts.join(' / ')} files (published: ${result.published.join(' / ')})`);
    }
  } else if (!existsSync(dataDir)) {
    throw new UserError(`--data ${options.data}: no such folder`);
  }
  // A dataset of the user's (--data) keeps its index: one that differs from what indexing finds now is refused, not replaced.
  const keepIndex = options.data !== undefined && existsSync(join(dataDir, 'index.csv'));
  const { rows, report: indexReport } = await indexDataset({ dataDir, progress: options.progress?.('index'), write: !keepIndex });
  if (keepIndex && dataFingerprint(rows) !== dataFingerprint(await readIndex(dataDir))) {
    throw new UserError(
      `${join(dataDir, 'index.csv')} is not what indexing ${dataDir} finds now (files changed, or it was indexed with other settings), and reproduce does not replace a dataset's index: ` +
        `re-index and re-split it yourself (\`osteo data index --data ${dataDir}\`, then \`osteo data split --data ${dataDir}\`), or give --data a copy of the dataset. Nothing was changed`,
    );
  }
  log(formatIndexReport(indexReport));
}

/**
 * The dataset's splits.csv is every run's on it: replacing it with another split would leave the
 * runs trained on the old one impossible to evaluate. One that differs from the split the config asks
 * for is refused, naming the command that re-splits deliberately.
 */
async function assertSplitKept(dataDir: string, indexRows: IndexRow[], data: PipelineConfig['data']): Promise<void> {
  if (!existsSync(splitManifestPath(dataDir))) return;
  const existing = new Map((await readSplitManifest(dataDir)).map((row) => [row.path, row.split]));
  const wanted = assignSplits(indexRows, { val: data.val, test: data.test }, data.seed);
  if (wanted.length === existing.size && wanted.every((row) => existing.get(row.path) === row.split)) return;
  throw new UserError(
    `${splitManifestPath(dataDir)} holds another split than this config asks for (val ${data.val}, test ${data.test}, seed ${data.seed}), and reproduce does not replace a dataset's split: ` +
      `every run trained on it could no longer be evaluated. Re-split it deliberately with \`osteo data split --data ${dataDir} --val ${data.val} --test ${data.test} --seed ${data.seed}\`, ` +
      'or use a copy of the dataset. Nothing was changed',
  );
}

const pct = (x: number | null | undefined) => (x === null || x === undefined ? '—' : `${(100 * x).toFixed(1)}%`);

function protocolResult(summary: ModelSummary | undefined, leaked: number): ProtocolResult | null {
  if (!summary) return null;
  return {
    accuracy: summary.metrics.accuracy,
    interval: [summary.accuracyInterval.lower, summary.accuracyInterval.upper],
    balancedAccuracy: summary.metrics.balancedAccuracy,
    macroF1: summary.metrics.macroF1,
    osteopeniaRecall: summary.metrics.perClass[1]?.recall ?? 0,
    testImages: summary.predictions.length,
    leaked,
  };
}

/**
 * The ImageNet checkpoints the config asks for, found or fetched before any data work, so that an
 * offline machine learns in seconds — not after hours of training — what is missing and what to do.
 */
async function fetchCheckpoints(config: PipelineConfig, options: ReproduceOptions, log: (line: string) => void): Promise<Map<ModelName, string>> {
  const paths = new Map<ModelName, string>();
  if (options.pretrained === false) return paths;
  for (const spec of config.models.filter((m) => m.pretrained)) {
    try {
      const fetched = await fetchPretrainedWeights(spec.model, { dest: options.weightsDir, log, progress: options.progress?.('download') });
      paths.set(spec.model, fetched.path);
    } catch (error) {
      const file = getModel(spec.model).weights[0].fileName;
      throw new UserError(
        `cannot get ${spec.model}'s ImageNet checkpoint ${file}: ${errorMessage(error)}\n` +
          `  put the file in ${resolve(options.weightsDir ?? defaultWeightsDir)} (or name a folder with --weights-dir), ` +
          `or train from random weights with --no-pretrained (the report then says so)`,
      );
    }
  }
  return paths;
}

/** What the numbers are, when the data is not the Kaggle set the published table was measured on. */
export interface DataDescription {
  kaggle: boolean;
  phantom: boolean;
  counts: number[];
  initialWeights: string;
}

/** The published table beside ours, as Markdown (printed, and saved as OUT/reproduce.md). */
export function formatReproduceTable(rows: readonly ReproduceRow[], dataDir: string, data: DataDescription = { kaggle: true, phantom: false, counts: [...publishedCounts], initialWeights: '' }): string {
  const ci = (r: ProtocolResult | null) => (r ? `${pct(r.accuracy)} (${pct(r.interval[0])} – ${pct(r.interval[1])})` : '—');
  const cvCell = (r: ReproduceRow) => (r.cv ? `${pct(r.cv.accuracy.value)} (${pct(r.cv.accuracy.lower)} – ${pct(r.cv.accuracy.upper)})` : '—');
  const leak = (r: ProtocolResult | null) => (r ? `${r.leaked} of ${r.testImages}` : '—');
  const showCv = rows.some((r) => r.cv !== null);
  const header = [
    'model',
    ...(data.kaggle ? ['published'] : []),
    'ours, published protocol (95% CI)',
    'its test images with a copy in training',
    ...(data.kaggle ? ['Δ (points)'] : []),
    'ours, clean split (95% CI)',
    ...(showCv ? ['ours, clean CV (95% CI)'] : []),
    'clean balanced acc.',
    'clean macro-F1',
    'clean Osteopenia recall',
  ];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---|').join('')}`];
  for (const r of rows) {
    const p = r.publishedProtocol;
    const delta = r.published !== null && p ? (100 * (p.accuracy - r.published)).toFixed(1) : '—';
    const cells = [
      r.row,
      ...(data.kaggle ? [pct(r.published)] : []),
      ci(p),
      leak(p),
      ...(data.kaggle ? [delta] : []),
      ci(r.clean),
      ...(showCv ? [cvCell(r)] : []),
      pct(r.clean?.balancedAccuracy),
      pct(r.clean?.macroF1),
      pct(r.clean?.osteopeniaRecall),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
    for (const error of r.errors) lines.push(`| ${r.row} | failed: ${error.split('\n')[0]} |`);
  }
  lines.push('');
  if (!data.kaggle) {
    lines.push(
      `These numbers are not comparable with the published table, and no difference to it is shown: ${dataDir} (${data.counts.join(' / ')} files) is not the Kaggle set ` +
        `(${publishedCounts.join(' / ')}).` +
        (data.phantom ? ' It is the synthetic phantom, with small images and few epochs' : '') +
        (data.initialWeights.includes('random') ? `; the models start from random weights (${data.initialWeights}).` : '.') +
        ' What they do show is the gap between the two protocols.',
      '',
    );
  }
  lines.push(
    'Published protocol: each model on its own random 70/15/15 split of every file (no de-duplication), the ensemble scored on the first model\'s test set, which the other members partly trained on.',
    `Clean protocol: one de-duplicated split of ${dataDir} shared by every model and the ensemble${showCv ? ', and grouped K-fold cross-validation (pooled out-of-fold accuracy)' : ''}.`,
    'A copy is the same decoded pixels (the index\'s content hash). Known defects of the published protocol:',
  );
  for (const defect of publishedProtocolDefects) lines.push(`- ${defect}`);
  return lines.join('\n');
}

/** Published-protocol rows whose accuracy fell more than `tolerance` points below the published value. */
export function checkAgainstPublished(rows: readonly ReproduceRow[], tolerance: number): string[] {
  const failures: string[] = [];
  for (const r of rows) {
    if (r.published === null) continue;
    const ours = r.publishedProtocol;
    if (ours === null) failures.push(`${r.row}: no published-protocol result (${r.errors[0] ?? 'not evaluated'})`);
    else if (100 * ours.accuracy < 100 * r.published - tolerance) {
      failures.push(`${r.row}: ${pct(ours.accuracy)} under the published protocol is more than ${tolerance} points below the published ${pct(r.published)}`);
    }
  }
  return failures;
}

/** Where reproduce writes in OUT (plannedEntries lists the same paths for its record, out-record.ts). */
const outLayout = {
  cleanRun: (out: string, model: string) => join(out, 'runs', model),
  publishedView: (out: string, model: string) => join(out, 'published', model, 'data'),
  publishedRun: (out: string, model: string) => join(out, 'published', model, 'run'),
  publishedEvaluation: (out: string) => join(out, 'published', 'eval'),
  cleanEvaluation: (out: string) => join(out, 'eval'),
  cv: (out: string) => join(out, 'cv'),
  dashboard: (out: string) => join(out, 'dashboard'),
  dataRecord: (out: string) => join(out, 'data.json'),
  report: (out: string) => join(out, 'reproduce.md'),
  result: (out: string) => join(out, 'reproduce.json'),
};
async function isKaggleSet(dataDir: string): Promise<boolean> {
  const counts = await countClassFiles(dataDir);
  return counts.every((n, i) => n === publishedCounts[i]);
}

interface ModelPlan {
  model: ModelName;
  protocol: 'published' | 'clean';
  run: PlannedRun;
  /** Published protocol: the model's own split, written as a dataset view before training. */
  manifest?: ManifestRow[];
}

/** Everything decided before any data work: the config, the checkpoints, and every run's plan. */
interface ReproducePlan {
  options: ReproduceOptions;
  log: (line: string) => void;
  protocol: Protocol;
  config: PipelineConfig;
  configFile: string;
  out: string;
  dataDir: string;
  checkpoints: Map<ModelName, string>;
  /** what the runs train on and the dashboard export computes on */
  backend: BackendHandle;
  /** what validation and the evaluations run the trained models on */
  inference: BackendHandle;
  models: ModelPlan[];
  cv?: CvExperiment;
  /** What reproduce wrote in OUT, and what this plan writes there. */
  record: OutRecord;
  entries: OutEntry[];
}

/** The data the runs train on, indexed (and split under the clean protocol). */
interface PreparedData {
  indexRows: IndexRow[];
  kaggle: boolean;
}

/** The runs that trained (or were reused) under each protocol, and the ones that failed. */
interface TrainedRuns {
  runs: ReproduceResult['runs'];
  failures: ReproduceResult['failures'];
}

/** What the evaluations wrote. */
interface Evaluated {
  publishedEvaluation?: string;
  evaluation?: string;
  dashboard?: string[];
}

/** plan → prepare data → train (both protocols) → evaluate → export → cross-validate → report. */
export async function reproduce(options: ReproduceOptions): Promise<ReproduceResult> {
  const checked = await checkOptions(options);
  const release = await lockOut(checked.out);
  try {
    const plan = await planReproduction(options, checked);
    const data = await prepareReproductionData(plan);
    const trained = await trainPlannedRuns(plan, data);
    const rows = tableRows(plan.config, trained.failures);
    const evaluated: Evaluated = { publishedEvaluation: await evaluatePublished(plan, data, trained.runs, rows) };
    const clean = await evaluateClean(plan, data, trained.runs, rows);
    if (clean) {
      evaluated.evaluation = clean.written?.dir;
      evaluated.dashboard = await exportDashboardFiles(plan, trained.runs);
    }
    const cvDir = await crossValidate(plan, rows, trained.failures);
    return await writeReproduceReport(plan, data, { rows, trained, evaluated, cvDir });
  } finally {
    await release();
  }
}

/**
 * One reproduce per OUT at a time: OUT/.lock is taken before anything in OUT is looked at, so a second
 * process cannot decide about runs and reports the first one is writing. An OUT this call made for
 * its lock, and left empty, is removed again.
 */
async function lockOut(out: string): Promise<() => Promise<void>> {
  const made = !existsSync(out);
  try {
    await mkdir(out, { recursive: true });
  } catch (error) {
    throw environmentUserError(error, out) ?? error;
  }
  const unmake = async () => {
    if (made && (await readdir(out).catch(() => ['?'])).length === 0) await rmdir(out).catch(() => undefined);
  };
  let releaseLock: () => Promise<void>;
  try {
    releaseLock = await acquireRunLock(out);
  } catch (error) {
    await unmake();
    if (!(error instanceof LockHeldError)) throw error;
    throw new UserError(`${out} is in use by another osteo reproduce (process ${error.owner.pid} on ${error.owner.host}, since ${error.owner.started}): wait for it to finish, or choose another --out. Nothing was changed`);
  }
  return async () => {
    await releaseLock();
    await unmake();
  };
}

const trainProtocols = (protocol: Protocol) => ({ published: protocol !== 'clean', clean: protocol !== 'published' });

/** What is checked before OUT is locked: the options, the config and its ensemble weights (no file is touched). */
interface CheckedOptions {
  log: (line: string) => void;
  protocol: Protocol;
  configFile: string;
  config: PipelineConfig;
  out: string;
}

async function checkOptions(options: ReproduceOptions): Promise<CheckedOptions> {
  const log = options.log ?? (() => {});
  const protocol = options.protocol ?? 'both';
  const runs = trainProtocols(protocol);
  if (options.check !== undefined && !runs.published) throw new UserError('--check compares the published protocol with the published table: use --protocol published or both');
  if (options.cv !== undefined && !runs.clean) throw new UserError('--cv runs cross-validation under the clean protocol: use --protocol clean or both');
  if (options.cv !== undefined && !(Number.isInteger(options.cv) && options.cv >= 2)) throw new UserError(`--cv needs at least 2 folds (each image is held out once), got ${options.cv}`);
  const configFile = resolve(locateConfigFile(options.config));
  const config = await loadPipelineConfig(configFile);
  checkEnsembleWeights(config, configFile);
  return { log, protocol, configFile, config, out: resolve(options.out) };
}

/**
 * Refuse what OUT holds that reproduce did not write, get the ImageNet checkpoints and plan every
 * run: a run made with another config stops everything here, before any data work or training.
 */
async function planReproduction(options: ReproduceOptions, checked: CheckedOptions): Promise<ReproducePlan> {
  const { log, protocol, configFile, config, out } = checked;
  const runs = trainProtocols(protocol);
  if (config.description) log(config.description);
  // Nothing in OUT that reproduce did not write is replaced, and --fresh removes only what it did.
  const record = await OutRecord.open(out);
  const entries = plannedEntries(config, protocol, options.cv !== undefined);
  await record.refuseForeign(options.fresh ? [...entries, ...record.recordedEntries()] : entries, options.fresh ? '--fresh would remove or replace them' : 'reproduce would replace them');
  const checkpoints = await fetchCheckpoints(config, options, log);
  const dataDir = resolve(options.data ?? config.data.dir);
  // The backends are chosen once: every run and export below computes on the training one, every
  // validation and evaluation on the inference one (the same unless --backend is auto).
  const backends = await useBackends(options.backend ?? 'auto');
  const plan: ReproducePlan = { options, log, protocol, config, configFile, out, dataDir, checkpoints, backend: backends.train, inference: backends.infer, models: [], record, entries };
  // --fresh: the runs there now are removed before training, so every run starts (planRun would inspect the old ones).
  const planned = async (config: TrainConfig): Promise<PlannedRun> => (options.fresh ? { config, action: 'train' } : planRun(config));
  for (const spec of config.models) {
    if (runs.published) {
      const trainConfig = await modelTrainConfig(plan, spec, outLayout.publishedView(out, spec.model), outLayout.publishedRun(out, spec.model));
      plan.models.push({ model: spec.model, protocol: 'published', run: await planned(trainConfig) });
    }
    if (runs.clean) plan.models.push({ model: spec.model, protocol: 'clean', run: await planned(await modelTrainConfig(plan, spec, dataDir, outLayout.cleanRun(out, spec.model))) });
  }
  if (options.cv !== undefined) plan.cv = cvExperimentOf(plan, options.cv);
  return plan;
}

/** ensemble.weights against the number of models, before hours of training rather than after. */
function checkEnsembleWeights(config: PipelineConfig, configFile: string): void {
  const weights = config.ensemble.weights;
  if (weights === undefined || config.models.length < 2) return;
  try {
    parseEnsembleWeights(weights, config.models.length);
  } catch (error) {
    if (error instanceof UserError) throw new UserError(`${configFile}: ensemble.weights: ${error.message} (the config has ${config.models.length} models)`);
    throw error;
  }
}

/** What this plan writes in OUT (see outLayout), relative to OUT. */
function plannedEntries(config: PipelineConfig, protocol: Protocol, cv: boolean): OutEntry[] {
  const runs = trainProtocols(protocol);
  const entries: OutEntry[] = [];
  for (const { model } of config.models) {
    if (runs.published) entries.push({ path: `published/${model}`, kind: 'folder' });
    if (runs.clean) entries.push({ path: `runs/${model}`, kind: 'folder' });
  }
  if (runs.published && config.models.length > 1) entries.push({ path: 'published/eval', kind: 'tree' });
  if (runs.clean) entries.push({ path: 'eval', kind: 'tree' }, { path: 'dashboard', kind: 'export' });
  if (cv) entries.push({ path: 'cv', kind: 'folder' });
  for (const path of ['data.json', 'reproduce.md', 'reproduce.json']) entries.push({ path, kind: 'file' });
  return entries;
}

type ModelSpec = PipelineConfig['models'][number];

/** A model's training config: its recipe (beside the pipeline config), the pipeline's and the caller's overrides. */
function modelTrainConfig(plan: ReproducePlan, spec: ModelSpec, data: string, runDir: string): Promise<TrainConfig> {
  const { config, options } = plan;
  return resolveTrainConfig({
    configFile: spec.recipe ? resolve(dirname(plan.configFile), spec.recipe) : undefined,
    flags: { model: spec.model, data, out: runDir, pretrained: plan.checkpoints.get(spec.model), seed: config.seed, backend: options.backend, workers: options.workers },
    sets: [...config.set, ...spec.set, ...(options.sets ?? [])],
  });
}

/** --cv K: grouped K-fold cross-validation of every model on the clean data, in OUT/cv. */
function cvExperimentOf(plan: ReproducePlan, folds: number): CvExperiment {
  const { config, options } = plan;
  return {
    dataDir: plan.dataDir,
    out: outLayout.cv(plan.out),
    folds,
    repeats: 1,
    seed: config.seed,
    innerVal: config.data.val,
    entries: config.models.map((spec) => ({
      name: spec.model,
      model: spec.model,
      ...(spec.recipe ? { recipe: resolve(dirname(plan.configFile), spec.recipe) } : {}),
      sets: [...config.set, ...spec.set, ...(options.sets ?? [])],
      ...(plan.checkpoints.has(spec.model) ? { pretrained: plan.checkpoints.get(spec.model)! } : {}),
    })),
    backend: options.backend,
    workers: options.workers,
    resamples: 1000,
  };
}

/**
 * Generate or download the data and index it; refuse data other than the runs' own (the index's
 * fingerprint is kept beside them); draw each published-protocol split, and the clean split.
 */
async function prepareReproductionData(plan: ReproducePlan): Promise<PreparedData> {
  const { config, options, dataDir, out, log } = plan;
  await prepareData(config, options, log);
  const kaggle = await isKaggleSet(dataDir);
  if (options.check !== undefined && !kaggle) {
    throw new UserError(`--check compares with the published table, which was measured on the Kaggle set; ${dataDir} is not it (${(await countClassFiles(dataDir)).join(' / ')} files, Kaggle ${publishedCounts.join(' / ')})`);
  }
  const indexRows: IndexRow[] = await readIndex(dataDir);
  const fingerprint = dataFingerprint(indexRows);
  const dataRecord = outLayout.dataRecord(out);
  if (existsSync(dataRecord) && plan.models.some((p) => p.run.action !== 'train')) {
    const recorded = (JSON.parse(await readFile(dataRecord, 'utf8')) as { fingerprint?: string }).fingerprint;
    if (recorded !== fingerprint) throw new UserError(`the runs in ${out} were trained on other data than ${dataDir} holds now (its index changed); re-run with --fresh to start over, or choose another --out`);
  }
  const clean = trainProtocols(plan.protocol).clean;
  if (clean) await assertSplitKept(dataDir, indexRows, config.data);
  if (plan.cv && !options.fresh) await assertCvPlanMatches(plan.cv, indexRows);
  // Everything is checked: from here on OUT changes.
  await mkdir(out, { recursive: true });
  if (options.fresh) {
    const earlier = plan.record.recordedEntries();
    await plan.record.refuseForeign(earlier, '--fresh would remove them');
    await plan.record.remove(earlier);
    log(`--fresh: removed what an earlier reproduce wrote in ${out}`);
  }
  await plan.record.claimFolders(plan.entries.filter((e) => e.kind === 'folder' || e.kind === 'export').map((e) => e.path));
  await plan.record.writeFile('data.json', JSON.stringify({ dataDir, fingerprint }, null, 2) + '\n');
  for (const model of plan.models.filter((p) => p.protocol === 'published')) {
    const spec = config.models.find((m) => m.model === model.model)!;
    model.manifest = publishedSplit(indexRows, { val: config.data.val, test: config.data.test }, spec.publishedSeed ?? config.data.seed);
  }
  if (clean) {
    const { report: splitReport } = await splitDataset({ dataDir, val: config.data.val, test: config.data.test, seed: config.data.seed });
    log(formatSplitReport(splitReport));
  }
  return { indexRows, kaggle };
}

/** Train (or resume, or reuse) every planned run in turn; a model that fails is recorded and the others go on. */
async function trainPlannedRuns(plan: ReproducePlan, data: PreparedData): Promise<TrainedRuns> {
  const trained: TrainedRuns = { runs: { clean: {}, published: {} }, failures: [] };
  for (const model of plan.models) {
    const runDir = model.run.config.out;
    const verb = model.run.action === 'reuse' ? 'reusing the finished run' : model.run.action === 'resume' ? 'resuming' : 'training';
    plan.log(`\n== ${model.protocol} protocol: ${verb} ${model.model} → ${runDir}`);
    try {
      await trainModelPlan(plan, data, model);
      trained.runs[model.protocol][model.model] = runDir;
    } catch (error) {
      if (!(error instanceof UserError || error instanceof DataError) || plan.options.signal?.aborted) throw error;
      trained.failures.push({ model: model.model, protocol: model.protocol, error: error.message });
      plan.log(`${model.model} (${model.protocol} protocol) failed: ${error.message}`);
    }
  }
  return trained;
}

/** One run: the published protocol's dataset view first; an interrupted or diverged run is a failure naming what to do. */
async function trainModelPlan(plan: ReproducePlan, data: PreparedData, model: ModelPlan): Promise<void> {
  const { run } = model;
  const runDir = run.config.out;
  if (model.manifest) await writeManifestView(run.config.data, plan.dataDir, model.manifest, data.indexRows);
  if (run.action === 'train') plan.log(run.config.pretrained ? `initial weights: ${run.config.pretrained}` : 'initial weights: random (no ImageNet checkpoint)');
  const trained = await executeRun(run, { backend: plan.backend, inference: plan.inference, onEvent: plan.options.onTrainEvent, signal: plan.options.signal });
  const status = trained?.status ?? run.status;
  if (status === 'interrupted') throw new UserError(`interrupted while training ${model.model}; run the same command again to resume from ${checkpointDir(runDir, 'last')}`);
  if (status === 'diverged') throw new UserError(trained?.message ?? `${model.model} diverged (see ${runPaths(runDir).events}); re-run with --fresh after changing its recipe`);
}

/** The table's rows: each configured model and the ensemble, with the failures so far. */
function tableRows(config: PipelineConfig, failures: ReproduceResult['failures']): ReproduceRow[] {
  const rows: ReproduceRow[] = publishedResults
    .filter((p) => p.row === 'ensemble' || config.models.some((m) => m.model === p.row))
    .map((p) => ({ row: p.row === 'ensemble' ? ensembleName : p.row, published: p.accuracy, publishedProtocol: null, clean: null, cv: null, errors: [] }));
  for (const f of failures) rows.find((r) => r.row === f.model)!.errors.push(`${f.protocol} protocol: ${f.error}`);
  return rows;
}

/**
 * The published protocol as the seed project scored it: each model on its own test split, and the
 * ensemble on the first model's, although every member trained on its own split. Returns the
 * ensemble's report folder, if there was an ensemble.
 */
async function evaluatePublished(plan: ReproducePlan, data: PreparedData, runs: ReproduceResult['runs'], rows: ReproduceRow[]): Promise<string | undefined> {
  if (!trainProtocols(plan.protocol).published || Object.keys(runs.published).length === 0) return undefined;
  plan.log('\n== evaluating the published protocol: each model on its own test split, the ensemble on the first model\'s');
  const manifests = new Map(plan.models.filter((p) => p.manifest).map((p) => [p.model, p.manifest!]));
  for (const [model, run] of Object.entries(runs.published)) {
    const evaluation = await evaluateRuns({ backend: plan.inference, runs: [run], dataDir: outLayout.publishedView(plan.out, model), split: 'test', outDir: null, seed: plan.config.seed, operatingPoints: false });
    const manifest = manifests.get(model as ModelName)!;
    rows.find((r) => r.row === model)!.publishedProtocol = protocolResult(evaluation.report.models[0], countLeakedTestImages(data.indexRows, manifest, [manifest]));
  }
  const members = Object.keys(runs.published) as ModelName[];
  if (members.length < 2) return undefined;
  const first = members[0]!;
  const evaluation = await evaluateInto(plan, Object.values(runs.published), outLayout.publishedView(plan.out, first), 'published/eval');
  const leaked = countLeakedTestImages(data.indexRows, manifests.get(first)!, members.map((m) => manifests.get(m)!));
  rows.find((r) => r.row === ensembleName)!.publishedProtocol = protocolResult(evaluation.report.models.find((m) => m.kind === 'ensemble'), leaked);
  return evaluation.written?.dir;
}

/** The clean protocol: every clean run and their soft-vote ensemble on the shared, de-duplicated test split. */
async function evaluateClean(plan: ReproducePlan, data: PreparedData, runs: ReproduceResult['runs'], rows: ReproduceRow[]): Promise<EvaluationResult | undefined> {
  const cleanRuns = Object.values(runs.clean);
  if (!trainProtocols(plan.protocol).clean || cleanRuns.length === 0) return undefined;
  plan.log(`\n== evaluating ${cleanRuns.length} clean-protocol model(s) and their soft-vote ensemble on the shared test split`);
  const evaluation = await evaluateInto(plan, cleanRuns, plan.dataDir, 'eval');
  const cleanManifest = evaluation.report.images.map((i): ManifestRow => ({ path: i.path, label: i.label, split: 'test', group: '' }));
  for (const summary of evaluation.report.models) {
    const row = rows.find((r) => r.row === (summary.kind === 'ensemble' ? ensembleName : summary.name));
    // The shared split is de-duplicated, so this count is the check that it is: 0.
    if (row) row.clean = protocolResult(summary, countLeakedTestImages(data.indexRows, cleanManifest, []));
  }
  return evaluation;
}

/**
 * Evaluate into one of reproduce's own report folders. evaluateRuns stages the folder and switches
 * it in whole, so no stale file of an earlier evaluation survives; the folder is reproduce's, so the
 * report of another set of runs there (a model that failed last time) is replaced rather than refused.
 */
async function evaluateInto(plan: ReproducePlan, runs: string[], dataDir: string, folder: 'eval' | 'published/eval'): Promise<EvaluationResult> {
  const { ensemble, seed } = plan.config;
  await plan.record.refuseForeign([{ path: folder, kind: 'tree' }], 'the evaluation would replace them');
  const outDir = join(plan.out, ...folder.split('/'));
  const evaluation = await evaluateRuns({ backend: plan.inference, runs, dataDir, split: 'test', weights: ensemble.weights, tta: ensemble.tta, outDir, replaceReport: true, seed });
  await plan.record.recordTree(folder);
  return evaluation;
}

/**
 * The dashboard's files from the clean runs, when every model it loads trained. exportDashboard
 * stages them and switches each in; their names are fixed, so none of an earlier export survives
 * stale. Without every model, an earlier dashboard folder would hold weights this report no longer
 * describes: it is removed.
 */
async function exportDashboardFiles(plan: ReproducePlan, runs: ReproduceResult['runs']): Promise<string[] | undefined> {
  const names = dashboardModels().map((entry) => entry.name);
  const dir = outLayout.dashboard(plan.out);
  if (!names.every((name) => runs.clean[name] !== undefined)) {
    const entry: OutEntry = { path: 'dashboard', kind: 'export' };
    const foreign = await plan.record.foreign([entry]);
    if (foreign.length === 0) await plan.record.remove([entry]);
    else plan.log(`kept ${dir}, which describes an earlier set of runs: it holds files osteo did not write (${listSome(foreign)})`);
    return undefined;
  }
  const exported = await exportDashboard({ backend: plan.backend, dir, runs: Object.fromEntries(names.map((name) => [name, runs.clean[name]])) });
  return exported.files.map((file) => resolve(dir, file));
}

/** --cv K: its pooled out-of-fold figures join the table; a failure is recorded like a model's. */
async function crossValidate(plan: ReproducePlan, rows: ReproduceRow[], failures: ReproduceResult['failures']): Promise<string | undefined> {
  if (!plan.cv) return undefined;
  plan.log(`\n== clean protocol: ${plan.cv.folds}-fold cross-validation → ${plan.cv.out}`);
  try {
    const cv = await runCv(plan.cv, { backend: plan.backend, inference: plan.inference, log: plan.log, onTrainEvent: plan.options.onTrainEvent, signal: plan.options.signal });
    for (const cvRow of cv.report?.report.rows ?? []) {
      const row = rows.find((r) => r.row === (cvRow.entry === ensembleEntry ? ensembleName : cvRow.entry));
      if (row) row.cv = { accuracy: cvRow.pooled.accuracy!, balancedAccuracy: cvRow.pooled.balancedAccuracy!, macroF1: cvRow.pooled.macroF1! };
    }
    return cv.report?.out;
  } catch (error) {
    if (!(error instanceof UserError || error instanceof DataError) || plan.options.signal?.aborted) throw error;
    failures.push({ model: 'cv', protocol: 'cv', error: error.message });
    plan.log(`cross-validation failed: ${error.message}`);
    return undefined;
  }
}

/** OUT/reproduce.md (the table, also printed) and OUT/reproduce.json (the whole result). */
async function writeReproduceReport(plan: ReproducePlan, data: PreparedData, done: { rows: ReproduceRow[]; trained: TrainedRuns; evaluated: Evaluated; cvDir?: string }): Promise<ReproduceResult> {
  const { config, options, out, dataDir, checkpoints } = plan;
  const { rows, trained, evaluated } = done;
  const initialWeights = config.models.map((m) => `${m.model}: ${checkpoints.has(m.model) ? 'ImageNet (torchvision)' : 'random'}`).join(', ');
  const description: DataDescription = { kaggle: data.kaggle, phantom: existsSync(join(dataDir, 'phantom.json')), counts: await countClassFiles(dataDir), initialWeights };
  const table = formatReproduceTable(rows, dataDir, description);
  const reportFile = outLayout.report(out);
  await plan.record.writeFile('reproduce.md', `# osteo reproduce\n\nconfig: ${options.config}\n\nprotocol: ${plan.protocol}\n\ninitial weights: ${initialWeights}\n\n${table}\n`);
  const result: ReproduceResult = {
    out,
    dataDir,
    protocol: plan.protocol,
    kaggle: data.kaggle,
    rows,
    runs: trained.runs,
    failures: trained.failures,
    checkFailures: options.check === undefined ? [] : checkAgainstPublished(rows, options.check),
    artefacts: {
      report: reportFile,
      evaluation: evaluated.evaluation,
      publishedEvaluation: evaluated.publishedEvaluation,
      cv: done.cvDir,
      dashboard: evaluated.dashboard,
      runs: [...Object.values(trained.runs.published), ...Object.values(trained.runs.clean)],
    },
  };
  await plan.record.writeFile('reproduce.json', JSON.stringify(result, null, 2) + '\n');
  return result;
}
