/**
 * `osteo train`: the fine-tuning loop, top to bottom.
 *
 *   config → data (split manifest, loaders) → run directory (new, or resumed from `last`) → engine
 *   (+ pretrained weights, head swapped) → for each epoch: trainOneEpoch (one optimizer step per
 *   batch, learning rate from the schedule) → validate (loss, accuracy, balanced accuracy, macro-F1)
 *   → endEpoch (metrics.csv, curves.png, `best` if the monitored metric improved, `last`, early
 *   stopping).
 *
 * Exact resume: batches depend only on (seed, epoch, position) (the data loader's contract), the
 * schedule only on the step count, and `last` holds the weights, the optimizer state and the
 * engine's step/random state — so a run stopped anywhere (even mid-epoch: Ctrl-C, --max-steps, or a
 * SIGKILL after a --checkpoint-every recovery save) and resumed takes the same steps on the same
 * batches as one that never stopped.
 */
import { resolve } from 'node:path';
import type { BackendHandle } from '../backend/index.js';
import { checkpointInterval, type CheckpointInterval, type TrainConfig } from '../config/index.js';
import { classCounts, createLoader, createResizedCache, inverseFrequencyWeights, numClasses, readSplitManifest, type Batch, type Loader } from '../data/index.js';
import { checkWritableFolder, deriveSeed, environmentUserError, UserError, writeFileAtomic } from '../util/index.js';
import { argmaxRows, classificationMetrics, isImprovement, metricRegistry, type ClassificationMetrics } from '../report/index.js';
import { getModel } from '../models/index.js';
import { readStateDict, type LoadReport } from '../weights/index.js';
import { createEngine, createInferenceEngine, inferenceWorkers, type EngineState, type OptimizerConfig } from '../engine/index.js';
import { checkpointDir, hasCheckpoint, runHoldsTraining, runPaths, saveCheckpoint, type FaultInjector, type FinishedStatus, type ResumeCheckpoint } from '../runs/index.js';
import type { BestRecord, TrainEvent, TrainStatus } from './events.js';
import { appendEvent, curvesPng, writeMetricsCsv, type EpochMetrics } from './logs.js';
import { learningRate, type ScheduleSpan } from './schedule.js';
import { checkpointBytes, datasetOf, emptyPartial, finishedRun, freshState, lockRun, openTrainingRun, type RunState, type Stage } from './state.js';

export interface TrainOptions {
  /** The backend the command chose (for `config.backend`): every engine of the run computes on it. */
  backend: BackendHandle;
  /**
   * Where the engine's models come from: a module whose `modelProvider` builds them by name (default:
   * osteo's registry). Tests train a tiny model through it; see EngineOptions.providerModule.
   */
  providerModule?: string;
  /**
   * Where validation runs each epoch (an onnxruntime provider's handle, whose capabilities carry
   * `onnxSessions`): the current weights are exported to an inference engine on it, which predicts
   * the val split and is released. Absent: the training engine predicts, as it trains.
   */
  inference?: BackendHandle;
  /** Continue the run in config.out from its `last` checkpoint. */
  resume?: boolean;
  /** Every event, as it is appended to events.jsonl (progress display, tests). */
  onEvent?: (event: TrainEvent) => void;
  /** Aborting stops after the current step, saves `last` and returns status 'interrupted' (Ctrl-C). */
  signal?: AbortSignal;
  /** Tests: throw from here to stand in for a kill between the writes of a checkpoint. */
  fault?: FaultInjector;
}

export interface TrainResult {
  status: TrainStatus;
  message: string;
  run: string;
  history: EpochMetrics[];
  best: BestRecord | null;
  steps: number;
  backend: string;
  workers: number;
}

/** Why the loop ended early; `trainModel` turns it into the `stop` event and the result. */
interface StopReason {
  status: TrainStatus;
  message: string;
}

interface TrainData {
  trainImages: number;
  valImages: number;
  trainLoader: (epoch: number) => Loader;
  valLoader: Loader;
  span: ScheduleSpan;
  classWeights: number[] | undefined;
}

type Engine = Awaited<ReturnType<typeof createEngine>>;

