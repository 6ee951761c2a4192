/**
 * `osteo data index`: scan DIR/{Normal,Osteopenia,Osteoporosis}, decode every file, and find what a
 * random split would silently get wrong: unreadable files, exact duplicates (same decoded pixels,
 * whatever the file format), near duplicates (perceptual hash within a few bits), and duplicate groups
 * whose members carry different labels. Writes DIR/index.csv; never touches a file of the dataset.
 *
 * Every file ends up either indexed or reported with a reason: nothing is skipped silently.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { formatCsv, parseCsvRecords, printable, DataError, UserError, environmentUserError, errorMessage, mapLimit, silentProgress, type ProgressSink, writeFileAtomic } from '../util/index.js';
import { classNames, numClasses } from './classes.js';
import { contentHash, hammingDistance, hashWords, perceptualHash } from './hash.js';
import { UnreadableImageError, extensionOf, imageReaders, maxInputPixels, readImage, type DecodedImage, type UnreadableReason } from './readers.js';

export type ConflictPolicy = 'drop' | 'majority' | 'keep';
export const conflictPolicies: readonly ConflictPolicy[] = ['drop', 'majority', 'keep'];

/** Perceptual-hash distance (of 256 bits) at or below which two different images are near duplicates. */
export const defaultNearThreshold = 20;

/** What osteo itself writes at the top of a data folder; not reported as stray entries. */
export const ownFiles: ReadonlySet<string> = new Set(['index.csv', 'splits.csv', 'phantom.json', 'download.json']);

/** The image readers' reasons (readers.ts), the index's column values. */
export type BadReason = UnreadableReason;

export interface IndexRow {
  /** Relative to the data folder, with forward slashes. */
  path: string;
  label: number;
  status: 'ok' | 'bad';
  reason: BadReason | '';
  format: string;
  width: number;
  height: number;
  channels: number;
  /** Bits per sample of the file (8 or 16). */
  depth: number;
  bytes: number;
  contentHash: string;
  perceptualHash: string;
  /** Duplicate group (exact and near duplicates together): the unit a split never cuts. */
  group: string;
  /** Enters the split: good, not a redundant exact copy, not dropped by the conflict policy. */
  use: boolean;
  note: string;
  /** DICOM only, not a column: the patient-identifying attributes the file carries, by keyword (never their values). */
  identifyingTags?: string[];
}

export interface DuplicateGroup {
  paths: string[];
  labels: number[];
}

export interface ConflictGroup extends DuplicateGroup {
  group: string;
  /** 'exact' when identical pixels carry two labels; 'near' when only near duplicates disagree. */
  kind: 'exact' | 'near';
  action: string;
}

export interface IndexReport {
  dataDir: string;
  indexPath: string;
  conflictPolicy: ConflictPolicy;
  nearThreshold: number;
  files: number;
  filesPerClass: number[];
  good: number;
  bad: { path: string; reason: BadReason; detail: string }[];
  badByReason: Partial<Record<BadReason, number>>;
  /** Distinct decoded images per class (a conflicting image counts in each of its classes). */
  distinctPerClass: number[];
  exactDuplicateGroups: DuplicateGroup[];
  nearDuplicateGroups: DuplicateGroup[];
  conflicts: ConflictGroup[];
  /** Rows entering the split, per class. */
  usablePerClass: number[];
  /** Top-level entries that are not class folders (not scanned). */
  ignored: string[];
  /**
   * The DICOM files that carry patient-identifying attributes, with the attributes' keywords and never
   * their values: what not to share. osteo does not de-identify (docs/data.md, DICOM).
   */
  identifyingTags: { path: string; tags: string[] }[];
  seconds: number;
}

export interface IndexOptions {
  dataDir: string;
  conflicts?: ConflictPolicy;
  nearThreshold?: number;
  maxPixels?: number;
  concurrency?: number;
  progress?: ProgressSink;
  /** Write DIR/index.csv (default true). */
  write?: boolean;
}

export function indexPath(dataDir: string): string {
  return join(dataDir, 'index.csv');
}

