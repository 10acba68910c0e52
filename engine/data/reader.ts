// Streaming dataset reader. A dataset file is never held in memory whole
// (except a .json array, which JSON itself makes hard to stream; use JSONL for
// big data): one pass over the bytes checks every record and builds an index
// of the byte offset and line number of each good record; each epoch then
// re-reads the file from the offset of the record to start at, so resuming
// from record k costs one seek.
//
// Containers, by extension (or format 'csv' / 'txt'):
//   .jsonl .ndjson (and anything else)   one JSON record per line; blank lines are ignored
//   .json                                a JSON array of records if it starts with '[', else JSONL
//   .csv .tsv                            a header row, then one record per row (RFC 4180
//                                        quoting; a quoted field may span lines)
//   .txt                                 plain text; the pipeline cuts it into token windows
//
// Bad records (broken JSON, invalid UTF-8, missing fields, wrong types, empty
// turns, unknown roles) are collected with file and line. By default opening
// refuses with a DataError listing the first few; with skipBadRecords they are
// left out of the index and counted.
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { DataError, RecordProblem, formatProblem, type DataProblem } from './errors.ts';
import {
  CSV_TARGETS,
  FORMAT_HINT,
  describeKeys,
  detectRecordFormat,
  parseColumnMapping,
  toExample,
  type ColumnMapping,
  type DataFormat,
  type Example,
  type RecordFormat,
} from './formats.ts';

export type Container = 'jsonl' | 'json' | 'csv' | 'txt';

export interface DatasetOptions {
  /** 'auto' (default) detects the format from the extension and the first record. */
  format?: DataFormat | 'auto';
  /** CSV: record field → column, e.g. "prompt=question,completion=answer". Default: columns named like the fields. */
  columns?: string | ColumnMapping;
  /** Leave bad records out (and count them) instead of refusing the file. Default false. */
  skipBadRecords?: boolean;
  /** How many problems a DataError lists. Default 5. */
  listProblems?: number;
}

export interface DatasetRecord {
  /** Position of the record among the good records (what resume seeks to). */
  index: number;
  /** 1-based line of the record's start. */
  line: number;
  example: Example;
}

/** A dataset file opened and checked; `records(from)` streams it (again) from record `from`. */
export class Dataset {
  private constructor(
    readonly file: string,
    readonly container: Container,
    /** The record format; 'txt' for plain text. */
    readonly format: RecordFormat | 'txt',
    /** Good records (txt: lines). */
    readonly count: number,
    /** Bad records left out (skipBadRecords). */
    readonly badCount: number,
    /** The first few bad records. */
    readonly problems: DataProblem[],
    private readonly offsets: Float64Array,
    private readonly lines: Float64Array,
    private readonly csv: { delimiter: string; header: string[]; mapping: ColumnMapping } | null,
    private readonly jsonItems: string[] | null,
  ) {}