/** What every part of the loop reads: the run's fixed setup, and the two things that change — its state and its engine. */
interface Training {
  config: TrainConfig;
  run: string;
  paths: ReturnType<typeof runPaths>;
  options: TrainOptions;
  emit: (event: TrainEvent) => Promise<void>;
  data: TrainData;
  state: RunState;
  /** Rebuilt when two-stage fine-tuning moves from the head to the whole network. */
  engine: Engine;
  /** Continuing from `last` (false for a new run, and for a restart of one that never saved `last`). */
  resumed: boolean;
  /** The step count when this invocation began: --max-steps is a budget per invocation. */
  firstStep: number;
  /** --checkpoint-every, read once. */
  recovery: CheckpointInterval | undefined;
  /** The step at which `last` was saved last (-1: not yet) and when (performance.now()), for the recovery checkpoints. */
  lastSave: { step: number; at: number };
}

/** --pretrained weights, loaded into a new run's engine before its folder is made. */
interface PretrainedLoad {
  file: string;
  report: LoadReport;
}

export async function trainModel(config: TrainConfig, options: TrainOptions): Promise<TrainResult> {
  const run = resolve(config.out);
  const paths = runPaths(run);
  const emit = async (event: TrainEvent) => {
    await appendEvent(paths.events, event);
    options.onEvent?.(event);
  };
  // Everything that can refuse is checked before the run folder is made or touched: a failed start
  // leaves nothing behind, or only what the same command restarts (see openTrainingRun).
  const holdsTraining = runHoldsTraining(run);
  const resume = Boolean(options.resume) && holdsTraining;
  if (!options.resume && holdsTraining) {
    const { state, status } = await finishedRun(config, run);
    return alreadyFinished(run, state, status);
  }
  const dataDir = await datasetOf(config, run, resume);
  const data = await openData(config, dataDir);
  await checkWritableFolder(run, checkpointBytes(config));
  const fresh = resume ? undefined : await prepareNewRun(config, options, data);
  let engine = fresh?.engine;
  let t: Training | undefined;
  const release = await lockRun(run).catch(async (error: unknown) => {
    await engine?.dispose();
    throw error;
  });
  try {
    const { state, resumeFrom } = await openTrainingRun(config, run, { resume, dataDir }, emit);
    engine ??= await createStageEngine(config, options, data, state.stage);
    const lastSave = { step: resumeFrom ? state.step : -1, at: performance.now() };
    t = { config, run, paths, options, emit, data, state, engine, resumed: resume, firstStep: state.step, recovery: checkpointInterval(config.checkpointEvery), lastSave };
    await startEngine(t, resumeFrom, fresh?.pretrained);
    return await trainEpochs(t);
  } catch (error) {
    // a full disk at a checkpoint, say: the machine's state, which the pipeline reports like any UserError
    throw environmentUserError(error) ?? error;
  } finally {
    await (t?.engine ?? engine)?.dispose();
    await release();
  }
}

/** The result of a run that already holds this training, finished: nothing is trained or written, and it ends as it ended. */
function alreadyFinished(run: string, state: RunState, status: FinishedStatus): TrainResult {
  const best = state.best ? `best ${state.best.metric} ${state.best.value.toFixed(4)} at epoch ${state.best.epoch}` : 'no best checkpoint';
  const how = { completed: 'trained to the end', 'early-stopped': 'stopped early', diverged: 'ended diverged' }[status];
  return {
    status,
    message: `${run} already holds this run, ${how} (${state.epoch} epochs, ${state.step} steps; ${best}): nothing to do — add --resume with more --epochs to train further, or choose another --out`,
    run,
    history: state.history,
    best: state.best,
    steps: state.step,
    backend: 'none (nothing to train)',
    workers: 0,
  };
}

async function trainEpochs(t: Training): Promise<TrainResult> {
  const { config, state } = t;
  while (state.epoch < config.epochs) {
    const stopped = await trainOneEpoch(t);
    if (stopped) return await finish(t, stopped);
    const val = await validateEpoch(t);
    const early = nonFiniteValidation(t, val.loss) ?? (await endEpoch(t, val));
    if (early) return await finish(t, early);
  }
  const best = state.best;
  return await finish(t, {
    status: 'completed',
    message: `trained ${state.epoch} epochs (${state.step} steps); best ${best ? `${best.metric} ${best.value.toFixed(4)} at epoch ${best.epoch}` : 'none'}`,
  });
}

