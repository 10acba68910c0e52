// Base models and datasets the shelf knows. A base model is identified by the
// fingerprint of its weights (fingerprint.ts), not by its path: the same model
// found in another folder is the same entry, with the path updated. A dataset
// is identified by its path and content hash: an edited file is a new entry,
// so a run always points at the data it trained on.
import type Database from 'better-sqlite3';
import path from 'node:path';
import { z } from 'zod';
import { DATA_FORMATS } from '../../engine/data/formats.ts';
import type { ModelArch } from '../../engine/model/config.ts';
import { LibraryError } from './errors.ts';
import { describeBaseModel, fileContentHash } from './fingerprint.ts';
import { checkInput, DatasetStatsSchema, fromJsonColumn, toJsonColumn, type DatasetStats } from './schemas.ts';

export interface BaseModelRecord {
  id: number;
  fingerprint: string;
  path: string;
  name: string;
  architecture: ModelArch;
  parameterCount: number;
  weightBytes: number;
  addedAt: number; // ms since the Unix epoch
}

export interface DatasetRecord {
  id: number;
  path: string;
  name: string;
  format: string; // DataFormat, or 'auto'
  contentHash: string;
  sizeBytes: number;
  stats: DatasetStats;
  addedAt: number;
}

interface BaseModelRow {
  id: number;
  fingerprint: string;
  path: string;
  name: string;
  architecture: ModelArch;
  parameter_count: number;
  weight_bytes: number;
  added_at: number;
}

interface DatasetRow {
  id: number;
  path: string;
  name: string;
  format: string;
  content_hash: string;
  size_bytes: number;
  stats_json: string;
  added_at: number;
}

const FormatSchema = z.enum(['auto', ...DATA_FORMATS] as [string, ...string[]]);

export class Catalog {
  private readonly upsertModel: Database.Statement;
  private readonly modelById: Database.Statement;
  private readonly modelByFingerprint: Database.Statement;
  private readonly models: Database.Statement;
  private readonly upsertDataset: Database.Statement;
  private readonly datasetById: Database.Statement;
  private readonly datasetsStmt: Database.Statement;
  private readonly setStats: Database.Statement;

  constructor(
    db: Database.Database,
    private readonly file: string,
  ) {
    this.upsertModel = db.prepare(`
      INSERT INTO base_models (fingerprint, path, name, architecture, parameter_count, weight_bytes, added_at)
      VALUES (@fingerprint, @path, @name, @architecture, @parameterCount, @weightBytes, @addedAt)
      ON CONFLICT (fingerprint) DO UPDATE SET path = excluded.path, name = excluded.name
      RETURNING *`);
    this.modelById = db.prepare('SELECT * FROM base_models WHERE id = ?');
    this.modelByFingerprint = db.prepare('SELECT * FROM base_models WHERE fingerprint = ?');
    this.models = db.prepare('SELECT * FROM base_models ORDER BY name COLLATE NOCASE, id');
    this.upsertDataset = db.prepare(`
      INSERT INTO datasets (path, name, format, content_hash, size_bytes, stats_json, added_at)
      VALUES (@path, @name, @format, @contentHash, @sizeBytes, @statsJson, @addedAt)
      ON CONFLICT (path, content_hash) DO UPDATE SET format = excluded.format, stats_json = excluded.stats_json
      RETURNING *`);
    this.datasetById = db.prepare('SELECT * FROM datasets WHERE id = ?');
    this.datasetsStmt = db.prepare('SELECT * FROM datasets ORDER BY added_at DESC, id DESC');
    this.setStats = db.prepare('UPDATE datasets SET stats_json = ? WHERE id = ?');
  }

  // ---- base models ----------------------------------------------------------------

  private model(row: BaseModelRow): BaseModelRecord {
    return {
      id: row.id, fingerprint: row.fingerprint, path: row.path, name: row.name, architecture: row.architecture,
      parameterCount: row.parameter_count, weightBytes: row.weight_bytes, addedAt: row.added_at,
    };
  }

  /** Reads a model folder (config and weight headers, checked) and records it, or updates the path of the same weights. */
  async addBaseModel(folder: string): Promise<BaseModelRecord> {
    const facts = await describeBaseModel(folder);
    return this.model(this.upsertModel.get({ ...facts, addedAt: Date.now() }) as BaseModelRow);
  }

  findBaseModel(id: number): BaseModelRecord | null {
    const row = this.modelById.get(id) as BaseModelRow | undefined;
    return row ? this.model(row) : null;
  }

  getBaseModel(id: number): BaseModelRecord {
    const found = this.findBaseModel(id);
    if (!found) throw new LibraryError(`There is no base model ${id} in the library; add the model folder first.`, this.file);
    return found;
  }

  baseModelByFingerprint(fingerprint: string): BaseModelRecord | null {
    const row = this.modelByFingerprint.get(fingerprint) as BaseModelRow | undefined;
    return row ? this.model(row) : null;
  }

  listBaseModels(): BaseModelRecord[] {
    return (this.models.all() as BaseModelRow[]).map((r) => this.model(r));
  }

  // ---- datasets ---------------------------------------------------------------------

  private dataset(row: DatasetRow): DatasetRecord {
    return {
      id: row.id, path: row.path, name: row.name, format: row.format, contentHash: row.content_hash, sizeBytes: row.size_bytes,
      stats: fromJsonColumn(DatasetStatsSchema, row.stats_json, { file: this.file, table: 'datasets', column: 'stats_json', id: row.id }),
      addedAt: row.added_at,
    };
  }

  /** Hashes a data file and records it with its format and stats (inspectData's report, or part of it). */
  async addDataset(file: string, opts: { format?: string; stats?: DatasetStats } = {}): Promise<DatasetRecord> {
    const format = checkInput(FormatSchema, opts.format ?? 'auto', 'The dataset format');
    const statsJson = toJsonColumn(DatasetStatsSchema, opts.stats ?? {}, 'The dataset stats');
    const abs = path.resolve(file);
    let content;
    try {
      content = await fileContentHash(abs);
    } catch (e) {
      throw new LibraryError(`Cannot read the dataset ${abs}: ${(e as Error).message}. Check the path.`, abs);
    }
    const row = this.upsertDataset.get({
      path: abs, name: path.basename(abs), format, contentHash: content.hash, sizeBytes: content.sizeBytes, statsJson, addedAt: Date.now(),
    }) as DatasetRow;
    return this.dataset(row);
  }

  findDataset(id: number): DatasetRecord | null {
    const row = this.datasetById.get(id) as DatasetRow | undefined;
    return row ? this.dataset(row) : null;
  }

  getDataset(id: number): DatasetRecord {
    const found = this.findDataset(id);
    if (!found) throw new LibraryError(`There is no dataset ${id} in the library; add the data file first.`, this.file);
    return found;
  }

  listDatasets(): DatasetRecord[] {
    return (this.datasetsStmt.all() as DatasetRow[]).map((r) => this.dataset(r));
  }

  setDatasetStats(id: number, stats: DatasetStats): DatasetRecord {
    this.getDataset(id);
    this.setStats.run(toJsonColumn(DatasetStatsSchema, stats, 'The dataset stats'), id);
    return this.getDataset(id);
  }
}
