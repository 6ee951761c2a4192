/**
 * `osteo predict --operating-point NAME`: each image's screening decision on both binary views, next
 * to its probabilities. A run's thresholds come from its RUN/calibration.json (chosen by `osteo
 * calibrate` on the run's val split, on the calibrated score); the ensemble has no run folder, so its
 * thresholds come from an `osteo eval` report of exactly these runs (`--eval DIR`, its
 * evaluation.json), with the weights and temperature eval made its score with.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { classNames } from '../data/index.js';
import { applyTemperature, binaryScores, binaryViews, type BinaryView, type EnsembleScoreSource } from '../report/index.js';
import { checkpointWeightsSha256, runCalibrationPath, type RunCalibrationRecord } from '../runs/index.js';
import { DataError, UserError, errorMessage, printable } from '../util/index.js';
import { ensembleProbabilities } from './ensemble.js';
import { evaluationRecordFile } from './evaluate.js';
import type { CheckpointChoice, LoadedModel } from './inference.js';

export interface ScreeningDecision {
  /** The view's score: the summed probability of its positive classes (calibrated). */
  score: number;
  threshold: number;
  /** score ≥ threshold. */
  positive: boolean;
}

export interface ViewDecisions {
  view: BinaryView['key'];
  name: string;
  /** Per model, by display name. */
  models: Record<string, ScreeningDecision>;
  /** The ensemble's, when its thresholds were given (--eval). */
  ensemble?: ScreeningDecision;
}

/** What the decisions need: each member's thresholds per view, and the ensemble's score and thresholds when known. */
export interface ScreeningPlan {
  operatingPoint: string;
  /** thresholds[view][model] */
  thresholds: Record<string, number[]>;
  ensemble?: { source: EnsembleScoreSource; thresholds: Record<string, number>; report: string };
}

const pointNames = (record: RunCalibrationRecord) => [...new Set(record.operatingPoints!.views.flatMap((v) => v.points.map((p) => p.name)))];

/**
 * The plan for `--operating-point NAME`: refused, naming what is missing, unless every model is a
 * run with a fresh calibration holding that point, and, with `--eval`, a report of these very runs
 * (same order, checkpoint, weights and temperatures) holding the ensemble's.
 */
export async function screeningPlan(
  models: readonly LoadedModel[],
  records: readonly RunCalibrationRecord[] | null,
  options: { operatingPoint: string; evalReport?: string; checkpoint: CheckpointChoice },
): Promise<ScreeningPlan> {
  const name = options.operatingPoint;
  if (models.some((m) => m.run === undefined)) throw new UserError(`--operating-point ${name} needs --run: the thresholds are stored with a run's calibration (osteo calibrate), which a weights file has none of`);
  if (records === null) throw new UserError(`--operating-point ${name} needs every run calibrated on the weights predicted with (see the warning above): run \`osteo calibrate --run ${models.map((m) => m.run).join(' ')} --data DATA\``);
  const views = binaryViews(classNames);
  const thresholds: Record<string, number[]> = Object.fromEntries(views.map((v) => [v.key, []]));
  for (const [i, m] of models.entries()) {
    const record = records[i]!;
    const file = runCalibrationPath(m.run!);
    if (record.operatingPoints === undefined) throw new UserError(`--operating-point ${name}: ${file} holds no screening thresholds; re-run \`osteo calibrate --run ${m.run}\``);
    for (const view of views) {
      const point = record.operatingPoints.views.find((v) => v.view === view.key)?.points.find((p) => p.name === name);
      if (point === undefined) throw new UserError(`--operating-point ${name}: ${file} has no such point for ${view.name} (it has ${pointNames(record).join(', ')}); choose one of those, or re-run \`osteo calibrate\` with that target`);
      thresholds[view.key]!.push(point.threshold);
    }
  }
  if (options.evalReport === undefined || models.length < 2) return { operatingPoint: name, thresholds };
  return { operatingPoint: name, thresholds, ensemble: await ensembleThresholds(models, records, options.evalReport, name, options.checkpoint) };
}

