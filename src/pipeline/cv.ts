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
import { mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { assignFolds, classNames, foldManifest, indexDataset, readIndex, writeManifestView, type IndexRow } from '../data/index.js';
import { confusionMatrixPng } from '../report/index.js';
import { locateConfigFile, parseShard, resolveTrainConfig, type CvConfig } from '../config/index.js';
import { evaluateRuns } from '../eval/index.js';
import { type ModelName } from '../models/index.js';
import type { BackendHandle, BackendPreference } from '../backend/index.js';
import { checkpointBytes, type TrainEvent } from '../train/index.js';
import {
  DataError,
  UserError,
  checkWritableFolder,
  deriveSeed,
  environmentUserError,
  formatDuration,
  listSome,
  readOwnedRecord,
  replaceFolder,
  sha256File,
  unrecordedFiles,
  writeFileAtomic,
  writeJsonAtomic,
  writeOwnedRecord,
  type StatFs,
} from '../util/index.js';
import { z } from 'zod';
import { buildCvReport, compareCvJobs, cvCsv, formatCvReport, formatDifferences, type CvDifference, type CvReport, type JobPredictions } from './cv-report.js';
import { LockHeldError, acquireRunLock, runHoldsTraining, runPaths } from '../runs/index.js';
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
  /** Training keys set for every job (epochs, imageSize, batchSize, checkpointEvery) after each recipe. */
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
  /** Free space of a file system (tests substitute one); default fs.statfs. */
  statfs?: StatFs;
  /** The backend the command chose (for `experiment.backend`): every job trains and is evaluated on it. */
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
  /** busy: another live process holds the job's lock (JOB/.lock) and runs it. */
  jobs: { id: string; status: 'done' | 'reused' | 'busy' }[];
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

/** An entry name as a folder and file name: characters outside [A-Za-z0-9_.-] become `_`, no leading dot. */
const safeName = (name: string) => name.replace(/[^A-Za-z0-9_.-]+/g, '_').replace(/^\./, '_');

/**
 * Each entry's part of its job ids and report file names: its safe name, made unique by
 * construction — names that the replacement makes equal (`a b`, `a_b`) each get their entry's
 * number (`-e1`, `-e2`).
 */
export function entrySlugs(names: readonly string[]): string[] {
  const safe = names.map(safeName);
  const taken = new Set<string>();
  return safe.map((slug, i) => {
    let unique = safe.indexOf(slug) === safe.lastIndexOf(slug) ? slug : `${slug}-e${i + 1}`;
    while (taken.has(unique)) unique = `${unique}-e${i + 1}`;
    taken.add(unique);
    return unique;
  });
}

/** The jobs of a plan, in its fixed order (repeat, fold, entry). */
export function planJobs(settings: { folds: number; repeats: number; seed: number }, entryNames: readonly string[]): CvJob[] {
  const slugs = entrySlugs(entryNames);
  const jobs: CvJob[] = [];
  for (let repeat = 0; repeat < settings.repeats; repeat++) {
    for (let fold = 0; fold < settings.folds; fold++) {
      for (const [i, entry] of entryNames.entries()) {
        jobs.push({ id: `r${repeat + 1}-f${fold + 1}-${slugs[i]}`, repeat, fold, entry, seed: deriveSeed(settings.seed, repeat, fold) & 0x7fffffff });
      }
    }
  }
  return jobs;
}

/** Row names: unique, readable. */
export function cvEntryNames(models: readonly string[], recipes: readonly (string | undefined)[]): string[] {
  const names = models.map((model, i) => (models.filter((m) => m === model).length > 1 && recipes[i] ? `${model}:${basename(recipes[i]!).replace(/\.json$/, '')}` : model));
  return names.map((name, i) => (names.indexOf(name) === i && names.lastIndexOf(name) === i ? name : `${name}#${i + 1}`));
}

/** The entries of `osteo cv`'s flags. */
export function cvEntriesFromConfig(config: CvConfig, sets: readonly string[]): CvEntry[] {
  const recipes = config.model.map((_, i) => (config.config[i] === undefined ? undefined : resolve(locateConfigFile(config.config[i]!))));
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
  const overrides = Object.fromEntries(Object.entries({ epochs: config.epochs, imageSize: config.imageSize, batchSize: config.batchSize, checkpointEvery: config.checkpointEvery }).filter(([, v]) => v !== undefined));
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

/**
 * What a job's result depends on in a training config: not where it runs or reads and writes, nor
 * how often it saves a recovery checkpoint. A file it names (the initial weights) counts by its
 * content: two different files of one name are two plans. (The recipe and its augmentation file are
 * read into the config itself.)
 */
async function portableConfig(config: Record<string, unknown>): Promise<Record<string, unknown>> {
  const { out: _out, data: _data, seed: _seed, backend: _backend, workers: _workers, maxSteps: _maxSteps, checkpointEvery: _checkpointEvery, ...rest } = config;
  if (typeof rest.pretrained === 'string') rest.pretrained = { file: basename(rest.pretrained), sha256: await sha256File(rest.pretrained) };
  return rest;
}

/** The part of a plan its fingerprint covers, in a fixed key order. */
function planSettings(plan: Omit<CvPlan, 'format' | 'version' | 'fingerprint' | 'resamples'>) {
  const { dataFingerprint, images, folds, repeats, seed, innerVal, entries, jobs } = plan;
  return { dataFingerprint, images, folds, repeats, seed, innerVal, entries, jobs };
}

/** The plan: settings, data fingerprint, each entry's resolved recipe, and the jobs in a fixed order (repeat, fold, entry). */
export async function planCv(experiment: CvExperiment, indexRows: readonly IndexRow[]): Promise<CvPlan> {
  const jobs = planJobs(experiment, experiment.entries.map((entry) => entry.name));
  const entries = [];
  for (const entry of experiment.entries) {
    const config = await jobTrainConfig(experiment, entry, jobs.find((j) => j.entry === entry.name)!);
    entries.push({ name: entry.name, model: entry.model, recipe: entry.recipe ? basename(entry.recipe) : null, config: await portableConfig(config as unknown as Record<string, unknown>) });
  }
  const settings = planSettings({
    dataFingerprint: dataFingerprint(indexRows),
    images: indexRows.filter((r) => r.use).length,
    folds: experiment.folds,
    repeats: experiment.repeats,
    seed: experiment.seed,
    innerVal: experiment.innerVal,
    entries,
    jobs,
  });
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

const planSchema = z.object({
  format: z.literal('osteo-cv-plan'),
  version: z.literal(1),
  fingerprint: z.string(),
  dataFingerprint: z.string(),
  images: z.int().min(1),
  folds: z.int().min(2),
  repeats: z.int().min(1),
  seed: z.int().min(0),
  innerVal: z.number().gt(0).lt(0.5),
  resamples: z.int().min(1),
  entries: z.array(z.object({ name: z.string().min(1), model: z.string(), recipe: z.string().nullable(), config: z.record(z.string(), z.unknown()) })).min(1),
  jobs: z.array(z.object({ id: z.string(), repeat: z.int(), fold: z.int(), entry: z.string(), seed: z.int() })),
});

/**
 * OUT/plan.json, checked as a whole: its schema, its jobs (exactly the ones its settings make, so no
 * id can name a folder outside OUT/jobs), and its fingerprint recomputed from what it says — a plan
 * edited by hand (another fold count, no jobs) is refused rather than reported.
 */
async function readPlan(out: string): Promise<CvPlan> {
  const file = planPath(out);
  if (!existsSync(file)) throw new UserError(`${out} is not a CV folder: ${file} is missing (it is written by \`osteo cv\`)`);
  const raw = await readJson<unknown>(file);
  const parsed = planSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new DataError(file, `is not an osteo CV plan (version 1): ${issue.path.join('.') || 'its top level'}: ${issue.message}`);
  }
  const plan = raw as CvPlan;
  const names = plan.entries.map((e) => e.name);
  if (new Set(names).size !== names.length) throw new DataError(file, 'names one entry twice');
  if (JSON.stringify(plan.jobs) !== JSON.stringify(planJobs(plan, names))) {
    throw new DataError(file, `its jobs are not the ${plan.folds} folds × ${plan.repeats} repeat(s) × ${names.length} model(s) its settings make: it was edited since \`osteo cv\` wrote it`);
  }
  if (sha256(JSON.stringify(planSettings(plan))) !== plan.fingerprint) {
    throw new DataError(file, 'its fingerprint is not the one its settings give: it was edited since `osteo cv` wrote it; run `osteo cv` again with the original settings to rewrite it');
  }
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
  const planned = await planRun(await jobTrainConfig(experiment, entry, job), `delete ${dir} to run job ${job.id} again from scratch (the other jobs are kept), or choose another --out`);
  const trained = await executeRun(planned, { backend: options.backend, inference: options.inference, onEvent: options.onEvent, signal: options.signal });
  const status = trained?.status ?? planned.status;
  if (status === 'interrupted') throw new UserError(`interrupted in job ${job.id}; run the same command again to resume it from its last checkpoint`);
  if (status === 'diverged') throw new UserError(`job ${job.id} diverged (${trained?.message ?? `see ${runPaths(planned.config.out).events}`}); change the recipe and re-run in a fresh --out`);
  const evaluation = await evaluateRuns({ backend: options.inference ?? options.backend, runs: [join(dir, 'run')], dataDir: join(dir, 'data'), split: 'test', outDir: null, resamples: 1, seed: 0, operatingPoints: false });
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

/**
 * Before the first job: room for every run this shard still has to train. Each finished run keeps
 * its `best` and `last` checkpoints (collect and a later resume need them), so the plan needs the sum
 * of those, and one save's transient second copy on top; a run that holds training already needs
 * only that copy. The trainer checks each job again for itself.
 */
async function checkPlanSpace(experiment: CvExperiment, plan: CvPlan, mine: readonly CvJob[], statfs?: StatFs): Promise<void> {
  let kept = 0;
  let transient = 0;
  let left = 0;
  for (const job of mine) {
    if (await finishedResult(experiment.out, job, plan.fingerprint)) continue;
    const config = await jobTrainConfig(experiment, experiment.entries.find((e) => e.name === job.entry)!, job);
    const bytes = checkpointBytes(config) / 2; // checkpointBytes counts each save doubled
    transient = Math.max(transient, bytes);
    left += 1;
    if (!runHoldsTraining(config.out)) kept += bytes;
  }
  if (left === 0) return;
  try {
    await checkWritableFolder(experiment.out, kept + transient, statfs);
  } catch (error) {
    if (!(error instanceof UserError)) throw error;
    const what = experiment.shard ? `this shard's ${left} unfinished job(s)` : `the plan's ${left} unfinished job(s)`;
    throw new UserError(`${what} keep about ${(kept / 2 ** 20).toFixed(0)} MiB of checkpoints (best and last of each run) and need ${(transient / 2 ** 20).toFixed(0)} MiB more while saving: ${error.message}. Nothing was started`);
  }
}

/** Make the job folder if it is new and take its lock (JOB/.lock; the run inside has its own). */
async function lockJob(dir: string): Promise<() => Promise<void>> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw environmentUserError(error, dir) ?? error;
  }
  return acquireRunLock(dir);
}

/** Refuse, before anything runs, an OUT that holds a CV plan with other settings, data or recipes. */
export async function assertCvPlanMatches(experiment: CvExperiment, indexRows?: readonly IndexRow[]): Promise<CvPlan> {
  const plan = await planCv(experiment, indexRows ?? (await loadIndexRows(experiment.dataDir)));
  if (existsSync(planPath(experiment.out))) {
    const existing = await readPlan(experiment.out);
    if (existing.fingerprint !== plan.fingerprint) {
      throw new UserError(
        `${experiment.out} holds a CV plan with other settings, data or recipes (${planPath(experiment.out)}): ${planDifferences(existing, plan).join('; ')}. ` +
          'Nothing was changed; choose another --out, or delete that folder to start over',
      );
    }
  }
  return plan;
}

/** "key (the folder has X, the command asks for Y)" for each key of the fingerprint where two plans differ. */
export function planDifferences(existing: CvPlan, asked: CvPlan): string[] {
  const text = (value: unknown) => (value === undefined ? 'none' : JSON.stringify(value));
  const differences: string[] = [];
  const differ = (key: string, before: unknown, after: unknown) => {
    if (JSON.stringify(before) !== JSON.stringify(after)) differences.push(`${key} (the folder has ${text(before)}, the command asks for ${text(after)})`);
  };
  if (existing.dataFingerprint !== asked.dataFingerprint) differences.push(`the data (index fingerprint ${existing.dataFingerprint.slice(0, 12)} in the folder, ${asked.dataFingerprint.slice(0, 12)} now)`);
  for (const key of ['images', 'folds', 'repeats', 'seed', 'innerVal'] as const) differ(key, existing[key], asked[key]);
  differ('models', existing.entries.map((e) => e.name), asked.entries.map((e) => e.name));
  for (const entry of asked.entries) {
    const before = existing.entries.find((e) => e.name === entry.name);
    if (before === undefined) continue;
    differ(`${entry.name}: recipe`, before.recipe, entry.recipe);
    for (const key of [...new Set([...Object.keys(before.config), ...Object.keys(entry.config)])]) differ(`${entry.name}: ${key}`, before.config[key], entry.config[key]);
  }
  return differences.length > 0 ? differences : ['the job list'];
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
  const mine = shardJobs(plan.jobs, experiment.shard);
  await checkPlanSpace(experiment, plan, mine, options.statfs);
  await mkdir(experiment.out, { recursive: true });
  await writeJsonAtomic(planPath(experiment.out), plan);
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
    jobs.push({ id: job.id, status: await runLockedJob(experiment, plan, job, indexRows, options, { where, eta, left: mine.length - i }) });
  }
  const complete = await Promise.all(plan.jobs.map((job) => finishedResult(experiment.out, job, plan.fingerprint)));
  if (complete.every(Boolean)) return { out: experiment.out, plan, jobs, report: await collectCv(experiment.out) };
  const busy = jobs.filter((j) => j.status === 'busy').length;
  if (busy > 0) log(`${busy} job(s) are being run by other processes; once they have finished, run \`osteo cv collect ${experiment.out}\``);
  else if (experiment.shard) log(`shard ${experiment.shard.index}/${experiment.shard.count} finished; once every shard has, run \`osteo cv collect ${experiment.out}\``);
  return { out: experiment.out, plan, jobs };
}

