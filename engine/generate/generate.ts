// Text generation with the KV cache: the prompt goes through the model in one
// forward call (prefill), then one token per call, each picked by the sampler
// (sampler.ts) from the logits of the last position.
//
//   P   prompt tokens
//   N   maxTokens, the most tokens sampled (an EOS token counts)
//   cache  [layers][1, P + N - 1, kvHeads·headDim] keys and values; the last
//          sampled token is never fed back, so it needs no slot
//
// It stops at an EOS id, at a stop string (matched on the decoded text when a
// decoder is given), at N tokens, at the end of the model's context, or when the
// AbortSignal fires. The cache is freed however it ends.
//
// Tokenizers live elsewhere (engine/data): where text is needed this takes a
// `decode(ids) => string` function or an object shaped like TextCodec.
import { CancelledError, EngineInputError, type EngineModel } from '../api.ts';
import { Sampler, type SamplingOptions } from './sampler.ts';

/** What generation needs from a tokenizer. */
export interface TextCodec {
  encode(text: string): number[];
  decode(ids: number[]): string;
}

/** What generation needs from a model (EngineModel has it). */
export type GenerationModel = Pick<EngineModel, 'config' | 'createCache' | 'forward'>;

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to sample, EOS included. Default 256. */
  maxTokens?: number;
  /** Sampling one of these ends the generation. Default: the model's (generation_config.json). [] turns it off. */
  eosTokenIds?: readonly number[];
  /** Strings that end the generation; matched on the decoded text, which stops just before the first match. Needs `decode`. */
  stop?: readonly string[];
  /** Turns generated ids into text: gives the result a `text` and each streamed token its new text. */
  decode?: (ids: number[]) => string;
  signal?: AbortSignal;
}

export type FinishReason = 'eos' | 'stop' | 'length' | 'cancelled';

/** One streamed token (an EOS id that ends the generation is streamed too, with text ''). */
export interface GeneratedToken {
  id: number;
  /** 0 for the first generated token. */
  index: number;
  /**
   * Text that this token made final ('' without a decoder). Text that might
   * still turn into a stop string, or that ends in an incomplete character
   * (U+FFFD), is held back until it is settled; so the pieces joined are always
   * a prefix of the result's `text`, which holds the rest.
   */
  text: string;
}

export interface GenerateResult {
  /** Every sampled id, in order: an EOS id that ended it and the ids that formed a stop string included. */
  tokens: number[];
  /** The decoded text without the EOS token and without the stop string (and what came after it); null without a decoder. */
  text: string | null;
  finishReason: FinishReason;
  promptTokens: number;
  /** tokens.length. */
  generatedTokens: number;
  /** Wall-clock seconds of the whole generation, prefill included. */
  seconds: number;
}

export const DEFAULT_MAX_TOKENS = 256;

interface Plan {
  prompt: Int32Array;
  maxTokens: number;
  eos: Set<number>;
  stop: string[];
  decode: ((ids: number[]) => string) | null;
}

function planGeneration(model: GenerationModel, promptIds: readonly number[] | Int32Array, opts: GenerateOptions): Plan {
  const V = model.config.vocabSize;
  if (!Array.isArray(promptIds) && !(promptIds instanceof Int32Array))
    throw new EngineInputError('promptIds', 'expected an array of token ids');
  if (promptIds.length === 0) throw new EngineInputError('promptIds', 'the prompt is empty; give at least one token');
  for (let i = 0; i < promptIds.length; ++i) {
    const t = promptIds[i];
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= V)
      throw new EngineInputError('promptIds', `token ${i} is ${String(t)}, outside the vocabulary [0, ${V})`);
  }
  const maxTokens = opts.maxTokens ?? DEFAULT_MAX_TOKENS;
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < 1)
    throw new EngineInputError('maxTokens', `expected an integer ≥ 1, got ${String(maxTokens)}`);
  const context = model.config.maxPositionEmbeddings;
  if (promptIds.length >= context)
    throw new EngineInputError('promptIds', `the prompt has ${promptIds.length} tokens and the model's context holds ${context}; shorten the prompt`);
  const eosIds = opts.eosTokenIds ?? model.config.eosTokenIds;
  if (!Array.isArray(eosIds) || !eosIds.every((t) => Number.isInteger(t) && t >= 0))
    throw new EngineInputError('eosTokenIds', 'expected an array of token ids');
  const stop = opts.stop ?? [];
  if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string' && s.length > 0))
    throw new EngineInputError('stop', 'expected an array of non-empty strings');
  if (opts.decode !== undefined && typeof opts.decode !== 'function')
    throw new EngineInputError('decode', 'expected a function (ids) => string');
  if (stop.length > 0 && !opts.decode)
    throw new EngineInputError('stop', 'stop strings are matched on text; pass `decode` (the tokenizer) as well');
  return {
    prompt: Int32Array.from(promptIds),
    // Prompt and generation together stay within the model's context.
    maxTokens: Math.min(maxTokens, context - promptIds.length),
    eos: new Set(eosIds),
    stop: [...stop],
    decode: opts.decode ?? null,
  };
}

