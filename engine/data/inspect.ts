// inspectData: what a dataset looks like to the model, before training
// (backs `lora-studio inspect-data`). One streaming pass.
import { createHash } from 'node:crypto';
import type { DataProblem } from './errors.ts';
import { IGNORE } from './masks.ts';
import { TrainingData, type PipelineOptions } from './pipeline.ts';
import type { ModelTokenizer } from './tokenizer.ts';

export interface InspectOptions extends Partial<PipelineOptions> {
  /** Default 2048. */
  maxSeqLen?: number;
}

export interface TrainedSpan {
  text: string;
  trained: boolean;
}

export interface DataReport {
  file: string;
  /** Record format ('txt' for plain text) and container (jsonl, json, csv, txt). */
  format: string;
  container: string;
  /** Good records (txt: lines) and bad ones skipped (skipBadRecords). */
  records: number;
  badRecords: number;
  problems: DataProblem[];
  /** Tokenized examples (txt: windows), after dropping over-long ones if truncation is 'drop'. */
  examples: number;
  maxSeqLen: number;
  tokens: { total: number; trained: number };
  /** Token lengths before truncation; nearest-rank percentiles. */
  length: { min: number; mean: number; p50: number; p90: number; p99: number; max: number };
  truncated: number;
  dropped: number;
  noTrainedTokens: number;
  /** Examples whose content (the parsed record) repeats an earlier one, by SHA-256. */
  duplicates: number;
  chatTemplate: 'model' | 'fallback';
  /** The first example, cut into trained and untrained text. */
  firstExample: RenderedExample | null;
  /** The first few examples (FIRST_EXAMPLES), rendered the same way. */
  renderedExamples: RenderedExample[];
}

export interface RenderedExample {
  line: number;
  tokens: number;
  spans: TrainedSpan[];
  rendered: string;
}

/** How many examples a report renders. */
export const FIRST_EXAMPLES = 3;

export async function inspectData(modelDir: string, dataFile: string, opts: InspectOptions = {}): Promise<DataReport> {
  const data = await TrainingData.open(modelDir, dataFile, { ...opts, maxSeqLen: opts.maxSeqLen ?? 2048 });
  let lengths = new Int32Array(1024);
  let count = 0;
  let total = 0;
  let trained = 0;
  let duplicates = 0;
  const seen = new Set<string>();
  const rendered: RenderedExample[] = [];
  for await (const e of data.examples()) {
    if (count === lengths.length) {
      const grown = new Int32Array(lengths.length * 2);
      grown.set(lengths);
      lengths = grown;
    }
    lengths[count++] = e.fullLength;
    total += e.inputIds.length;
    trained += e.trainedTokens;
    const content = e.example ? JSON.stringify(e.example) : Buffer.from(e.inputIds.buffer).toString('base64');
    const hash = createHash('sha256').update(content).digest('base64');
    if (seen.has(hash)) duplicates++;
    else seen.add(hash);
    if (rendered.length < FIRST_EXAMPLES) {
      const spans = trainedSpans(data.tokenizer, e.inputIds, e.labels);
      rendered.push({ line: e.line, tokens: e.inputIds.length, spans, rendered: renderSpans(spans) });
    }
  }
  const sorted = lengths.slice(0, count).sort();
  const pct = (p: number) => (count === 0 ? 0 : sorted[Math.min(count - 1, Math.max(0, Math.ceil((p / 100) * count) - 1))]!);
  let sum = 0;
  for (const n of sorted) sum += n;
  const stats = data.stats;
  return {
    file: data.dataset.file,
    format: data.dataset.format,
    container: data.dataset.container,
    records: data.dataset.count,
    badRecords: data.dataset.badCount,
    problems: data.dataset.problems,
    examples: count,
    maxSeqLen: data.options.maxSeqLen,
    tokens: { total, trained },
    length: { min: count ? sorted[0]! : 0, mean: count ? sum / count : 0, p50: pct(50), p90: pct(90), p99: pct(99), max: count ? sorted[count - 1]! : 0 },
    truncated: stats.truncated,
    dropped: stats.dropped,
    noTrainedTokens: stats.noTrainedTokens,
    duplicates,
    chatTemplate: data.tokenizer.chatTemplate.isFallback ? 'fallback' : 'model',
    firstExample: rendered[0] ?? null,
    renderedExamples: rendered,
  };
}

/** Consecutive tokens grouped by whether they are trained (labels[t] != -100, t >= 1), decoded to text. */
export function trainedSpans(tok: ModelTokenizer, inputIds: ArrayLike<number>, labels: ArrayLike<number>): TrainedSpan[] {
  const spans: TrainedSpan[] = [];
  let start = 0;
  const isTrained = (t: number) => t > 0 && labels[t] !== IGNORE;
  for (let t = 1; t <= inputIds.length; t++) {
    if (t === inputIds.length || isTrained(t) !== isTrained(start)) {
      spans.push({ text: tok.decode(Array.from(inputIds).slice(start, t)), trained: isTrained(start) });
      start = t;
    }
  }
  return spans;
}

/** Terminal rendering: trained text in ⟦ ⟧, or green with `color`. */
export function renderSpans(spans: readonly TrainedSpan[], opts: { color?: boolean } = {}): string {
  return spans
    .map((s) => (!s.trained ? (opts.color ? `\x1b[2m${s.text}\x1b[22m` : s.text) : opts.color ? `\x1b[32m${s.text}\x1b[39m` : `⟦${s.text}⟧`))
    .join('');
}
