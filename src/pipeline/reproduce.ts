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
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
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
  splitDataset,
  synthesizePhantom,
  writeManifestView,
  type IndexRow,
  type ManifestRow,
} from '../data/index.js';
import { type ProgressSink, DataError, UserError, errorMessage, writeFileAtomic, writeJsonAtomic } from '../util/index.js';
import { dashboardModels, ensembleName, evaluateRuns, exportDashboard, type EvaluationResult } from '../eval/index.js';
import { getModel, type ModelName } from '../models/index.js';
import { loadPipelineConfig, resolveTrainConfig, type PipelineConfig, type TrainConfig } from '../config/index.js';
import { type TrainEvent } from '../train/index.js';
import { defaultWeightsDir, fetchPretrainedWeights } from '../weights/index.js';
import { useBackend, type BackendHandle, type BackendPreference } from '../backend/index.js';
import type { ModelSummary } from '../report/index.js';
import { executeRun, planRun, type PlannedRun } from './training.js';
import { assertCvPlanMatches, dataFingerprint, runCv, type CvExperiment } from './cv.js';
import { ensembleEntry, type Interval } from './cv-report.js';

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

/** What reproduce writes at the top of OUT: the only entries --fresh removes. */
const ownedEntries = ['runs', 'published', 'cv', 'eval', 'dashboard', 'data.json', 'reproduce.md', 'reproduce.json'];

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
  const { report: indexReport } = await indexDataset({ dataDir, progress: options.progress?.('index') });
  log(formatIndexReport(indexReport));
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

interface ModelPlan {
  model: ModelName;
  protocol: 'published' | 'clean';
  run: PlannedRun;
  /** Published protocol: the model's own split, written as a dataset view before training. */
  manifest?: ManifestRow[];
}

/** Evaluate into a staged sibling folder and switch it in, so no stale file of an earlier evaluation survives. */
async function evaluateStaged(backend: BackendHandle, runs: string[], dataDir: string, outDir: string, config: PipelineConfig): Promise<EvaluationResult> {
  const staging = `${outDir}.partial`;
  await rm(staging, { recursive: true, force: true });
  const evaluation = await evaluateRuns({ backend, runs, dataDir, split: 'test', weights: config.ensemble.weights, tta: config.ensemble.tta, outDir: staging, seed: config.seed });
  await rm(outDir, { recursive: true, force: true });
  await rename(staging, outDir);
  return { report: evaluation.report, written: evaluation.written ? { ...evaluation.written, dir: outDir } : null };
}

async function isKaggleSet(dataDir: string): Promise<boolean> {
  const counts = await countClassFiles(dataDir);
  return counts.every((n, i) => n === publishedCounts[i]);
}

