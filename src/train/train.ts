/**
 * `osteo train`: the fine-tuning loop, top to bottom.
 *
 *   config → data (split manifest, loaders) → engine (+ pretrained weights, head swapped) →
 *   for each epoch: train (one optimizer step per batch, learning rate from the schedule) →
 *   validate (loss, accuracy, balanced accuracy, macro-F1) → `best` if the monitored metric
 *   improved → metrics.csv, curves.png → `last` → early stopping.
 *
 * Exact resume: batches depend only on (seed, epoch, position) (the data loader's contract), the
 * schedule only on the step count, and `last` holds the weights, the optimizer state and the
 * engine's step/random state — so a run stopped anywhere (even mid-epoch: Ctrl-C, --max-steps) and
 * resumed takes the same steps on the same batches as one that never stopped.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { TrainConfig } from '../config/index.js';
import { classCounts, createLoader, createResizedCache, inverseFrequencyWeights, numClasses, readSplitManifest, type Batch, type Loader } from '../data/index.js';
import { deriveSeed, DataError, UserError, writeFileAtomic, writeJsonAtomic } from '../util/index.js';
import { classificationMetrics } from '../report/index.js';
import { getModel } from '../models/index.js';
import { readStateDict } from '../weights/index.js';
import { createEngine, type EngineOptions, type EngineState, type OptimizerConfig, type TrainingEngine } from './engine/index.js';
import { loadCheckpoint, recoverCheckpoints, saveCheckpoint, type FaultInjector, runPaths } from '../runs/index.js';
import type { BestRecord, TrainEvent, TrainStatus } from './events.js';
import { appendEvent, curvesPng, writeMetricsCsv, type EpochMetrics } from './logs.js';
import { learningRate } from './schedule.js';

export interface TrainOptions {
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

type Stage = 'head' | 'main';

/** Everything `last` needs besides weights and optimizer state (RUN/last/state.json). */
interface RunState {
  format: 'osteo-train-state';
  version: 1;
  epoch: number; // epochs completed
  batch: number; // batches done in the epoch in progress
  step: number; // optimizer steps done in all
  stage: Stage;
  partial: { lossSum: number; correct: number; seen: number; seconds: number; lr: number };
  history: EpochMetrics[];
  best: BestRecord | null;
  sinceImprovement: number;
  engine: { step: number; rng: unknown };
  /** The loader keeps no state: batches are a function of these. */
  loader: { seed: number; epoch: number; batch: number };
}

const emptyPartial = () => ({ lossSum: 0, correct: 0, seen: 0, seconds: 0, lr: 0 });

function freshState(config: TrainConfig): RunState {
  return {
    format: 'osteo-train-state',
    version: 1,
    epoch: 0,
    batch: 0,
    step: 0,
    stage: config.headEpochs > 0 ? 'head' : 'main',
    partial: emptyPartial(),
    history: [],
    best: null,
    sinceImprovement: 0,
    engine: { step: 0, rng: null },
    loader: { seed: config.seed, epoch: 0, batch: 0 },
  };
}

function optimizerOf(config: TrainConfig): OptimizerConfig {
  const { type, weightDecay, beta1, beta2, eps, momentum, nesterov } = config.optimizer;
  if (type === 'sgd') return { type, momentum, nesterov, weightDecay };
  return { type, beta1, beta2, eps, weightDecay };
}

/** Metrics where larger is better; the loss is the one where smaller is. */
function improves(metric: string, value: number, best: BestRecord | null): boolean {
  if (best === null) return true;
  return metric === 'valLoss' ? value < best.value : value > best.value;
}

function crossEntropySum(logits: Float32Array, labels: Int32Array, size: number): { lossSum: number; predictions: number[] } {
  let lossSum = 0;
  const predictions: number[] = [];
  for (let i = 0; i < size; i++) {
    const row = logits.subarray(i * numClasses, (i + 1) * numClasses);
    let best = 0;
    for (let k = 1; k < numClasses; k++) if (row[k]! > row[best]!) best = k;
    let sum = 0;
    for (let k = 0; k < numClasses; k++) sum += Math.exp(row[k]! - row[best]!);
    lossSum += Math.log(sum) + row[best]! - row[labels[i]!]!;
    predictions.push(best);
  }
  return { lossSum, predictions };
}

