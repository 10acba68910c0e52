// The shelf's database file: numbered migrations from an empty file and from
// every earlier schema version (data kept), a newer file refused, a damaged
// file refused, and a failing migration rolled back. Real SQLite files in
// temp folders.
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openDatabase } from '../../main/library/database.ts';
import { LibraryDamagedError, LibraryError, LibraryTooNewError } from '../../main/library/errors.ts';
import { openLibrary } from '../../main/library/library.ts';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, migrate, type Migration } from '../../main/library/migrations.ts';
import { storePaths } from '../../main/library/store.ts';

const GOLDEN_ADAPTER = path.resolve('tests/golden/models/llama_gqa/adapter');
const roots: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lora-studio-library-'));
  roots.push(dir);
  return dir;
}
after(() => {
  for (const dir of roots) rmSync(dir, { recursive: true, force: true });
});

// ---- fixtures: rows as each schema version stores them -------------------------------

const ADAPTER_ID = '0123456789abcdef';
const FINGERPRINT = 'f'.repeat(64);
const RUN_CONFIG = { model: '/models/base', data: '/data/train.jsonl', out: '/runs/one', method: 'qlora', rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'], seqLen: 256 };

// Inserts, with the SQL of schema version `version`, one row in every table
// that version has, and places the adapter's folder in the store.
function seed(db: Database.Database, version: number, appData: string): void {
  if (version >= 1) {
    db.prepare(`INSERT INTO base_models (id, fingerprint, path, name, architecture, parameter_count, weight_bytes, added_at)
                VALUES (1, ?, '/models/base', 'base', 'llama', 1000, 2000, 1700000000000)`).run(FINGERPRINT);
    db.prepare(`INSERT INTO datasets (id, path, name, format, content_hash, size_bytes, stats_json, added_at)
                VALUES (1, '/data/train.jsonl', 'train.jsonl', 'chat', 'abc', 123, '{"records":10,"examples":9}', 1700000000001)`).run();
    db.prepare(`INSERT INTO adapters (id, name, folder, state, size_bytes, rank, alpha, rslora, targets_json, method, base_fingerprint,
                  base_model_name, dataset_id, eval_loss, notes, source, source_path, created_at)
                VALUES (?, 'kept adapter', ?, 'ready', 40491, 4, 8, 0, '["q_proj","v_proj"]', 'qlora', ?, 'llama_gqa', 1, 1.25,
                  'survives migrations', 'imported', '/somewhere', 1700000000002)`).run(ADAPTER_ID, ADAPTER_ID, FINGERPRINT);
    db.prepare(`INSERT INTO adapter_tags (adapter_id, tag) VALUES (?, 'chat'), (?, 'v1')`).run(ADAPTER_ID, ADAPTER_ID);
    const folder = path.join(storePaths(appData).adapters, ADAPTER_ID);
    mkdirSync(path.dirname(folder), { recursive: true });
    cpSync(GOLDEN_ADAPTER, folder, { recursive: true });
  }
  if (version >= 2) {
    db.prepare(`INSERT INTO runs (id, name, base_model_id, dataset_id, config_json, machine, status, out_dir, step, total_steps,
                  train_loss, eval_loss, memory_peak_json, created_at, started_at, finished_at, updated_at)
                VALUES (1, 'first run', 1, 1, ?, 'test machine', 'completed', '/runs/one', 3, 3, 1.5, 1.25, ?, 1, 2, 3, 3)`)
      .run(JSON.stringify(RUN_CONFIG), JSON.stringify({ peak_bytes: 600, categories: { base: 100, adapters: 100, gradients: 100, optimizer: 100, activations: 100, workspace: 100 }, rss_bytes: 900 }));
    const point = db.prepare(`INSERT INTO run_points (run_id, series, step, loss, lr, tokens_per_second) VALUES (1, ?, ?, ?, ?, ?)`);
    point.run('train', 1, 2.5, 1e-4, 100);
    point.run('train', 2, 2.0, 1e-4, 110);
    point.run('eval', 2, 1.25, null, null);
    db.prepare('UPDATE adapters SET run_id = 1 WHERE id = ?').run(ADAPTER_ID);
  }
  if (version >= 3) {
    db.prepare(`INSERT INTO comparisons (id, title, base_fingerprint, adapter_id, settings_json, entries_json, created_at)
                VALUES (1, 'first look', ?, ?, '{"temperature":0}', ?, 4)`)
      .run(FINGERPRINT, ADAPTER_ID, JSON.stringify([{ prompt: 'Hi', base: 'Hello.', adapted: 'Hi there!', rating: 'adapted' }]));
  }
}

// Builds a library database at schema `version` holding the seed rows.
function databaseAtVersion(version: number): string {
  const appData = tempDir();
  const file = storePaths(appData).database;
  const db = new Database(file);
  migrate(db, { file, to: version });
  assert.equal(db.pragma('user_version', { simple: true }), version);
  seed(db, version, appData);
  db.close();
  return appData;
}

function userVersion(file: string): number {
  const db = new Database(file, { readonly: true });
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
}

// ---- migrations ---------------------------------------------------------------

describe('library migrations', () => {
  it('numbers its migrations 1, 2, 3, ... in order', () => {
    assert.ok(LATEST_SCHEMA_VERSION >= 3);
    MIGRATIONS.forEach((m, i) => assert.equal(m.version, i + 1));
  });

  it('creates the latest schema in an empty folder, in WAL mode', () => {
    const appData = tempDir();
    const lib = openLibrary(appData);
    assert.equal(lib.migratedFrom, 0);
    assert.equal(lib.backup, null);
    assert.deepEqual(lib.listAdapters(), []);
    assert.deepEqual(lib.runs.listRuns(), []);
    assert.deepEqual(lib.comparisons.listComparisons(), []);
    for (const dir of ['adapters', 'trash', 'tmp']) assert.ok(existsSync(path.join(appData, dir)), dir);
    lib.close();
    const db = new Database(lib.file, { readonly: true });
    assert.equal(db.pragma('user_version', { simple: true }), LATEST_SCHEMA_VERSION);
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    db.close();
    // Opening again changes nothing.
    const again = openLibrary(appData);
    assert.equal(again.migratedFrom, LATEST_SCHEMA_VERSION);
    again.close();
  });

  for (let version = 0; version < LATEST_SCHEMA_VERSION; ++version) {
    it(`migrates a version ${version} database to version ${LATEST_SCHEMA_VERSION}, keeping every row`, async () => {
      const appData = databaseAtVersion(version);
      const lib = openLibrary(appData);
      try {
        assert.equal(lib.migratedFrom, version);
        assert.equal(userVersion(lib.file), LATEST_SCHEMA_VERSION);
        if (version === 0) {
          assert.equal(lib.backup, null);
          assert.deepEqual(lib.listAdapters(), []);
          return;
        }
        // The copy made before migrating is the old database, intact.
        assert.ok(lib.backup && existsSync(lib.backup), 'a backup copy was made');
        assert.equal(userVersion(lib.backup), version);

        const [base] = lib.catalog.listBaseModels();
        assert.deepEqual(
          { fingerprint: base?.fingerprint, architecture: base?.architecture, parameterCount: base?.parameterCount },
          { fingerprint: FINGERPRINT, architecture: 'llama', parameterCount: 1000 },
        );
        assert.deepEqual(lib.catalog.getDataset(1).stats, { records: 10, examples: 9 });
        const adapter = lib.adapters.get(ADAPTER_ID);
        assert.equal(adapter.name, 'kept adapter');
        assert.deepEqual(adapter.tags, ['chat', 'v1']);
        assert.deepEqual(adapter.targets, ['q_proj', 'v_proj']);
        assert.equal(adapter.method, 'qlora');
        assert.equal(adapter.evalLoss, 1.25);
        assert.equal(adapter.notes, 'survives migrations');
        assert.equal(adapter.runId, version >= 2 ? 1 : null);
        assert.deepEqual(lib.adaptersForBase(FINGERPRINT).map((a) => a.id), [ADAPTER_ID]);
        assert.deepEqual((await lib.verifyAdapters()).problems, []);

        if (version >= 2) {
          const run = lib.runs.get(1);
          assert.equal(run.status, 'completed');
          assert.equal(run.config.method, 'qlora');
          assert.deepEqual(lib.runs.series(1).train.map((p) => p.loss), [2.5, 2.0]);
          assert.equal(lib.measuredPeaks('test machine')[0]?.peak.peak_bytes, 600);
        }
        if (version >= 3) assert.equal(lib.comparisons.get(1).entries[0]?.rating, 'adapted');

        // The tables added by the migrations work with the old rows.
        const run = lib.runs.create({ name: 'after migration', machine: 'test machine', config: RUN_CONFIG as never, baseModelId: 1, datasetId: 1 });
        assert.equal(run.status, 'queued');
        const comparison = lib.comparisons.save({ adapterId: ADAPTER_ID, entries: [{ prompt: 'p', base: 'a', adapted: 'b' }] });
        assert.deepEqual(lib.comparisons.listComparisons(ADAPTER_ID).map((c) => c.id).includes(comparison.id), true);
      } finally {
        lib.close();
      }
    });
  }

  it('rolls back a migration that fails, naming the file and the backup copy', () => {
    const appData = databaseAtVersion(1);
    const file = storePaths(appData).database;
    const broken: Migration[] = [
      MIGRATIONS[0]!,
      {
        version: 2,
        name: 'fails halfway',
        up(db) {
          db.exec('CREATE TABLE half_done (x INTEGER)');
          db.exec("UPDATE adapters SET name = 'changed'");
          throw new Error('simulated failure');
        },
      },
    ];
    let caught: unknown;
    try {
      openDatabase(file, { backupDir: storePaths(appData).backups, adaptersDir: storePaths(appData).adapters, migrations: broken });
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof LibraryError, String(caught));
    assert.match(caught.message, /simulated failure/);
    assert.ok(caught.message.includes(file));
    assert.match(caught.message, /rolled back; the file is at schema version 1/);
    const backups = readdirSync(storePaths(appData).backups);
    assert.equal(backups.length, 1);
    assert.ok(caught.message.includes(path.join(storePaths(appData).backups, backups[0]!)));

    const db = new Database(file, { readonly: true });
    assert.equal(db.pragma('user_version', { simple: true }), 1);
    assert.deepEqual(db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'half_done'").get(), { n: 0 });
    assert.deepEqual(db.prepare('SELECT name FROM adapters').all(), [{ name: 'kept adapter' }]);
    db.close();
  });
});

// ---- files that must not be touched ------------------------------------------------------

describe('library database refusals', () => {
  it('refuses a database from a newer LoRA Studio and leaves it unchanged', () => {
    const appData = tempDir();
    openLibrary(appData).close();
    const file = storePaths(appData).database;
    const db = new Database(file);
    db.pragma(`user_version = ${LATEST_SCHEMA_VERSION + 1}`);
    db.close();
    const before = readFileSync(file);

    let caught: unknown;
    try {
      openLibrary(appData);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof LibraryTooNewError, String(caught));
    assert.equal(caught.fileVersion, LATEST_SCHEMA_VERSION + 1);
    assert.equal(caught.knownVersion, LATEST_SCHEMA_VERSION);
    assert.ok(caught.message.includes(file));
    assert.match(caught.message, /newer version of LoRA Studio/);
    assert.match(caught.message, /Update LoRA Studio/);
    assert.ok(readFileSync(file).equals(before), 'the file is unchanged');
    assert.equal(existsSync(storePaths(appData).backups), false);
  });

  it('explains a database file that cannot be opened', () => {
    const appData = tempDir();
    const file = storePaths(appData).database;
    mkdirSync(file); // a folder where the file should be
    assert.throws(
      () => openLibrary(appData),
      (e: Error) => e instanceof LibraryError && e.message.startsWith(`Cannot open the library database ${file}:`) && /may write to it/.test(e.message),
    );
  });

  // Many runs, so the file has tables spread over many pages.
  function filledLibrary(): { appData: string; file: string } {
    const appData = tempDir();
    const lib = openLibrary(appData);
    for (let i = 0; i < 60; ++i)
      lib.runs.create({ name: `run ${i}`, machine: 'test machine', config: { ...RUN_CONFIG, out: `/runs/${i}`, samplePrompts: ['x'.repeat(400)] } as never });
    lib.close();
    return { appData, file: lib.file };
  }

  function expectDamaged(appData: string, file: string): LibraryDamagedError {
    const before = readFileSync(file);
    let caught: unknown;
    try {
      openLibrary(appData);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof LibraryDamagedError, String(caught));
    assert.ok(caught.message.includes(file), caught.message);
    assert.match(caught.message, /is damaged/);
    assert.match(caught.message, /has not changed the file/);
    assert.match(caught.message, /\.recover/);
    assert.ok(readFileSync(file).equals(before), 'the damaged file is unchanged');
    return caught;
  }

  function overwritePageStart(file: string, page: number): void {
    const bytes = readFileSync(file);
    const pageSize = bytes.readUInt16BE(16);
    assert.ok(page >= 2 && page <= bytes.length / pageSize);
    bytes.fill(0xa5, (page - 1) * pageSize, (page - 1) * pageSize + 64); // the page's b-tree header and cell pointers
    writeFileSync(file, bytes);
  }

  it('refuses a database whose table root page is damaged, naming the file and the page, and leaves it unchanged', () => {
    const { appData, file } = filledLibrary();
    const db = new Database(file, { readonly: true });
    const { rootpage } = db.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").get() as { rootpage: number };
    db.close();
    overwritePageStart(file, rootpage);
    const err = expectDamaged(appData, file);
    assert.match(err.message, new RegExp(`page ${rootpage}\\b`));
  });

  it('refuses a database whose last page is damaged (SQLite throws while checking)', () => {
    const { appData, file } = filledLibrary();
    overwritePageStart(file, readFileSync(file).length / readFileSync(file).readUInt16BE(16));
    expectDamaged(appData, file);
  });

  it('refuses a file whose header is not SQLite\'s', () => {
    const { appData, file } = filledLibrary();
    const bytes = readFileSync(file);
    bytes.fill(0x00, 0, 100);
    writeFileSync(file, bytes);
    expectDamaged(appData, file);
  });
});
