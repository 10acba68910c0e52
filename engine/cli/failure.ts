// How a command's failure reaches the user.
//
//   user error (exit 1)      UserError and its subclasses (ModelLoadError,
//                            DataError, EngineInputError, ...), commander's
//                            usage errors, and file-system refusals (a missing
//                            file, no permission, a full disk): the message on
//                            stderr, no stack trace.
//   internal error (exit 2)  anything else is a bug in LoRA Studio: one short
//                            line on stderr naming a log file that holds the
//                            full stack, the command line and the versions.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../model/errors.ts';

/** File-system error codes that describe the user's files or machine, not a bug. */
const SYSTEM_CODES: Record<string, string> = {
  ENOENT: 'no such file or folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is used up',
  EROFS: 'the file system is read-only',
  EEXIST: 'already exists',
  ENOTDIR: 'a path component is not a folder',
  EISDIR: 'is a folder, not a file',
  ENOTEMPTY: 'the folder is not empty',
  EMFILE: 'too many open files',
  EBUSY: 'the file is busy',
};

interface SystemError extends Error {
  code: string;
  path?: string;
  dest?: string;
  syscall?: string;
}

function asSystemError(e: unknown): SystemError | null {
  if (!(e instanceof Error)) return null;
  const code = (e as Partial<SystemError>).code;
  return typeof code === 'string' && code in SYSTEM_CODES && typeof (e as Partial<SystemError>).syscall === 'string' ? (e as SystemError) : null;
}

/** The one message shown for a user error, or null when `e` is an internal error. */
export function userMessage(e: unknown): string | null {
  if (e instanceof UserError) return e.message;
  const sys = asSystemError(e);
  if (sys) {
    const where = sys.path ? `${sys.path}${sys.dest ? ` → ${sys.dest}` : ''}: ` : '';
    return `${where}${SYSTEM_CODES[sys.code]} (${sys.code}${sys.syscall ? ` in ${sys.syscall}` : ''})`;
  }
  return null;
}

/**
 * Writes the full report of an internal error to `<dir>/lora-studio-error-<time>-<pid>.log`
 * (dir: the run's folder where there is one, else the OS temp folder); returns the path,
 * or null when no log could be written anywhere.
 */
export function writeErrorLog(e: unknown, argv: readonly string[], dir: string | null): string | null {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const name = `lora-studio-error-${stamp}-${process.pid}.log`;
  const report = [
    `LoRA Studio internal error, ${new Date().toISOString()}`,
    `command: lora-studio ${argv.map(quoteArg).join(' ')}`,
    `node ${process.version} on ${process.platform}-${process.arch}, ${os.cpus().length} CPUs`,
    '',
    e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : `thrown value: ${String(e)}`,
    ...(e instanceof Error && e.cause !== undefined ? ['', 'caused by:', e.cause instanceof Error ? (e.cause.stack ?? String(e.cause)) : String(e.cause)] : []),
    '',
  ].join('\n');
  for (const folder of dir ? [dir, os.tmpdir()] : [os.tmpdir()]) {
    try {
      mkdirSync(folder, { recursive: true });
      const file = path.join(folder, name);
      writeFileSync(file, report);
      return file;
    } catch {
      // try the next folder
    }
  }
  return null;
}

/** The short stderr message of an internal error. */
export function internalMessage(e: unknown, logPath: string | null): string {
  const what = e instanceof Error ? e.message.split('\n')[0] : String(e);
  const where = logPath ? `The details are in ${logPath}` : 'No log file could be written';
  return `internal error: ${what}\n${where}; this is a bug in LoRA Studio, please report it with that file.`;
}

function quoteArg(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}
