// Batches for the engine (engine/api.ts Batch), three ways:
//
//   packed        short examples packed greedily, in order, into rows of `seq`
//                 tokens. Each token carries its example's position (restarting
//                 at 0) and segment (example index within the row), so examples
//                 cannot attend to each other; the first token of every packed
//                 example has label -100, so no token is predicted across a
//                 boundary. The row's tail is padding: pad id, label -100, its
//                 own segment. Loss equals the sum of the examples' own losses.
//   padding-free  the micro-batch's examples concatenated into one row of exactly
//                 their total length, with positions and segments as packing
//                 makes them: variable-length batches, no padding at all.
//   padded        one example per row, right-padded to the longest (or `seq`)
//                 with the pad id; pad labels -100.
import type { Batch } from '../api.ts';
import { IGNORE } from './masks.ts';

export interface SequenceExample {
  inputIds: ArrayLike<number>;
  labels: ArrayLike<number>;
}

/** One packed row; all arrays have length seq. */
export interface PackedRow {
  inputIds: Int32Array;
  labels: Int32Array;
  positions: Int32Array;
  segments: Int32Array;
  /** Examples in the row. */
  examples: number;
  /** Tokens that are not padding. */
  tokens: number;
}

/** Packs examples (each at most `seq` tokens) greedily in order into rows of `seq` tokens. */
export function packExamples(examples: Iterable<SequenceExample>, seq: number, padId: number): PackedRow[] {
  const rows: PackedRow[] = [];
  const packer = new Packer(seq, padId);
  for (const e of examples) {
    const full = packer.add(e);
    if (full) rows.push(full);
  }
  const last = packer.flush();
  if (last) rows.push(last);
  return rows;
}

/** Streaming packer: add() returns a finished row when the example does not fit in the current one. */
export class Packer {
  private pending: SequenceExample[] = [];
  private used = 0;
  constructor(
    readonly seq: number,
    readonly padId: number,
  ) {}

  add(e: SequenceExample): PackedRow | null {
    if (e.inputIds.length > this.seq) throw new RangeError(`an example of ${e.inputIds.length} tokens does not fit in a row of ${this.seq}; truncate first`);
    if (e.inputIds.length === 0) return null;
    let full: PackedRow | null = null;
    if (this.used + e.inputIds.length > this.seq) full = this.flush();
    this.pending.push(e);
    this.used += e.inputIds.length;
    return full;
  }

  flush(): PackedRow | null {
    if (this.pending.length === 0) return null;
    const row = concatRow(this.pending, this.seq, this.padId);
    this.pending = [];
    this.used = 0;
    return row;
  }
}

function concatRow(examples: readonly SequenceExample[], seq: number, padId: number): PackedRow {
  const inputIds = new Int32Array(seq).fill(padId);
  const labels = new Int32Array(seq).fill(IGNORE);
  const positions = new Int32Array(seq);
  const segments = new Int32Array(seq);
  let o = 0;
  examples.forEach((e, j) => {
    const n = e.inputIds.length;
    for (let t = 0; t < n; t++) {
      inputIds[o + t] = e.inputIds[t]!;
      labels[o + t] = t === 0 ? IGNORE : e.labels[t]!;
      positions[o + t] = t;
      segments[o + t] = j;
    }
    o += n;
  });
  for (let t = o; t < seq; t++) {
    positions[t] = t - o;
    segments[t] = examples.length;
  }
  return { inputIds, labels, positions, segments, examples: examples.length, tokens: o };
}

/** Rows of one length stacked into a Batch [rows, seq]. */
export function packedBatch(rows: readonly PackedRow[]): Batch {
  if (rows.length === 0) throw new RangeError('packedBatch: no rows');
  const seq = rows[0]!.inputIds.length;
  const stack = (pick: (r: PackedRow) => Int32Array) => {
    const out = new Int32Array(rows.length * seq);
    rows.forEach((r, i) => {
      if (pick(r).length !== seq) throw new RangeError('packedBatch: rows of different lengths');
      out.set(pick(r), i * seq);
    });
    return out;
  };
  return {
    inputIds: stack((r) => r.inputIds),
    labels: stack((r) => r.labels),
    positions: stack((r) => r.positions),
    segments: stack((r) => r.segments),
    batch: rows.length,
    seq,
  };
}

/** The examples concatenated into one row of their total length (no padding). */
export function paddingFreeBatch(examples: readonly SequenceExample[]): Batch {
  const total = examples.reduce((s, e) => s + e.inputIds.length, 0);
  if (total === 0) throw new RangeError('paddingFreeBatch: no tokens');
  const row = concatRow(examples, total, 0);
  return { inputIds: row.inputIds, labels: row.labels, positions: row.positions, segments: row.segments, batch: 1, seq: total };
}

/** One example per row, right-padded with padId (labels -100) to `seq` or the longest example. */
export function paddedBatch(examples: readonly SequenceExample[], padId: number, seq?: number): Batch {
  if (examples.length === 0) throw new RangeError('paddedBatch: no examples');
  const longest = Math.max(...examples.map((e) => e.inputIds.length));
  const S = seq ?? longest;
  if (longest > S) throw new RangeError(`paddedBatch: an example of ${longest} tokens is longer than seq ${S}`);
  const inputIds = new Int32Array(examples.length * S).fill(padId);
  const labels = new Int32Array(examples.length * S).fill(IGNORE);
  examples.forEach((e, i) => {
    for (let t = 0; t < e.inputIds.length; t++) {
      inputIds[i * S + t] = e.inputIds[t]!;
      labels[i * S + t] = e.labels[t]!;
    }
  });
  return { inputIds, labels, batch: examples.length, seq: S };
}

/** Trained tokens of a batch (labels[t] != -100 at t >= 1 of each row): the denominator of a token-weighted mean. */
export function batchTrainedTokens(b: Batch): number {
  let n = 0;
  for (let r = 0; r < b.batch; r++) for (let t = 1; t < b.seq; t++) if (b.labels[r * b.seq + t] !== IGNORE) n++;
  return n;
}