/**
 * Follows the decoded text of a generation: finds stop strings and decides how
 * much of the text is settled enough to stream.
 */
class TextTracker {
  private emitted = 0; // characters of the text streamed so far
  private searchedTo = 0; // stop strings were looked for in text[0, searchedTo)
  private readonly longestStop: number;
  text = '';
  stopped = false;

  constructor(private readonly decode: (ids: number[]) => string, private readonly stop: string[]) {
    this.longestStop = Math.max(0, ...stop.map((s) => s.length));
  }

  /** Takes the text of all generated ids so far; returns the newly settled text. */
  update(ids: number[]): string {
    const full = this.decode(ids);
    const from = Math.max(0, this.searchedTo - this.longestStop + 1);
    let cut = -1;
    for (const s of this.stop) {
      const at = full.indexOf(s, from);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    this.searchedTo = full.length;
    if (cut >= 0) {
      this.stopped = true;
      this.text = full.slice(0, cut);
      return this.take(this.text.length);
    }
    this.text = full;
    let settled = full.length;
    while (settled > this.emitted && full[settled - 1] === '\uFFFD') --settled; // a character still missing bytes
    settled -= this.heldForStop(full.slice(0, settled));
    return this.take(settled);
  }

  /** Length of the longest end of `text` that begins some stop string. */
  private heldForStop(text: string): number {
    for (let n = Math.min(this.longestStop - 1, text.length); n > 0; --n) {
      const tail = text.slice(text.length - n);
      if (this.stop.some((s) => s.startsWith(tail))) return n;
    }
    return 0;
  }

  private take(end: number): string {
    if (end <= this.emitted) return '';
    const piece = this.text.slice(this.emitted, end);
    this.emitted = end;
    return piece;
  }

}

/**
 * Generates from `promptIds`, yielding each sampled token as it comes and
 * returning the result. Use it with `for await` (breaking out frees the cache
 * too), or call generateAll() for just the result.
 */
export async function* generate(
  model: GenerationModel,
  promptIds: readonly number[] | Int32Array,
  opts: GenerateOptions = {},
): AsyncGenerator<GeneratedToken, GenerateResult, undefined> {
  const started = performance.now();
  const plan = planGeneration(model, promptIds, opts);
  const sampler = new Sampler(opts);
  const tracker = plan.decode ? new TextTracker(plan.decode, plan.stop) : null;
  const signal = opts.signal;
  const context: number[] = Array.from(plan.prompt); // for the repetition penalty
  const tokens: number[] = [];
  let finishReason: FinishReason | null = null;

  const cache = model.createCache(1, plan.prompt.length + plan.maxTokens - 1);
  try {
    let next: Int32Array = plan.prompt;
    while (finishReason === null) {
      let logits: Float32Array;
      try {
        if (signal?.aborted) throw new CancelledError('the generation');
        logits = await model.forward(cache, next, { signal });
      } catch (e) {
        if (e instanceof CancelledError) {
          finishReason = 'cancelled';
          break;
        }
        throw e;
      }
      const id = sampler.next(logits, context);
      tokens.push(id);
      context.push(id);
      let text = '';
      if (plan.eos.has(id)) finishReason = 'eos';
      else if (tracker) {
        text = tracker.update(tokens);
        if (tracker.stopped) finishReason = 'stop';
      }
      if (finishReason === null && tokens.length >= plan.maxTokens) finishReason = 'length';
      yield { id, index: tokens.length - 1, text };
      next = Int32Array.of(id);
    }
  } finally {
    cache.dispose();
  }
  return {
    tokens,
    text: tracker ? tracker.text : null, // an EOS id is never decoded
    finishReason,
    promptTokens: plan.prompt.length,
    generatedTokens: tokens.length,
    seconds: (performance.now() - started) / 1000,
  };
}

/** Runs generate() to the end; `onToken` sees each token as it comes (e.g. to stream it to a UI). */
export async function generateAll(
  model: GenerationModel,
  promptIds: readonly number[] | Int32Array,
  opts: GenerateOptions & { onToken?: (token: GeneratedToken) => void } = {},
): Promise<GenerateResult> {
  const { onToken, ...rest } = opts;
  const it = generate(model, promptIds, rest);
  for (;;) {
    const step = await it.next();
    if (step.done) return step.value;
    onToken?.(step.value);
  }
}
