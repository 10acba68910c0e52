// Opening the shelf's SQLite file: check it, refuse what must not be touched,
// then bring its schema up to date.
//
// Order matters, because a refused file must be left byte for byte as it was:
//   1. open it and run PRAGMA quick_check (reads only);
//   2. read user_version and refuse a database from a newer LoRA Studio;
//   3. only then switch on WAL (which writes the header of a fresh file);
//   4. copy an existing database to backups/ before migrating it, and migrate.
// Settings: WAL (readers never block the writer), synchronous FULL (a commit
// survives a power cut), foreign keys on, a 5 s busy timeout for a second
// process that holds a write lock.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { LibraryDamagedError, LibraryError } from './errors.ts';
import { MIGRATIONS, migrate, migrationError, schemaVersion, type Migration } from './migrations.ts';

export const BUSY_TIMEOUT_MS = 5000;
const DAMAGE_CODES = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_CORRUPT_INDEX', 'SQLITE_CORRUPT_SEQUENCE', 'SQLITE_CORRUPT_VTAB']);

export interface OpenDatabaseOptions {
  backupDir: string; // where copies are made before a migration
  adaptersDir: string; // named in the damaged-file message: adapter folders are safe
  // For tools and tests: another migration list, or stop at an earlier version.
  migrations?: readonly Migration[];
  migrateTo?: number;
}

export interface OpenedDatabase {
  db: Database.Database;
  migratedFrom: number; // schema version found in the file (0: new)
  backup: string | null; // copy made before migrating, if any
}

function damaged(file: string, rawReport: string, opts: OpenDatabaseOptions): LibraryDamagedError {
  const report = rawReport.replace(/\s*\n\s*/g, ' ').trim();
  return new LibraryDamagedError(
    `The library database ${file} is damaged (SQLite's integrity check: ${report}). LoRA Studio has not changed the file ` +
      `and will not open it, so nothing more is lost. To go on: quit LoRA Studio and copy the file somewhere safe; then ` +
      `either put back an earlier copy of it (${opts.backupDir} holds the copies made before each database update, if any), ` +
      `or save what is readable with the sqlite3 tool (sqlite3 library.sqlite ".recover" | sqlite3 recovered.sqlite) and ` +
      `put recovered.sqlite in its place. The adapter folders in ${opts.adaptersDir} are not affected.`,
    file,
  );
}

function isDamage(err: unknown): boolean {
  return DAMAGE_CODES.has((err as { code?: string }).code ?? '');
}

export function openDatabase(file: string, opts: OpenDatabaseOptions): OpenedDatabase {
  mkdirSync(path.dirname(file), { recursive: true });
  const existed = existsSync(file);
  let db: Database.Database;
  try {
    db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
  } catch (err) {
    if (isDamage(err)) throw damaged(file, (err as Error).message, opts);
    throw new LibraryError(`Cannot open the library database ${file}: ${(err as Error).message}. Check that its folder exists and that you may write to it.`, file);
  }
  try {
    if (existed) {
      let rows: Array<{ quick_check: string }>;
      try {
        // One error is enough to refuse; asked for more, SQLite may go on into
        // the damage and throw instead of naming the page.
        rows = db.pragma('quick_check(1)') as Array<{ quick_check: string }>;
      } catch (err) {
        if (isDamage(err)) throw damaged(file, (err as Error).message, opts);
        throw err;
      }
      const problems = rows.map((r) => r.quick_check).filter((m) => m !== 'ok');
      if (problems.length > 0) throw damaged(file, problems.join('; '), opts);
    }
    const migrations = opts.migrations ?? MIGRATIONS;
    const target = opts.migrateTo ?? migrations.length;
    const from = schemaVersion(db);
    if (from > migrations.length) migrate(db, { file, migrations }); // throws LibraryTooNewError, before any write

    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');

    let backup: string | null = null;
    if (from > 0 && from < target) {
      mkdirSync(opts.backupDir, { recursive: true });
      backup = path.join(opts.backupDir, `${path.basename(file, path.extname(file))}-v${from}-${Date.now()}.sqlite`);
      db.prepare('VACUUM INTO ?').run(backup);
    }
    try {
      migrate(db, { file, to: target, migrations });
    } catch (err) {
      throw migrationError(file, from, target, schemaVersion(db), err, backup);
    }
    return { db, migratedFrom: from, backup };
  } catch (err) {
    db.close();
    throw err;
  }
}