/** A new run's engine with its --pretrained weights loaded: both fail here, before the run folder exists. */
async function prepareNewRun(config: TrainConfig, options: TrainOptions, data: TrainData): Promise<{ engine: Engine; pretrained?: PretrainedLoad }> {
  const engine = await createStageEngine(config, options, data, freshState(config).stage);
  if (!config.pretrained) return { engine };
  try {
    const report = await engine.loadWeights(await readStateDict(config.pretrained), { allowHeadSwap: true });
    return { engine, pretrained: { file: config.pretrained, report } };
  } catch (error) {
    await engine.dispose();
    throw error;
  }
}

/** The split manifest (its absence is a UserError naming `osteo data split`) and one resize cache for all epochs. */
async function openData(config: TrainConfig, dataDir: string): Promise<TrainData> {
  const rows = await readSplitManifest(dataDir);
  const trainRows = rows.filter((row) => row.split === 'train');
  const valRows = rows.filter((row) => row.split === 'val');
  if (trainRows.length === 0 || valRows.length === 0) {
    throw new UserError(`${dataDir}: the split has ${trainRows.length} train and ${valRows.length} val images; training needs both (re-run \`osteo data split\`)`);
  }
  const transform = config.transform;
  const cache = createResizedCache(dataDir, transform.resize);
  const common = { dataDir, rows, imageSize: config.imageSize, transform, batchSize: config.batchSize, seed: config.seed, cache };
  const sampler = config.classBalance === 'sampler' ? 'weighted' : 'shuffle';
  const trainLoader = (epoch: number) => createLoader({ ...common, split: 'train', augment: config.augment, sampler, epoch });
  const valLoader = createLoader({ ...common, split: 'val', sampler: 'sequential', epoch: 0 });
  const stepsPerEpoch = trainLoader(0).length;
  return {
    trainImages: trainRows.length,
    valImages: valRows.length,
    trainLoader,
    valLoader,
    span: { stepsPerEpoch, totalSteps: stepsPerEpoch * config.epochs },
    classWeights: config.classBalance === 'loss' ? inverseFrequencyWeights(classCounts(trainRows)) : undefined,
  };
}

/** Two-stage fine-tuning trains the head alone first: everything up to the last backbone stage frozen. */
function frozenUntil(config: TrainConfig, stage: Stage): string | undefined {
  if (stage === 'main') return config.freezeUntil;
  const stages = getModel(config.model).stages;
  return stages[stages.length - 2]!;
}

function optimizerOf(config: TrainConfig): OptimizerConfig {
  const { type, weightDecay, beta1, beta2, eps, momentum, nesterov } = config.optimizer;
  if (type === 'sgd') return { type, momentum, nesterov, weightDecay };
  return { type, beta1, beta2, eps, weightDecay };
}

/** Each stage gets its own engine: its frozen stages differ, and stage 2 starts a fresh optimizer. */
function createStageEngine(config: TrainConfig, options: TrainOptions, data: TrainData, stage: Stage): Promise<Engine> {
  return createEngine({
    model: config.model,
    build: { imageSize: config.imageSize, numClasses, freezeUntil: frozenUntil(config, stage), seed: config.seed },
    backend: options.backend,
    providerModule: options.providerModule,
    workers: config.workers,
    microBatch: config.microBatch,
    optimizer: optimizerOf(config),
    clipGradNorm: config.clipGradNorm,
    labelSmoothing: config.labelSmoothing,
    classWeights: data.classWeights,
    // stage 2's dropout masks must not replay stage 1's, whose step count they would restart
    seed: stage === 'main' && config.headEpochs > 0 ? deriveSeed(config.seed, 2) & 0x7fffffff : config.seed,
  });
}

/** Restore `last` into the engine (resume) and announce the run, and what was loaded into it. */
async function startEngine(t: Training, resumeFrom: ResumeCheckpoint | undefined, pretrained: PretrainedLoad | undefined): Promise<void> {
  const { config, state, engine } = t;
  if (resumeFrom) {
    await engine.setState({ weights: resumeFrom.weights, optimizer: resumeFrom.optimizer, step: state.engine.step, rng: state.engine.rng });
  }
  await t.emit({
    type: 'start',
    run: t.run,
    model: config.model,
    backend: engine.backend,
    workers: engine.workers,
    trainImages: t.data.trainImages,
    valImages: t.data.valImages,
    stepsPerEpoch: t.data.span.stepsPerEpoch,
    epochs: config.epochs,
    resumed: t.resumed,
  });
  if (resumeFrom) {
    await t.emit({ type: 'resume', epoch: state.epoch, batch: state.batch, step: state.step });
  } else if (pretrained) {
    await t.emit({ type: 'pretrained', file: pretrained.file, loaded: pretrained.report.loaded.length, headReinitialised: pretrained.report.headReinitialised });
  }
}