/** One job that was not finished when the loop reached it: under its lock, looked at again, then trained and held out. */
async function runLockedJob(
  experiment: CvExperiment,
  plan: CvPlan,
  job: CvJob,
  indexRows: Awaited<ReturnType<typeof loadIndexRows>>,
  options: CvRunOptions,
  progress: { where: string; eta: EtaTracker; left: number },
): Promise<'done' | 'reused' | 'busy'> {
  const log = options.log ?? (() => {});
  const { where, eta, left: jobsLeft } = progress;
  // The job's lock is taken before anything about it is decided or written: a second process on
  // the same OUT (another shard, a re-run started twice) leaves a live job alone and goes on.
  const release = await lockJob(jobDir(experiment.out, job.id)).catch((error: unknown) => {
    if (!(error instanceof LockHeldError)) throw error;
    log(`${where}: being run by process ${error.owner.pid} on ${error.owner.host} (since ${error.owner.started}), skipped`);
    return undefined;
  });
  if (release === undefined) return 'busy';
  try {
    // Looked at again under the lock: the other process may have finished it in the meantime.
    if (await finishedResult(experiment.out, job, plan.fingerprint)) {
      log(`${where}: done by another process, skipped`);
      return 'reused';
    }
    const left = eta.secondsLeft(jobsLeft);
    log(`${where}: running${left === undefined ? '' : `; ETA for this shard ${formatDuration(left)}`}`);
    let lastEpochLog = 0;
    await runJob(experiment, plan, job, indexRows, {
      ...options,
      onEvent: (event) => {
        eta.observe(event);
        options.onTrainEvent?.(event);
        if (event.type === 'epoch-end' && performance.now() - lastEpochLog > 10_000) {
          lastEpochLog = performance.now();
          log(`${where}: epoch ${event.metrics.epoch} done; ETA for this shard ${formatDuration(eta.secondsLeft(jobsLeft - 1) ?? Number.NaN)}`);
        }
      },
    });
    return 'done';
  } finally {
    await release();
  }
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
    if (result?.format !== 'osteo-cv-job' || result.fingerprint !== plan.fingerprint || result.job !== job.id) mismatched.push(`${job.id} (${file})`);
    else results.push(checkJobResult(result, job, file));
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
  checkHeldOut(plan, results, out);
  return { plan, results };
}

