/**
 * `osteo cv`: grouped, stratified K-fold cross-validation, as independent jobs (fold × model ×
 * repeat) that any scheduler can run — all in one process, or `--shard I/N` each on its own
 * machine — and `osteo cv collect` to merge them into one report.
 *
 *   OUT/plan.json               the settings, the data's fingerprint and the job list (every shard writes the same one)
 *   OUT/jobs/<job>/data/        the job's dataset view: its splits.csv, links to the class folders
 *   OUT/jobs/<job>/run/         its training run (resumed from `last` when the job was killed)
 *   OUT/jobs/<job>/result.json  its held-out predictions: the job is done
 *   OUT/report/                 cv.md, cv.csv, cv.json, confusion-<model>.png (staged, switched in)
 *
 * A job's result depends only on the plan and the job: its folds come from (seed, repeat), its inner
 * validation split from (seed, repeat, fold), its training seed from (seed, repeat, fold) — never
 * from job order or shard — so the union of the shards is the unsharded run, bit for bit, on an
 * engine whose rounding does not depend on the machine (cpu/wasm with a fixed --workers). Every
 * model of one (repeat, fold) gets the same training seed: common random numbers, so a paired
 * difference between two models measures the models, not two draws of the seed.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { assignFolds, classNames, foldManifest, indexDataset, readIndex, writeManifestView, type IndexRow } from '../data/index.js';
import { confusionMatrixPng } from '../report/index.js';
import { parseShard, resolveTrainConfig, type CvConfig } from '../config/index.js';
import { evaluateRuns } from '../eval/index.js';
import { type ModelName } from '../models/index.js';
import type { BackendHandle, BackendPreference } from '../backend/index.js';
import type { TrainEvent } from '../train/index.js';
import { DataError, UserError, deriveSeed, formatDuration, replaceFolder, writeFileAtomic, writeJsonAtomic } from '../util/index.js';
import { buildCvReport, compareCvJobs, cvCsv, formatCvReport, formatDifferences, type CvDifference, type CvReport, type JobPredictions } from './cv-report.js';
import { runPaths } from '../runs/index.js';
import { executeRun, planRun } from './training.js';

export interface CvEntry {
  /** The row name: the model, or model:recipe when one model appears with several recipes. */
  name: string;
  model: ModelName;
  /** A recipe file (absolute); absent: the model's built-in recipe. */
  recipe?: string;
  /** `key=value` training overrides after the recipe. */
  sets: string[];
  /** Initial weights file (absolute); absent: random. */
  pretrained?: string;
}

/** One CV experiment, whichever command asked for it (`osteo cv`, `osteo reproduce --cv K`). */
export interface CvExperiment {
  dataDir: string;
  out: string;
  folds: number;
  repeats: number;
  seed: number;
  innerVal: number;
  entries: CvEntry[];
  /** Training keys set for every job (epochs, imageSize, batchSize) after each recipe. */
  overrides?: Record<string, unknown>;
  backend?: BackendPreference;
  workers?: number;
  shard?: { index: number; count: number };
  resamples: number;
}

export interface CvJob {
  id: string;
  repeat: number;
  fold: number;
  entry: string;
  /** Training seed: deriveSeed(seed, repeat, fold). */
  seed: number;
}

export interface CvPlan {
  format: 'osteo-cv-plan';
  version: 1;
  /** sha256 of everything a job's result depends on (not where the data or OUT are). */
  fingerprint: string;
  dataFingerprint: string;
  images: number;
  folds: number;
  repeats: number;
  seed: number;
  innerVal: number;
  resamples: number;
  entries: { name: string; model: ModelName; recipe: string | null; config: Record<string, unknown> }[];
  jobs: CvJob[];
}

