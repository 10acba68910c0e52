// Shelf entries for adapters: what each adapter is (rank, alpha, targets,
// method, base, dataset, run, eval loss), how the user labels it (name, tags,
// notes), and where it is (ready in adapters/, or trashed). The folder moves
// live in store.ts; this file keeps the rows and their queries.
//
// Every statement is prepared once, in the constructor. Queries with optional
// filters use one statement whose NULL parameters switch a filter off; each
// sort order has its own statement (ORDER BY cannot be a parameter).
import type Database from 'better-sqlite3';
import { z } from 'zod';
import type { Projection } from '../../engine/api.ts';
import { LibraryError } from './errors.ts';
import { AdapterNameSchema, checkInput, fromJsonColumn, MethodSchema, NotesSchema, ProjectionListSchema, TagListSchema } from './schemas.ts';

export type AdapterState = 'ready' | 'trashed';
export type AdapterMethod = z.infer<typeof MethodSchema>;

export interface AdapterRecord {
  id: string;
  name: string;
  folder: string; // folder name inside adapters/ (or trash/ while trashed)
  state: AdapterState;
  sizeBytes: number;
  rank: number;
  alpha: number;
  rslora: boolean;
  targets: Projection[];
  method: AdapterMethod;
  baseFingerprint: string | null; // the base model it was made for; null = unknown
  baseModelName: string | null; // base_model_name_or_path from adapter_config.json
  datasetId: number | null;
  runId: number | null;
  evalLoss: number | null;
  tags: string[]; // sorted, case-insensitively unique
  notes: string;
  source: 'imported' | 'trained';
  sourcePath: string | null;
  createdAt: number; // ms since the Unix epoch
  trashedAt: number | null;
}

export type AdapterSortKey = 'name' | 'created' | 'evalLoss' | 'size' | 'rank';
export const ADAPTER_SORT_KEYS: readonly AdapterSortKey[] = ['name', 'created', 'evalLoss', 'size', 'rank'];

export interface AdapterQuery {
  state?: AdapterState; // default 'ready'
  baseFingerprint?: string; // only adapters made for this base
  method?: AdapterMethod;
  runId?: number;
  tags?: readonly string[]; // adapters carrying every one of these (case-insensitive)
  search?: string; // every word must appear in the name, the notes or a tag (case-insensitive for ASCII)
  sort?: AdapterSortKey; // default 'created'
  direction?: 'asc' | 'desc'; // default: 'desc' for created, 'asc' otherwise
}

const QuerySchema = z.object({
  state: z.enum(['ready', 'trashed']).optional(),
  baseFingerprint: z.string().optional(),
  method: MethodSchema.optional(),
  runId: z.number().int().optional(),
  tags: TagListSchema.optional(),
  search: z.string().max(1000).optional(),
  sort: z.enum(ADAPTER_SORT_KEYS as [AdapterSortKey, ...AdapterSortKey[]]).optional(),
  direction: z.enum(['asc', 'desc']).optional(),
});

/** A new row; id and folder are the store's, the rest comes from the adapter files and the caller. */
export interface NewAdapterRow {
  id: string;
  name: string;
  folder: string;
  sizeBytes: number;
  rank: number;
  alpha: number;
  rslora: boolean;
  targets: Projection[];
  method: AdapterMethod;
  baseFingerprint: string | null;
  baseModelName: string | null;
  datasetId: number | null;
  runId: number | null;
  evalLoss: number | null;
  tags: string[];
  notes: string;
  source: 'imported' | 'trained';
  sourcePath: string | null;
  createdAt: number;
}

interface AdapterRow {
  id: string;
  name: string;
  folder: string;
  state: AdapterState;
  size_bytes: number;
  rank: number;
  alpha: number;
  rslora: number;
  targets_json: string;
  method: AdapterMethod;
  base_fingerprint: string | null;
  base_model_name: string | null;
  dataset_id: number | null;
  run_id: number | null;
  eval_loss: number | null;
  tags_json: string;
  notes: string;
  source: 'imported' | 'trained';
  source_path: string | null;
  created_at: number;
  trashed_at: number | null;
}

const SELECT = `
  SELECT a.*, (SELECT json_group_array(tag) FROM (SELECT tag FROM adapter_tags t WHERE t.adapter_id = a.id ORDER BY tag)) AS tags_json
  FROM adapters a`;

