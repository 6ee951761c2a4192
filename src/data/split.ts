/**
 * `osteo data split`: one train/val/test manifest (DIR/splits.csv) for every model and the ensemble.
 *
 * The unit of assignment is the duplicate group from the index (identical pixels and near duplicates
 * together), so no image, nor a resized copy of it, can sit on both sides of the train/test line.
 * Groups are stratified by class: each class's groups are shuffled with a seeded generator and dealt
 * to test, then val, then train until each split holds its share of that class's images.
 */
import { readFile, readdir } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { parseCsvRecords, DataError, UserError, createRng, deriveSeed, environmentUserError, shuffleInPlace } from '../util/index.js';
import { classNames, numClasses } from './classes.js';
import { contentHash } from './hash.js';
import { decodeRgb, dicomWindowText, parseDicomWindow, type DicomWindow, type RgbImage } from './readers.js';
import { emptyClasses, indexDataset, indexPath, missingClassesError, readIndex, writeCsvAtomic, type ConflictPolicy, type IndexRow } from './indexer.js';

export type Split = 'train' | 'val' | 'test';
export const splits: readonly Split[] = ['train', 'val', 'test'];

export interface ManifestRow {
  /** Relative to the data folder. */
  path: string;
  label: number;
  split: Split;
  group: string;
}

/**
 * The split of the published protocol, 70/15/15 with seed 42: the one place these numbers are
 * written. They are a fact of the data protocol (as a model's input size is a fact of its registry
 * entry), so they live here, where splitDataset and its in-room callers can read them; the split
 * option table (src/config/split.ts) takes its defaults, docs and `osteo data split` flags from them.
 */
export const splitDefaults: Readonly<{ val: number; test: number; seed: number }> = Object.freeze({ val: 0.15, test: 0.15, seed: 42 });

/** Fractions and seed arrive validated (the split option table checks them); absent ones take splitDefaults. */
export interface SplitOptions {
  dataDir: string;
  val?: number;
  test?: number;
  seed?: number;
  /** Used only when the index has to be built first. */
  conflicts?: ConflictPolicy;
}

export interface SplitReport {
  dataDir: string;
  manifestPath: string;
  seed: number;
  fractions: { train: number; val: number; test: number };
  /** Images per split per class. */
  counts: Record<Split, number[]>;
  groups: Record<Split, number>;
  /** Checked after assignment; both must be 0. */
  leaks: { contentHashes: number; groups: number };
  /** True when DIR/index.csv did not exist and was built for this split. */
  indexed: boolean;
}

export function splitManifestPath(dataDir: string): string {
  return join(dataDir, 'splits.csv');
}

async function currentFiles(dataDir: string): Promise<Set<string>> {
  const files = new Set<string>();
  const walk = async (dir: string, prefix: string): Promise<void> => {
    if (!existsSync(dir)) return;
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      if (entry.isDirectory()) await walk(join(dir, entry.name), `${prefix}/${entry.name}`);
      else files.add(`${prefix}/${entry.name}`);
    }
  };
  for (const name of classNames) await walk(join(dataDir, name), name);
  return files;
}

/** The index, built if missing; an index that no longer matches the folder is an error, not a guess. */
async function loadIndex(dataDir: string, conflicts: ConflictPolicy | undefined): Promise<{ rows: IndexRow[]; indexed: boolean }> {
  if (!existsSync(indexPath(dataDir))) return { rows: (await indexDataset({ dataDir, conflicts })).rows, indexed: true };
  // An index from before a class folder was renamed away still lists it: check the folders again.
  const missing = classNames.filter((name) => !existsSync(join(dataDir, name)));
  if (missing.length > 0) {
    const folders = (await readdir(dataDir, { withFileTypes: true })).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
    throw missingClassesError(dataDir, missing, folders);
  }
  const rows = await readIndex(dataDir);
  const onDisk = await currentFiles(dataDir);
  const indexed = new Set(rows.map((row) => row.path));
  const added = [...onDisk].filter((path) => !indexed.has(path));
  const removed = [...indexed].filter((path) => !onDisk.has(path));
  if (added.length > 0 || removed.length > 0) {
    const example = [...added.map((p) => `+${p}`), ...removed.map((p) => `-${p}`)].slice(0, 3).join(', ');
    throw new UserError(
      `${indexPath(dataDir)} is out of date (${added.length} files added, ${removed.length} removed, e.g. ${example}): ` +
        `run \`osteo data index --data ${dataDir}\` again`,
    );
  }
  return { rows, indexed: false };
}

/**
 * Each class's duplicate groups among the rows in use, with their sizes, in name order shuffled by
 * (seed, class): the order in which the split and the cross-validation folds deal whole groups, so
 * no group ever straddles two splits or two folds.
 */
export function shuffledGroupsByClass(rows: readonly IndexRow[], seed: number): { group: string; size: number }[][] {
  const groups = new Map<string, { label: number; size: number }>();
  for (const row of rows) {
    if (!row.use) continue;
    const seen = groups.get(row.group);
    groups.set(row.group, { label: seen?.label ?? row.label, size: (seen?.size ?? 0) + 1 });
  }
  return Array.from({ length: numClasses }, (_, label) => {
    const classGroups = [...groups.entries()]
      .filter(([, group]) => group.label === label)
      .map(([group, { size }]) => ({ group, size }))
      .sort((a, b) => (a.group < b.group ? -1 : 1));
    return shuffleInPlace(classGroups, createRng(deriveSeed(seed, label)));
  });
}