export interface CvRunOptions {
  /** The backend the command chose (for `experiment.backend`): every job trains on it. */
  backend: BackendHandle;
  /** what validation and the held-out predictions run on (default: `backend`) */
  inference?: BackendHandle;
  log?: (line: string) => void;
  onTrainEvent?: (event: TrainEvent) => void;
  signal?: AbortSignal;
}

export interface CvRunResult {
  out: string;
  plan: CvPlan;
  /** The jobs of this shard (all of them without --shard), and what happened to each. */
  jobs: { id: string; status: 'done' | 'reused' }[];
  /** Present when every job of the plan has a result (always without --shard). */
  report?: CvCollectResult;
}

export interface CvCollectResult {
  out: string;
  report: CvReport;
  files: string[];
}

interface JobResult extends JobPredictions {
  format: 'osteo-cv-job';
  version: 1;
  fingerprint: string;
  trainImages: number;
  valImages: number;
  seconds: number;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const jobDir = (out: string, id: string) => join(out, 'jobs', id);
const resultPath = (out: string, id: string) => join(jobDir(out, id), 'result.json');
const planPath = (out: string) => join(out, 'plan.json');

/** Row names: unique, readable. */
export function cvEntryNames(models: readonly string[], recipes: readonly (string | undefined)[]): string[] {
  const names = models.map((model, i) => (models.filter((m) => m === model).length > 1 && recipes[i] ? `${model}:${basename(recipes[i]!).replace(/\.json$/, '')}` : model));
  return names.map((name, i) => (names.indexOf(name) === i && names.lastIndexOf(name) === i ? name : `${name}#${i + 1}`));
}

/** The entries of `osteo cv`'s flags. */
export function cvEntriesFromConfig(config: CvConfig, sets: readonly string[]): CvEntry[] {
  const recipes = config.model.map((_, i) => (config.config[i] === undefined ? undefined : resolve(config.config[i]!)));
  const names = cvEntryNames(config.model, recipes);
  return config.model.map((model, i) => ({
    name: names[i]!,
    model,
    ...(recipes[i] ? { recipe: recipes[i] } : {}),
    sets: [...sets],
    ...(config.pretrained ? { pretrained: resolve(config.pretrained) } : {}),
  }));
}

export function cvExperimentFromConfig(config: CvConfig, sets: readonly string[]): CvExperiment {
  const overrides = Object.fromEntries(Object.entries({ epochs: config.epochs, imageSize: config.imageSize, batchSize: config.batchSize }).filter(([, v]) => v !== undefined));
  return {
    dataDir: resolve(config.data),
    out: resolve(config.out),
    folds: config.folds,
    repeats: config.repeats,
    seed: config.seed,
    innerVal: config.innerVal,
    entries: cvEntriesFromConfig(config, sets),
    overrides,
    backend: config.backend,
    workers: config.workers,
    shard: parseShard(config.shard),
    resamples: config.resamples,
  };
}

async function loadIndexRows(dataDir: string): Promise<IndexRow[]> {
  if (!existsSync(dataDir)) throw new UserError(`--data ${dataDir}: no such folder`);
  return existsSync(join(dataDir, 'index.csv')) ? readIndex(dataDir) : (await indexDataset({ dataDir })).rows;
}

/** sha256 of the index's paths, labels, content hashes, groups and use flags: the data a run or job saw. */
export function dataFingerprint(rows: readonly IndexRow[]): string {
  const lines = [...rows].sort((a, b) => (a.path < b.path ? -1 : 1)).map((r) => [r.path, r.label, r.contentHash, r.group, r.use].join('\t'));
  return sha256(lines.join('\n'));
}

/** A job's training config: its recipe, the overrides, its seed, its view and run folders. */
function jobTrainConfig(experiment: CvExperiment, entry: CvEntry, job: CvJob) {
  const dir = jobDir(experiment.out, job.id);
  return resolveTrainConfig({
    configFile: entry.recipe,
    flags: {
      model: entry.model,
      data: join(dir, 'data'),
      out: join(dir, 'run'),
      seed: job.seed,
      backend: experiment.backend,
      workers: experiment.workers,
      pretrained: entry.pretrained,
      ...experiment.overrides,
    },
    sets: entry.sets,
  });
}

/** What a job's result depends on in a training config: not where it runs or reads and writes. */
function portableConfig(config: Record<string, unknown>): Record<string, unknown> {
  const { out: _out, data: _data, seed: _seed, backend: _backend, workers: _workers, maxSteps: _maxSteps, ...rest } = config;
  if (typeof rest.pretrained === 'string') rest.pretrained = basename(rest.pretrained);
  return rest;
}

/** The plan: settings, data fingerprint, each entry's resolved recipe, and the jobs in a fixed order (repeat, fold, entry). */
export async function planCv(experiment: CvExperiment, indexRows: readonly IndexRow[]): Promise<CvPlan> {
  const jobs: CvJob[] = [];
  for (let repeat = 0; repeat < experiment.repeats; repeat++) {
    for (let fold = 0; fold < experiment.folds; fold++) {
      for (const entry of experiment.entries) {
        jobs.push({ id: `r${repeat + 1}-f${fold + 1}-${entry.name.replace(/[^A-Za-z0-9_.-]+/g, '_')}`, repeat, fold, entry: entry.name, seed: deriveSeed(experiment.seed, repeat, fold) & 0x7fffffff });
      }
    }
  }
  const entries = [];
  for (const entry of experiment.entries) {
    const config = await jobTrainConfig(experiment, entry, jobs.find((j) => j.entry === entry.name)!);
    entries.push({ name: entry.name, model: entry.model, recipe: entry.recipe ? basename(entry.recipe) : null, config: portableConfig(config as unknown as Record<string, unknown>) });
  }
  const settings = {
    dataFingerprint: dataFingerprint(indexRows),
    images: indexRows.filter((r) => r.use).length,
    folds: experiment.folds,
    repeats: experiment.repeats,
    seed: experiment.seed,
    innerVal: experiment.innerVal,
    entries,
    jobs,
  };
  // The bootstrap's resample count shapes the report, not a job's result: it stays out of the fingerprint.
  return { format: 'osteo-cv-plan', version: 1, fingerprint: sha256(JSON.stringify(settings)), resamples: experiment.resamples, ...settings };
}

/** The jobs of shard I of N: every N-th job of the plan's fixed order, starting at the I-th. */
export function shardJobs(jobs: readonly CvJob[], shard: { index: number; count: number } | undefined): CvJob[] {
  return shard === undefined ? [...jobs] : jobs.filter((_, i) => i % shard.count === shard.index - 1);
}

async function readJson<T>(file: string): Promise<T> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (error) {
    throw new DataError(file, `is not readable JSON (${(error as Error).message})`);
  }
}

