// Dataset file + model tokenizer → tokenized examples capped at the sequence
// length, streamed, re-readable per epoch, resumable from an example index.
//
// Truncation is never silent: each example says whether it was cut, and
// `stats` counts truncated and dropped examples of the latest pass.
//
// Plain .txt files become windows of maxSeqLen tokens. With `overlap` > 0 a
// window starts `maxSeqLen - overlap` tokens after the previous one, so the
// first `overlap` tokens of each later window repeat the end of the previous
// window as context; they are not trained again (labels -100), so every token
// is trained exactly once. The file starts with BOS if the tokenizer adds one
// and ends with EOS. Lines are tokenized one at a time (with their newline).
import { RecordProblem } from './errors.ts';
import type { Example } from './formats.ts';
import { countTrained, encodeExample, IGNORE, type EncodedExample, type LossOn } from './masks.ts';
import { Dataset, decodeUtf8, scanLines, type DatasetOptions, type DatasetRecord } from './reader.ts';
import { ModelTokenizer } from './tokenizer.ts';
import { DataError } from './errors.ts';

export interface PipelineOptions extends DatasetOptions {
  /** Longest sequence in tokens. */
  maxSeqLen: number;
  /** Which tokens are trained in conversations. Default 'assistant'. */
  lossOn?: LossOn;
  /** Over-long examples: 'truncate' (keep the start; default) or 'drop'. */
  truncation?: 'truncate' | 'drop';
  /** txt: tokens shared by consecutive windows. Default 0. */
  overlap?: number;
}

export interface TokenizedExample {
  /** Index among the dataset's examples (txt: the window index); resume from index + 1. */
  index: number;
  /** 1-based line of the record (txt: the line the window starts in). */
  line: number;
  inputIds: Int32Array;
  labels: Int32Array;
  /** Tokens before truncation. */
  fullLength: number;
  truncated: boolean;
  /** Positions t >= 1 with labels[t] != -100. */
  trainedTokens: number;
  example: Example | null;
}

export interface PassStats {
  examples: number;
  truncated: number;
  dropped: number;
  noTrainedTokens: number;
}

export class TrainingData {
  /** Counts of the latest (or current) pass over the data. */
  stats: PassStats = { examples: 0, truncated: 0, dropped: 0, noTrainedTokens: 0 };

  private constructor(
    readonly dataset: Dataset,
    readonly tokenizer: ModelTokenizer,
    readonly options: Required<Pick<PipelineOptions, 'maxSeqLen' | 'lossOn' | 'truncation' | 'overlap'>>,
  ) {}

  static async open(modelDir: string, file: string, opts: PipelineOptions): Promise<TrainingData> {
    if (!Number.isInteger(opts.maxSeqLen) || opts.maxSeqLen < 2) throw new DataError(`maxSeqLen must be an integer >= 2, got ${opts.maxSeqLen}`, file);
    const overlap = opts.overlap ?? 0;
    if (!Number.isInteger(overlap) || overlap < 0 || overlap >= opts.maxSeqLen)
      throw new DataError(`overlap must be an integer in [0, maxSeqLen), got ${overlap}`, file);
    const tokenizer = await ModelTokenizer.load(modelDir);
    const dataset = await Dataset.open(file, opts);
    return new TrainingData(dataset, tokenizer, {
      maxSeqLen: opts.maxSeqLen,
      lossOn: opts.lossOn ?? 'assistant',
      truncation: opts.truncation ?? 'truncate',
      overlap,
    });
  }

  /** Streams tokenized examples from example `from` on; call again for the next epoch. */
  async *examples(from = 0): AsyncGenerator<TokenizedExample> {
    this.stats = { examples: 0, truncated: 0, dropped: 0, noTrainedTokens: 0 };
    if (this.dataset.format === 'txt') {
      yield* this.windows(from);
      return;
    }
    const { maxSeqLen, truncation } = this.options;
    for await (const record of this.dataset.records(from)) {
      const encoded = this.encode(record);
      const fullLength = encoded.inputIds.length;
      const truncated = fullLength > maxSeqLen;
      if (truncated) {
        if (truncation === 'drop') {
          this.stats.dropped++;
          continue;
        }
        this.stats.truncated++;
      }
      const n = Math.min(fullLength, maxSeqLen);
      this.checkVocab(encoded.inputIds, record.line);
      const out = this.finish(record.index, record.line, encoded.inputIds.slice(0, n), encoded.labels.slice(0, n), fullLength, record.example);
      yield out;
    }
  }