  static async open(file: string, opts: DatasetOptions = {}): Promise<Dataset> {
    const info = await stat(file).catch(() => null);
    if (!info || !info.isFile()) throw new DataError(`${file}: no such data file`, file);
    const requested = opts.format ?? 'auto';
    const container = await containerOf(file, requested);
    const recordFormat: RecordFormat | null = requested === 'auto' || requested === 'csv' || requested === 'txt' ? null : requested;
    const list = opts.listProblems ?? 5;
    const collector = new ProblemCollector(file, list);
    const index = new OffsetIndex();
    let format: RecordFormat | 'txt' = 'txt';
    let csv: { delimiter: string; header: string[]; mapping: ColumnMapping } | null = null;
    let jsonItems: string[] | null = null;

    if (container === 'txt') {
      for await (const l of scanLines(file, 0, 1)) {
        try {
          decodeUtf8(l.bytes);
        } catch (e) {
          collector.add(l.line, (e as Error).message);
          continue;
        }
        index.count++;
      }
    } else if (container === 'jsonl' || container === 'json') {
      let detected: RecordFormat | null = recordFormat;
      const check = (line: number, parse: () => unknown): boolean => {
        let record: unknown;
        try {
          record = parse();
        } catch (e) {
          collector.add(line, e instanceof RecordProblem ? e.message : `broken JSON (${(e as Error).message}); each record must be one complete JSON object`);
          return false;
        }
        if (detected === null) {
          detected = detectRecordFormat(record);
          if (detected === null)
            throw new DataError(
              `${file}:${line}: cannot tell the data format: the first record has ${describeKeys(record)}; ${FORMAT_HINT}, or choose the format explicitly`,
              file,
            );
        }
        try {
          toExample(detected, record);
          return true;
        } catch (e) {
          if (!(e instanceof RecordProblem)) throw e;
          collector.add(line, e.message);
          return false;
        }
      };
      if (container === 'jsonl') {
        for await (const l of scanLines(file, 0, 1)) {
          if (isBlank(l.bytes)) continue;
          if (check(l.line, () => JSON.parse(decodeUtf8(l.bytes)))) index.push(l.offset, l.line);
        }
      } else {
        const bytes = await readFile(file);
        let text: string;
        try {
          text = decodeUtf8(bytes);
        } catch (e) {
          throw new DataError(`${file}: ${(e as Error).message}`, file);
        }
        const items = splitJsonArray(text, file);
        jsonItems = [];
        for (const item of items) {
          if (check(item.line, () => JSON.parse(item.text))) {
            index.push(jsonItems.length, item.line);
            jsonItems.push(item.text);
          }
        }
      }
      if (detected === null) {
        // Every line was bad: say why, not merely that nothing was found.
        collector.refuseIfAny();
        throw new DataError(`${file}: the file has no records`, file);
      }
      format = detected;
    } else {
      const delimiter = path.extname(file).toLowerCase() === '.tsv' ? '\t' : ',';
      let header: string[] | null = null;
      let mapping: ColumnMapping | null = null;
      let detected: RecordFormat | null = recordFormat;
      for await (const r of scanCsvRecords(file, 0, 1)) {
        let fields: string[];
        try {
          fields = parseCsvRecord(decodeUtf8(r.bytes), delimiter);
        } catch (e) {
          if (header === null) throw new DataError(`${file}:${r.line}: the header row is unreadable: ${(e as Error).message}`, file);
          collector.add(r.line, (e as Error).message);
          continue;
        }
        if (header === null) {
          header = fields.map((f) => f.trim());
          mapping = csvMapping(file, header, opts.columns);
          detected ??= detectRecordFormat(mapping);
          if (detected === null)
            throw new DataError(
              `${file}: the mapped columns (${Object.keys(mapping).join(', ')}) make no known record; map text=..., or prompt=...,completion=..., or instruction=...,output=...`,
              file,
            );
          continue;
        }
        if (fields.length === 1 && fields[0] === '') continue; // blank line
        try {
          toExample(detected!, csvObject(header, mapping!, fields));
          index.push(r.offset, r.line);
        } catch (e) {
          collector.add(r.line, (e as Error).message);
        }
      }
      if (header === null || detected === null) throw new DataError(`${file}: the CSV file is empty; it needs a header row`, file);
      csv = { delimiter, header, mapping: mapping! };
      format = detected;
    }

    if (!opts.skipBadRecords) collector.refuseIfAny();
    if (index.count === 0) throw new DataError(`${file}: no usable records`, file, collector.problems, collector.count);
    const [offsets, lines] = index.finish();
    return new Dataset(path.resolve(file), container, format, index.count, collector.count, collector.problems, offsets, lines, csv, jsonItems);
  }

  /** Line of record `i` (1-based). */
  lineOf(i: number): number {
    return this.container === 'txt' ? i + 1 : this.lines[i]!;
  }