/** One pass over the training batches, or what is left of it: a resumed epoch skips the batches it already trained on (they are rebuilt, not stored). */
async function trainOneEpoch(t: Training): Promise<StopReason | undefined> {
  const { config, state } = t;
  const atBoundary = stopAtEpochBoundary(t);
  if (atBoundary) return atBoundary;
  await enterStage(t, state.epoch < config.headEpochs ? 'head' : 'main');
  const loader = t.data.trainLoader(state.epoch);
  await t.emit({ type: 'epoch-start', epoch: state.epoch + 1, epochs: config.epochs, steps: loader.length, firstBatch: state.batch });
  let index = 0;
  let stop: 'max-steps' | 'interrupted' | undefined;
  for await (const batch of loader as AsyncIterable<Batch>) {
    if (index++ < state.batch) continue;
    stop = pendingStop(t);
    if (stop) break;
    const diverged = await trainStep(t, batch, index, loader.length);
    if (diverged) return diverged;
    if (recoveryDue(t, loader.length)) await saveLast(t);
  }
  // --max-steps reached on the epoch's last batch is an epoch boundary: the epoch is validated and saved as usual
  if (!stop && maxStepsReached(t) && state.batch < loader.length) stop = 'max-steps';
  return stop ? await stopMidEpoch(t, stop, loader.length) : undefined;
}

function maxStepsReached({ config, state, firstStep }: Training): boolean {
  return config.maxSteps !== undefined && state.step - firstStep >= config.maxSteps;
}

/** Ctrl-C and --max-steps take effect between steps, never inside one. */
function pendingStop(t: Training): 'interrupted' | 'max-steps' | undefined {
  if (t.options.signal?.aborted) return 'interrupted';
  if (maxStepsReached(t)) return 'max-steps';
  return undefined;
}

/** At an epoch boundary `last` is already current: stopping here needs no save. */
function stopAtEpochBoundary(t: Training): StopReason | undefined {
  const { config, state } = t;
  if (state.batch !== 0 || !hasCheckpoint(t.run, 'last')) return undefined;
  const stop = pendingStop(t);
  if (stop === 'interrupted') return { status: stop, message: `interrupted after epoch ${state.epoch}; \`last\` is current: resume with --resume` };
  if (stop === 'max-steps') return { status: stop, message: `took the --max-steps ${config.maxSteps} steps of this invocation; stopped at the end of epoch ${state.epoch}: continue with --resume` };
  return undefined;
}

/** Moving to stage 2 keeps the weights but rebuilds the engine (see createStageEngine). */
async function enterStage(t: Training, stage: Stage): Promise<void> {
  const { config, state } = t;
  if (stage !== state.stage) {
    const { weights } = await t.engine.getState();
    await t.engine.dispose();
    t.engine = await createStageEngine(config, t.options, t.data, stage);
    await t.engine.loadWeights(weights);
    state.stage = stage;
  }
  if (state.batch === 0 && (state.epoch === 0 || state.epoch === config.headEpochs)) {
    await t.emit({ type: 'stage', stage, freezeUntil: frozenUntil(config, stage) ?? null, epoch: state.epoch + 1 });
  }
}

/** One optimizer step; a non-finite loss stops the run before anything of that step is saved. `index` is the batch's 1-based position. */
async function trainStep(t: Training, batch: Batch, index: number, steps: number): Promise<StopReason | undefined> {
  const { config, state } = t;
  const lr = learningRate(config.schedule, config.optimizer.lr, state.step, t.data.span);
  const started = performance.now();
  const result = await t.engine.step(batch, lr);
  const seconds = (performance.now() - started) / 1000;
  if (!Number.isFinite(result.loss)) {
    const message =
      `training diverged: the loss is ${result.loss} at epoch ${state.epoch + 1}, step ${state.step + 1} (batch ${index} of ${steps}); ` +
      `nothing was saved after it — ${lastGoodCheckpoint(t.run)}. ` +
      'Lower optimizer.lr or set clipGradNorm.';
    return { status: 'diverged', message };
  }
  state.step += 1;
  state.batch += 1;
  const p = state.partial;
  p.lossSum += result.loss * result.size;
  p.correct += result.correct;
  p.seen += result.size;
  p.seconds += seconds;
  p.lr = lr;
  await t.emit({ type: 'step', epoch: state.epoch + 1, batch: state.batch, steps, step: state.step, loss: result.loss, lr, gradNorm: result.gradNorm, images: result.size, seconds });
  return undefined;
}