const jobResultSchema = z.object({
  repeat: z.int(),
  fold: z.int(),
  entry: z.string(),
  paths: z.array(z.string().min(1)).min(1),
  groups: z.array(z.string()),
  labels: z.array(z.int().min(0).max(classNames.length - 1)),
  probabilities: z.array(z.number().min(0).max(1)),
  trainImages: z.int().min(0),
  valImages: z.int().min(0),
  seconds: z.number().min(0),
});

/** A job's result.json, checked against its job and for well-formed predictions: one probability row per image, each a distribution. */
function checkJobResult(result: JobResult, job: CvJob, file: string): JobResult {
  const parsed = jobResultSchema.safeParse(result);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new DataError(file, `is not a valid CV job result: ${issue.path.join('.')}: ${issue.message}; run the job again (delete this file, then the same \`osteo cv\` command)`);
  }
  if (result.repeat !== job.repeat || result.fold !== job.fold || result.entry !== job.entry) throw new DataError(file, `is the result of another job than ${job.id} (repeat, fold or model differ)`);
  const n = result.paths.length;
  if (result.groups.length !== n || result.labels.length !== n || result.probabilities.length !== n * classNames.length) {
    throw new DataError(file, `holds ${n} paths, ${result.groups.length} groups, ${result.labels.length} labels and ${result.probabilities.length} probabilities: expected ${n} of each and ${n * classNames.length} probabilities`);
  }
  for (let i = 0; i < n; i++) {
    const row = result.probabilities.slice(i * classNames.length, (i + 1) * classNames.length);
    const sum = row.reduce((a, b) => a + b, 0);
    // float32 softmax rows sum to 1 within a few ulps; a row far from it is not a distribution
    if (Math.abs(sum - 1) > 1e-3) throw new DataError(file, `the probabilities of ${result.paths[i]} sum to ${sum}, not 1`);
  }
  return result;
}