/** The ensemble's thresholds and score source from an eval report, checked against the runs predicted with. */
async function ensembleThresholds(models: readonly LoadedModel[], records: readonly RunCalibrationRecord[], dir: string, name: string, checkpoint: CheckpointChoice): Promise<NonNullable<ScreeningPlan['ensemble']>> {
  const file = join(dir, evaluationRecordFile);
  if (!existsSync(file)) throw new UserError(`--eval ${dir} holds no ${evaluationRecordFile}: give the folder osteo eval wrote its report of these runs into`);
  let json: { runs?: unknown; operatingPoints?: { models?: { kind?: string; views?: { view?: string; points?: { name?: string; threshold?: unknown }[] }[] }[]; ensemble?: EnsembleScoreSource } };
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new DataError(file, `is not valid JSON (${errorMessage(error)}): re-run osteo eval`);
  }
  const runs = models.map((m) => resolve(m.run!));
  const source = json.operatingPoints?.ensemble;
  const entry = json.operatingPoints?.models?.find((m) => m.kind === 'ensemble');
  if (!Array.isArray(json.runs) || json.runs.length !== runs.length || json.runs.some((r, i) => r !== runs[i])) {
    throw new UserError(`--eval ${dir} is the report of ${Array.isArray(json.runs) ? json.runs.map((r) => printable(String(r))).join(', ') : 'other runs'}, not of ${runs.join(', ')} in this order: give the report of exactly these runs`);
  }
  if (source === undefined || entry === undefined || !Array.isArray(source.members) || source.members.length !== models.length || !Array.isArray(source.weights)) {
    throw new UserError(`--eval ${dir}: its evaluation.json holds no ensemble operating points (eval chose none: see that evaluation's warnings); re-run osteo eval on these runs`);
  }
  for (const [i, m] of models.entries()) {
    const member = source.members[i]!;
    const sha = await checkpointWeightsSha256(m.run!, checkpoint);
    if (member.checkpoint !== checkpoint || member.weightsSha256 !== sha || member.temperature !== records[i]!.temperature) {
      throw new UserError(`--eval ${dir} scored ${m.name} with other weights or another calibration than now (training or osteo calibrate ran since): re-run osteo eval on these runs`);
    }
  }
  const thresholds: Record<string, number> = {};
  for (const view of binaryViews(classNames)) {
    const threshold = entry.views?.find((v) => v.view === view.key)?.points?.find((p) => p.name === name)?.threshold;
    if (typeof threshold !== 'number') throw new UserError(`--eval ${dir}: the ensemble has no operating point ${name} for ${view.name} (that evaluation chose them at other targets): re-run osteo eval with those targets`);
    thresholds[view.key] = threshold;
  }
  return { source, thresholds, report: dir };
}

/** One image's decisions; `perModel` are its calibrated probabilities, one row per member. */
export function screeningDecisions(plan: ScreeningPlan, names: readonly string[], perModel: readonly Float32Array[]): ViewDecisions[] {
  const k = classNames.length;
  const decide = (view: BinaryView, probabilities: Float32Array, threshold: number): ScreeningDecision => {
    const score = binaryScores(view, probabilities, [0], k).scores[0]!;
    return { score, threshold, positive: score >= threshold };
  };
  const e = plan.ensemble;
  const ensemble = e === undefined ? undefined : ((vote: Float32Array) => (e.source.temperature === null ? vote : applyTemperature(vote, k, e.source.temperature)))(ensembleProbabilities(perModel, e.source.weights));
  return binaryViews(classNames).map((view) => ({
    view: view.key,
    name: view.name,
    models: Object.fromEntries(names.map((n, i) => [n, decide(view, perModel[i]!, plan.thresholds[view.key]![i]!)])),
    ...(e === undefined || ensemble === undefined ? {} : { ensemble: decide(view, ensemble, e.thresholds[view.key]!) }),
  }));
}

const verdict = (d: ScreeningDecision) => `${d.positive ? 'positive' : 'negative'} (score ${d.score.toFixed(3)} ${d.positive ? '≥' : '<'} ${d.threshold.toFixed(3)})`;

/** The decision lines printed under an image's probabilities. */
export function formatDecisions(operatingPoint: string, views: readonly ViewDecisions[], ensembleExpected: boolean): string[] {
  const lines: string[] = [];
  for (const v of views) {
    const parts = Object.entries(v.models).map(([name, d]) => `${printable(name)} ${verdict(d)}`);
    if (v.ensemble !== undefined) parts.push(`ensemble ${verdict(v.ensemble)}`);
    else if (ensembleExpected) parts.push('ensemble: no thresholds (give --eval with the osteo eval report of these runs)');
    lines.push(`  screening ${operatingPoint}, ${v.name}: ${parts.join('; ')}`);
  }
  return lines;
}
