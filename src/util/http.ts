/**
 * HTTP(S) download to a file, with retries: the one network primitive of osteo, shared by the Kaggle
 * download and `osteo weights fetch`.
 *
 * Written on node:http rather than fetch() because the failure modes are the point: a connection reset
 * in the middle of a body, a body shorter than its Content-Length, a redirect to another host that must
 * not receive our credentials (Kaggle answers with a redirect to a signed storage URL). Each of those
 * is visible and classifiable here. Transient failures (5xx, 429, connection resets, timeouts,
 * truncated bodies) are retried with exponential backoff, honouring Retry-After; a refusal
 * (401/403/404 and other 4xx) is reported at once, because asking again cannot change the answer.
 */
import { createWriteStream } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { UserError, errorMessage } from './errors.js';
import { silentProgress, type ProgressSink } from './progress.js';

export interface DownloadOptions {
  headers?: Record<string, string>;
  /** Attempts after the first (default 4). */
  retries?: number;
  /** Wait before the first retry, doubled for each further one (default 1000 ms). */
  backoffMs?: number;
  /** Upper bound on one wait, Retry-After included (default 30 s). */
  maxBackoffMs?: number;
  /** Socket idle timeout (default 60 s). */
  timeoutMs?: number;
  maxRedirects?: number;
  progress?: ProgressSink;
  /** Told about each retry before its wait (the CLI prints it). */
  onRetry?: (info: { attempt: number; delayMs: number; reason: string }) => void;
  sleep?: (ms: number) => Promise<void>;
}

export interface DownloadResult {
  bytes: number;
  attempts: number;
  /** The URL the body finally came from, after redirects. */
  url: string;
}

/** The server answered with a status that is not success. */
export class HttpStatusError extends UserError {
  override name = 'HttpStatusError';
  constructor(
    readonly url: string,
    readonly status: number,
    readonly statusText: string,
    readonly retryAfterMs?: number,
  ) {
    super(`GET ${redactUrl(url)} answered ${status} ${statusText}`.trim());
  }
}

/** The connection closed before Content-Length bytes arrived. */
class TruncatedBodyError extends Error {
  override name = 'TruncatedBodyError';
}

const retryableCodes = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

export function isRetryable(error: unknown): boolean {
  if (error instanceof HttpStatusError) return error.status === 429 || error.status >= 500;
  if (error instanceof TruncatedBodyError) return true;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && retryableCodes.has(code);
}

/**
 * `text` as an http(s) URL, or a UserError naming the value and where it came from (`source`: a flag
 * or an environment variable), so a typo is reported as such rather than as a TypeError from URL.
 */
export function parseHttpUrl(text: string, source: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UserError(`${source}: '${text}' is not a URL: give an absolute http(s) URL such as https://example.org/path`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UserError(`${source}: '${redactUrl(text)}' is a ${url.protocol.replace(/:$/, '')} URL; only http and https are supported`);
  }
  return url;
}

/** Query strings of signed URLs carry credentials; messages show only origin and path. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return url;
  }
}

function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function get(url: URL, headers: Record<string, string>, timeoutMs: number): Promise<http.IncomingMessage> {
  const client = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
  if (client === undefined) return Promise.reject(new UserError(`cannot download ${url.href}: only http and https URLs are supported`));
  return new Promise((resolve, reject) => {
    const request = client.get(url, { headers: { 'user-agent': 'osteo', ...headers } }, resolve);
    request.setTimeout(timeoutMs, () => {
      request.destroy(Object.assign(new Error(`no data for ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    });
    request.on('error', reject);
  });
}

/** GET with redirects followed by hand, dropping Authorization when a redirect leaves the origin. */
async function getFollowingRedirects(
  url: string,
  headers: Record<string, string>,
  timeoutMs: number,
  maxRedirects: number,
): Promise<{ response: http.IncomingMessage; url: string }> {
  const origin = new URL(url).origin;
  let current = new URL(url);
  for (let hop = 0; ; hop++) {
    const sameOrigin = current.origin === origin;
    const hopHeaders = sameOrigin ? headers : Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'));
    const response = await get(current, hopHeaders, timeoutMs);
    const status = response.statusCode ?? 0;
    if (status >= 300 && status < 400 && response.headers.location !== undefined) {
      response.resume();
      if (hop >= maxRedirects) throw new UserError(`GET ${redactUrl(url)}: more than ${maxRedirects} redirects`);
      try {
        current = new URL(response.headers.location, current);
      } catch {
        throw new UserError(`GET ${redactUrl(current.href)} redirected to '${response.headers.location}', which is not a URL`);
      }
      continue;
    }
    if (status < 200 || status >= 300) {
      response.resume();
      throw new HttpStatusError(current.href, status, response.statusMessage ?? '', parseRetryAfter(response.headers['retry-after'] as string | undefined));
    }
    return { response, url: current.href };
  }
}

async function attemptDownload(
  url: string,
  file: string,
  options: Required<Pick<DownloadOptions, 'headers' | 'timeoutMs' | 'maxRedirects' | 'progress'>>,
): Promise<{ bytes: number; url: string }> {
  const { response, url: finalUrl } = await getFollowingRedirects(url, options.headers, options.timeoutMs, options.maxRedirects);
  const lengthHeader = response.headers['content-length'];
  const expected = lengthHeader === undefined ? undefined : Number(lengthHeader);
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      options.progress.update(bytes);
      callback(null, chunk);
    },
  });
  options.progress.start(expected);
  try {
    await pipeline(response, counter, createWriteStream(file));
  } finally {
    options.progress.stop();
  }
  if (expected !== undefined && Number.isFinite(expected) && bytes !== expected) {
    throw new TruncatedBodyError(`received ${bytes} of ${expected} bytes`);
  }
  return { bytes, url: finalUrl };
}

/**
 * Download `url` into `file` (created or truncated; the caller owns its placement and renaming).
 * Throws HttpStatusError for refusals, a UserError naming the last failure once retries run out.
 */
export async function downloadFile(url: string, file: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  parseHttpUrl(url, 'download');
  const retries = options.retries ?? 4;
  const backoffMs = options.backoffMs ?? 1000;
  const maxBackoffMs = options.maxBackoffMs ?? 30_000;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const attemptOptions = {
    headers: options.headers ?? {},
    timeoutMs: options.timeoutMs ?? 60_000,
    maxRedirects: options.maxRedirects ?? 5,
    progress: options.progress ?? silentProgress,
  };
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await attemptDownload(url, file, attemptOptions);
      return { ...result, attempts: attempt };
    } catch (error) {
      if (!isRetryable(error)) throw error;
      if (attempt > retries) {
        throw new UserError(`download of ${redactUrl(url)} failed after ${attempt} attempts: ${errorMessage(error)}`);
      }
      const retryAfter = error instanceof HttpStatusError ? error.retryAfterMs : undefined;
      const delayMs = Math.min(maxBackoffMs, retryAfter ?? backoffMs * 2 ** (attempt - 1));
      options.onRetry?.({ attempt, delayMs, reason: errorMessage(error) });
      await sleep(delayMs);
    }
  }
}
