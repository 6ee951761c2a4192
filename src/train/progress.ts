/**
 * The human view of a training run, built from its events: a progress bar per epoch (images/s, loss,
 * ETA) redrawn in place on a terminal, plain lines (about ten per epoch) when the stream is not a TTY,
 * and one summary line per epoch either way. The trainer itself never writes to the console.
 */
import cliProgress from 'cli-progress';
import { formatDuration } from '../util/index.js';
import type { TrainEvent } from './events.js';

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : String(x));

/** One epoch's progress: wall-clock throughput (data loading included) and the running mean loss. */
class EpochProgress {
  private readonly startedAt = performance.now();
  private images = 0;
  private lossSum = 0;
  private done = 0;
  constructor(
    readonly epoch: number,
    readonly epochs: number,
    readonly steps: number,
    readonly firstBatch: number,
  ) {}
  record(event: Extract<TrainEvent, { type: 'step' }>): void {
    this.images += event.images;
    this.lossSum += event.loss * event.images;
    this.done = event.batch;
  }
  get batch(): number {
    return this.done;
  }
  summary(): string {
    const seconds = (performance.now() - this.startedAt) / 1000;
    const rate = this.images / Math.max(seconds, 1e-3);
    const stepsRun = this.done - this.firstBatch;
    const eta = stepsRun > 0 ? ((this.steps - this.done) * seconds) / stepsRun : Number.NaN;
    const loss = this.images > 0 ? this.lossSum / this.images : Number.NaN;
    return `${rate.toFixed(1)} img/s | loss ${f3(loss)} | ETA ${formatDuration(eta)}`;
  }
}

export function epochLine(event: Extract<TrainEvent, { type: 'epoch-end' }>, epochs: number): string {
  const m = event.metrics;
  const best = event.best ? ` | best ${event.best.metric} ${f3(event.best.value)} (epoch ${event.best.epoch})` : '';
  return (
    `epoch ${m.epoch}/${epochs}${event.improved ? ' *' : '  '} train loss ${f3(m.trainLoss)} acc ${f3(m.trainAccuracy)} | ` +
    `val loss ${f3(m.valLoss)} acc ${f3(m.valAccuracy)} bal ${f3(m.valBalancedAccuracy)} F1 ${f3(m.valMacroF1)} | ${m.imagesPerSec.toFixed(1)} img/s${best}`
  );
}

/** The lines that announce the run's setup; every other event is drawn by the epoch's bar or summary. */
function setupLines(event: TrainEvent): string[] {
  switch (event.type) {
    case 'start':
      return [
        `${event.resumed ? 'resuming' : 'training'} ${event.model} in ${event.run} on ${event.backend} (${event.workers} worker${event.workers === 1 ? '' : 's'}): ` +
          `${event.trainImages} train / ${event.valImages} val images, ${event.stepsPerEpoch} steps per epoch, ${event.epochs} epochs`,
      ];
    case 'recovered':
      return event.actions.map((action) => `recovered: ${action}`);
    case 'restarted':
      return [event.reason + (event.removed.length > 0 ? ` (removed its ${event.removed.join(', ')})` : '')];
    case 'pretrained':
      return [
        `pretrained weights ${event.file}: ${event.loaded} tensors loaded` +
          (event.headReinitialised.length > 0 ? `; head re-initialised (${event.headReinitialised.join(', ')})` : ''),
      ];
    case 'resume':
      return [`resumed at epoch ${event.epoch + 1}, batch ${event.batch}, step ${event.step}`];
    case 'stage':
      return [event.stage === 'head' ? `stage 1 from epoch ${event.epoch}: classifier only (frozen through ${event.freezeUntil})` : `from epoch ${event.epoch}: ${event.freezeUntil ? `frozen through ${event.freezeUntil}` : 'all layers train'}`];
    default:
      return [];
  }
}

function epochBar(stream: ProgressStream, progress: EpochProgress): cliProgress.SingleBar {
  const bar = new cliProgress.SingleBar({
    stream: stream as NodeJS.WritableStream,
    gracefulExit: false, // its own SIGINT handler would fight the trainer's Ctrl-C save
    hideCursor: false,
    barsize: 24,
    format: (_options, params) => {
      const filled = Math.round((params.total > 0 ? params.value / params.total : 0) * 24);
      return `epoch ${progress.epoch}/${progress.epochs} [${'#'.repeat(filled)}${'-'.repeat(24 - filled)}] ${params.value}/${params.total} | ${progress.summary()}`;
    },
  });
  bar.start(progress.steps, progress.firstBatch);
  return bar;
}

/** An onEvent handler that renders to `stream` (stderr by default). */
export function progressReporter(stream: ProgressStream = process.stderr): (event: TrainEvent) => void {
  const tty = stream.isTTY === true;
  let epochs = 0;
  let current: EpochProgress | undefined;
  let bar: cliProgress.SingleBar | undefined;
  const line = (text: string) => {
    bar?.stop();
    bar = undefined;
    stream.write(text + '\n');
  };
  return (event) => {
    switch (event.type) {
      case 'epoch-start':
        current = new EpochProgress(event.epoch, event.epochs, event.steps, event.firstBatch);
        if (tty) bar = epochBar(stream, current);
        break;
      case 'step': {
        if (!current) break;
        current.record(event);
        const every = Math.max(1, Math.ceil(current.steps / 10));
        if (bar) bar.update(event.batch);
        else if (event.batch % every === 0 || event.batch === current.steps) {
          stream.write(`epoch ${current.epoch}/${current.epochs} step ${event.batch}/${current.steps} | ${current.summary()}\n`);
        }
        break;
      }
      case 'epoch-end':
        line(epochLine(event, epochs));
        current = undefined;
        break;
      case 'stop':
        bar?.stop(); // the command prints the outcome
        bar = undefined;
        break;
      default:
        if (event.type === 'start') epochs = event.epochs;
        for (const text of setupLines(event)) line(text);
    }
  };
}
