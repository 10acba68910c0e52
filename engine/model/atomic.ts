// Atomic file writes: write a temp file in the same folder, fsync it, rename it
// over the target, then fsync the folder. A reader sees the old file or the new
// one, never half of one (DESIGN.md, "Atomic files").
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

// Writes `chunks` one after another as the whole content of `file`.
export async function writeFileAtomic(file: string, chunks: readonly Uint8Array[]): Promise<void> {
  const dir = path.dirname(file);
  const temp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx');
  try {
    for (const chunk of chunks) {
      let written = 0;
      while (written < chunk.byteLength) {
        const { bytesWritten } = await handle.write(chunk, written, chunk.byteLength - written);
        written += bytesWritten;
      }
    }
    await handle.sync();
    await handle.close();
    await rename(temp, file);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await syncFolder(dir);
}

// Makes the rename durable. Folders cannot be opened for fsync on Windows, and
// some file systems refuse it; the file itself is already synced, so a failure
// here only weakens durability across a power cut and is ignored.
export async function syncFolder(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // see above
  }
}