/**
 * Assign duplicate groups to splits, stratified by class (a group's class is its first label; under
 * --conflicts keep a group may carry two). Pure: same rows and seed, same assignment.
 */
export function assignSplits(rows: IndexRow[], fractions: { val: number; test: number }, seed: number): ManifestRow[] {
  const used = rows.filter((row) => row.use);
  const splitOf = new Map<string, Split>();
  for (const classGroups of shuffledGroupsByClass(used, seed)) {
    const total = classGroups.reduce((sum, g) => sum + g.size, 0);
    const target = { test: Math.round(total * fractions.test), val: Math.round(total * fractions.val) };
    const filled = { test: 0, val: 0 };
    for (const { group, size } of classGroups) {
      const split: Split = filled.test < target.test ? 'test' : filled.val < target.val ? 'val' : 'train';
      if (split !== 'train') filled[split] += size;
      splitOf.set(group, split);
    }
  }
  return used
    .map((row) => ({ path: row.path, label: row.label, split: splitOf.get(row.group)!, group: row.group }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export async function splitDataset(options: SplitOptions): Promise<{ rows: ManifestRow[]; report: SplitReport }> {
  const dataDir = resolve(options.dataDir);
  const val = options.val ?? splitDefaults.val;
  const test = options.test ?? splitDefaults.test;
  const seed = options.seed ?? splitDefaults.seed;
  const { rows: indexRows, indexed } = await loadIndex(dataDir, options.conflicts);
  const rows = assignSplits(indexRows, { val, test }, seed);
  if (rows.length === 0) throw new UserError(`no usable images in ${dataDir} (see \`osteo data index --data ${dataDir}\`)`);
  // A class without images would train a model that never predicts it, and score it as if it could.
  const empty = emptyClasses(classNames.map((_, label) => rows.filter((row) => row.label === label).length));
  if (empty.length > 0) {
    throw new UserError(
      `${dataDir}: no usable image in ${empty.map((name) => `${name}/`).join(', ')}: every class needs images before a split ` +
        `(\`osteo data index --data ${dataDir}\` lists each file's problem)`,
    );
  }

  const hashOf = new Map(indexRows.map((row) => [row.path, row.contentHash]));
  const splitsOfHash = new Map<string, Set<Split>>();
  const splitsOfGroup = new Map<string, Set<Split>>();
  for (const row of rows) {
    const hash = hashOf.get(row.path)!;
    splitsOfHash.set(hash, (splitsOfHash.get(hash) ?? new Set()).add(row.split));
    splitsOfGroup.set(row.group, (splitsOfGroup.get(row.group) ?? new Set()).add(row.split));
  }
  const counts = Object.fromEntries(splits.map((split) => [split, classNames.map((_, label) => rows.filter((r) => r.split === split && r.label === label).length)])) as Record<
    Split,
    number[]
  >;
  const groups = Object.fromEntries(splits.map((split) => [split, new Set(rows.filter((r) => r.split === split).map((r) => r.group)).size])) as Record<Split, number>;
  const report: SplitReport = {
    dataDir,
    manifestPath: splitManifestPath(dataDir),
    seed,
    fractions: { train: 1 - val - test, val, test },
    counts,
    groups,
    leaks: {
      contentHashes: [...splitsOfHash.values()].filter((s) => s.size > 1).length,
      groups: [...splitsOfGroup.values()].filter((s) => s.size > 1).length,
    },
    indexed,
  };
  await writeSplitManifest(report.manifestPath, rows, indexRows);
  return { rows, report };
}

/**
 * Write a split manifest: each row with the content hash the index gave its pixels and, for a DICOM
 * file, the window those pixels were decoded with (eval checks the hash under that window).
 */
export async function writeSplitManifest(file: string, rows: readonly ManifestRow[], indexRows: readonly IndexRow[]): Promise<void> {
  const indexed = new Map(indexRows.map((row) => [row.path, row]));
  await writeCsvAtomic(
    file,
    ['path', 'label', 'class', 'split', 'group', 'contentHash', 'dicomWindow'],
    rows.map((r) => [r.path, r.label, classNames[r.label], r.split, r.group, indexed.get(r.path)?.contentHash ?? '', indexed.get(r.path)?.dicomWindow ?? '']),
  );
}

export function formatSplitReport(report: SplitReport): string {
  const lines = [`wrote ${report.manifestPath} (seed ${report.seed}${report.indexed ? '; built the index first' : ''})`];
  lines.push(`${''.padEnd(8)}${classNames.map((n) => n.padStart(14)).join('')}${'total'.padStart(8)}${'groups'.padStart(8)}`);
  for (const split of splits) {
    const counts = report.counts[split];
    lines.push(`${split.padEnd(8)}${counts.map((n) => String(n).padStart(14)).join('')}${String(counts.reduce((s, n) => s + n, 0)).padStart(8)}${String(report.groups[split]).padStart(8)}`);
  }
  lines.push(`leak check: ${report.leaks.contentHashes} images and ${report.leaks.groups} duplicate groups shared between splits`);
  return lines.join('\n');
}

/**
 * A manifest row names a file below a class folder of its dataset, as `osteo data split` writes it.
 * Anything else (`../../etc/passwd`, an absolute path, a Windows drive) would make the loader open a
 * file outside the dataset, so the whole manifest is refused rather than the row skipped.
 */
function checkInsideDataset(path: string, file: string, row: number): void {
  const parts = path.split('/');
  const escapes = isAbsolute(path) || /^[a-zA-Z]:/.test(path) || path.includes('\\') || path.includes('\0') || parts.some((part) => part === '' || part === '.' || part === '..');
  if (escapes || parts.length < 2 || !(classNames as readonly string[]).includes(parts[0]!)) {
    throw new DataError(
      file,
      `row ${row}: path '${path}' is not a file inside the dataset (expected <class folder>/<file>, e.g. ${classNames[0]}/image.png): refusing to open it; write the manifest again with \`osteo data split\``,
    );
  }
}

/** Parse the text of a splits.csv (`file` names it in errors). */
export function parseSplitManifest(text: string, file: string): ManifestRow[] {
  const records = parseCsvRecords(text, file);
  return records.map((record, i) => {
    const label = Number(record.label);
    if (record.path === undefined || record.path === '') throw new DataError(file, `row ${i + 2} has no path`);
    if (!Number.isInteger(label) || label < 0 || label >= numClasses) throw new DataError(file, `row ${i + 2}: label '${record.label}' is not 0, 1 or 2`);
    if (!(splits as readonly string[]).includes(record.split ?? '')) throw new DataError(file, `row ${i + 2}: split '${record.split}' is not train, val or test`);
    checkInsideDataset(record.path, file, i + 2);
    return { path: record.path, label, split: record.split as Split, group: record.group ?? '' };
  });
}

export function missingManifestError(dataDir: string): UserError {
  return new UserError(`no split manifest at ${splitManifestPath(dataDir)}: run \`osteo data split --data ${dataDir}\` first`);
}

/** A manifest row's content hash, and for a DICOM file the window its pixels were hashed under. */
export interface ManifestHash {
  hash: string;
  /** `auto`, `file` or `C,W`; undefined for other formats (and manifests without the column: auto). */
  dicomWindow?: DicomWindow;
}

/**
 * The expected content hash of each manifest row (the contentHash and dicomWindow columns `osteo
 * data split` writes), keyed by path; empty for a manifest without the column.
 */
export async function manifestContentHashes(dataDir: string): Promise<Map<string, ManifestHash>> {
  const file = splitManifestPath(dataDir);
  const records = parseCsvRecords(await readFile(file, 'utf8'), file);
  return new Map(records.filter((r) => r.path && r.contentHash).map((r) => [r.path!, { hash: r.contentHash!, dicomWindow: r.dicomWindow ? parseDicomWindow(r.dicomWindow) : undefined }]));
}

/**
 * The distinct content hashes of a manifest's train rows, sorted; undefined when a train row has none
 * (a manifest written without the column), so the training set is not known image by image.
 */
export async function trainContentHashes(dataDir: string): Promise<string[] | undefined> {
  const rows = await readSplitManifest(dataDir);
  const hashes = await manifestContentHashes(dataDir);
  const train = rows.filter((row) => row.split === 'train').map((row) => hashes.get(row.path)?.hash);
  if (train.some((hash) => hash === undefined)) return undefined;
  return [...new Set(train as string[])].sort();
}

/**
 * Checks a file's decoded pixels against its manifest row's content hash. `decoded` holds the pixels
 * under each window the caller read the file with (dicomWindowText keys); a DICOM film is hashed under
 * the window the index recorded, decoded again under it when the caller read it under others only.
 * `changed` replaces the message (an external folder changed during its own evaluation).
 */
export async function verifyContentHash(file: string, decoded: ReadonlyMap<string, RgbImage>, expected: ManifestHash | undefined, manifest: string, changed?: string): Promise<void> {
  if (expected === undefined) return;
  const recorded = expected.dicomWindow;
  const hashed = recorded === undefined ? decoded.values().next().value! : (decoded.get(dicomWindowText(recorded)) ?? (await decodeRgb(file, { dicomWindow: recorded })));
  if (contentHash(hashed) === expected.hash) return;
  throw new DataError(
    file,
    changed ??
      `its pixels no longer match the content hash in ${manifest}: the image was changed after indexing; re-run \`osteo data index\` and \`osteo data split\` (and retrain), or restore the file`,
  );
}

/** The manifest every trainer and evaluator reads. */
export async function readSplitManifest(dataDir: string): Promise<ManifestRow[]> {
  const file = splitManifestPath(dataDir);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    // Only an absent manifest means "split first"; a folder in its place or no permission says so.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw missingManifestError(dataDir);
    throw environmentUserError(error, file) ?? error;
  }
  return parseSplitManifest(text, file);
}
