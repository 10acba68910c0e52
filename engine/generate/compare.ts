// Base against adapted: each prompt is generated twice with the same seed and
// sampling, once with every adapter off (the base model, exactly) and once with
// only the chosen adapter on. Whatever adapters were on before are on again
// afterwards, however the comparison ends.
//
// Renderers turn a comparison into two terminal columns, Markdown, or JSON.
import { EngineInputError, type EngineModel } from '../api.ts';
import { DEFAULT_MAX_TOKENS, generate, type FinishReason, type GeneratedToken, type GenerateOptions, type GenerateResult, type TextCodec } from './generate.ts';
import { isGreedy, resolveSampling, type SamplingSettings } from './sampler.ts';

export type CompareModel = Pick<EngineModel, 'config' | 'createCache' | 'forward' | 'adapterNames' | 'adapterInfo' | 'setAdapterEnabled'>;

/** A prompt as text (needs a tokenizer) or as token ids (already templated). */
export type ComparePrompt = string | readonly number[];

export type CompareSideName = 'base' | 'adapted';

export interface CompareOptions extends Omit<GenerateOptions, 'decode'> {
  /** Encodes text prompts and decodes outputs; without it outputs are token ids only. */
  tokenizer?: TextCodec;
  /** Sees every token as it is generated (e.g. to stream both columns to a UI). */
  onToken?: (event: { prompt: number; side: CompareSideName; token: GeneratedToken }) => void;
}

export interface CompareOutput {
  text: string | null;
  tokens: number[];
  finishReason: FinishReason;
  generatedTokens: number;
  seconds: number;
}

export interface CompareEntry {
  /** The prompt's text: as given, or decoded from its ids; null without a tokenizer. */
  prompt: string | null;
  promptIds: number[];
  base: CompareOutput;
  adapted: CompareOutput;
}

export interface CompareReport {
  adapter: string;
  sampling: SamplingSettings & { maxTokens: number };
  entries: CompareEntry[];
  /** The AbortSignal fired: the last entry may be partial and later prompts were not run. */
  cancelled: boolean;
}

const NOT_RUN: CompareOutput = { text: null, tokens: [], finishReason: 'cancelled', generatedTokens: 0, seconds: 0 };

/**
 * Generates each prompt with the base model and with `adapterName`, same seed
 * and sampling. Refuses a merged adapter (its update is in the base weights,
 * so there is no base to compare with).
 */
