/**
 * `osteo data preview`: a contact sheet of augmented samples with their labels, so a student sees what
 * an augmentation config does before training with it. Samples come from the train split when a
 * manifest exists (else straight from the class folders), a few from each class.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { UserError, beta, checkWritableFolder, createRng, deriveSeed, shuffleInPlace, writeFileAtomic } from '../util/index.js';
import { mixupBatch, mixupPartners } from './augment-pixels.js';
import { applyAugmentation, sampleAugmentation, type AugmentConfig } from './augment.js';
import { createResizedCache } from './cache.js';
import { classNames, numClasses } from './classes.js';
import { imagenetNormalization } from './image.js';
import { isImageFile, type DicomWindow } from './readers.js';
import { readSplitManifest, splitManifestPath, type ManifestRow } from './split.js';

export interface PreviewOptions {
  dataDir: string;
  /** A validated config (config/'s loadAugmentConfig reads presets and files). */
  augment: AugmentConfig;
  n?: number;
  out?: string;
  /** Tile size in pixels (default 160). */
  imageSize?: number;
  seed?: number;
  /** How DICOM files become gray levels (default auto). */
  dicomWindow?: DicomWindow;
}

export interface PreviewResult {
  out: string;
  width: number;
  height: number;
  tiles: { path: string; label: number; caption: string }[];
}

async function folderRows(dataDir: string): Promise<ManifestRow[]> {
  const rows: ManifestRow[] = [];
  for (const [label, name] of classNames.entries()) {
    const dir = join(dataDir, name);
    if (!existsSync(dir)) continue;
    for (const file of (await readdir(dir)).sort()) {
      if (!file.startsWith('.') && (await isImageFile(join(dir, file)))) rows.push({ path: `${name}/${file}`, label, split: 'train', group: '' });
    }
  }
  return rows;
}

/** The image format `--out` names by its extension; anything else would be bytes under a misleading name. */
const sheetFormats: Record<string, 'png' | 'jpeg' | 'webp'> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' };

function sheetFormat(out: string): 'png' | 'jpeg' | 'webp' {
  if (existsSync(out) && statSync(out).isDirectory()) {
    throw new UserError(`--out ${out} is a folder: give the file to write, e.g. --out ${join(out, 'preview.png')}`);
  }
  const format = sheetFormats[extname(out).toLowerCase()];
  if (format === undefined) {
    throw new UserError(`--out ${out}: the contact sheet is written as ${Object.keys(sheetFormats).join(', ')}; give a file name with one of those extensions`);
  }
  return format;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export async function previewAugmentations(options: PreviewOptions): Promise<PreviewResult> {
  const dataDir = resolve(options.dataDir);
  const n = options.n ?? 16;
  const size = options.imageSize ?? 160;
  const seed = options.seed ?? 0;
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new UserError(`--n must be an integer from 1 to 256, got ${n}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new UserError(`--seed must be an integer ≥ 0, got ${seed}`);
  // Checked before any image is decoded: a wrong --out should not cost the whole sheet's work.
  const out = resolve(options.out ?? 'preview.png');
  const format = sheetFormat(out);
  await checkWritableFolder(dirname(out), 0);
  const config = options.augment;
  const manifest = existsSync(splitManifestPath(dataDir)) ? (await readSplitManifest(dataDir)).filter((r) => r.split === 'train') : await folderRows(dataDir);
  if (manifest.length === 0) throw new UserError(`no images found in ${dataDir}: expected ${classNames.map((c) => `${c}/`).join(', ')} or a split manifest`);

  // Round-robin over the classes so each appears, in a seeded order within each class.
  const rng = createRng(deriveSeed(seed, 0));
  const byClass = classNames.map((_, label) => shuffleInPlace(manifest.filter((r) => r.label === label), rng));
  const chosen: ManifestRow[] = [];
  for (let k = 0; chosen.length < n && k < n * numClasses; k++) {
    const pool = byClass[k % numClasses]!;
    if (pool.length > 0) chosen.push(pool[Math.floor(k / numClasses) % pool.length]!);
  }

  const resize = Math.round(size / 0.875);
  const cache = createResizedCache(dataDir, resize, { disk: false, dicomWindow: options.dicomWindow });
  const pixels = size * size * 3;
  const images = new Float32Array(chosen.length * pixels);
  for (const [k, row] of chosen.entries()) {
    const image = await cache.get(row.path);
    const params = sampleAugmentation(config, createRng(deriveSeed(seed, 1, k)), image.width, image.height, size);
    applyAugmentation(image, params, size, imagenetNormalization, images, k * pixels);
  }
  const labels = Int32Array.from(chosen.map((r) => r.label));
  const captions: string[] = chosen.map((r) => classNames[r.label]!);
  if (config.mixup !== undefined && chosen.length > 1) {
    const mixRng = createRng(deriveSeed(seed, 2));
    const lambda = beta(mixRng, config.mixup.alpha, config.mixup.alpha);
    const targets = mixupBatch(images, labels, numClasses, lambda, mixupPartners(chosen.length, mixRng));
    for (let i = 0; i < chosen.length; i++) {
      const parts = classNames
        .map((name, c) => ({ name, weight: targets[i * numClasses + c]! }))
        .filter((p) => p.weight > 0.005)
        .sort((a, b) => b.weight - a.weight);
      captions[i] = parts.map((p) => `${p.name} ${p.weight.toFixed(2)}`).join(' + ');
    }
  }

  const columns = Math.ceil(Math.sqrt(chosen.length));
  const rowsCount = Math.ceil(chosen.length / columns);
  const caption = 22;
  const gap = 4;
  const width = columns * (size + gap) + gap;
  const height = rowsCount * (size + caption + gap) + gap;
  const { mean, std } = imagenetNormalization;
  const composites: sharp.OverlayOptions[] = [];
  for (let k = 0; k < chosen.length; k++) {
    const bytes = Buffer.alloc(pixels);
    for (let i = 0; i < pixels; i++) {
      const c = i % 3;
      bytes[i] = Math.max(0, Math.min(255, Math.round((images[k * pixels + i]! * std[c]! + mean[c]!) * 255)));
    }
    const left = gap + (k % columns) * (size + gap);
    const top = gap + Math.floor(k / columns) * (size + caption + gap);
    composites.push({ input: bytes, raw: { width: size, height: size, channels: 3 }, left, top });
    const svg = `<svg width="${size}" height="${caption}" xmlns="http://www.w3.org/2000/svg"><text x="3" y="15" font-family="sans-serif" font-size="12" fill="#f0f0f0">${escapeXml(captions[k]!)}</text></svg>`;
    composites.push({ input: Buffer.from(svg), left, top: top + size });
  }
  const sheet = sharp({ create: { width, height, channels: 3, background: { r: 24, g: 24, b: 28 } } }).composite(composites);
  const bytes = await sheet.toFormat(format, format === 'png' ? {} : { quality: 95 }).toBuffer();
  await mkdir(dirname(out), { recursive: true });
  await writeFileAtomic(out, bytes);
  return { out, width, height, tiles: chosen.map((row, k) => ({ path: row.path, label: row.label, caption: captions[k]! })) };
}