// @words: JSON array of LIKE patterns, one per search word; @tags: JSON array of tags.
const FILTER = `
  WHERE a.state = @state
    AND (@base IS NULL OR a.base_fingerprint = @base)
    AND (@method IS NULL OR a.method = @method)
    AND (@runId IS NULL OR a.run_id = @runId)
    AND (SELECT count(*) FROM adapter_tags t WHERE t.adapter_id = a.id AND t.tag IN (SELECT value FROM json_each(@tags))) = @tagCount
    AND NOT EXISTS (
      SELECT 1 FROM json_each(@words) w
      WHERE NOT (a.name LIKE w.value ESCAPE '\\' OR a.notes LIKE w.value ESCAPE '\\'
                 OR EXISTS (SELECT 1 FROM adapter_tags t WHERE t.adapter_id = a.id AND t.tag LIKE w.value ESCAPE '\\')))`;

const ORDER_COLUMN: Record<AdapterSortKey, string> = {
  name: 'a.name COLLATE NOCASE',
  created: 'a.created_at',
  evalLoss: 'a.eval_loss',
  size: 'a.size_bytes',
  rank: 'a.rank',
};

function likePattern(word: string): string {
  return `%${word.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** Tags trimmed, without case-insensitive duplicates, sorted. */
export function normalizeTags(tags: readonly string[]): string[] {
  const checked = checkInput(TagListSchema, tags, 'The tags');
  const seen = new Map<string, string>();
  for (const t of checked) if (!seen.has(t.toLowerCase())) seen.set(t.toLowerCase(), t);
  return [...seen.values()].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
}

export class AdapterShelf {
  private readonly insert: Database.Statement;
  private readonly insertTag: Database.Statement;
  private readonly deleteTags: Database.Statement;
  private readonly deleteTag: Database.Statement;
  private readonly byId: Database.Statement;
  private readonly all: Database.Statement;
  private readonly queries = new Map<string, Database.Statement>();
  private readonly setName: Database.Statement;
  private readonly setNotesStmt: Database.Statement;
  private readonly setState: Database.Statement;
  private readonly deleteRow: Database.Statement;
  private readonly tagCounts: Database.Statement;

  constructor(
    private readonly db: Database.Database,
    private readonly file: string,
  ) {
    this.insert = db.prepare(`
      INSERT INTO adapters (id, name, folder, state, size_bytes, rank, alpha, rslora, targets_json, method, base_fingerprint,
                            base_model_name, dataset_id, run_id, eval_loss, notes, source, source_path, created_at)
      VALUES (@id, @name, @folder, 'ready', @sizeBytes, @rank, @alpha, @rslora, @targetsJson, @method, @baseFingerprint,
              @baseModelName, @datasetId, @runId, @evalLoss, @notes, @source, @sourcePath, @createdAt)`);
    this.insertTag = db.prepare('INSERT OR IGNORE INTO adapter_tags (adapter_id, tag) VALUES (?, ?)');
    this.deleteTags = db.prepare('DELETE FROM adapter_tags WHERE adapter_id = ?');
    this.deleteTag = db.prepare('DELETE FROM adapter_tags WHERE adapter_id = ? AND tag = ?');
    this.byId = db.prepare(`${SELECT} WHERE a.id = ?`);
    this.all = db.prepare(`${SELECT} ORDER BY a.created_at, a.id`);
    for (const key of ADAPTER_SORT_KEYS)
      for (const dir of ['asc', 'desc'] as const)
        this.queries.set(`${key} ${dir}`, db.prepare(`${SELECT} ${FILTER} ORDER BY ${ORDER_COLUMN[key]} ${dir.toUpperCase()} NULLS LAST, a.id`));
    this.setName = db.prepare('UPDATE adapters SET name = ? WHERE id = ?');
    this.setNotesStmt = db.prepare('UPDATE adapters SET notes = ? WHERE id = ?');
    this.setState = db.prepare('UPDATE adapters SET state = ?, trashed_at = ? WHERE id = ?');
    this.deleteRow = db.prepare('DELETE FROM adapters WHERE id = ?');
    this.tagCounts = db.prepare(`
      SELECT min(t.tag COLLATE BINARY) AS tag, count(*) AS count FROM adapter_tags t JOIN adapters a ON a.id = t.adapter_id
      WHERE a.state = 'ready' GROUP BY t.tag COLLATE NOCASE ORDER BY t.tag COLLATE NOCASE`);
  }

  private record(row: AdapterRow): AdapterRecord {
    const where = { file: this.file, table: 'adapters', id: row.id };
    return {
      id: row.id,
      name: row.name,
      folder: row.folder,
      state: row.state,
      sizeBytes: row.size_bytes,
      rank: row.rank,
      alpha: row.alpha,
      rslora: row.rslora === 1,
      targets: fromJsonColumn(ProjectionListSchema, row.targets_json, { ...where, column: 'targets_json' }),
      method: row.method,
      baseFingerprint: row.base_fingerprint,
      baseModelName: row.base_model_name,
      datasetId: row.dataset_id,
      runId: row.run_id,
      evalLoss: row.eval_loss,
      tags: fromJsonColumn(z.array(z.string()), row.tags_json, { ...where, column: 'tags' }),
      notes: row.notes,
      source: row.source,
      sourcePath: row.source_path,
      createdAt: row.created_at,
      trashedAt: row.trashed_at,
    };
  }

  /** Inserts a row and its tags; call inside the transaction that places the folder. */
  add(row: NewAdapterRow): void {
    this.insert.run({ ...row, rslora: row.rslora ? 1 : 0, targetsJson: JSON.stringify(checkInput(ProjectionListSchema, row.targets, 'The targets')) });
    for (const tag of normalizeTags(row.tags)) this.insertTag.run(row.id, tag);
  }

  find(id: string): AdapterRecord | null {
    const row = this.byId.get(id) as AdapterRow | undefined;
    return row ? this.record(row) : null;
  }

  get(id: string): AdapterRecord {
    const found = this.find(id);
    if (!found) throw new LibraryError(`There is no adapter ${JSON.stringify(id)} on the shelf; refresh the list and choose one that is there.`, this.file);
    return found;
  }

  /** Every row, ready and trashed, oldest first. */
  everything(): AdapterRecord[] {
    return (this.all.all() as AdapterRow[]).map((r) => this.record(r));
  }

  query(q: AdapterQuery = {}): AdapterRecord[] {
    const c = checkInput(QuerySchema, q, 'The adapter query');
    const tags = c.tags ? normalizeTags(c.tags) : [];
    const words = (c.search ?? '').split(/\s+/).filter((w) => w.length > 0).map(likePattern);
    const sort = c.sort ?? 'created';
    const direction = c.direction ?? (sort === 'created' ? 'desc' : 'asc');
    const stmt = this.queries.get(`${sort} ${direction}`)!;
    const rows = stmt.all({
      state: c.state ?? 'ready',
      base: c.baseFingerprint ?? null,
      method: c.method ?? null,
      runId: c.runId ?? null,
      tags: JSON.stringify(tags),
      tagCount: tags.length,
      words: JSON.stringify(words),
    }) as AdapterRow[];
    return rows.map((r) => this.record(r));
  }

  rename(id: string, name: string): AdapterRecord {
    const clean = checkInput(AdapterNameSchema, name, 'The adapter name');
    this.get(id);
    this.setName.run(clean, id);
    return this.get(id);
  }

  setNotes(id: string, notes: string): AdapterRecord {
    const clean = checkInput(NotesSchema, notes, 'The notes');
    this.get(id);
    this.setNotesStmt.run(clean, id);
    return this.get(id);
  }

  setTags(id: string, tags: readonly string[]): AdapterRecord {
    this.get(id);
    const normalized = normalizeTags(tags);
    this.db.transaction(() => {
      this.deleteTags.run(id);
      for (const tag of normalized) this.insertTag.run(id, tag);
    })();
    return this.get(id);
  }

  addTag(id: string, tag: string): AdapterRecord {
    return this.setTags(id, [...this.get(id).tags, tag]);
  }

  removeTag(id: string, tag: string): AdapterRecord {
    this.get(id);
    this.deleteTag.run(id, tag.trim());
    return this.get(id);
  }

  /** Tags of ready adapters with how many carry each, for a filter list; spellings that differ in case count as one. */
  tagSummary(): Array<{ tag: string; count: number }> {
    return this.tagCounts.all() as Array<{ tag: string; count: number }>;
  }

  markState(id: string, state: AdapterState, at: number | null): void {
    this.setState.run(state, state === 'trashed' ? at : null, id);
  }

  remove(id: string): void {
    this.deleteRow.run(id);
  }
}
