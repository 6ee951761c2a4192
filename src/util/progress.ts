/**
 * Progress reporting for long data jobs (downloads, indexing, cache filling).
 *
 * On a terminal it is a cli-progress bar redrawn in place; when stderr is not a TTY (CI logs, a pipe)
 * cli-progress prints one plain line every few seconds instead of control codes, so logs stay
 * readable. Library functions take a `ProgressSink` and never decide where output goes.
 */
import cliProgress from 'cli-progress';

export interface ProgressSink {
  /** `total` is undefined when it is not known (a download without Content-Length). */
  start(total: number | undefined): void;
  update(done: number): void;
  stop(): void;
}

export const silentProgress: ProgressSink = { start() {}, update() {}, stop() {} };

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A duration for progress lines and ETAs: 5s, 1m15s, 1h02m; '?' when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  if (seconds < 60) return `${Math.round(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  return minutes < 60 ? `${minutes}m${String(Math.round(seconds % 60)).padStart(2, '0')}s` : `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

interface BarOptions {
  label: string;
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Render a value (bytes, or "n files"). */
  formatValue: (value: number) => string;
  /** The rate's unit after the value formatter, e.g. "/s". */
  rateUnit: string;
}

function createBar({ label, stream = process.stderr, formatValue, rateUnit }: BarOptions): ProgressSink {
  let startedAt = 0;
  let known = true;
  const bar = new cliProgress.SingleBar({
    stream,
    noTTYOutput: true, // cli-progress then prints plain lines on its schedule instead of redrawing
    notTTYSchedule: 5000,
    gracefulExit: false, // its SIGINT handler would keep the process alive after Ctrl-C
    hideCursor: false,
    barsize: 24,
    format: (_options, params) => {
      const seconds = Math.max((Date.now() - startedAt) / 1000, 1e-3);
      const rate = `${formatValue(params.value / seconds)}${rateUnit}`;
      if (!known) return `${label} ${formatValue(params.value)} | ${rate}`;
      const fraction = params.total > 0 ? Math.min(params.value / params.total, 1) : 0;
      const filled = Math.round(fraction * 24);
      const eta = fraction > 0 ? (seconds * (1 - fraction)) / fraction : Number.NaN;
      return `${label} [${'#'.repeat(filled)}${'-'.repeat(24 - filled)}] ${(fraction * 100).toFixed(1)}% | ${formatValue(params.value)} / ${formatValue(params.total)} | ${rate} | ETA ${formatDuration(eta)}`;
    },
  });
  return {
    start(total) {
      startedAt = Date.now();
      known = total !== undefined;
      bar.start(total ?? 0, 0);
    },
    update(done) {
      bar.update(done);
    },
    stop() {
      bar.stop();
    },
  };
}

/** A bar for a byte stream: bytes so far, total, rate and ETA. */
export function byteProgress(label: string, stream?: NodeJS.WritableStream): ProgressSink {
  return createBar({ label, stream, formatValue: formatBytes, rateUnit: '/s' });
}

/** A bar for a count of items ("412 / 1947 files, 85 files/s"). */
export function countProgress(label: string, unit: string, stream?: NodeJS.WritableStream): ProgressSink {
  return createBar({ label, stream, formatValue: (n) => `${Math.round(n)} ${unit}`, rateUnit: '/s' });
}
