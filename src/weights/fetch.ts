/**
 * `osteo weights fetch NAME`: a weight tag's checkpoint (models/tags.ts), by tag name or by model
 * name (that model's default weights).
 *
 * torchvision names each file `<arch>-<first hex digits of its SHA-256>.pth` and checks that prefix
 * after downloading (`torch.hub.load_state_dict_from_url(check_hash=True)`); osteo does the same. The
 * file arrives under a temporary name and is renamed only once its hash is right, so a half-written
 * or substituted checkpoint never sits under the real name. A file already present with the right
 * hash is not downloaded again.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { DataError, UserError, HttpStatusError, downloadFile, parseHttpUrl, type DownloadOptions, type ProgressSink } from '../util/index.js';
import { getWeightsTag, type WeightsTag } from '../models/index.js';

/** Where checkpoints go unless --dest says otherwise (git-ignored, kept between runs). */
export const defaultWeightsDir = join('checkpoints', 'pretrained');

export interface FetchWeightsOptions {
  dest?: string;
  /** Serve the file from `${urlBase}/${fileName}` instead of torchvision's URL (a mirror, or a test server). */
  urlBase?: string;
  /** Read for OSTEO_WEIGHTS_URL when urlBase is not given. */
  env?: NodeJS.ProcessEnv;
  progress?: ProgressSink;
  http?: Pick<DownloadOptions, 'retries' | 'backoffMs' | 'maxBackoffMs' | 'timeoutMs' | 'onRetry' | 'sleep'>;
  log?: (line: string) => void;
}

export interface FetchWeightsResult {
  path: string;
  url: string;
  /** True when a valid file was already there. */
  skipped: boolean;
  bytes: number;
  sha256: string;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** What a download needs of a tag. */
export type Checkpoint = Pick<WeightsTag, 'fileName' | 'sha256Prefix' | 'sourceUrl'>;

/** The URL a checkpoint is fetched from, honouring --url and OSTEO_WEIGHTS_URL. */
export function checkpointUrl(checkpoint: Checkpoint, urlBase?: string, env: NodeJS.ProcessEnv = process.env): string {
  const base = urlBase ?? env.OSTEO_WEIGHTS_URL;
  if (base === undefined || base === '') return checkpoint.sourceUrl;
  parseHttpUrl(base, urlBase !== undefined ? '--url' : 'OSTEO_WEIGHTS_URL');
  return `${base.replace(/\/+$/, '')}/${encodeURIComponent(checkpoint.fileName)}`;
}

/** Download (or find) one checkpoint and verify its SHA-256 prefix. */
export async function fetchCheckpoint(checkpoint: Checkpoint, options: FetchWeightsOptions = {}): Promise<FetchWeightsResult> {
  if (!/^[0-9a-f]+$/.test(checkpoint.sha256Prefix)) throw new UserError(`checkpoint ${checkpoint.fileName} has no hash prefix to verify`);
  const dest = resolve(options.dest ?? defaultWeightsDir);
  const target = join(dest, checkpoint.fileName);
  const url = checkpointUrl(checkpoint, options.urlBase, options.env);
  const log = options.log ?? (() => {});
  if (existsSync(target)) {
    const sha256 = await sha256File(target);
    if (sha256.startsWith(checkpoint.sha256Prefix)) return { path: target, url, skipped: true, bytes: 0, sha256 };
    log(`${target} fails its hash check (sha256 ${sha256.slice(0, 12)}…, expected ${checkpoint.sha256Prefix}…); downloading it again`);
  }
  await mkdir(dest, { recursive: true });
  const partial = `${target}.${process.pid}.partial`;
  try {
    let download;
    try {
      download = await downloadFile(url, partial, { ...options.http, progress: options.progress });
    } catch (error) {
      if (error instanceof HttpStatusError && error.status === 404) {
        throw new UserError(`no checkpoint at ${url} (HTTP 404): check --url / OSTEO_WEIGHTS_URL, or download ${checkpoint.fileName} by hand into ${dest}`);
      }
      throw error;
    }
    const sha256 = await sha256File(partial);
    if (!sha256.startsWith(checkpoint.sha256Prefix)) {
      throw new DataError(
        url,
        `sha256 ${sha256.slice(0, 16)}… does not start with ${checkpoint.sha256Prefix} (the hash in the file name): ` +
          `refusing it — the download is damaged or not the published checkpoint`,
      );
    }
    await rename(partial, target);
    return { path: target, url, skipped: false, bytes: download.bytes, sha256 };
  } finally {
    await rm(partial, { force: true });
  }
}

/** `osteo weights fetch NAME`: a tag's checkpoint, NAME a tag (`resnet50.imagenet1k_v1`) or a model (its default weights). */
export async function fetchPretrainedWeights(name: string, options: FetchWeightsOptions = {}): Promise<FetchWeightsResult> {
  return fetchCheckpoint(getWeightsTag(name), options);
}

/** Where `fetchPretrainedWeights(name)` puts the file, for code that wants a checkpoint path. */
export function pretrainedPath(name: string, dest: string = defaultWeightsDir): string {
  return resolve(dest, getWeightsTag(name).fileName);
}