export async function reproduce(options: ReproduceOptions): Promise<ReproduceResult> {
  const log = options.log ?? (() => {});
  const protocol = options.protocol ?? 'both';
  const runPublished = protocol !== 'clean';
  const runClean = protocol !== 'published';
  if (options.check !== undefined && !runPublished) throw new UserError('--check compares the published protocol with the published table: use --protocol published or both');
  if (options.cv !== undefined && !runClean) throw new UserError('--cv runs cross-validation under the clean protocol: use --protocol clean or both');
  const configFile = resolve(options.config);
  const config = await loadPipelineConfig(configFile);
  const out = resolve(options.out);
  if (config.description) log(config.description);
  if (options.fresh) {
    for (const entry of ownedEntries) await rm(join(out, entry), { recursive: true, force: true });
    log(`--fresh: removed earlier results in ${out}`);
  }
  const checkpoints = await fetchCheckpoints(config, options, log);
  const dataDir = resolve(options.data ?? config.data.dir);

  // Every run is planned before any data work or training: a run made with another config stops everything here.
  const trainConfigFor = (spec: PipelineConfig['models'][number], data: string, runDir: string): Promise<TrainConfig> =>
    resolveTrainConfig({
      configFile: spec.recipe ? resolve(dirname(configFile), spec.recipe) : undefined,
      flags: { model: spec.model, data, out: runDir, pretrained: checkpoints.get(spec.model), seed: config.seed, backend: options.backend, workers: options.workers },
      sets: [...config.set, ...spec.set, ...(options.sets ?? [])],
    });
  const plans: ModelPlan[] = [];
  for (const spec of config.models) {
    if (runPublished) {
      const dir = join(out, 'published', spec.model);
      plans.push({ model: spec.model, protocol: 'published', run: await planRun(await trainConfigFor(spec, join(dir, 'data'), join(dir, 'run'))) });
    }
    if (runClean) plans.push({ model: spec.model, protocol: 'clean', run: await planRun(await trainConfigFor(spec, dataDir, join(out, 'runs', spec.model))) });
  }

  await prepareData(config, options, log);
  const kaggle = await isKaggleSet(dataDir);
  if (options.check !== undefined && !kaggle) {
    throw new UserError(`--check compares with the published table, which was measured on the Kaggle set; ${dataDir} is not it (${(await countClassFiles(dataDir)).join(' / ')} files, Kaggle ${publishedCounts.join(' / ')})`);
  }
  const indexRows: IndexRow[] = await readIndex(dataDir);
  // Runs are reused only on the data they were trained on: the index's fingerprint is kept beside them.
  const fingerprint = dataFingerprint(indexRows);
  const dataRecord = join(out, 'data.json');
  if (existsSync(dataRecord) && plans.some((p) => p.run.action !== 'train')) {
    const recorded = (JSON.parse(await readFile(dataRecord, 'utf8')) as { fingerprint?: string }).fingerprint;
    if (recorded !== fingerprint) throw new UserError(`the runs in ${out} were trained on other data than ${dataDir} holds now (its index changed); re-run with --fresh to start over, or choose another --out`);
  }
  await mkdir(out, { recursive: true });
  await writeJsonAtomic(dataRecord, { dataDir, fingerprint });
  for (const plan of plans.filter((p) => p.protocol === 'published')) {
    const spec = config.models.find((m) => m.model === plan.model)!;
    plan.manifest = publishedSplit(indexRows, { val: config.data.val, test: config.data.test }, spec.publishedSeed ?? config.data.seed);
  }
  if (runClean) {
    const { report: splitReport } = await splitDataset({ dataDir, val: config.data.val, test: config.data.test, seed: config.data.seed });
    log(formatSplitReport(splitReport));
  }
  const cvExperiment: CvExperiment | undefined =
    options.cv === undefined
      ? undefined
      : {
          dataDir,
          out: join(out, 'cv'),
          folds: options.cv,
          repeats: 1,
          seed: config.seed,
          innerVal: config.data.val,
          entries: config.models.map((spec) => ({
            name: spec.model,
            model: spec.model,
            ...(spec.recipe ? { recipe: resolve(dirname(configFile), spec.recipe) } : {}),
            sets: [...config.set, ...spec.set, ...(options.sets ?? [])],
            ...(checkpoints.has(spec.model) ? { pretrained: checkpoints.get(spec.model)! } : {}),
          })),
          backend: options.backend,
          workers: options.workers,
          resamples: 1000,
        };
  if (cvExperiment) await assertCvPlanMatches(cvExperiment);

  const runs: ReproduceResult['runs'] = { clean: {}, published: {} };
  const failures: ReproduceResult['failures'] = [];
  // chosen once: every run trains, is evaluated and exported on it
  const backend = await useBackend(options.backend ?? 'auto');
  for (const plan of plans) {
    const runDir = plan.run.config.out;
    const verb = plan.run.action === 'reuse' ? 'reusing the finished run' : plan.run.action === 'resume' ? 'resuming' : 'training';
    log(`\n== ${plan.protocol} protocol: ${verb} ${plan.model} → ${runDir}`);
    try {
      if (plan.manifest) await writeManifestView(plan.run.config.data, dataDir, plan.manifest, indexRows);
      if (plan.run.action === 'train') log(plan.run.config.pretrained ? `initial weights: ${plan.run.config.pretrained}` : 'initial weights: random (no ImageNet checkpoint)');
      const trained = await executeRun(plan.run, { backend, onEvent: options.onTrainEvent, signal: options.signal });
      const status = trained?.status ?? plan.run.status;
      if (status === 'interrupted') throw new UserError(`interrupted while training ${plan.model}; run the same command again to resume from ${runDir}/last`);
      if (status === 'diverged') throw new UserError(trained?.message ?? `${plan.model} diverged (see ${runDir}/events.jsonl); re-run with --fresh after changing its recipe`);
      runs[plan.protocol][plan.model] = runDir;
    } catch (error) {
      if (!(error instanceof UserError || error instanceof DataError) || options.signal?.aborted) throw error;
      failures.push({ model: plan.model, protocol: plan.protocol, error: error.message });
      log(`${plan.model} (${plan.protocol} protocol) failed: ${error.message}`);
    }
  }

  const rows: ReproduceRow[] = publishedResults
    .filter((p) => p.row === 'ensemble' || config.models.some((m) => m.model === p.row))
    .map((p) => ({ row: p.row === 'ensemble' ? ensembleName : p.row, published: p.accuracy, publishedProtocol: null, clean: null, cv: null, errors: [] }));
  const rowOf = (name: string) => rows.find((r) => r.row === name)!;
  for (const f of failures) rowOf(f.model).errors.push(`${f.protocol} protocol: ${f.error}`);

  let publishedEvaluation: string | undefined;
  if (runPublished && Object.keys(runs.published).length > 0) {
    log('\n== evaluating the published protocol: each model on its own test split, the ensemble on the first model\'s');
    const manifests = new Map(plans.filter((p) => p.manifest).map((p) => [p.model, p.manifest!]));
    for (const [model, run] of Object.entries(runs.published)) {
      const view = join(out, 'published', model, 'data');
      const evaluation = await evaluateRuns({ backend, runs: [run], dataDir: view, split: 'test', outDir: null, seed: config.seed });
      const manifest = manifests.get(model as ModelName)!;
      rowOf(model).publishedProtocol = protocolResult(evaluation.report.models[0], countLeakedTestImages(indexRows, manifest, [manifest]));
    }
    const members = Object.keys(runs.published) as ModelName[];
    if (members.length > 1) {
      // As the seed project scored it: one test set (the first model's), every member's own training.
      const first = members[0]!;
      const evaluation = await evaluateStaged(backend, Object.values(runs.published), join(out, 'published', first, 'data'), join(out, 'published', 'eval'), config);
      const leaked = countLeakedTestImages(indexRows, manifests.get(first)!, members.map((m) => manifests.get(m)!));
      rowOf(ensembleName).publishedProtocol = protocolResult(evaluation.report.models.find((m) => m.kind === 'ensemble'), leaked);
      publishedEvaluation = evaluation.written?.dir;
    }
  }

  let evaluation: EvaluationResult | undefined;
  let dashboard: string[] | undefined;
  const cleanRuns = Object.values(runs.clean);
  if (runClean && cleanRuns.length > 0) {
    log(`\n== evaluating ${cleanRuns.length} clean-protocol model(s) and their soft-vote ensemble on the shared test split`);
    evaluation = await evaluateStaged(backend, cleanRuns, dataDir, join(out, 'eval'), config);
    const cleanManifest = evaluation.report.images.map((i): ManifestRow => ({ path: i.path, label: i.label, split: 'test', group: '' }));
    for (const summary of evaluation.report.models) {
      const name = summary.kind === 'ensemble' ? ensembleName : summary.name;
      const row = rows.find((r) => r.row === name);
      // The shared split is de-duplicated, so this count is the check that it is: 0.
      if (row) row.clean = protocolResult(summary, countLeakedTestImages(indexRows, cleanManifest, []));
    }
    const dashboardNames = dashboardModels().map((entry) => entry.name);
    const dashboardDir = join(out, 'dashboard');
    if (dashboardNames.every((name) => runs.clean[name] !== undefined)) {
      const staging = `${dashboardDir}.partial`;
      await rm(staging, { recursive: true, force: true });
      const exported = await exportDashboard({ backend, dir: staging, runs: Object.fromEntries(dashboardNames.map((name) => [name, runs.clean[name]])) });
      await rm(dashboardDir, { recursive: true, force: true });
      await rename(staging, dashboardDir);
      dashboard = exported.files.map((file) => resolve(dashboardDir, file));
    } else {
      // A dashboard folder from an earlier run would hold weights this report no longer describes.
      await rm(dashboardDir, { recursive: true, force: true });
    }
  }

  let cvDir: string | undefined;
  if (cvExperiment) {
    log(`\n== clean protocol: ${cvExperiment.folds}-fold cross-validation → ${cvExperiment.out}`);
    try {
      const cv = await runCv(cvExperiment, { backend, log, onTrainEvent: options.onTrainEvent, signal: options.signal });
      for (const cvRow of cv.report?.report.rows ?? []) {
        const row = rows.find((r) => r.row === (cvRow.entry === ensembleEntry ? ensembleName : cvRow.entry));
        if (row) row.cv = { accuracy: cvRow.pooled.accuracy!, balancedAccuracy: cvRow.pooled.balancedAccuracy!, macroF1: cvRow.pooled.macroF1! };
      }
      cvDir = cv.report?.out;
    } catch (error) {
      if (!(error instanceof UserError || error instanceof DataError) || options.signal?.aborted) throw error;
      failures.push({ model: 'cv', protocol: 'cv', error: error.message });
      log(`cross-validation failed: ${error.message}`);
    }
  }

  const initialWeights = config.models.map((m) => `${m.model}: ${checkpoints.has(m.model) ? 'ImageNet (torchvision)' : 'random'}`).join(', ');
  const description: DataDescription = { kaggle, phantom: existsSync(join(dataDir, 'phantom.json')), counts: await countClassFiles(dataDir), initialWeights };
  const table = formatReproduceTable(rows, dataDir, description);
  const reportFile = join(out, 'reproduce.md');
  await mkdir(out, { recursive: true });
  await writeFileAtomic(reportFile, `# osteo reproduce\n\nconfig: ${options.config}\n\nprotocol: ${protocol}\n\ninitial weights: ${initialWeights}\n\n${table}\n`);
  const checkFailures = options.check === undefined ? [] : checkAgainstPublished(rows, options.check);
  const allRuns = [...Object.values(runs.published), ...cleanRuns];
  const result: ReproduceResult = {
    out,
    dataDir,
    protocol,
    kaggle,
    rows,
    runs,
    failures,
    checkFailures,
    artefacts: { report: reportFile, evaluation: evaluation?.written?.dir, publishedEvaluation, cv: cvDir, dashboard, runs: allRuns },
  };
  await writeJsonAtomic(join(out, 'reproduce.json'), result);
  return result;
}