async function readPlan(out: string): Promise<CvPlan> {
  const file = planPath(out);
  if (!existsSync(file)) throw new UserError(`${out} is not a CV folder: ${file} is missing (it is written by \`osteo cv\`)`);
  const plan = await readJson<CvPlan>(file);
  if (plan.format !== 'osteo-cv-plan' || plan.version !== 1) throw new DataError(file, 'is not an osteo CV plan (version 1)');
  return plan;
}

/** Step times measured so far → the time left for this shard's jobs. */
class EtaTracker {
  private stepSeconds = 0;
  private steps = 0;
  private stepsPerJob: number | undefined;
  private currentLeft = 0;

  observe(event: TrainEvent): void {
    if (event.type === 'start') {
      this.stepsPerJob = event.stepsPerEpoch * event.epochs;
      this.currentLeft = this.stepsPerJob;
    } else if (event.type === 'resume') {
      this.currentLeft = Math.max(0, (this.stepsPerJob ?? 0) - event.step);
    } else if (event.type === 'step') {
      this.stepSeconds += event.seconds;
      this.steps += 1;
      this.currentLeft = Math.max(0, this.currentLeft - 1);
    }
  }

  /** Seconds left with `jobsAfter` whole jobs after the current one; undefined before any measured step. */
  secondsLeft(jobsAfter: number): number | undefined {
    if (this.steps === 0 || this.stepsPerJob === undefined) return undefined;
    return (this.stepSeconds / this.steps) * (this.currentLeft + jobsAfter * this.stepsPerJob);
  }
}

