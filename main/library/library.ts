// The shelf: one SQLite database in the app data folder (what every base
// model, dataset, run, adapter and comparison is) and the adapter store beside
// it (the adapter folders themselves; see store.ts for the layout and how an
// import stays atomic). Everything the app asks of it is a typed call here;
// no SQL lives outside main/library.
//
// openLibrary checks the database (database.ts), brings its schema up to date
// (migrations.ts), then puts the store back in step with the database after
// a crash:
//   tmp/import-* of dead processes      removed (half copies; the source is untouched)
//   a folder in adapters/ with no row   moved to trash/unlisted-* (never deleted)
//   a row whose folder sits in the other place (adapters/ vs trash/)  the row follows the folder
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { z } from 'zod';
import { readPeftConfig } from '../../engine/adapters/peft.ts';
import type { ModelConfig } from '../../engine/model/config.ts';
import { planModelLoad } from '../../engine/model/folder.ts';
import { AdapterShelf, normalizeTags, type AdapterMethod, type AdapterQuery, type AdapterRecord } from './adapters.ts';
import { Catalog } from './catalog.ts';
import { ComparisonLog } from './comparisons.ts';
import { openDatabase } from './database.ts';
import { LibraryError } from './errors.ts';
import { RunLog, type MeasuredPeak } from './runs.ts';
import { AdapterNameSchema, checkInput, MethodSchema, NotesSchema } from './schemas.ts';
import {
  copyAdapterFiles, folderBytes, importTempFolder, moveFolder, moveUnlistedToTrash, newAdapterId, removeStaleImports,
  storePaths, syncFolder, type CopyOptions, type StorePaths,
} from './store.ts';

export interface OpenLibraryOptions {
  databaseName?: string; // default 'library.sqlite'
}

/** What openLibrary found and repaired in the store. */
export interface RecoveryReport {
  removedTempFolders: string[];
  unlistedMovedToTrash: string[]; // where each folder went
  statesFixed: Array<{ id: string; state: 'ready' | 'trashed' }>;
}

export interface ImportMeta {
  name?: string; // default: the folder's name
  baseModelId?: number | null; // the library's base model it was made for; the adapter is checked against it
  baseFingerprint?: string | null; // or the base's fingerprint, when it is not in the library
  method?: AdapterMethod; // default 'lora'
  datasetId?: number | null;
  runId?: number | null;
  evalLoss?: number | null;
  tags?: string[];
  notes?: string;
}

export interface AdapterProblem {
  id: string;
  name: string;
  folder: string; // absolute
  problem: 'missing' | 'damaged';
  message: string;
}

export function openLibrary(appDataDir: string, opts: OpenLibraryOptions = {}): Library {
  const paths = storePaths(appDataDir, opts.databaseName);
  mkdirSync(paths.root, { recursive: true });
  const opened = openDatabase(paths.database, { backupDir: paths.backups, adaptersDir: paths.adapters });
  try {
    return new Library(paths, opened.db, opened.migratedFrom, opened.backup);
  } catch (err) {
    opened.db.close();
    throw err;
  }
}

export class Library {
  readonly file: string;
  readonly catalog: Catalog;
  readonly adapters: AdapterShelf;
  readonly runs: RunLog;
  readonly comparisons: ComparisonLog;
  readonly recovery: RecoveryReport;

