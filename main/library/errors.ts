// Errors of the adapter shelf that reach the user. Like the engine's errors,
// each one names the file (the database, an adapter folder) and says what to do.
import { UserError } from '../../engine/model/errors.ts';

// `file` is the absolute path of the database file or folder at fault, where
// there is one.
export class LibraryError extends UserError {
  constructor(
    message: string,
    readonly file?: string,
  ) {
    super(message);
  }
}

// The database file failed SQLite's integrity check, or SQLite found it
// damaged while opening it. The file has not been changed.
export class LibraryDamagedError extends LibraryError {}

// The database was written by a newer LoRA Studio whose schema this version
// does not know. The file has not been changed.
export class LibraryTooNewError extends LibraryError {
  constructor(
    message: string,
    file: string,
    readonly fileVersion: number,
    readonly knownVersion: number,
  ) {
    super(message, file);
  }
}