async function validate(engine: TrainingEngine, loader: Loader) {
  const labels: number[] = [];
  const predictions: number[] = [];
  let lossSum = 0;
  for await (const batch of loader) {
    const logits = await engine.predict(batch.images, batch.size);
    const scored = crossEntropySum(logits, batch.labels, batch.size);
    lossSum += scored.lossSum;
    labels.push(...batch.labels);
    predictions.push(...scored.predictions);
  }
  return { loss: lossSum / labels.length, metrics: classificationMetrics(labels, predictions, numClasses) };
}

export async function trainModel(config: TrainConfig, options: TrainOptions = {}): Promise<TrainResult> {
  const run = resolve(config.out);
  const paths = runPaths(run);
  const entry = getModel(config.model);
  const emit = async (event: TrainEvent) => {
    await appendEvent(paths.events, event);
    options.onEvent?.(event);
  };

  // Data: the split manifest (its absence is a UserError naming `osteo data split`), one resize cache for all epochs.
  const rows = await readSplitManifest(config.data);
  const trainRows = rows.filter((row) => row.split === 'train');
  const valRows = rows.filter((row) => row.split === 'val');
  if (trainRows.length === 0 || valRows.length === 0) {
    throw new UserError(`${config.data}: the split has ${trainRows.length} train and ${valRows.length} val images; training needs both (re-run \`osteo data split\`)`);
  }
  const transform = entry.transform(config.imageSize);
  const cache = createResizedCache(config.data, transform.resize);
  const common = { dataDir: config.data, rows, imageSize: config.imageSize, transform, batchSize: config.batchSize, seed: config.seed, cache };
  const sampler = config.classBalance === 'sampler' ? 'weighted' : 'shuffle';
  const trainLoader = (epoch: number) => createLoader({ ...common, split: 'train', augment: config.augment, sampler, epoch });
  const valLoader = createLoader({ ...common, split: 'val', sampler: 'sequential', epoch: 0 });
  const stepsPerEpoch = trainLoader(0).length;
  const span = { stepsPerEpoch, totalSteps: stepsPerEpoch * config.epochs };
  const classWeights = config.classBalance === 'loss' ? inverseFrequencyWeights(classCounts(trainRows)) : undefined;

  // The run directory: a new run must not overwrite an old one; a resumed one first repairs an interrupted save.
  let state: RunState;
  let resumeFrom: Awaited<ReturnType<typeof loadCheckpoint>> | undefined;
  if (options.resume) {
    const repaired = await recoverCheckpoints(run);
    resumeFrom = await loadCheckpoint(run, 'last');
    state = resumeFrom.state as RunState;
    if (state?.format !== 'osteo-train-state' || state.version !== 1) throw new DataError(`${paths.last}/state.json`, 'is not an osteo training state (version 1)');
    if (repaired.length > 0) await emit({ type: 'recovered', actions: repaired });
  } else {
    if (existsSync(paths.config) || existsSync(paths.last)) {
      throw new UserError(`${run} already holds a training run: add --resume to continue it, or choose another --out`);
    }
    await mkdir(run, { recursive: true });
    state = freshState(config);
  }
  await writeJsonAtomic(paths.config, config);

  // The engine for a stage: two-stage fine-tuning trains the head alone first (everything up to the
  // last backbone stage frozen), then rebuilds with `freezeUntil` and a fresh optimizer.
  const headFreeze = entry.stages[entry.stages.length - 2]!;
  const makeEngine = (stage: Stage) => {
    const engineOptions: EngineOptions = {
      model: config.model,
      build: { imageSize: config.imageSize, numClasses: config.numClasses, freezeUntil: stage === 'head' ? headFreeze : config.freezeUntil, seed: config.seed },
      backend: config.backend,
      workers: config.workers,
      microBatch: config.microBatch,
      optimizer: optimizerOf(config),
      clipGradNorm: config.clipGradNorm,
      labelSmoothing: config.labelSmoothing,
      classWeights,
      // stage 2's dropout masks must not replay stage 1's, whose step count they would restart
      seed: stage === 'main' && config.headEpochs > 0 ? deriveSeed(config.seed, 2) & 0x7fffffff : config.seed,
    };
    return createEngine(engineOptions);
  };
  let engine = await makeEngine(state.stage);
  try {
    if (resumeFrom) {
      if (!resumeFrom.optimizer) throw new DataError(`${paths.last}/optimizer.safetensors`, 'is missing');
      await engine.setState({ weights: resumeFrom.weights, optimizer: resumeFrom.optimizer, step: state.engine.step, rng: state.engine.rng });
    }
    await emit({
      type: 'start',
      run,
      model: config.model,
      backend: engine.backend,
      workers: engine.workers,
      trainImages: trainRows.length,
      valImages: valRows.length,
      stepsPerEpoch,
      epochs: config.epochs,
      resumed: Boolean(options.resume),
    });
    if (resumeFrom) {
      await emit({ type: 'resume', epoch: state.epoch, batch: state.batch, step: state.step });
    } else if (config.pretrained) {
      const report = await engine.loadWeights(await readStateDict(config.pretrained), { allowHeadSwap: true });
      await emit({ type: 'pretrained', file: config.pretrained, loaded: report.loaded.length, headReinitialised: report.headReinitialised });
    }

    const saveLast = async (snapshot?: EngineState) => {
      snapshot ??= await engine.getState();
      state.engine = { step: snapshot.step, rng: snapshot.rng };
      state.loader = { seed: config.seed, epoch: state.epoch, batch: state.batch };
      const metadata = { model: config.model, epoch: String(state.epoch), step: String(state.step) };
      await saveCheckpoint(run, 'last', { weights: snapshot.weights, optimizer: snapshot.optimizer, state, metadata }, options.fault);
      await emit({ type: 'checkpoint', which: 'last', epoch: state.epoch, batch: state.batch, step: state.step });
    };
    const finish = async (status: TrainStatus, message: string): Promise<TrainResult> => {
      await emit({ type: 'stop', status, message });
      return { status, message, run, history: state.history, best: state.best, steps: state.step, backend: engine.backend, workers: engine.workers };
    };

    while (state.epoch < config.epochs) {
      const epoch = state.epoch; // 0-based, in progress
      // At an epoch boundary `last` is already current: stopping here needs no save.
      if (state.batch === 0 && existsSync(paths.last)) {
        if (options.signal?.aborted) return await finish('interrupted', `interrupted after epoch ${epoch}; \`last\` is current: resume with --resume`);
        if (config.maxSteps !== undefined && state.step >= config.maxSteps) return await finish('max-steps', `reached --max-steps ${config.maxSteps} at the end of epoch ${epoch}`);
      }
      const stage: Stage = epoch < config.headEpochs ? 'head' : 'main';
      if (stage !== state.stage) {
        const { weights } = await engine.getState();
        await engine.dispose();
        engine = await makeEngine(stage);
        await engine.loadWeights(weights);
        state.stage = stage;
      }
      if (state.batch === 0 && (epoch === 0 || epoch === config.headEpochs)) {
        await emit({ type: 'stage', stage, freezeUntil: (stage === 'head' ? headFreeze : config.freezeUntil) ?? null, epoch: epoch + 1 });
      }

      // Train. A resumed epoch skips the batches it already trained on (they are rebuilt, not stored).
      const loader = trainLoader(epoch);
      await emit({ type: 'epoch-start', epoch: epoch + 1, epochs: config.epochs, steps: loader.length, firstBatch: state.batch });
      let index = 0;
      let stop: 'max-steps' | 'interrupted' | undefined;
      for await (const batch of loader as AsyncIterable<Batch>) {
        if (index++ < state.batch) continue;
        if (options.signal?.aborted) stop = 'interrupted';
        else if (config.maxSteps !== undefined && state.step >= config.maxSteps) stop = 'max-steps';
        if (stop) break;
        const lr = learningRate(config.schedule, config.optimizer.lr, state.step, span);
        const started = performance.now();
        const result = await engine.step(batch, lr);
        const seconds = (performance.now() - started) / 1000;
        if (!Number.isFinite(result.loss)) {
          const message =
            `training diverged: the loss is ${result.loss} at epoch ${epoch + 1}, step ${state.step + 1} (batch ${index} of ${loader.length}); ` +
            `nothing was saved after it — ${existsSync(paths.last) ? `${paths.last} holds the last good checkpoint` : 'no checkpoint had been saved yet'}. ` +
            'Lower optimizer.lr or set clipGradNorm.';
          return await finish('diverged', message);
        }
        state.step += 1;
        state.batch += 1;
        const p = state.partial;
        p.lossSum += result.loss * result.size;
        p.correct += result.correct;
        p.seen += result.size;
        p.seconds += seconds;
        p.lr = lr;
        await emit({ type: 'step', epoch: epoch + 1, batch: state.batch, steps: loader.length, step: state.step, loss: result.loss, lr, gradNorm: result.gradNorm, images: result.size, seconds });
      }
      if (!stop && config.maxSteps !== undefined && state.step >= config.maxSteps && state.batch < loader.length) stop = 'max-steps';
      if (stop) {
        await saveLast();
        const where = `epoch ${epoch + 1}, after batch ${state.batch} of ${loader.length} (step ${state.step})`;
        const message = stop === 'interrupted' ? `interrupted at ${where}; \`last\` saved: resume with --resume` : `reached --max-steps ${config.maxSteps} at ${where}; \`last\` saved`;
        return await finish(stop, message);
      }

      // Validate, then record the epoch.
      const val = await validate(engine, valLoader);
      const p = state.partial;
      const row: EpochMetrics = {
        epoch: epoch + 1,
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
      state.history.push(row);
      state.partial = emptyPartial();
      state.batch = 0;
      const metric = config.earlyStopping.metric;
      const improved = improves(metric, row[metric], state.best);
      state.sinceImprovement = improved ? 0 : state.sinceImprovement + 1;
      state.epoch = epoch + 1;
      const snapshot = await engine.getState();
      if (improved) {
        // `best` before `last`: a kill between the two repeats this epoch on resume and rewrites the same `best`.
        state.best = { metric, value: row[metric], epoch: row.epoch, step: row.step };
        await saveCheckpoint(run, 'best', { weights: snapshot.weights, state: { epoch: row.epoch, step: row.step, metric, value: row[metric], metrics: row }, metadata: { model: config.model, epoch: String(row.epoch) } }, options.fault);
        await emit({ type: 'checkpoint', which: 'best', epoch: row.epoch, batch: 0, step: row.step });
      }
      await writeMetricsCsv(paths.metrics, state.history);
      await writeFileAtomic(paths.curves, await curvesPng(state.history, config.model));
      await saveLast(snapshot);
      await emit({ type: 'epoch-end', metrics: row, improved, best: state.best, tensors: await engine.numTensors() });
      if (config.earlyStopping.patience !== undefined && state.sinceImprovement >= config.earlyStopping.patience) {
        return await finish('early-stopped', `stopped after epoch ${row.epoch}: ${metric} has not improved for ${state.sinceImprovement} epochs (best ${state.best!.value.toFixed(4)} at epoch ${state.best!.epoch})`);
      }
    }
    const best = state.best;
    return await finish('completed', `trained ${state.epoch} epochs (${state.step} steps); best ${best ? `${best.metric} ${best.value.toFixed(4)} at epoch ${best.epoch}` : 'none'}`);
  } finally {
    await engine.dispose();
  }
}