async function runJob(experiment: CvExperiment, plan: CvPlan, job: CvJob, indexRows: readonly IndexRow[], options: CvRunOptions & { onEvent: (event: TrainEvent) => void }): Promise<void> {
  const started = performance.now();
  const entry = experiment.entries.find((e) => e.name === job.entry)!;
  const dir = jobDir(experiment.out, job.id);
  const folds = assignFolds(indexRows, experiment.folds, deriveSeed(experiment.seed, job.repeat));
  const manifest = foldManifest(indexRows, folds, job.fold, experiment.innerVal, deriveSeed(experiment.seed, job.repeat, job.fold));
  await writeManifestView(join(dir, 'data'), experiment.dataDir, manifest, indexRows);
  const planned = await planRun(await jobTrainConfig(experiment, entry, job));
  const trained = await executeRun(planned, { backend: options.backend, inference: options.inference, onEvent: options.onEvent, signal: options.signal });
  const status = trained?.status ?? planned.status;
  if (status === 'interrupted') throw new UserError(`interrupted in job ${job.id}; run the same command again to resume it from its last checkpoint`);
  if (status === 'diverged') throw new UserError(`job ${job.id} diverged (${trained?.message ?? `see ${runPaths(planned.config.out).events}`}); change the recipe and re-run in a fresh --out`);
  const evaluation = await evaluateRuns({ backend: options.inference ?? options.backend, runs: [join(dir, 'run')], dataDir: join(dir, 'data'), split: 'test', outDir: null, resamples: 1, seed: 0 });
  const held = manifest.filter((r) => r.split === 'test');
  const groupOf = new Map(held.map((r) => [r.path, r.group]));
  const result: JobResult = {
    format: 'osteo-cv-job',
    version: 1,
    fingerprint: plan.fingerprint,
    job: job.id,
    repeat: job.repeat,
    fold: job.fold,
    entry: job.entry,
    paths: evaluation.report.images.map((i) => i.path),
    groups: evaluation.report.images.map((i) => groupOf.get(i.path)!),
    labels: evaluation.report.images.map((i) => i.label),
    probabilities: Array.from(evaluation.report.models[0]!.probabilities),
    trainImages: manifest.filter((r) => r.split === 'train').length,
    valImages: manifest.filter((r) => r.split === 'val').length,
    seconds: (performance.now() - started) / 1000,
  };
  await writeJsonAtomic(resultPath(experiment.out, job.id), result);
}

async function finishedResult(out: string, job: CvJob, fingerprint: string): Promise<boolean> {
  if (!existsSync(resultPath(out, job.id))) return false;
  return (await readJson<JobResult>(resultPath(out, job.id))).fingerprint === fingerprint;
}

/** Refuse, before anything runs, an OUT that holds a CV plan with other settings, data or recipes. */
export async function assertCvPlanMatches(experiment: CvExperiment, indexRows?: readonly IndexRow[]): Promise<CvPlan> {
  const plan = await planCv(experiment, indexRows ?? (await loadIndexRows(experiment.dataDir)));
  if (existsSync(planPath(experiment.out))) {
    const existing = await readPlan(experiment.out);
    if (existing.fingerprint !== plan.fingerprint) {
      throw new UserError(`${experiment.out} holds a CV plan with other settings, data or recipes (${planPath(experiment.out)}); choose another --out, or delete that folder to start over`);
    }
  }
  return plan;
}

