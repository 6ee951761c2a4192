/**
 * What `osteo reproduce` wrote in its OUT folder, recorded in OUT/.osteo-reproduce.json, so that a
 * re-run or `--fresh` replaces and removes only that (ARCHITECTURE.md, *Staged writes*: no command
 * deletes what it did not create). OUT may be a folder the user keeps other things in.
 *
 *   folder   a run folder, a published-protocol view, the CV folder: owned whole once recorded (what
 *            is inside is the run lifecycle's and the CV plan's to manage)
 *   tree     an evaluation report folder: every file in it is recorded with its SHA-256
 *   file     data.json, reproduce.md, reproduce.json: recorded with their SHA-256
 *   export   the dashboard folder: recorded, and every file in it named by the folder's own export
 *            record (eval's export writes only files whose hash matches that record)
 */
import { existsSync } from 'node:fs';
import { lstat, readdir, rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { foreignExportFiles } from '../eval/index.js';
import { UserError, listSome, listTree, readOwnedRecord, sha256File, sha256Of, unrecordedFiles, writeFileAtomic, writeOwnedRecord, type OwnedRecord } from '../util/index.js';

export type OutEntryKind = 'folder' | 'tree' | 'file' | 'export';

/** A path reproduce writes, relative to OUT (`/`-separated). */
export interface OutEntry {
  path: string;
  kind: OutEntryKind;
}

export const outRecordFile = '.osteo-reproduce.json';
const outRecordFormat = 'osteo-reproduce';

export class OutRecord {
  private constructor(
    readonly out: string,
    private record: OwnedRecord,
  ) {}

  static async open(out: string): Promise<OutRecord> {
    return new OutRecord(out, await readOwnedRecord(join(out, outRecordFile), outRecordFormat));
  }

  private full(path: string): string {
    return join(this.out, ...path.split('/'));
  }

  private owns(folder: string): boolean {
    return (this.record.folders ?? []).some((owned) => folder === owned || folder.startsWith(`${owned}/`));
  }

  /** The entries reproduce wrote before, as they would be removed by --fresh. */
  recordedEntries(): OutEntry[] {
    const folders = (this.record.folders ?? []).map((path): OutEntry => ({ path, kind: path === 'dashboard' ? 'export' : 'folder' }));
    return [...folders, ...Object.keys(this.record.files).map((path): OutEntry => ({ path, kind: 'file' }))];
  }

  /** Of `entries`, what exists in OUT but is not reproduce's (or was changed since it wrote it), as paths relative to OUT. */
  async foreign(entries: readonly OutEntry[]): Promise<string[]> {
    const found = new Set<string>();
    for (const entry of entries) {
      const full = this.full(entry.path);
      if ((await lstat(full).catch(() => undefined)) === undefined) continue;
      if (entry.kind === 'tree' || entry.kind === 'file') {
        for (const path of await unrecordedFiles(this.out, this.record, [entry.path])) found.add(path);
      } else if (!this.owns(entry.path) || !(await lstat(full)).isDirectory()) {
        found.add(entry.path);
      } else if (entry.kind === 'export') {
        for (const path of await foreignExportFiles(full)) found.add(`${entry.path}/${path}`);
      }
    }
    return [...found].sort();
  }

  /** Refuse, naming them, entries that exist in OUT and are not reproduce's; `doing` says what would have happened to them. */
  async refuseForeign(entries: readonly OutEntry[], doing: string): Promise<void> {
    const foreign = await this.foreign(entries);
    if (foreign.length > 0) {
      throw new UserError(
        `${this.out} holds ${listSome(foreign)}, which osteo reproduce did not write ` +
          `(or which changed since), and ${doing}: move them out of ${this.out}, or choose another --out. Nothing was changed`,
      );
    }
  }

  private save(): Promise<void> {
    return writeOwnedRecord(join(this.out, outRecordFile), this.record);
  }

  /** Record folders reproduce is about to make (before anything is written in them). */
  async claimFolders(paths: readonly string[]): Promise<void> {
    const fresh = paths.filter((path) => !this.owns(path));
    if (fresh.length === 0) return;
    this.record.folders = [...(this.record.folders ?? []), ...fresh];
    await this.save();
  }

  /** Write a file of OUT and record its hash (pending first, so a kill in between leaves it recognised). */
  async writeFile(path: string, content: string): Promise<void> {
    const hash = sha256Of(content);
    this.record.pending = { ...this.record.pending, [path]: hash };
    await this.save();
    await writeFileAtomic(this.full(path), content);
    this.record.files[path] = hash;
    delete this.record.pending![path];
    await this.save();
  }

  /** After `write` has replaced the tree at `path` whole, record every file in it. */
  async recordTree(path: string): Promise<void> {
    for (const key of Object.keys(this.record.files)) if (key.startsWith(`${path}/`)) delete this.record.files[key];
    if (existsSync(this.full(path))) for (const file of await listTree(this.full(path))) this.record.files[`${path}/${file}`] = await sha256File(this.full(`${path}/${file}`));
    await this.save();
  }

  /**
   * Remove `entries` (each already checked to be reproduce's) and forget them; each folder left empty
   * on the way up to OUT (runs/, published/) is removed too, a folder holding anything else is kept.
   */
  async remove(entries: readonly OutEntry[]): Promise<void> {
    for (const entry of entries) {
      await rm(this.full(entry.path), { recursive: true, force: true });
      this.record.folders = (this.record.folders ?? []).filter((folder) => folder !== entry.path && !folder.startsWith(`${entry.path}/`));
      for (const key of Object.keys(this.record.files)) if (key === entry.path || key.startsWith(`${entry.path}/`)) delete this.record.files[key];
      for (let parent = dirname(entry.path); parent !== '.'; parent = dirname(parent)) {
        const folder = this.full(parent);
        if (!existsSync(folder) || (await readdir(folder)).length > 0) break;
        await rmdir(folder);
      }
    }
    await this.save();
  }
}