/**
 * --checkpoint-every: `last` is saved in mid-epoch too, every N steps of the run (counted from its
 * start, so a resumed run saves at the same steps) or N minutes after the previous save. Not after an
 * epoch's last batch: endEpoch saves `last` there, after validation.
 */
function recoveryDue(t: Training, steps: number): boolean {
  const every = t.recovery;
  if (every === undefined || t.state.batch >= steps) return false;
  if ('steps' in every) return t.state.step % every.steps === 0;
  return performance.now() - t.lastSave.at >= every.milliseconds;
}

async function stopMidEpoch(t: Training, stop: 'max-steps' | 'interrupted', steps: number): Promise<StopReason> {
  // a recovery checkpoint taken after the last step is already this state
  if (t.lastSave.step !== t.state.step) await saveLast(t);
  const { state } = t;
  const where = `epoch ${state.epoch + 1}, after batch ${state.batch} of ${steps} (step ${state.step})`;
  const message = stop === 'interrupted' ? `interrupted at ${where}; \`last\` saved: resume with --resume` : `took the --max-steps ${t.config.maxSteps} steps of this invocation; stopped at ${where}; \`last\` saved: continue with --resume`;
  return { status: stop, message };
}

/**
 * A finite training loss with non-finite validation outputs (BatchNorm running statistics that
 * overflowed, say) would score a broken model as if it predicted: the epoch is not recorded or saved.
 */
function nonFiniteValidation(t: Training, valLoss: number): StopReason | undefined {
  if (Number.isFinite(valLoss)) return undefined;
  const { state } = t;
  const message =
    `validation diverged: the val loss is ${valLoss} after epoch ${state.epoch + 1} (step ${state.step}); the epoch was not recorded or saved — ` +
    `${lastGoodCheckpoint(t.run)}. Lower optimizer.lr or set clipGradNorm.`;
  return { status: 'diverged', message };
}

/** For a diverged run's message: where its last good state is, if it saved one. */
function lastGoodCheckpoint(run: string): string {
  return hasCheckpoint(run, 'last') ? `${checkpointDir(run, 'last')} holds the last good checkpoint` : 'no checkpoint had been saved yet';
}

/**
 * The epoch's validation: on the inference handle when there is one (the weights as they are now,
 * in an inference engine that lives for this pass only), else on the training engine.
 */
async function validateEpoch(t: Training): Promise<{ loss: number; metrics: ClassificationMetrics }> {
  const handle = t.options.inference;
  if (handle === undefined) return validate(t.engine, t.data.valLoader);
  const { config } = t;
  const engine = await createInferenceEngine({
    model: config.model,
    imageSize: config.imageSize,
    numClasses,
    weights: (await t.engine.getState()).weights,
    backend: handle,
    workers: inferenceWorkers(undefined, t.data.valImages, handle.capabilities),
    providerModule: t.options.providerModule,
  });
  try {
    return await validate(engine, t.data.valLoader);
  } finally {
    await engine.dispose();
  }
}

/** Mean cross-entropy and the classification metrics over the whole val split, in inference mode. */
async function validate(engine: Pick<Engine, 'predict'>, loader: Loader): Promise<{ loss: number; metrics: ClassificationMetrics }> {
  const labels: number[] = [];
  const predictions: number[] = [];
  let lossSum = 0;
  for await (const batch of loader) {
    const logits = (await engine.predict(batch.images, batch.size)).subarray(0, batch.size * numClasses);
    const predicted = argmaxRows(logits, numClasses);
    lossSum += crossEntropySum(logits, batch.labels, predicted);
    labels.push(...batch.labels);
    predictions.push(...predicted);
  }
  return { loss: lossSum / labels.length, metrics: classificationMetrics(labels, predictions, numClasses) };
}

/** Σ −log softmax(row)[label], log-sum-exp shifted by each row's largest logit (its prediction) so exp never overflows. */
function crossEntropySum(logits: Float32Array, labels: Int32Array, predicted: Int32Array): number {
  let lossSum = 0;
  for (let i = 0; i < predicted.length; i++) {
    const row = logits.subarray(i * numClasses, (i + 1) * numClasses);
    const largest = row[predicted[i]!]!;
    let sum = 0;
    for (let k = 0; k < numClasses; k++) sum += Math.exp(row[k]! - largest);
    lossSum += Math.log(sum) + largest - row[labels[i]!]!;
  }
  return lossSum;
}