  /**
   * Good record `i` on its own: one seek to its byte offset and a read of just
   * that record, so records can be visited in any order (a shuffled epoch)
   * without holding the file. Not for plain text, whose pipeline reads token
   * windows (TrainingData.exampleAt).
   */
  async recordAt(i: number): Promise<DatasetRecord> {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) throw new RangeError(`record ${i} is outside [0, ${this.count})`);
    if (this.container === 'txt') throw new RangeError('plain text files are read as token windows, not records');
    const format = this.format as RecordFormat;
    if (this.jsonItems) return { index: i, line: this.lines[i]!, example: toExample(format, JSON.parse(this.jsonItems[this.offsets[i]!]!)) };
    const offset = this.offsets[i]!;
    const line = this.lines[i]!;
    const scan = this.csv ? scanCsvRecords(this.file, offset, line, RECORD_READ_BYTES) : scanLines(this.file, offset, line, false, RECORD_READ_BYTES);
    for await (const r of scan) {
      const text = decodeUtf8(r.bytes);
      const record = this.csv ? csvObject(this.csv.header, this.csv.mapping, parseCsvRecord(text, this.csv.delimiter)) : JSON.parse(text);
      return { index: i, line: r.line, example: toExample(format, record) };
    }
    throw new DataError(`${this.file}: record ${i} (line ${line}) is gone; was the file changed while training?`, this.file);
  }

  /** Streams the good records from record `from` on. txt: one {kind: 'text'} per line, newline kept. */
  async *records(from = 0): AsyncGenerator<DatasetRecord> {
    if (from >= this.count) return;
    if (this.container === 'txt') {
      let k = 0;
      for await (const l of scanLines(this.file, 0, 1, true)) {
        let text: string;
        try {
          text = decodeUtf8(l.bytes);
        } catch {
          continue;
        }
        if (k >= from) yield { index: k, line: l.line, example: { kind: 'text', text } };
        k++;
      }
      return;
    }
    const format = this.format as RecordFormat;
    if (this.jsonItems) {
      for (let k = from; k < this.count; k++)
        yield { index: k, line: this.lines[k]!, example: toExample(format, JSON.parse(this.jsonItems[this.offsets[k]!]!)) };
      return;
    }
    let k = from;
    const scan = this.csv ? scanCsvRecords(this.file, this.offsets[from]!, this.lines[from]!) : scanLines(this.file, this.offsets[from]!, this.lines[from]!);
    for await (const r of scan) {
      if (r.offset !== this.offsets[k]) continue; // a bad or blank line
      const text = decodeUtf8(r.bytes);
      const record = this.csv ? csvObject(this.csv.header, this.csv.mapping, parseCsvRecord(text, this.csv.delimiter)) : JSON.parse(text);
      yield { index: k, line: r.line, example: toExample(format, record) };
      if (++k >= this.count) return;
    }
  }
}

async function containerOf(file: string, format: DataFormat | 'auto'): Promise<Container> {
  if (format === 'csv') return 'csv';
  if (format === 'txt') return 'txt';
  const ext = path.extname(file).toLowerCase();
  if (format === 'auto' && (ext === '.csv' || ext === '.tsv')) return 'csv';
  if (format === 'auto' && (ext === '.txt' || ext === '.md')) return 'txt';
  if (ext === '.json') {
    // A JSON array, or JSONL under a .json name: look at the first non-space byte.
    for await (const l of scanLines(file, 0, 1)) {
      const s = l.bytes.toString('utf8').trimStart();
      if (s === '') continue;
      return s.startsWith('[') ? 'json' : 'jsonl';
    }
  }
  return 'jsonl';
}

class ProblemCollector {
  count = 0;
  problems: DataProblem[] = [];
  constructor(
    readonly file: string,
    readonly limit: number,
  ) {}
  add(line: number, message: string): void {
    this.count++;
    if (this.problems.length < this.limit) this.problems.push({ file: this.file, line, message });
  }