/** Every repeat of every entry holds each of the plan's images out exactly once, over its folds. */
function checkHeldOut(plan: CvPlan, results: readonly JobResult[], out: string): void {
  for (let repeat = 0; repeat < plan.repeats; repeat++) {
    for (const entry of plan.entries) {
      const paths = results.filter((r) => r.repeat === repeat && r.entry === entry.name).flatMap((r) => r.paths);
      const distinct = new Set(paths).size;
      if (distinct !== paths.length || paths.length !== plan.images) {
        throw new DataError(
          join(out, 'jobs'),
          `the results of ${entry.name}, repeat ${repeat + 1}, hold out ${paths.length} images (${distinct} distinct) where the plan's ${plan.folds} folds hold out each of its ${plan.images} images once: ` +
            'some result.json was changed or comes from another run; delete the wrong ones and run their jobs again',
        );
      }
    }
  }
}

/** Merge the jobs' results into OUT/report (cv.md, cv.csv, cv.json, confusion PNGs), staged and switched in. */
export async function collectCv(out: string): Promise<CvCollectResult> {
  const dir = resolve(out);
  const { plan, results } = await loadResults(dir);
  const report = buildCvReport(results, { entries: plan.entries.map((e) => e.name), folds: plan.folds, repeats: plan.repeats, seed: plan.seed, resamples: plan.resamples });
  const target = join(dir, 'report');
  await refuseForeignReport(target);
  const files = await replaceFolder(target, async (staging) => {
    const written = await writeCvReport(staging, plan, report);
    const hashes: Record<string, string> = {};
    for (const file of written) hashes[file] = await sha256File(join(staging, file));
    await writeOwnedRecord(join(staging, reportRecordFile), { format: reportRecordFormat, version: 1, files: hashes });
    return written;
  });
  return { out: target, report, files: files.map((f) => join(target, f)) };
}