/** Record the epoch, save `best` if the monitored metric improved and `last` always, then apply early stopping. */
async function endEpoch(t: Training, val: { loss: number; metrics: ClassificationMetrics }): Promise<StopReason | undefined> {
  const { config, state } = t;
  const row = epochMetrics(state, val);
  state.history.push(row);
  state.partial = emptyPartial();
  state.batch = 0;
  const metric = config.earlyStopping.metric;
  const improved = improves(metric, row[metric], state.best);
  state.sinceImprovement = improved ? 0 : state.sinceImprovement + 1;
  state.epoch = row.epoch;
  const snapshot = await t.engine.getState();
  if (improved) await saveBest(t, row, snapshot);
  await writeMetricsCsv(t.paths.metrics, state.history);
  await writeFileAtomic(t.paths.curves, await curvesPng(state.history, config.model));
  await saveLast(t, snapshot);
  await t.emit({ type: 'epoch-end', metrics: row, improved, best: state.best, tensors: await t.engine.numTensors() });
  const patience = config.earlyStopping.patience;
  if (patience === undefined || state.sinceImprovement < patience) return undefined;
  const best = state.best!;
  return {
    status: 'early-stopped',
    message: `stopped after epoch ${row.epoch}: ${metric} has not improved for ${state.sinceImprovement} epochs (best ${best.value.toFixed(4)} at epoch ${best.epoch})`,
  };
}

function epochMetrics(state: RunState, val: { loss: number; metrics: ClassificationMetrics }): EpochMetrics {
  const p = state.partial;
  return {
    epoch: state.epoch + 1,
    step: state.step,
    lr: p.lr,
    trainLoss: p.lossSum / Math.max(1, p.seen),
    trainAccuracy: p.correct / Math.max(1, p.seen),
    valLoss: val.loss,
    valAccuracy: val.metrics.accuracy,
    valBalancedAccuracy: val.metrics.balancedAccuracy,
    valMacroF1: val.metrics.macroF1,
    valRecall: val.metrics.perClass.map((c) => c.recall),
    seconds: p.seconds,
    imagesPerSec: p.seen / Math.max(p.seconds, 1e-9),
  };
}

/** Better in the monitored metric's direction, as its report/ registry record states it; the first epoch always is. */
function improves(metric: string, value: number, best: BestRecord | null): boolean {
  if (best === null) return true;
  return isImprovement(metricRegistry.monitored(metric), value, best.value);
}

/** `best` before `last`: a kill between the two repeats this epoch on resume and rewrites the same `best`. */
async function saveBest(t: Training, row: EpochMetrics, snapshot: EngineState): Promise<void> {
  const metric = t.config.earlyStopping.metric;
  const value = row[metric];
  t.state.best = { metric, value, epoch: row.epoch, step: row.step };
  const state = { epoch: row.epoch, step: row.step, metric, value, metrics: row };
  await saveCheckpoint(t.run, 'best', { weights: snapshot.weights, state, metadata: { model: t.config.model, epoch: String(row.epoch) } }, t.options.fault);
  await t.emit({ type: 'checkpoint', which: 'best', epoch: row.epoch, batch: 0, step: row.step });
}

/** `last` also carries the engine's step and random state and the loader's position: what exact resume needs. */
async function saveLast(t: Training, snapshot?: EngineState): Promise<void> {
  const { config, state } = t;
  snapshot ??= await t.engine.getState();
  state.engine = { step: snapshot.step, rng: snapshot.rng };
  state.loader = { seed: config.seed, epoch: state.epoch, batch: state.batch };
  const metadata = { model: config.model, epoch: String(state.epoch), step: String(state.step) };
  await saveCheckpoint(t.run, 'last', { weights: snapshot.weights, optimizer: snapshot.optimizer, state, metadata }, t.options.fault);
  t.lastSave = { step: state.step, at: performance.now() };
  await t.emit({ type: 'checkpoint', which: 'last', epoch: state.epoch, batch: state.batch, step: state.step });
}

async function finish(t: Training, { status, message }: StopReason): Promise<TrainResult> {
  await t.emit({ type: 'stop', status, message });
  const { state, engine } = t;
  return { status, message, run: t.run, history: state.history, best: state.best, steps: state.step, backend: engine.backend, workers: engine.workers };
}