  /** Refuses the file when any record was bad, listing the first problems. */
  refuseIfAny(): void {
    if (this.count === 0) return;
    const listed = this.problems.map((p) => `  ${formatProblem(p)}`).join('\n');
    const more = this.count > this.problems.length ? `\n  … and ${this.count - this.problems.length} more` : '';
    throw new DataError(
      `${this.file}: ${this.count} bad record${this.count === 1 ? '' : 's'}:\n${listed}${more}\n` +
        'Fix them, or skip bad records (they are then left out and counted).',
      this.file,
      this.problems,
      this.count,
    );
  }
}

// Byte offsets and line numbers of good records, in growing typed arrays (8 bytes each).
class OffsetIndex {
  count = 0;
  private offsets = new Float64Array(1024);
  private lines = new Float64Array(1024);
  push(offset: number, line: number): void {
    if (this.count === this.offsets.length) {
      const grow = (a: Float64Array) => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.offsets = grow(this.offsets);
      this.lines = grow(this.lines);
    }
    this.offsets[this.count] = offset;
    this.lines[this.count] = line;
    this.count++;
  }
  finish(): [Float64Array, Float64Array] {
    return [this.offsets.slice(0, this.count), this.lines.slice(0, this.count)];
  }
}

// ---- bytes and lines ----------------------------------------------------------

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    let bad = 0;
    // Find the first bad byte for the message.
    for (let i = 1; i <= bytes.length; i++) {
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, i), { stream: true });
      } catch {
        bad = i - 1;
        break;
      }
    }
    throw new RecordProblem(`invalid UTF-8 (byte ${bad + 1} of the line); save the file as UTF-8`);
  }
}

function isBlank(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  return true;
}

interface RawLine {
  offset: number; // byte offset of the line's first byte
  line: number; // 1-based
  bytes: Buffer; // without the line ending (unless keepNewline)
}

// Chunk size of a single-record read (recordAt): most records fit in one.
const RECORD_READ_BYTES = 64 << 10;

/** Lines of `file` from byte `start` (whose line number is `firstLine`), read in chunks (1 MiB unless given). */
export async function* scanLines(file: string, start: number, firstLine: number, keepNewline = false, chunkBytes = 1 << 20): AsyncGenerator<RawLine> {
  const stream = createReadStream(file, { start, highWaterMark: chunkBytes });
  let carry: Buffer | null = null;
  let carryOffset = start;
  let line = firstLine;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const buf: Buffer = carry ? Buffer.concat([carry, chunk]) : chunk;
      let pos = 0;
      for (let nl = buf.indexOf(10, pos); nl >= 0; nl = buf.indexOf(10, pos)) {
        let end = nl;
        if (!keepNewline && end > pos && buf[end - 1] === 13) end--;
        yield { offset: carryOffset + pos, line, bytes: buf.subarray(pos, keepNewline ? nl + 1 : end) };
        line++;
        pos = nl + 1;
      }
      carryOffset += pos;
      carry = pos < buf.length ? Buffer.from(buf.subarray(pos)) : null;
    }
    if (carry && carry.length > 0) {
      const end = !keepNewline && carry[carry.length - 1] === 13 ? carry.length - 1 : carry.length;
      yield { offset: carryOffset, line, bytes: carry.subarray(0, end) };
    }
  } finally {
    stream.destroy();
  }
}

// ---- JSON arrays ----------------------------------------------------------------

/** The items of a top-level JSON array, each with its text and 1-based line. */
export function splitJsonArray(text: string, file: string): { text: string; line: number }[] {
  let i = 0;
  let line = 1;
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i]!)) {
      if (text[i] === '\n') line++;
      i++;
    }
  };
  if (text.charCodeAt(0) === 0xfeff) i++;
  skipSpace();
  if (text[i] !== '[') throw new DataError(`${file}:${line}: expected a JSON array of records`, file);
  i++;
  const items: { text: string; line: number }[] = [];
  for (;;) {
    skipSpace();
    if (text[i] === ']' && items.length === 0) return items;
    const start = i;
    const startLine = line;
    let depth = 0;
    let inString = false;
    for (; i < text.length; i++) {
      const c = text[i]!;
      if (c === '\n') line++;
      if (inString) {
        if (c === '\\') i++;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') {
        if (depth === 0) break;
        depth--;
      } else if (c === ',' && depth === 0) break;
    }
    if (i >= text.length) throw new DataError(`${file}:${startLine}: the JSON array is not closed (missing ']')`, file);
    items.push({ text: text.slice(start, i).trim(), line: startLine });
    if (text[i] === ']') return items;
    i++; // ','
  }
}