  constructor(
    readonly paths: StorePaths,
    private readonly db: Database.Database,
    readonly migratedFrom: number, // schema version the file had (0: new)
    readonly backup: string | null, // copy made before migrating, if any
  ) {
    this.file = paths.database;
    for (const dir of [paths.adapters, paths.trash, paths.tmp]) mkdirSync(dir, { recursive: true });
    this.catalog = new Catalog(db, this.file);
    this.adapters = new AdapterShelf(db, this.file);
    this.runs = new RunLog(db, this.file);
    this.comparisons = new ComparisonLog(db, this.file);
    this.recovery = this.recover();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** Absolute folder of an adapter where it is now (adapters/ or trash/). */
  adapterFolder(a: Pick<AdapterRecord, 'folder' | 'state'>): string {
    return path.join(a.state === 'ready' ? this.paths.adapters : this.paths.trash, a.folder);
  }

  private recover(): RecoveryReport {
    const removedTempFolders = removeStaleImports(this.paths);
    const statesFixed: RecoveryReport['statesFixed'] = [];
    const rows = this.adapters.everything();
    for (const a of rows) {
      const inStore = existsSync(path.join(this.paths.adapters, a.folder));
      const inTrash = existsSync(path.join(this.paths.trash, a.folder));
      const state = a.state === 'ready' && !inStore && inTrash ? 'trashed' : a.state === 'trashed' && !inTrash && inStore ? 'ready' : null;
      if (state) {
        this.adapters.markState(a.id, state, Date.now());
        statesFixed.push({ id: a.id, state });
      }
    }
    const unlistedMovedToTrash = moveUnlistedToTrash(this.paths, new Set(rows.map((a) => a.folder)));
    return { removedTempFolders, unlistedMovedToTrash, statesFixed };
  }

  // ---- adding adapters ----------------------------------------------------------------

  /**
   * Copies a PEFT adapter folder onto the shelf and records it. The folder is
   * checked first (readPeftConfig: adapter_config.json and the weights'
   * names and shapes, against the base model when one is given) and the copy
   * again before it is placed. All or nothing: on any failure, an abort or a
   * crash, neither a folder nor a row is left (see store.ts).
   */
  async importAdapter(folder: string, meta: ImportMeta = {}, opts: CopyOptions = {}): Promise<AdapterRecord> {
    return this.place(path.resolve(folder), meta, 'imported', opts);
  }

  /**
   * Puts the adapter a completed (or stopped) run saved on the shelf, linked to
   * the run, its base model and dataset, with the run's method and final eval
   * loss. `folder` defaults to <out>/adapter, where the engine saves it.
   */
  async addAdapterFromRun(runId: number, meta: Omit<ImportMeta, 'runId' | 'baseModelId' | 'baseFingerprint' | 'method' | 'datasetId'> & { folder?: string } = {}, opts: CopyOptions = {}): Promise<AdapterRecord> {
    const run = this.runs.get(runId);
    if (run.status !== 'completed' && run.status !== 'stopped')
      throw new LibraryError(`Run ${runId} is ${run.status}; only a completed or stopped run has a final adapter to put on the shelf.`, this.file);
    const evalLoss = meta.evalLoss !== undefined ? meta.evalLoss : run.evalLoss ?? this.runs.series(runId).eval.at(-1)?.loss ?? null;
    const { folder, ...rest } = meta;
    return this.place(path.resolve(folder ?? path.join(run.outDir, 'adapter')), {
      ...rest, name: meta.name ?? run.name, runId, baseModelId: run.baseModelId, method: run.config.method, datasetId: run.datasetId, evalLoss,
    }, 'trained', opts);
  }

  private async place(src: string, meta: ImportMeta, source: 'imported' | 'trained', opts: CopyOptions): Promise<AdapterRecord> {
    const name = checkInput(AdapterNameSchema, meta.name ?? path.basename(src), 'The adapter name');
    const notes = checkInput(NotesSchema, meta.notes ?? '', 'The notes');
    const method = checkInput(MethodSchema, meta.method ?? 'lora', 'The training method');
    const tags = normalizeTags(meta.tags ?? []);
    const evalLoss = checkInput(z.number().nullable(), meta.evalLoss ?? null, 'The eval loss');
    if (meta.datasetId != null) this.catalog.getDataset(meta.datasetId);
    if (meta.runId != null) this.runs.get(meta.runId);
    let baseFingerprint = meta.baseFingerprint ?? null;
    let baseConfig: ModelConfig | undefined;
    if (meta.baseModelId != null) {
      const base = this.catalog.getBaseModel(meta.baseModelId);
      baseFingerprint = base.fingerprint;
      // The base folder may have moved since it was recorded; then the adapter is checked on its own.
      if (existsSync(base.path)) baseConfig = (await planModelLoad(base.path)).config;
    }
    const config = await readPeftConfig(src, baseConfig);

    const id = newAdapterId();
    const temp = importTempFolder(this.paths, id);
    const final = path.join(this.paths.adapters, id);
    let placed = false; // the folder reached adapters/<id>
    try {
      const sizeBytes = await copyAdapterFiles(src, temp, opts);
      await readPeftConfig(temp, baseConfig); // the copy is whole and still the same adapter
      this.db.transaction(() => {
        this.adapters.add({
          id, name, folder: id, sizeBytes, rank: config.rank, alpha: config.alpha, rslora: config.rslora, targets: config.targets,
          method, baseFingerprint, baseModelName: config.baseModel, datasetId: meta.datasetId ?? null, runId: meta.runId ?? null,
          evalLoss, tags, notes, source, sourcePath: src, createdAt: Date.now(),
        });
        moveFolder(temp, final); // last: if it throws, the insert is rolled back
        placed = true;
      })();
    } catch (err) {
      // A rename that happened before a failed commit is undone, so no folder outlives its row.
      if (placed && !this.adapters.find(id)) rmSync(final, { recursive: true, force: true });
      rmSync(temp, { recursive: true, force: true });
      throw err;
    }
    await syncFolder(this.paths.adapters);
    return this.adapters.get(id);
  }

  // ---- trash --------------------------------------------------------------------------

  /** Moves an adapter's folder to trash/ and marks it trashed; restoreAdapter undoes it. */
  deleteAdapter(id: string): AdapterRecord {
    const a = this.adapters.get(id);
    if (a.state === 'trashed') return a;
    const from = path.join(this.paths.adapters, a.folder);
    this.db.transaction(() => {
      this.adapters.markState(id, 'trashed', Date.now());
      if (existsSync(from)) moveFolder(from, path.join(this.paths.trash, a.folder));
    })();
    return this.adapters.get(id);
  }

  restoreAdapter(id: string): AdapterRecord {
    const a = this.adapters.get(id);
    if (a.state === 'ready') return a;
    const from = path.join(this.paths.trash, a.folder);
    this.db.transaction(() => {
      this.adapters.markState(id, 'ready', null);
      if (existsSync(from)) moveFolder(from, path.join(this.paths.adapters, a.folder));
    })();
    return this.adapters.get(id);
  }

  /** Deletes every trashed adapter (folder, then row) and anything else in trash/. Returns what was freed. */
  emptyTrash(): { adapters: number; freedBytes: number } {
    let adapters = 0;
    let freedBytes = 0;
    for (const a of this.adapters.query({ state: 'trashed' })) {
      const dir = path.join(this.paths.trash, a.folder);
      if (existsSync(dir)) {
        freedBytes += folderBytes(dir);
        rmSync(dir, { recursive: true, force: true });
      }
      this.adapters.remove(a.id);
      adapters += 1;
    }
    for (const name of readdirSync(this.paths.trash)) {
      const dir = path.join(this.paths.trash, name);
      freedBytes += folderBytes(dir);
      rmSync(dir, { recursive: true, force: true });
    }
    return { adapters, freedBytes };
  }

  // ---- checks -------------------------------------------------------------------------

  /**
   * Reads every ready adapter's folder as the engine would (adapter_config.json
   * and the safetensors header) and lists those that are missing or damaged.
   * Never throws for an adapter's state: each problem is a result.
   */
  async verifyAdapters(): Promise<{ checked: number; problems: AdapterProblem[] }> {
    const problems: AdapterProblem[] = [];
    const ready = this.adapters.query({ state: 'ready' });
    for (const a of ready) {
      const folder = this.adapterFolder(a);
      if (!existsSync(folder)) {
        problems.push({ id: a.id, name: a.name, folder, problem: 'missing', message: `The folder of adapter "${a.name}" (${folder}) is missing. Restore it from a backup, or delete the adapter from the shelf.` });
        continue;
      }
      try {
        await readPeftConfig(folder);
      } catch (e) {
        problems.push({ id: a.id, name: a.name, folder, problem: 'damaged', message: `Adapter "${a.name}" is damaged: ${(e as Error).message}` });
      }
    }
    return { checked: ready.length, problems };
  }

  // ---- shortcuts the app uses most -------------------------------------------------------

  listAdapters(query: AdapterQuery = {}): AdapterRecord[] {
    return this.adapters.query(query);
  }

  /** Ready adapters made for this base model: the only ones offered with it. */
  adaptersForBase(baseFingerprint: string, query: Omit<AdapterQuery, 'baseFingerprint' | 'state'> = {}): AdapterRecord[] {
    return this.adapters.query({ ...query, baseFingerprint, state: 'ready' });
  }

  /** Memory peaks of completed and stopped runs, for the estimator; see RunLog.measuredPeaks. */
  measuredPeaks(machine?: string): MeasuredPeak[] {
    return this.runs.measuredPeaks(machine);
  }
}