export async function compareOutputs(
  model: CompareModel,
  adapterName: string,
  prompts: readonly ComparePrompt[],
  opts: CompareOptions = {},
): Promise<CompareReport> {
  const names = model.adapterNames();
  if (!names.includes(adapterName))
    throw new EngineInputError('adapterName', `no adapter named '${adapterName}' (have: ${names.join(', ') || 'none'})`);
  const merged = names.filter((n) => model.adapterInfo(n).merged);
  if (merged.length > 0)
    throw new EngineInputError('adapterName', `adapter '${merged[0]}' is merged into the base weights; unmerge it before comparing`);
  if (!Array.isArray(prompts) || prompts.length === 0) throw new EngineInputError('prompts', 'give at least one prompt');
  const { tokenizer, onToken, ...genOpts } = opts;
  const settings = resolveSampling(genOpts);
  const maxTokens = genOpts.maxTokens ?? DEFAULT_MAX_TOKENS;
  const decode = tokenizer ? (ids: number[]) => tokenizer.decode(ids) : undefined;
  // Every prompt is checked before anything runs, so a bad one cannot end the comparison halfway.
  const V = model.config.vocabSize;
  const inputs = prompts.map((p, i) => {
    let input: { prompt: string | null; promptIds: number[] };
    if (typeof p === 'string') {
      if (!tokenizer) throw new EngineInputError('prompts', `prompt ${i} is text; pass a tokenizer, or give token ids`);
      input = { prompt: p, promptIds: tokenizer.encode(p) };
    } else if (Array.isArray(p)) {
      input = { prompt: null, promptIds: [...p] };
    } else throw new EngineInputError('prompts', `prompt ${i} is neither text nor an array of token ids`);
    if (input.promptIds.length === 0) throw new EngineInputError('prompts', `prompt ${i} has no tokens`);
    const bad = input.promptIds.find((t) => !Number.isInteger(t) || t < 0 || t >= V);
    if (bad !== undefined) throw new EngineInputError('prompts', `prompt ${i} has token ${String(bad)}, outside the vocabulary [0, ${V})`);
    if (input.prompt === null && decode) input.prompt = decode(input.promptIds);
    return input;
  });

  const wasEnabled = new Map(names.map((n) => [n, model.adapterInfo(n).enabled]));
  const report: CompareReport = { adapter: adapterName, sampling: { ...settings, maxTokens }, entries: [], cancelled: false };
  try {
    for (const [i, input] of inputs.entries()) {
      const outputs: Partial<Record<CompareSideName, CompareOutput>> = {};
      for (const side of ['base', 'adapted'] as const) {
        for (const n of names) model.setAdapterEnabled(n, side === 'adapted' && n === adapterName);
        const it = generate(model, input.promptIds, { ...genOpts, decode });
        let step = await it.next();
        for (; !step.done; step = await it.next()) onToken?.({ prompt: i, side, token: step.value });
        outputs[side] = outputOf(step.value);
        if (step.value.finishReason === 'cancelled') break;
      }
      report.entries.push({ ...input, base: outputs.base ?? NOT_RUN, adapted: outputs.adapted ?? NOT_RUN });
      if (outputs.base?.finishReason === 'cancelled' || outputs.adapted?.finishReason === 'cancelled') {
        report.cancelled = true;
        break;
      }
    }
  } finally {
    for (const [n, enabled] of wasEnabled) model.setAdapterEnabled(n, enabled);
  }
  return report;
}

function outputOf(r: GenerateResult): CompareOutput {
  return { text: r.text, tokens: r.tokens, finishReason: r.finishReason, generatedTokens: r.generatedTokens, seconds: r.seconds };
}

// ---- renderers -------------------------------------------------------------------------

/** One line on the sampling settings, e.g. "temperature 0.7, top-p 0.9, seed 1; at most 128 tokens". */
export function describeSampling(s: CompareReport['sampling']): string {
  const parts: string[] = [];
  if (isGreedy(s)) parts.push('greedy');
  else {
    parts.push(`temperature ${s.temperature}`);
    if (s.topK > 0) parts.push(`top-k ${s.topK}`);
    if (s.topP < 1) parts.push(`top-p ${s.topP}`);
  }
  if (s.repetitionPenalty !== 1) parts.push(`repetition penalty ${s.repetitionPenalty}`);
  if (!isGreedy(s)) parts.push(`seed ${s.seed}`);
  return `${parts.join(', ')}; at most ${s.maxTokens} tokens`;
}

function outputText(o: CompareOutput): string {
  if (o.text !== null) return o.text;
  return o.tokens.length > 0 ? `[token ids] ${o.tokens.join(' ')}` : '';
}

function footer(o: CompareOutput): string {
  return `${o.finishReason}, ${o.generatedTokens} token${o.generatedTokens === 1 ? '' : 's'}, ${o.seconds.toFixed(2)} s`;
}

/** Control characters (but newlines) would move the terminal cursor: tabs become spaces, the rest U+FFFD. */
function printable(text: string): string {
  return text.replace(/\r\n?/g, '\n').replace(/\t/g, '    ').replace(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g, '\uFFFD');
}

/**
 * Wraps text to lines of at most `width` characters (code points): at spaces
 * where it can, inside a word where a word is longer than a line. Newlines
 * start new lines; an empty text gives one empty line.
 */
