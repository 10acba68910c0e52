// Errors of the data pipeline. A DataError lists the problems it found, each
// with its file and line, so the user can open the file at the right place.
import { UserError } from '../model/errors.ts';

/** One bad record: `line` is 1-based (the record's first line for CSV records spanning lines). */
export interface DataProblem {
  file: string;
  line: number;
  message: string;
}

export function formatProblem(p: DataProblem): string {
  return `${p.file}:${p.line}: ${p.message}`;
}

/** A data file LoRA Studio cannot use as it is. `problems` holds the first few bad records found. */
export class DataError extends UserError {
  constructor(
    message: string,
    readonly file: string,
    readonly problems: DataProblem[] = [],
    /** How many bad records there are in all (problems may list only the first few). */
    readonly problemCount = problems.length,
  ) {
    super(message);
  }
}

/** Thrown by record checks; the reader adds file and line. */
export class RecordProblem extends Error {}