export async function listClassFiles(dir: string, prefix: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const files: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue; // .DS_Store and friends
    const rel = `${prefix}/${entry.name}`;
    if (entry.isDirectory()) files.push(...(await listClassFiles(join(dir, entry.name), rel)));
    else files.push(rel);
  }
  return files;
}

function emptyRow(path: string, label: number, bytes: number): IndexRow {
  return {
    path,
    label,
    status: 'ok',
    reason: '',
    format: '',
    width: 0,
    height: 0,
    channels: 0,
    depth: 0,
    bytes,
    contentHash: '',
    perceptualHash: '',
    group: '',
    use: false,
    note: '',
  };
}

function bad(row: IndexRow, reason: BadReason, detail: string): IndexRow {
  return { ...row, status: 'bad', reason, note: detail };
}

/** What the file's name says against what its content is, for the row's note. */
function extensionNote(path: string, format: string): string {
  const extension = extensionOf(path);
  const reader = imageReaders.find((r) => r.name === format);
  if (reader === undefined || reader.extensions.includes(extension)) return '';
  return extension === '' ? `no extension; the content is ${format}` : `extension ${extension} but the content is ${format}`;
}

/**
 * Look at one file through the image readers (readers.ts): every file of a class folder is offered
 * to them, so the content decides, and a file that is not an image is reported with the seam's reason.
 */
export async function inspectFile(dataDir: string, path: string, label: number, maxPixels: number): Promise<IndexRow> {
  const file = join(dataDir, path);
  let info;
  try {
    info = await stat(file);
  } catch (error) {
    // A dangling symbolic link, or a file removed while scanning: reported, not a crash of the whole index.
    return bad(emptyRow(path, label, 0), 'unreadable', `cannot read the file: ${environmentUserError(error, file)?.message ?? errorMessage(error)}`);
  }
  const bytes = info.size;
  const row = emptyRow(path, label, bytes);
  // A FIFO or device would block the read forever (or never end): only regular files are images.
  if (!info.isFile()) return bad(row, 'not-an-image', 'not a regular file (a pipe, socket or device)');
  if (bytes === 0) return bad(row, 'zero-byte', 'empty file (0 bytes)');
  let buffer: Buffer;
  try {
    buffer = await readFile(file);
  } catch (error) {
    // No permission, or an I/O error: this file cannot be used, the others can; it is reported.
    return bad(row, 'unreadable', `cannot read the file: ${environmentUserError(error, file)?.message ?? errorMessage(error)}`);
  }
  let decoded: DecodedImage;
  try {
    decoded = await readImage(buffer, { maxPixels });
  } catch (error) {
    if (!(error instanceof UnreadableImageError)) return bad(row, 'unreadable', errorMessage(error));
    const facts = error.facts;
    const described =
      facts === undefined
        ? row
        : { ...row, format: facts.format, width: facts.width, height: facts.height, channels: facts.channels, depth: facts.bitDepth, ...identifying(facts.identifyingTags) };
    const hint = error.kind === 'too-large' ? '; if the image is genuine, raise the limit with --max-pixels N' : '';
    return bad(described, error.kind, `${error.reason}${hint}`);
  }
  const { pixels, facts } = decoded;
  const notes = [extensionNote(path, facts.format), facts.frames > 1 ? `${facts.frames} frames: the first is used` : ''].filter((note) => note !== '');
  return {
    ...row,
    format: facts.format,
    // EXIF-rotated files report their displayed size, as every consumer sees them.
    width: pixels.width,
    height: pixels.height,
    channels: facts.channels,
    depth: facts.bitDepth,
    contentHash: contentHash(pixels),
    perceptualHash: await perceptualHash(pixels),
    note: notes.join('; '),
    ...identifying(facts.identifyingTags),
  };
}

/** The row's identifying-attribute field, present only when there are some. */
function identifying(tags: string[] | undefined): Pick<IndexRow, 'identifyingTags'> {
  return tags !== undefined && tags.length > 0 ? { identifyingTags: tags } : {};
}