/**
 * Run the plan's jobs (this shard's, with `shard`): finished ones are skipped, a killed one resumes
 * from its checkpoint. An OUT planned with other settings is refused before anything runs. Without a
 * shard the report is collected at the end.
 */
export async function runCv(experiment: CvExperiment, options: CvRunOptions): Promise<CvRunResult> {
  const log = options.log ?? (() => {});
  const indexRows = await loadIndexRows(experiment.dataDir);
  const plan = await assertCvPlanMatches(experiment, indexRows);
  await mkdir(experiment.out, { recursive: true });
  await writeJsonAtomic(planPath(experiment.out), plan);
  const mine = shardJobs(plan.jobs, experiment.shard);
  const shardText = experiment.shard ? ` (shard ${experiment.shard.index}/${experiment.shard.count})` : '';
  log(`cv: ${plan.images} images, ${plan.folds} folds × ${plan.repeats} repeat(s) × ${plan.entries.length} model(s) = ${plan.jobs.length} jobs; running ${mine.length}${shardText} → ${experiment.out}`);
  const eta = new EtaTracker();
  const jobs: CvRunResult['jobs'] = [];
  for (const [i, job] of mine.entries()) {
    const where = `[job ${i + 1}/${mine.length}] ${job.id} (repeat ${job.repeat + 1}/${plan.repeats}, fold ${job.fold + 1}/${plan.folds}, ${job.entry})`;
    if (await finishedResult(experiment.out, job, plan.fingerprint)) {
      log(`${where}: done earlier, skipped`);
      jobs.push({ id: job.id, status: 'reused' });
      continue;
    }
    const left = eta.secondsLeft(mine.length - i);
    log(`${where}: running${left === undefined ? '' : `; ETA for this shard ${formatDuration(left)}`}`);
    let lastEpochLog = 0;
    await runJob(experiment, plan, job, indexRows, {
      ...options,
      onEvent: (event) => {
        eta.observe(event);
        options.onTrainEvent?.(event);
        if (event.type === 'epoch-end' && performance.now() - lastEpochLog > 10_000) {
          lastEpochLog = performance.now();
          log(`${where}: epoch ${event.metrics.epoch} done; ETA for this shard ${formatDuration(eta.secondsLeft(mine.length - i - 1) ?? Number.NaN)}`);
        }
      },
    });
    jobs.push({ id: job.id, status: 'done' });
  }
  const complete = await Promise.all(plan.jobs.map((job) => finishedResult(experiment.out, job, plan.fingerprint)));
  if (complete.every(Boolean)) return { out: experiment.out, plan, jobs, report: await collectCv(experiment.out) };
  if (experiment.shard) log(`shard ${experiment.shard.index}/${experiment.shard.count} finished; once every shard has, run \`osteo cv collect ${experiment.out}\``);
  return { out: experiment.out, plan, jobs };
}

/** Every job's result, checked against the plan: missing and mismatched jobs are named. */
async function loadResults(out: string): Promise<{ plan: CvPlan; results: JobResult[] }> {
  const plan = await readPlan(out);
  const missing: string[] = [];
  const mismatched: string[] = [];
  const results: JobResult[] = [];
  for (const job of plan.jobs) {
    const file = resultPath(out, job.id);
    if (!existsSync(file)) {
      missing.push(job.id);
      continue;
    }
    const result = await readJson<JobResult>(file);
    if (result.format !== 'osteo-cv-job' || result.fingerprint !== plan.fingerprint || result.job !== job.id) mismatched.push(`${job.id} (${file})`);
    else results.push(result);
  }
  if (mismatched.length > 0) {
    throw new UserError(`${mismatched.length} job result(s) in ${out} were made with other settings, data or recipes than ${planPath(out)}: ${mismatched.join(', ')}; re-run those jobs with the same command line as the others`);
  }
  if (missing.length > 0) {
    const byShard = (count: number) => [...new Set(missing.map((id) => plan.jobs.findIndex((j) => j.id === id) % count + 1))].join(', ');
    throw new UserError(
      `${missing.length} of ${plan.jobs.length} jobs have no result in ${out}: ${missing.join(', ')}` +
        ` (with N shards, job k of the plan is in shard ((k−1) mod N)+1; e.g. of 3 shards: ${byShard(3)})`,
    );
  }
  return { plan, results };
}

