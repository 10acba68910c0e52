// The adapter store on disk, inside the app data folder:
//   adapters/<folder>/   one PEFT adapter folder per shelf entry (folder = the adapter's id)
//   trash/<folder>/      deleted adapters, until the trash is emptied
//   trash/unlisted-*/    folders found in adapters/ with no database row
//   tmp/import-<id>-<pid>/  an import being copied by process <pid>
// The database says what each folder is; the folders hold the files.
//
// An import copies into tmp/ (fsync'd file by file), then renames the whole
// folder into adapters/ inside the transaction that inserts its row, so the
// row and the folder appear together. A crash during the copy leaves only a
// temp folder, removed at the next open; a crash between the rename and the
// commit (one system call apart) leaves a complete folder with no row, moved
// to the trash at the next open rather than deleted.
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { mkdir, open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { syncFolder } from '../../engine/model/atomic.ts';
import { LibraryError } from './errors.ts';

export interface StorePaths {
  root: string; // the app data folder
  database: string; // the SQLite file
  adapters: string;
  trash: string;
  tmp: string;
  backups: string; // copies of the database made before migrations
}

export function storePaths(appDataDir: string, databaseName = 'library.sqlite'): StorePaths {
  const root = path.resolve(appDataDir);
  return {
    root,
    database: path.join(root, databaseName),
    adapters: path.join(root, 'adapters'),
    trash: path.join(root, 'trash'),
    tmp: path.join(root, 'tmp'),
    backups: path.join(root, 'backups'),
  };
}

/** A new adapter id: 16 hex digits (64 random bits), also its folder name. */
export function newAdapterId(): string {
  return randomBytes(8).toString('hex');
}
const ID_PATTERN = /^[0-9a-f]{16}$/;

export function importTempFolder(paths: StorePaths, id: string): string {
  return path.join(paths.tmp, `import-${id}-${process.pid}`);
}

// ---- copying -------------------------------------------------------------------

export interface CopyProgress {
  copiedBytes: number;
  totalBytes: number;
  file: string; // basename of the file being copied
}

export interface CopyOptions {
  signal?: AbortSignal;
  onProgress?: (progress: CopyProgress) => void;
}

const COPY_CHUNK_BYTES = 1 << 20;

/**
 * The files an adapter folder contributes: the regular files at its top level
 * (symbolic links followed, as in the Hugging Face cache), except hidden ones.
 * Subfolders (checkpoints, runs) are left behind.
 */
export async function adapterFiles(dir: string): Promise<Array<{ name: string; size: number }>> {
  const out: Array<{ name: string; size: number }> = [];
  for (const name of (await readdir(dir)).sort()) {
    if (name.startsWith('.')) continue;
    const s = await stat(path.join(dir, name)).catch(() => null);
    if (s?.isFile()) out.push({ name, size: s.size });
  }
  return out;
}

/**
 * Copies the adapter files of `src` into the new folder `dest`, each file
 * fsync'd, then the folder. Reports progress after every 1 MiB chunk and
 * stops (throwing the signal's reason) when `signal` aborts. Returns the bytes
 * copied. On failure `dest` is left for the caller to remove.
 */
export async function copyAdapterFiles(src: string, dest: string, opts: CopyOptions = {}): Promise<number> {
  const files = await adapterFiles(src);
  const totalBytes = files.reduce((n, f) => n + f.size, 0);
  await mkdir(dest, { recursive: false });
  let copiedBytes = 0;
  const buffer = Buffer.alloc(COPY_CHUNK_BYTES);
  for (const f of files) {
    opts.signal?.throwIfAborted();
    const input = await open(path.join(src, f.name), 'r');
    try {
      const output = await open(path.join(dest, f.name), 'wx');
      try {
        for (;;) {
          const { bytesRead } = await input.read(buffer, 0, buffer.length, null);
          if (bytesRead === 0) break;
          let written = 0;
          while (written < bytesRead) written += (await output.write(buffer, written, bytesRead - written)).bytesWritten;
          copiedBytes += bytesRead;
          opts.onProgress?.({ copiedBytes, totalBytes, file: f.name });
          opts.signal?.throwIfAborted();
        }
        await output.sync();
      } finally {
        await output.close();
      }
    } finally {
      await input.close();
    }
  }
  await syncFolder(dest);
  return copiedBytes;
}

export { syncFolder };

export function folderBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    total += entry.isDirectory() ? folderBytes(p) : statSync(p).size;
  }
  return total;
}

/** Moves a folder (same file system); refuses to replace anything at `to`. */
export function moveFolder(from: string, to: string): void {
  if (existsSync(to))
    throw new LibraryError(`Cannot move ${from} to ${to}: something is already there. Move it out of the way and try again.`, to);
  renameSync(from, to);
}

// ---- recovery at open ---------------------------------------------------------------

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes tmp/import-* folders left by processes that no longer run. Returns their paths. */
export function removeStaleImports(paths: StorePaths): string[] {
  if (!existsSync(paths.tmp)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(paths.tmp)) {
    const m = /^import-[0-9a-f]+-(\d+)$/.exec(name);
    if (!m || processAlive(Number(m[1]))) continue;
    rmSync(path.join(paths.tmp, name), { recursive: true, force: true });
    removed.push(path.join(paths.tmp, name));
  }
  return removed;
}

/** Moves folders in adapters/ that no row names (`known`) to trash/unlisted-<name>-<ms>. Returns the new paths. */
export function moveUnlistedToTrash(paths: StorePaths, known: ReadonlySet<string>): string[] {
  if (!existsSync(paths.adapters)) return [];
  const moved: string[] = [];
  for (const entry of readdirSync(paths.adapters, { withFileTypes: true })) {
    if (known.has(entry.name) || !entry.isDirectory() || !ID_PATTERN.test(entry.name)) continue;
    const to = path.join(paths.trash, `unlisted-${entry.name}-${Date.now()}`);
    renameSync(path.join(paths.adapters, entry.name), to);
    moved.push(to);
  }
  return moved;
}