class UnionFind {
  private readonly parent: number[];
  constructor(n: number) {
    this.parent = Array.from({ length: n }, (_, i) => i);
  }
  find(i: number): number {
    while (this.parent[i] !== i) {
      this.parent[i] = this.parent[this.parent[i]!]!;
      i = this.parent[i]!;
    }
    return i;
  }
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.parent[Math.max(ra, rb)] = Math.min(ra, rb);
  }
}

/** What a copy's name carries: "x (copy).png", "x - Copy.png", "Copy of x.png", "x_copy2.png", "x (1).png". */
const copyMarker = /(^|[\s_.(-])copy([\s_.-]*\d*)?([\s_.)-]|$)|\(\d+\)/i;

/**
 * Of identical files, the one that looks like the original is kept and the others are marked as its
 * duplicates: a name without a copy marker first, then the shorter name, then the path (for a stable
 * order). So "x.png" is kept over "x (copy).png", which is what a reader of the report expects.
 */
function originalFirst(a: IndexRow, b: IndexRow): number {
  const nameOf = (row: IndexRow) => row.path.slice(row.path.lastIndexOf('/') + 1).replace(/\.[^.]*$/, '');
  const [nameA, nameB] = [nameOf(a), nameOf(b)];
  const marked = Number(copyMarker.test(nameA)) - Number(copyMarker.test(nameB));
  if (marked !== 0) return marked;
  if (nameA.length !== nameB.length) return nameA.length - nameB.length;
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

function addNote(row: IndexRow, note: string): void {
  row.note = row.note === '' ? note : `${row.note}; ${note}`;
}

function distinct<T>(values: T[]): T[] {
  return [...new Set(values)];
}

/**
 * Group the good rows (exact duplicates by content hash; near duplicates by perceptual distance,
 * transitively), then decide which rows enter the split under the conflict policy.
 */
export function groupRows(
  rows: IndexRow[],
  policy: ConflictPolicy,
  nearThreshold: number,
): Pick<IndexReport, 'exactDuplicateGroups' | 'nearDuplicateGroups' | 'conflicts'> {
  const good = rows.filter((row) => row.status === 'ok');
  const contents = distinct(good.map((row) => row.contentHash)).sort();
  const contentIndex = new Map(contents.map((hash, i) => [hash, i]));
  const membersOf = contents.map(() => [] as IndexRow[]);
  for (const row of good) membersOf[contentIndex.get(row.contentHash)!]!.push(row);

  const words = contents.map((_, i) => hashWords(membersOf[i]![0]!.perceptualHash));
  const components = new UnionFind(contents.length);
  for (let i = 0; i < contents.length; i++) {
    for (let j = i + 1; j < contents.length; j++) {
      if (hammingDistance(words[i]!, words[j]!) <= nearThreshold) components.union(i, j);
    }
  }
  const byComponent = new Map<number, number[]>();
  contents.forEach((_, i) => {
    const root = components.find(i);
    byComponent.set(root, [...(byComponent.get(root) ?? []), i]);
  });

  const exactDuplicateGroups: DuplicateGroup[] = [];
  const nearDuplicateGroups: DuplicateGroup[] = [];
  const conflicts: ConflictGroup[] = [];
  for (const [root, members] of byComponent) {
    // The smallest content hash names the group: stable across runs and file renames.
    const group = `g${contents[root]!.slice(0, 12)}`;
    const groupRows = members.flatMap((i) => membersOf[i]!);
    for (const row of groupRows) row.group = group;
    for (const i of members) {
      const copies = membersOf[i]!;
      if (copies.length > 1) exactDuplicateGroups.push({ paths: copies.map((r) => r.path).sort(), labels: distinct(copies.map((r) => r.label)).sort() });
    }
    if (members.length > 1) {
      nearDuplicateGroups.push({ paths: groupRows.map((r) => r.path).sort(), labels: distinct(groupRows.map((r) => r.label)).sort() });
    }

    let keep = groupRows;
    const labels = distinct(groupRows.map((r) => r.label)).sort();
    if (labels.length > 1) {
      const kind = members.some((i) => distinct(membersOf[i]!.map((r) => r.label)).length > 1) ? 'exact' : 'near';
      const counts = labels.map((label) => groupRows.filter((r) => r.label === label).length);
      const top = Math.max(...counts);
      const winner = counts.filter((n) => n === top).length === 1 ? labels[counts.indexOf(top)]! : undefined;
      let action: string;
      if (policy === 'keep') action = 'kept with both labels (--conflicts keep), in one split';
      else if (policy === 'majority' && winner !== undefined) {
        action = `kept as ${classNames[winner]} (majority); other labels dropped`;
        keep = groupRows.filter((r) => r.label === winner);
      } else {
        action = policy === 'majority' ? 'dropped (no majority label)' : 'dropped from training and evaluation';
        keep = [];
      }
      for (const row of groupRows) if (!keep.includes(row)) addNote(row, `label conflict: ${action}`);
      conflicts.push({ group, kind, paths: groupRows.map((r) => r.path).sort(), labels, action });
    }
    // One row per (image, label) enters the split; identical copies would only double its weight.
    const seen = new Map<string, string>();
    for (const row of [...keep].sort(originalFirst)) {
      const key = `${row.contentHash}:${row.label}`;
      const first = seen.get(key);
      if (first === undefined) {
        seen.set(key, row.path);
        row.use = true;
      } else addNote(row, `duplicate of ${first}`);
    }
  }
  const byFirstPath = (a: DuplicateGroup, b: DuplicateGroup) => (a.paths[0]! < b.paths[0]! ? -1 : 1);
  exactDuplicateGroups.sort(byFirstPath);
  nearDuplicateGroups.sort(byFirstPath);
  conflicts.sort(byFirstPath);
  return { exactDuplicateGroups, nearDuplicateGroups, conflicts };
}

const csvColumns = [
  'path',
  'label',
  'class',
  'status',
  'reason',
  'format',
  'width',
  'height',
  'channels',
  'depth',
  'bytes',
  'contentHash',
  'perceptualHash',
  'group',
  'use',
  'note',
] as const;

export async function writeCsvAtomic(file: string, header: readonly string[], records: unknown[][]): Promise<void> {
  await writeFileAtomic(file, formatCsv(records, { header }));
}

/** A folder name that is a class name but for case, spaces, dashes or underscores (`normal`, `Osteoporosis `). */
export function classNameCloseTo(folder: string): string | undefined {
  const squash = (name: string) => name.toLowerCase().replace(/[\s_-]+/g, '');
  return classNames.find((name) => squash(name) === squash(folder));
}

/**
 * Training on two classes, or with one of them silently empty, gives a model that cannot say the
 * third: every class folder must exist, spelled exactly. The message names what was expected and
 * which folders are near misses (and what to rename them to).
 */
export function missingClassesError(dataDir: string, missing: readonly string[], folders: readonly string[]): UserError {
  const expected = classNames.map((n) => `${n}/`).join(', ');
  const nearMisses = folders.filter((folder) => !(classNames as readonly string[]).includes(folder) && classNameCloseTo(folder) !== undefined);
  const renames = nearMisses.map((folder) => `'${folder}' → rename it to '${classNameCloseTo(folder)}'`);
  const found = renames.length > 0 ? `; found near misses: ${renames.join(', ')}` : '';
  if (missing.length === classNames.length && nearMisses.length === 0) {
    return new UserError(
      `no class folders in ${dataDir}: expected ${expected} ` +
        `(get the data with \`osteo data download\` or make a phantom with \`osteo data synth\`)`,
    );
  }
  return new UserError(`${dataDir} lacks the class folder(s) ${missing.map((n) => `'${n}/'`).join(', ')}: a dataset needs all of ${expected}, spelled exactly so${found}`);
}

/** Classes with no usable image, for a warning in the index report and a refusal before a split. */
export function emptyClasses(usablePerClass: readonly number[]): string[] {
  return classNames.filter((_, label) => (usablePerClass[label] ?? 0) === 0);
}

export async function indexDataset(options: IndexOptions): Promise<{ rows: IndexRow[]; report: IndexReport }> {
  const started = performance.now();
  const dataDir = resolve(options.dataDir);
  const policy = options.conflicts ?? 'drop';
  if (!conflictPolicies.includes(policy)) throw new UserError(`--conflicts must be one of ${conflictPolicies.join(', ')}, got '${policy}'`);
  const nearThreshold = options.nearThreshold ?? defaultNearThreshold;
  // A pHash has 256 bits: a distance outside 0–256 cannot be meant (above 256 every image would match).
  if (!Number.isInteger(nearThreshold) || nearThreshold < 0 || nearThreshold > 256) {
    throw new UserError(`--near-threshold must be a whole number of bits from 0 to 256 (of the 256-bit perceptual hash), got ${nearThreshold}; the default is ${defaultNearThreshold}`);
  }
  const maxPixels = options.maxPixels ?? maxInputPixels;
  if (existsSync(dataDir) && !(await stat(dataDir)).isDirectory()) throw new UserError(`--data ${dataDir} is a file: give the dataset folder that holds ${classNames.map((n) => `${n}/`).join(', ')}`);
  const top = existsSync(dataDir) ? await readdir(dataDir, { withFileTypes: true }) : [];
  const present = classNames.filter((name) => top.some((entry) => entry.isDirectory() && entry.name === name));
  const missing = classNames.filter((name) => !present.includes(name));
  if (missing.length > 0) throw missingClassesError(dataDir, missing, top.filter((entry) => entry.isDirectory()).map((entry) => entry.name));
  const ignored = top
    .filter((entry) => !entry.name.startsWith('.') && !ownFiles.has(entry.name) && !(entry.isDirectory() && (present as string[]).includes(entry.name)))
    .map((entry) => entry.name)
    .sort();
  const files: { path: string; label: number }[] = [];
  for (const name of present) {
    for (const path of await listClassFiles(join(dataDir, name), name)) files.push({ path, label: classNames.indexOf(name) });
  }
  const progress = options.progress ?? silentProgress;
  progress.start(files.length);
  let done = 0;
  const rows = await mapLimit(files, options.concurrency ?? 4, async ({ path, label }) => {
    const row = await inspectFile(dataDir, path, label, maxPixels);
    progress.update(++done);
    return row;
  });
  progress.stop();

  const groups = groupRows(rows, policy, nearThreshold);
  const perClass = (predicate: (row: IndexRow) => boolean) =>
    classNames.map((_, label) => rows.filter((row) => row.label === label && predicate(row)).length);
  const badRows = rows.filter((row) => row.status === 'bad');
  const badByReason: Partial<Record<BadReason, number>> = {};
  for (const row of badRows) badByReason[row.reason as BadReason] = (badByReason[row.reason as BadReason] ?? 0) + 1;
  const report: IndexReport = {
    dataDir,
    indexPath: indexPath(dataDir),
    conflictPolicy: policy,
    nearThreshold,
    files: rows.length,
    filesPerClass: perClass(() => true),
    good: rows.length - badRows.length,
    bad: badRows.map((row) => ({ path: row.path, reason: row.reason as BadReason, detail: row.note })),
    badByReason,
    distinctPerClass: classNames.map((_, label) => distinct(rows.filter((r) => r.status === 'ok' && r.label === label).map((r) => r.contentHash)).length),
    ...groups,
    usablePerClass: perClass((row) => row.use),
    ignored,
    identifyingTags: rows.flatMap((row) => (row.identifyingTags === undefined ? [] : [{ path: row.path, tags: row.identifyingTags }])),
    seconds: (performance.now() - started) / 1000,
  };
  if (options.write ?? true) {
    await writeCsvAtomic(
      report.indexPath,
      csvColumns,
      rows.map((r) => [
        r.path,
        r.label,
        classNames[r.label],
        r.status,
        r.reason,
        r.format,
        r.width,
        r.height,
        r.channels,
        r.depth,
        r.bytes,
        r.contentHash,
        r.perceptualHash,
        r.group,
        r.use ? 'true' : 'false',
        r.note,
      ]),
    );
  }
  return { rows, report };
}

/** Read DIR/index.csv back into rows. */
export async function readIndex(dataDir: string): Promise<IndexRow[]> {
  const file = indexPath(resolve(dataDir));
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`no index at ${file}: run \`osteo data index --data ${dataDir}\` first`);
    throw environmentUserError(error, file) ?? error;
  }
  const records = parseCsvRecords(text, file);
  return records.map((record, i) => {
    const missing = csvColumns.filter((column) => record[column] === undefined);
    if (missing.length > 0) throw new DataError(file, `row ${i + 2} lacks column(s) ${missing.join(', ')}`);
    const label = Number(record.label);
    if (!Number.isInteger(label) || label < 0 || label >= numClasses) throw new DataError(file, `row ${i + 2}: label '${record.label}' is not 0, 1 or 2`);
    return {
      path: record.path!,
      label,
      status: record.status === 'bad' ? 'bad' : 'ok',
      reason: (record.reason ?? '') as BadReason | '',
      format: record.format!,
      width: Number(record.width),
      height: Number(record.height),
      channels: Number(record.channels),
      depth: Number(record.depth),
      bytes: Number(record.bytes),
      contentHash: record.contentHash!,
      perceptualHash: record.perceptualHash!,
      group: record.group!,
      use: record.use === 'true',
      note: record.note ?? '',
    };
  });
}