// ---- CSV ----------------------------------------------------------------------------

/** CSV records: lines joined while a quoted field is open (an odd number of '"' so far). */
async function* scanCsvRecords(file: string, start: number, firstLine: number, chunkBytes = 1 << 20): AsyncGenerator<RawLine> {
  let pending = null as RawLine | null;
  let quotes = 0;
  for await (const l of scanLines(file, start, firstLine, false, chunkBytes)) {
    let q = 0;
    for (const b of l.bytes) if (b === 0x22) q++;
    const open = pending as RawLine | null;
    if (open !== null) {
      pending = { offset: open.offset, line: open.line, bytes: Buffer.concat([open.bytes, Buffer.from('\n'), l.bytes]) };
      quotes += q;
    } else {
      pending = l;
      quotes = q;
    }
    if (quotes % 2 === 0) {
      yield pending;
      pending = null;
    }
  }
  if (pending) yield pending; // unterminated quote: parseCsvRecord reports it
}

/** Fields of one CSV record (RFC 4180: "" is a quote inside a quoted field). */
export function parseCsvRecord(text: string, delimiter: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (text[i] === '"') {
      let value = '';
      i++;
      for (;;) {
        const q = text.indexOf('"', i);
        if (q < 0) throw new RecordProblem('a quoted field is not closed (missing \'"\')');
        value += text.slice(i, q);
        if (text[q + 1] === '"') {
          value += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      if (i < text.length && text[i] !== delimiter)
        throw new RecordProblem(`unexpected text after a closing quote at column ${i + 1}; double a quote inside a quoted field ("")`);
      fields.push(value);
    } else {
      const d = text.indexOf(delimiter, i);
      const end = d < 0 ? text.length : d;
      fields.push(text.slice(i, end));
      i = end;
    }
    if (i >= text.length) return fields;
    i++; // delimiter
    if (i === text.length) {
      fields.push('');
      return fields;
    }
  }
}

function csvMapping(file: string, header: string[], columns: string | ColumnMapping | undefined): ColumnMapping {
  let mapping: ColumnMapping;
  if (columns !== undefined) {
    try {
      mapping = parseColumnMapping(columns);
    } catch (e) {
      throw new DataError((e as Error).message, file);
    }
    for (const [target, column] of Object.entries(mapping))
      if (!header.includes(column))
        throw new DataError(`${file}: no column "${column}" (mapped to ${target}); the columns are ${header.map((h) => JSON.stringify(h)).join(', ')}`, file);
  } else {
    mapping = {};
    for (const target of CSV_TARGETS) if (header.includes(target)) mapping[target] = target;
    if (Object.keys(mapping).length === 0)
      throw new DataError(
        `${file}: no column is named like a record field; map them, e.g. --columns prompt=question,completion=answer or text=body (columns: ${header.map((h) => JSON.stringify(h)).join(', ')})`,
        file,
      );
  }
  return mapping;
}

function csvObject(header: string[], mapping: ColumnMapping, fields: string[]): Record<string, string> {
  if (fields.length !== header.length)
    throw new RecordProblem(`the row has ${fields.length} fields but the header has ${header.length}; quote fields that contain the delimiter`);
  const record: Record<string, string> = {};
  for (const [target, column] of Object.entries(mapping)) record[target] = fields[header.indexOf(column!)]!;
  return record;
}
