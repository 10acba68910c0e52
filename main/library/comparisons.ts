// Saved comparisons of base and adapted outputs (engine/generate/compare.ts):
// the prompts, both outputs of each, the sampling settings, and which output
// the user preferred. The entries are one JSON column: a comparison is read
// and written whole, and a rating rewrites it in one statement.
import type Database from 'better-sqlite3';
import { z } from 'zod';
import { LibraryError } from './errors.ts';
import {
  checkInput, ComparisonEntriesSchema, ComparisonSettingsSchema, fromJsonColumn, RatingSchema,
  type ComparisonEntry, type ComparisonSettings, type Rating,
} from './schemas.ts';

export interface ComparisonRecord {
  id: number;
  title: string;
  baseFingerprint: string | null;
  adapterId: string | null; // null once the adapter is removed from the shelf
  settings: ComparisonSettings;
  entries: ComparisonEntry[];
  createdAt: number; // ms since the Unix epoch
}

export interface NewComparison {
  title?: string;
  baseFingerprint?: string | null;
  adapterId?: string | null;
  settings?: ComparisonSettings;
  entries: Array<Omit<ComparisonEntry, 'rating'> & { rating?: Rating }>;
}

interface ComparisonRow {
  id: number;
  title: string;
  base_fingerprint: string | null;
  adapter_id: string | null;
  settings_json: string;
  entries_json: string;
  created_at: number;
}

const NewComparisonSchema = z.object({
  title: z.string().max(200).optional(),
  baseFingerprint: z.string().nullable().optional(),
  adapterId: z.string().nullable().optional(),
  settings: ComparisonSettingsSchema.optional(),
  entries: ComparisonEntriesSchema,
});

export class ComparisonLog {
  private readonly insert: Database.Statement;
  private readonly byId: Database.Statement;
  private readonly list: Database.Statement;
  private readonly listForAdapter: Database.Statement;
  private readonly setEntries: Database.Statement;
  private readonly adapterExists: Database.Statement;

  constructor(
    db: Database.Database,
    private readonly file: string,
  ) {
    this.insert = db.prepare(`
      INSERT INTO comparisons (title, base_fingerprint, adapter_id, settings_json, entries_json, created_at)
      VALUES (@title, @baseFingerprint, @adapterId, @settingsJson, @entriesJson, @createdAt)`);
    this.byId = db.prepare('SELECT * FROM comparisons WHERE id = ?');
    this.list = db.prepare('SELECT * FROM comparisons ORDER BY created_at DESC, id DESC');
    this.listForAdapter = db.prepare('SELECT * FROM comparisons WHERE adapter_id = ? ORDER BY created_at DESC, id DESC');
    this.setEntries = db.prepare('UPDATE comparisons SET entries_json = ? WHERE id = ?');
    this.adapterExists = db.prepare('SELECT 1 FROM adapters WHERE id = ?');
  }

  private record(row: ComparisonRow): ComparisonRecord {
    const where = { file: this.file, table: 'comparisons', id: row.id };
    return {
      id: row.id, title: row.title, baseFingerprint: row.base_fingerprint, adapterId: row.adapter_id,
      settings: fromJsonColumn(ComparisonSettingsSchema, row.settings_json, { ...where, column: 'settings_json' }),
      entries: fromJsonColumn(ComparisonEntriesSchema, row.entries_json, { ...where, column: 'entries_json' }),
      createdAt: row.created_at,
    };
  }

  save(input: NewComparison): ComparisonRecord {
    const c = checkInput(NewComparisonSchema, { ...input, entries: input.entries.map((e) => ({ ...e, rating: e.rating ?? null })) }, 'The comparison');
    if (c.adapterId != null && !this.adapterExists.get(c.adapterId))
      throw new LibraryError(`There is no adapter ${JSON.stringify(c.adapterId)} on the shelf to attach this comparison to.`, this.file);
    const info = this.insert.run({
      title: c.title ?? '', baseFingerprint: c.baseFingerprint ?? null, adapterId: c.adapterId ?? null,
      settingsJson: JSON.stringify(c.settings ?? {}), entriesJson: JSON.stringify(c.entries), createdAt: Date.now(),
    });
    return this.get(Number(info.lastInsertRowid));
  }

  get(id: number): ComparisonRecord {
    const row = this.byId.get(id) as ComparisonRow | undefined;
    if (!row) throw new LibraryError(`There is no comparison ${id} in the library; refresh the list.`, this.file);
    return this.record(row);
  }

  listComparisons(adapterId?: string): ComparisonRecord[] {
    const rows = (adapterId === undefined ? this.list.all() : this.listForAdapter.all(adapterId)) as ComparisonRow[];
    return rows.map((r) => this.record(r));
  }

  /** Records which output of prompt `index` (0-based) the user preferred; null clears it. */
  rate(id: number, index: number, rating: Rating): ComparisonRecord {
    const r = checkInput(RatingSchema, rating, 'The rating');
    const comparison = this.get(id);
    const entry = comparison.entries[index];
    if (!Number.isInteger(index) || !entry)
      throw new LibraryError(`Comparison ${id} has prompts 0-${comparison.entries.length - 1}; there is no prompt ${index} to rate.`, this.file);
    const entries = comparison.entries.map((e, i) => (i === index ? { ...e, rating: r } : e));
    this.setEntries.run(JSON.stringify(entries), id);
    return this.get(id);
  }
}