/** The human report of `osteo data index`; file names from the dataset are printed with control characters escaped. */
export function formatIndexReport(report: IndexReport): string {
  const lines: string[] = [];
  const table = (title: string, values: number[]) => `${title.padEnd(22)}${values.map((n) => String(n).padStart(14)).join('')}`;
  lines.push(`indexed ${report.files} files in ${printable(report.dataDir)} (${report.seconds.toFixed(1)} s) → ${printable(report.indexPath)}`);
  lines.push(`${''.padEnd(22)}${classNames.map((n) => n.padStart(14)).join('')}`);
  lines.push(table('files', report.filesPerClass));
  lines.push(table('distinct images', report.distinctPerClass));
  lines.push(table('enter the split', report.usablePerClass));
  const duplicateFiles = report.exactDuplicateGroups.reduce((sum, g) => sum + g.paths.length - 1, 0);
  lines.push(`exact-duplicate groups: ${report.exactDuplicateGroups.length} (${duplicateFiles} redundant copies)`);
  lines.push(`near-duplicate groups:  ${report.nearDuplicateGroups.length} (perceptual distance ≤ ${report.nearThreshold}/256 bits; kept together in one split)`);
  lines.push(`label conflicts:        ${report.conflicts.length} (policy: ${report.conflictPolicy})`);
  for (const conflict of report.conflicts) {
    lines.push(`  ${conflict.kind} ${conflict.labels.map((l) => classNames[l]).join(' vs ')}: ${conflict.paths.map(printable).join(', ')} → ${conflict.action}`);
  }
  lines.push(`bad files:              ${report.bad.length}`);
  for (const file of report.bad) lines.push(`  ${printable(file.path)}: ${file.reason}: ${printable(file.detail)}`);
  if (report.ignored.length > 0) lines.push(`not scanned (not a class folder): ${report.ignored.map(printable).join(', ')}`);
  if (report.identifyingTags.length > 0) {
    lines.push(`patient data:           ${report.identifyingTags.length} DICOM files carry patient-identifying attributes (--json lists which; osteo does not de-identify: see docs/data.md, DICOM)`);
  }
  for (const name of emptyClasses(report.usablePerClass)) {
    lines.push(`WARNING: ${name}/ has no usable image: \`osteo data split\` and training refuse this dataset until it has some`);
  }
  return lines.join('\n');
}