export function wrapText(text: string, width: number): string[] {
  if (!Number.isInteger(width) || width < 1) throw new EngineInputError('width', `expected an integer ≥ 1, got ${String(width)}`);
  const lines: string[] = [];
  for (const paragraph of printable(text).split('\n')) {
    let line: string[] = [];
    for (const word of paragraph.split(' ')) {
      let chars = Array.from(word);
      if (line.length > 0 && line.length + 1 + chars.length <= width) {
        line.push(' ', ...chars);
        continue;
      }
      if (line.length > 0) lines.push(line.join(''));
      line = [];
      while (chars.length > width) {
        lines.push(chars.slice(0, width).join(''));
        chars = chars.slice(width);
      }
      line = chars;
    }
    lines.push(line.join(''));
  }
  return lines;
}

function padEnd(s: string, width: number): string {
  return s + ' '.repeat(Math.max(0, width - Array.from(s).length));
}

/**
 * Two columns per prompt, base on the left and adapted on the right, each
 * wrapped to fit `width` characters in all (default 100):
 *
 *   Prompt 1
 *   <the prompt, wrapped to the full width>
 *   base                  │ adapted: name
 *   ──────────────────────┼──────────────────────
 *   text …                │ text …
 *   (eos, 12 tokens, …)   │ (length, 64 tokens, …)
 */
export function renderSideBySide(report: CompareReport, opts: { width?: number } = {}): string {
  const width = opts.width ?? 100;
  if (!Number.isInteger(width) || width < 9) throw new EngineInputError('width', `expected an integer ≥ 9, got ${String(width)}`);
  const col = Math.floor((width - 3) / 2);
  const row = (left: string, right: string) => `${padEnd(left, col)} │ ${right}`.trimEnd();
  const out: string[] = [...wrapText(`Base vs adapted: ${report.adapter}`, width), ...wrapText(describeSampling(report.sampling), width)];
  report.entries.forEach((e, i) => {
    out.push('', `Prompt ${i + 1}`, ...wrapText(e.prompt ?? `[token ids] ${e.promptIds.join(' ')}`, width));
    out.push(row('base', `adapted: ${report.adapter}`.slice(0, col)), `${'─'.repeat(col)}─┼─${'─'.repeat(col)}`);
    const left = [...wrapText(outputText(e.base), col), ...wrapText(`(${footer(e.base)})`, col)];
    const right = [...wrapText(outputText(e.adapted), col), ...wrapText(`(${footer(e.adapted)})`, col)];
    for (let l = 0; l < Math.max(left.length, right.length); ++l) out.push(row(left[l] ?? '', right[l] ?? ''));
  });
  if (report.cancelled) out.push('', ...wrapText('(cancelled: later prompts were not run)', width));
  return out.join('\n') + '\n';
}

/** Markdown text that shows as written: punctuation escaped, HTML neutralised, newlines as <br> (table cells are one line). */
function markdownInline(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/[\\`*_[\]|#~]/g, (c) => `\\${c}`)
    .replace(/\r\n?|\n/g, '<br>');
}

/** A heading per prompt, the prompt quoted, then a two-column table: base | adapted. */
export function renderMarkdown(report: CompareReport): string {
  const out: string[] = [
    `# Base vs adapted: ${markdownInline(report.adapter)}`,
    '',
    `Sampling: ${markdownInline(describeSampling(report.sampling))}.`,
  ];
  report.entries.forEach((e, i) => {
    out.push('', `## Prompt ${i + 1}`, '');
    out.push(`> ${markdownInline(e.prompt ?? `[token ids] ${e.promptIds.join(' ')}`)}`);
    out.push('', `| Base | Adapted (${markdownInline(report.adapter)}) |`, '| --- | --- |');
    out.push(`| ${markdownInline(outputText(e.base))} | ${markdownInline(outputText(e.adapted))} |`);
    out.push(`| *${footer(e.base)}* | *${footer(e.adapted)}* |`);
  });
  if (report.cancelled) out.push('', '*Cancelled: later prompts were not run.*');
  return out.join('\n') + '\n';
}

/** The report as JSON, with a format tag and version so other tools can read it. */
export function renderJson(report: CompareReport): string {
  return JSON.stringify({ format: 'lora-studio-compare', version: 1, ...report }, null, 2) + '\n';
}