  /**
   * Example `i` on its own (the `index` examples() gives it), for visiting
   * examples in any order: records are read with one seek each; txt windows
   * through an index of where each window starts (built by one pass over the
   * file on first use: 24 bytes a window). Null for an example that
   * truncation 'drop' leaves out. Does not change `stats`.
   */
  async exampleAt(i: number): Promise<TokenizedExample | null> {
    if (this.dataset.format === 'txt') return this.windowAt(i);
    const record = await this.dataset.recordAt(i);
    const encoded = this.encode(record);
    const fullLength = encoded.inputIds.length;
    if (fullLength > this.options.maxSeqLen && this.options.truncation === 'drop') return null;
    const n = Math.min(fullLength, this.options.maxSeqLen);
    this.checkVocab(encoded.inputIds, record.line);
    const labels = Int32Array.from(encoded.labels.slice(0, n));
    return {
      index: record.index, line: record.line, inputIds: Int32Array.from(encoded.inputIds.slice(0, n)), labels,
      fullLength, truncated: fullLength > n, trainedTokens: countTrained(labels), example: record.example,
    };
  }

  // txt: where window k starts, as (byte offset of its first token's line,
  // that line's number, tokens of the line before it); offset -1: at the BOS
  // that opens the file; token offset -1 past the last line: the closing EOS.
  private windowIndex: { offsets: Float64Array; lines: Float64Array; skips: Float64Array; count: number } | null = null;

  private async buildWindowIndex() {
    const { maxSeqLen, overlap } = this.options;
    const stride = maxSeqLen - overlap;
    const tok = this.tokenizer;
    let offsets = new Float64Array(256);
    let lines = new Float64Array(256);
    let skips = new Float64Array(256);
    let count = 0;
    const push = (offset: number, line: number, skip: number) => {
      if (count === offsets.length) {
        const grow = (a: Float64Array) => {
          const b = new Float64Array(a.length * 2);
          b.set(a);
          return b;
        };
        [offsets, lines, skips] = [grow(offsets), grow(lines), grow(skips)];
      }
      offsets[count] = offset;
      lines[count] = line;
      skips[count] = skip;
      count++;
    };
    // Window k covers stream tokens [k·stride, k·stride + maxSeqLen) (BOS, each
    // line's tokens, EOS), as windows() cuts them: every window that fits in
    // the text, then one last window of what is left if it holds new tokens.
    // `recent` holds the lines that may contain a window start not yet placed.
    const recent: { offset: number; line: number; start: number; n: number }[] = [];
    const place = (at: number) => {
      const r = recent.find((x) => at >= x.start && at < x.start + x.n);
      if (!r) throw new Error(`window start ${at} is not in a known line`);
      push(r.offset, r.line, at - r.start);
    };
    let nextStart = 0;
    let pos = 0;
    if (tok.addsBos) {
      recent.push({ offset: -1, line: 1, start: 0, n: 1 });
      pos = 1;
    }
    let endLine = 1;
    for await (const l of scanLines(this.dataset.file, 0, 1, true)) {
      let text: string;
      try {
        text = decodeUtf8(l.bytes);
      } catch {
        continue; // records() leaves undecodable lines out
      }
      const n = tok.encode(text).length;
      recent.push({ offset: l.offset, line: l.line, start: pos, n });
      pos += n;
      endLine = l.line;
      while (nextStart + maxSeqLen <= pos) {
        place(nextStart);
        nextStart += stride;
      }
      while (recent.length > 0 && recent[0]!.start + recent[0]!.n <= nextStart) recent.shift();
    }
    const total = pos + (tok.eosTokenId !== null ? 1 : 0);
    if (total - nextStart > (count > 0 ? overlap : 0)) {
      if (nextStart >= pos) push(Number.POSITIVE_INFINITY, endLine, 0);
      else place(nextStart);
    }
    this.windowIndex = { offsets, lines, skips, count };
    return this.windowIndex;
  }