/** Merge the jobs' results into OUT/report (cv.md, cv.csv, cv.json, confusion PNGs), staged and switched in. */
export async function collectCv(out: string): Promise<CvCollectResult> {
  const dir = resolve(out);
  const { plan, results } = await loadResults(dir);
  const report = buildCvReport(results, { entries: plan.entries.map((e) => e.name), folds: plan.folds, repeats: plan.repeats, seed: plan.seed, resamples: plan.resamples });
  const target = join(dir, 'report');
  const files = await replaceFolder(target, (staging) => writeCvReport(staging, plan, report));
  return { out: target, report, files: files.map((f) => join(target, f)) };
}

/** cv.md, cv.csv, cv.json and a confusion matrix per entry, written into `folder`; returns their names. */
async function writeCvReport(folder: string, plan: CvPlan, report: CvReport): Promise<string[]> {
  const files = ['cv.md', 'cv.csv', 'cv.json'];
  await writeFileAtomic(join(folder, 'cv.md'), formatCvReport(report, { data: `the dataset (index fingerprint ${plan.dataFingerprint.slice(0, 12)})`, plan: plan.fingerprint.slice(0, 12) }));
  await writeFileAtomic(join(folder, 'cv.csv'), cvCsv(report));
  await writeJsonAtomic(join(folder, 'cv.json'), { plan: { fingerprint: plan.fingerprint, dataFingerprint: plan.dataFingerprint, folds: plan.folds, repeats: plan.repeats, seed: plan.seed, entries: plan.entries }, ...report });
  for (const row of report.rows) {
    const file = `confusion-${row.entry.replace(/[^A-Za-z0-9_.-]+/g, '_')}.png`;
    const title = `${row.entry}: pooled out-of-fold${plan.repeats > 1 ? ` (${plan.repeats} repeats)` : ''}`;
    await writeFileAtomic(join(folder, file), await confusionMatrixPng({ title, classNames, confusion: row.confusion }));
    files.push(file);
  }
  return files;
}

export interface CvCompareResult {
  a: string;
  b: string;
  differences: CvDifference[];
  markdown: string;
}

/** Paired differences between two CV folders run on the same folds (same data, folds, repeats, seed, inner split). */
export async function compareCv(dirA: string, dirB: string): Promise<CvCompareResult> {
  const a = await loadResults(resolve(dirA));
  const b = await loadResults(resolve(dirB));
  const keys = ['dataFingerprint', 'folds', 'repeats', 'seed', 'innerVal'] as const;
  const differing = keys.filter((k) => a.plan[k] !== b.plan[k]);
  if (differing.length > 0) {
    throw new UserError(`${dirA} and ${dirB} were not run on the same folds (they differ in ${differing.join(', ')}): a paired comparison needs the same data, --folds, --repeats, --seed and --inner-val`);
  }
  const differences = compareCvJobs(
    { jobs: a.results, entries: a.plan.entries.map((e) => e.name), label: 'A' },
    { jobs: b.results, entries: b.plan.entries.map((e) => e.name), label: 'B' },
    { folds: a.plan.folds, repeats: a.plan.repeats, seed: a.plan.seed, resamples: Math.max(a.plan.resamples, b.plan.resamples) },
  );
  const markdown = `A = ${dirA}, B = ${dirB}: ${a.plan.folds}-fold CV on the same folds (${a.plan.images} images)\n\n${formatDifferences(differences)}\n`;
  return { a: resolve(dirA), b: resolve(dirB), differences, markdown };
}