/** OUT/report/'s record of the files collect wrote there: the report folder is switched in whole, so anything else in it would be lost. */
const reportRecordFile = '.osteo-cv-report.json';
const reportRecordFormat = 'osteo-cv-report';

async function refuseForeignReport(target: string): Promise<void> {
  if (!existsSync(target)) return;
  if (!(await stat(target)).isDirectory()) throw new UserError(`${target} is a file, but osteo cv collect writes its report folder there: move the file away`);
  const record = await readOwnedRecord(join(target, reportRecordFile), reportRecordFormat);
  const foreign = await unrecordedFiles(target, record, (await readdir(target)).filter((entry) => entry !== reportRecordFile));
  if (foreign.length > 0) {
    throw new UserError(`${target} holds files osteo cv collect did not write (${listSome(foreign)}), or changed since; the report replaces that folder whole: move them out of it, then collect again. Nothing was changed`);
  }
}

/** cv.md, cv.csv, cv.json and a confusion matrix per entry, written into `folder`; returns their names. */
async function writeCvReport(folder: string, plan: CvPlan, report: CvReport): Promise<string[]> {
  const files = ['cv.md', 'cv.csv', 'cv.json'];
  await writeFileAtomic(join(folder, 'cv.md'), formatCvReport(report, { data: `the dataset (index fingerprint ${plan.dataFingerprint.slice(0, 12)})`, plan: plan.fingerprint.slice(0, 12) }));
  await writeFileAtomic(join(folder, 'cv.csv'), cvCsv(report));
  await writeJsonAtomic(join(folder, 'cv.json'), { plan: { fingerprint: plan.fingerprint, dataFingerprint: plan.dataFingerprint, folds: plan.folds, repeats: plan.repeats, seed: plan.seed, entries: plan.entries }, ...report });
  const slugs = entrySlugs(report.rows.map((row) => row.entry));
  for (const [i, row] of report.rows.entries()) {
    const file = `confusion-${slugs[i]}.png`;
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