  private async windowAt(k: number): Promise<TokenizedExample> {
    const index = this.windowIndex ?? (await this.buildWindowIndex());
    if (!Number.isInteger(k) || k < 0 || k >= index.count) throw new RangeError(`window ${k} is outside [0, ${index.count})`);
    const { maxSeqLen, overlap } = this.options;
    const tok = this.tokenizer;
    const offset = index.offsets[k]!;
    const line = index.lines[k]!;
    let skip = index.skips[k]!;
    const ids: number[] = [];
    if (offset === -1) ids.push(tok.bosTokenId!);
    if (offset !== Number.POSITIVE_INFINITY) {
      for await (const l of scanLines(this.dataset.file, Math.max(0, offset), offset === -1 ? 1 : line, true)) {
        let text: string;
        try {
          text = decodeUtf8(l.bytes);
        } catch {
          continue;
        }
        const t = tok.encode(text);
        for (let j = skip; j < t.length && ids.length < maxSeqLen; j++) ids.push(t[j]!);
        skip = 0;
        if (ids.length >= maxSeqLen) break;
      }
    }
    if (ids.length < maxSeqLen && tok.eosTokenId !== null) ids.push(tok.eosTokenId);
    const labels = Int32Array.from(ids);
    if (k > 0) labels.fill(IGNORE, 0, Math.min(overlap, labels.length));
    return {
      index: k, line, inputIds: Int32Array.from(ids), labels, fullLength: ids.length, truncated: false,
      trainedTokens: countTrained(labels), example: null,
    };
  }

  /** A record's token ids and labels; a record the template cannot render is refused with its line. */
  private encode(record: DatasetRecord): EncodedExample {
    try {
      return encodeExample(this.tokenizer, record.example, this.options.lossOn);
    } catch (e) {
      if (e instanceof RecordProblem)
        throw new DataError(`${this.dataset.file}:${record.line}: ${e.message}`, this.dataset.file, [
          { file: this.dataset.file, line: record.line, message: e.message },
        ]);
      throw e;
    }
  }

  private finish(index: number, line: number, ids: number[], labels: number[], fullLength: number, example: Example | null): TokenizedExample {
    const labelArray = Int32Array.from(labels);
    const trainedTokens = countTrained(labelArray);
    this.stats.examples++;
    if (trainedTokens === 0) this.stats.noTrainedTokens++;
    return { index, line, inputIds: Int32Array.from(ids), labels: labelArray, fullLength, truncated: fullLength > ids.length, trainedTokens, example };
  }

  private checkVocab(ids: number[], line: number): void {
    const V = this.tokenizer.vocabSize;
    for (const id of ids)
      if (id >= V && this.dataset.format === 'tokens')
        throw new DataError(`${this.dataset.file}:${line}: token id ${id} is outside the tokenizer's vocabulary (${V} tokens)`, this.dataset.file);
  }

  private async *windows(from: number): AsyncGenerator<TokenizedExample> {
    const { maxSeqLen, overlap } = this.options;
    const stride = maxSeqLen - overlap;
    const tok = this.tokenizer;
    let buf: number[] = tok.addsBos ? [tok.bosTokenId!] : [];
    let bufLine = 1; // line the buffer's first token came from (approximate after a shift)
    let windowIndex = 0;
    const emit = (ids: number[]): TokenizedExample | null => {
      const labels = ids.slice();
      if (windowIndex > 0) for (let t = 0; t < Math.min(overlap, labels.length); t++) labels[t] = IGNORE;
      const out = windowIndex >= from ? this.finish(windowIndex, bufLine, ids, labels, ids.length, null) : null;
      windowIndex++;
      return out;
    };
    let lastLine = 1;
    for await (const record of this.dataset.records(0)) {
      lastLine = record.line;
      if (buf.length === 0) bufLine = record.line;
      const text = record.example.kind === 'text' ? record.example.text : '';
      for (const id of tok.encode(text)) buf.push(id);
      while (buf.length >= maxSeqLen) {
        const out = emit(buf.slice(0, maxSeqLen));
        if (out) yield out;
        buf = buf.slice(stride);
        bufLine = record.line;
      }
    }
    if (tok.eosTokenId !== null) buf.push(tok.eosTokenId);
    // The rest, if it holds tokens no window has covered yet.
    if (buf.length > (windowIndex > 0 ? overlap : 0)) {
      if (buf.length > maxSeqLen) {
        const out = emit(buf.slice(0, maxSeqLen));
        if (out) yield out;
        buf = buf.slice(stride);
      }
      if (buf.length > (windowIndex > 0 ? overlap : 0)) {
        bufLine = Math.min(bufLine, lastLine);
        const out = emit(buf);
        if (out) yield out;
      }
    }
  }
}
