// The shelf's schema as an ordered list of numbered migrations. The database
// records the last one applied in `PRAGMA user_version` (0 = empty file); at
// open, every later migration runs, each in its own transaction together with
// the user_version bump, so a crash leaves the database at one version or the
// next, never between. A database whose version is above the last one here
// was written by a newer LoRA Studio and is refused unchanged.
//
// Rules for adding a migration: append, never edit or reorder a released one;
// keep old data readable (new columns are NULL or have a default); a table
// rebuild must keep every row and pass the foreign-key check run after it.
//
// Timestamps are integer milliseconds since the Unix epoch (UTC). Columns
// named *_json hold JSON validated by the zod schemas in schemas.ts on every
// read and write.
import type Database from 'better-sqlite3';
import { LibraryError, LibraryTooNewError } from './errors.ts';

export interface Migration {
  version: number; // 1, 2, 3, ... in order
  name: string;
  up(db: Database.Database): void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'base models, datasets, adapters and their tags',
    up(db) {
      db.exec(`
        CREATE TABLE base_models (
          id              INTEGER PRIMARY KEY,
          fingerprint     TEXT NOT NULL UNIQUE,   -- sha256 of the weight files' names, sizes and safetensors headers
          path            TEXT NOT NULL,          -- absolute folder
          name            TEXT NOT NULL,
          architecture    TEXT NOT NULL,          -- ModelArch
          parameter_count INTEGER NOT NULL,
          weight_bytes    INTEGER NOT NULL,       -- bytes of the weight files
          added_at        INTEGER NOT NULL
        ) STRICT;

        CREATE TABLE datasets (
          id           INTEGER PRIMARY KEY,
          path         TEXT NOT NULL,             -- absolute file
          name         TEXT NOT NULL,
          format       TEXT NOT NULL,             -- DataFormat, or 'auto' when not yet detected
          content_hash TEXT NOT NULL,             -- sha256 of the file's bytes
          size_bytes   INTEGER NOT NULL,
          stats_json   TEXT NOT NULL,             -- DatasetStats
          added_at     INTEGER NOT NULL,
          UNIQUE (path, content_hash)
        ) STRICT;

        CREATE TABLE adapters (
          id               TEXT PRIMARY KEY,      -- 16 hex digits
          name             TEXT NOT NULL,
          folder           TEXT NOT NULL UNIQUE,  -- folder name inside adapters/ (or trash/ while trashed)
          state            TEXT NOT NULL CHECK (state IN ('ready', 'trashed')),
          size_bytes       INTEGER NOT NULL,      -- bytes of the files in the folder
          rank             INTEGER NOT NULL,
          alpha            REAL NOT NULL,
          rslora           INTEGER NOT NULL CHECK (rslora IN (0, 1)),
          targets_json     TEXT NOT NULL,         -- Projection[]
          method           TEXT NOT NULL CHECK (method IN ('lora', 'qlora')),
          base_fingerprint TEXT,                  -- base_models.fingerprint of the base it was made for; NULL = unknown
          base_model_name  TEXT,                  -- base_model_name_or_path from adapter_config.json
          dataset_id       INTEGER REFERENCES datasets(id) ON DELETE SET NULL,
          eval_loss        REAL,
          notes            TEXT NOT NULL DEFAULT '',
          source           TEXT NOT NULL CHECK (source IN ('imported', 'trained')),
          source_path      TEXT,                  -- the folder it was copied from
          created_at       INTEGER NOT NULL,
          trashed_at       INTEGER
        ) STRICT;
        CREATE INDEX adapters_by_base ON adapters (base_fingerprint, state);

        CREATE TABLE adapter_tags (
          adapter_id TEXT NOT NULL REFERENCES adapters(id) ON DELETE CASCADE,
          tag        TEXT NOT NULL COLLATE NOCASE,
          PRIMARY KEY (adapter_id, tag)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX adapter_tags_by_tag ON adapter_tags (tag);
      `);
    },
  },
  {
    version: 2,
    name: 'training runs and their loss series; adapters link to their run',
    up(db) {
      db.exec(`
        CREATE TABLE runs (
          id               INTEGER PRIMARY KEY,
          name             TEXT NOT NULL,
          base_model_id    INTEGER REFERENCES base_models(id) ON DELETE SET NULL,
          dataset_id       INTEGER REFERENCES datasets(id) ON DELETE SET NULL,
          config_json      TEXT NOT NULL,         -- RunConfig (the engine's TrainConfig)
          machine          TEXT NOT NULL,         -- which machine ran it, as the caller names it
          status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'stopped')),
          failure_reason   TEXT,
          out_dir          TEXT NOT NULL,
          last_checkpoint  TEXT,
          step             INTEGER NOT NULL DEFAULT 0,
          total_steps      INTEGER,
          train_loss       REAL,                  -- final
          eval_loss        REAL,                  -- final
          memory_peak_json TEXT,                  -- MemoryPeak, at the end of the run
          created_at       INTEGER NOT NULL,
          started_at       INTEGER,
          finished_at      INTEGER,
          updated_at       INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX runs_by_status ON runs (status);

        -- One row per optimizer step (train) or evaluation (eval): appending a
        -- point is one insert, never a rewrite of the whole series.
        CREATE TABLE run_points (
          run_id            INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
          series            TEXT NOT NULL CHECK (series IN ('train', 'eval')),
          step              INTEGER NOT NULL,
          loss              REAL NOT NULL,
          lr                REAL,
          tokens_per_second REAL,
          PRIMARY KEY (run_id, series, step)
        ) STRICT, WITHOUT ROWID;

        ALTER TABLE adapters ADD COLUMN run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL;
      `);
    },
  },
  {
    version: 3,
    name: 'comparisons of base and adapted outputs',
    up(db) {
      db.exec(`
        CREATE TABLE comparisons (
          id               INTEGER PRIMARY KEY,
          title            TEXT NOT NULL,
          base_fingerprint TEXT,
          adapter_id       TEXT REFERENCES adapters(id) ON DELETE SET NULL,
          settings_json    TEXT NOT NULL,         -- ComparisonSettings (sampling)
          entries_json     TEXT NOT NULL,         -- ComparisonEntry[]: prompt, outputs, rating
          created_at       INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX comparisons_by_adapter ON comparisons (adapter_id);
      `);
    },
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.length;

export function schemaVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

export interface MigrateOptions {
  file: string; // the database file, named in errors
  to?: number; // stop at this version (default: the latest)
  migrations?: readonly Migration[]; // default MIGRATIONS
}

/**
 * Brings the database from its version to `to`. Refuses, unchanged, a database
 * newer than the last known migration. Returns the versions before and after.
 */
export function migrate(db: Database.Database, opts: MigrateOptions): { from: number; to: number } {
  const migrations = opts.migrations ?? MIGRATIONS;
  const latest = migrations.length;
  const target = opts.to ?? latest;
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration "${m.name}" has version ${m.version}, expected ${i + 1}`);
  });
  if (!Number.isInteger(target) || target < 0 || target > latest) throw new Error(`no schema version ${target}; versions run 0-${latest}`);
  const from = schemaVersion(db);
  if (from > latest) {
    throw new LibraryTooNewError(
      `The library database ${opts.file} was written by a newer version of LoRA Studio (schema version ${from}; this version ` +
        `knows versions up to ${latest}). Update LoRA Studio to open it. The file has not been changed.`,
      opts.file, from, latest,
    );
  }
  for (const m of migrations.slice(from, target)) {
    db.transaction(() => {
      m.up(db);
      const broken = db.pragma('foreign_key_check') as unknown[];
      if (broken.length > 0) throw new Error(`migration ${m.version} (${m.name}) leaves ${broken.length} rows with broken references`);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
  return { from, to: Math.max(from, target) };
}

// Wraps a migration failure so the user sees which file and what to do.
export function migrationError(file: string, from: number, to: number, now: number, err: unknown, backup: string | null): LibraryError {
  return new LibraryError(
    `Could not update the library database ${file} from schema version ${from} to ${to}: ${(err as Error).message}. ` +
      `The step that failed was rolled back; the file is at schema version ${now} and nothing in it was lost` +
      (backup ? `, and a copy made before the update is at ${backup}` : '') +
      '. Keep the file and report this problem.',
    file,
  );
}
