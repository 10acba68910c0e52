// Picking the next token from a logits vector, the way Hugging Face
// transformers does it, so a setting means the same thing here as there.
//
//   V   vocabulary size
//   logits  Float32Array [V], the model's scores for the next token
//   context the ids the model has seen so far (prompt + generated)
//
// The processors run in transformers' order (generation/utils.py,
// _get_logits_processor): repetition penalty, then the warpers temperature,
// top-k, top-p; then either argmax (greedy) or a draw from the softmax of what is
// left. Removed tokens get -Infinity, as in transformers. Each processor is
// exported on its own so it can be tested and reused.
//
// Randomness comes from SplitMix64 (Steele, Lea & Flood, "Fast splittable
// pseudorandom number generators", OOPSLA 2014; Vigna's reference splitmix64.c):
// the i-th draw is a fixed 64-bit mix of seed + (i+1)·0x9e3779b97f4a7c15, so a
// seed fixes the sequence of uniforms, and the arithmetic (BigInt, exact) is the
// same on every machine. Each sampled token uses exactly one draw.
import { EngineInputError } from '../api.ts';

export interface SamplingOptions {
  /** Always take the most likely token (after the repetition penalty). Default false. */
  greedy?: boolean;
  /** Divides the logits; 0 means greedy. Default 1. */
  temperature?: number;
  /** Keep the k most likely tokens (ties with the k-th included); 0 turns it off. Default 0. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (at least one); 1 turns it off. Default 1. */
  topP?: number;
  /** > 1 discourages tokens already in the context (transformers' semantics); 1 turns it off. Default 1. */
  repetitionPenalty?: number;
  /** Seed of the draws; the same seed gives the same tokens for the same logits. Default 0. */
  seed?: number;
}

/** SamplingOptions checked, with every default filled in. */
export interface SamplingSettings {
  greedy: boolean;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
}

export const DEFAULT_SAMPLING: Readonly<SamplingSettings> = Object.freeze({
  greedy: false,
  temperature: 1,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  seed: 0,
});

/** Checks sampling options; errors name the field. */
export function resolveSampling(opts: SamplingOptions = {}): SamplingSettings {
  const s = { ...DEFAULT_SAMPLING };
  for (const k of Object.keys(s) as (keyof SamplingSettings)[]) {
    const v = (opts as Record<string, unknown>)[k];
    if (v !== undefined) (s as Record<string, unknown>)[k] = v;
  }
  if (typeof s.greedy !== 'boolean') throw new EngineInputError('greedy', `expected true or false, got ${String(s.greedy)}`);
  if (typeof s.temperature !== 'number' || !Number.isFinite(s.temperature) || s.temperature < 0)
    throw new EngineInputError('temperature', `expected a number ≥ 0 (0 = greedy), got ${String(s.temperature)}`);
  if (typeof s.topK !== 'number' || !Number.isInteger(s.topK) || s.topK < 0)
    throw new EngineInputError('topK', `expected an integer ≥ 0 (0 = off), got ${String(s.topK)}`);
  if (typeof s.topP !== 'number' || !Number.isFinite(s.topP) || s.topP <= 0 || s.topP > 1)
    throw new EngineInputError('topP', `expected a number in (0, 1] (1 = off), got ${String(s.topP)}`);
  if (typeof s.repetitionPenalty !== 'number' || !Number.isFinite(s.repetitionPenalty) || s.repetitionPenalty <= 0)
    throw new EngineInputError('repetitionPenalty', `expected a number > 0 (1 = off), got ${String(s.repetitionPenalty)}`);
  if (typeof s.seed !== 'number' || !Number.isSafeInteger(s.seed) || s.seed < 0)
    throw new EngineInputError('seed', `expected an integer ≥ 0, got ${String(s.seed)}`);
  return s;
}

// ---- the random draws --------------------------------------------------------------

const MASK64 = (1n << 64n) - 1n;
const GOLDEN_GAMMA = 0x9e3779b97f4a7c15n;

/** SplitMix64: a 64-bit counter mixed by a fixed bijection. */
export class SplitMix64 {
  private state: bigint;
  constructor(seed: number | bigint) {
    this.state = BigInt(seed) & MASK64;
  }
  /** The next 64-bit output, as splitmix64.c's next(). */
  nextU64(): bigint {
    this.state = (this.state + GOLDEN_GAMMA) & MASK64;
    let z = this.state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  }
  /** A uniform double in [0, 1) from the top 53 bits of the next output. */
  nextFloat(): number {
    return Number(this.nextU64() >> 11n) / 2 ** 53;
  }
}

// ---- the processors (in place on logits [V]) -----------------------------------------

/**
 * transformers' RepetitionPenaltyLogitsProcessor: each distinct token of the
 * context has its logit divided by `penalty` when positive, multiplied when
 * negative (so penalty > 1 always makes it less likely).
 */
export function applyRepetitionPenalty(logits: Float32Array, context: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  const seen = new Set<number>();
  for (const id of context) {
    if (seen.has(id) || id < 0 || id >= logits.length) continue;
    seen.add(id);
    const x = logits[id]!;
    logits[id] = x < 0 ? x * penalty : x / penalty;
  }
}

/** transformers' TemperatureLogitsWarper: logits / temperature (temperature > 0). */
export function applyTemperature(logits: Float32Array, temperature: number): void {
  if (temperature === 1) return;
  for (let i = 0; i < logits.length; ++i) logits[i] = logits[i]! / temperature;
}

/** transformers' TopKLogitsWarper: tokens below the k-th largest logit get -Infinity (ties stay). */
export function applyTopK(logits: Float32Array, k: number): void {
  if (k <= 0 || k >= logits.length) return;
  const sorted = Float32Array.from(logits).sort(); // ascending; -Infinity first, NaN last
  let n = sorted.length;
  while (n > 0 && Number.isNaN(sorted[n - 1]!)) --n;
  if (k >= n) return;
  const kth = sorted[n - k]!;
  for (let i = 0; i < logits.length; ++i) if (!(logits[i]! >= kth)) logits[i] = -Infinity;
}

/**
 * transformers' TopPLogitsWarper (nucleus): rank tokens by logit, highest first
 * (equal logits: lower id first), and keep each token while the probability of
 * the tokens ranked above it is below p — the smallest head of the ranking whose
 * mass reaches p. The top token always stays. Probabilities are computed in
 * float64.
 */
export function applyTopP(logits: Float32Array, p: number): void {
  if (p >= 1) return;
  const V = logits.length;
  const max = maxOf(logits);
  if (max === -Infinity) return;
  const prob = new Float64Array(V);
  let z = 0;
  for (let i = 0; i < V; ++i) z += prob[i] = Math.exp(logits[i]! - max);
  for (let i = 0; i < V; ++i) prob[i] = prob[i]! / z;
  // Only tokens whose own probability is at least `floor` can be needed once the
  // tokens above the floor already hold mass p: everything below ranks after
  // them. Sorting just those keeps this cheap on 100k+ vocabularies.
  for (const floor of [1e-3, 1e-6, 1e-12, 0]) {
    const candidates: number[] = [];
    let mass = 0;
    for (let i = 0; i < V; ++i)
      if (prob[i]! > 0 && prob[i]! >= floor) {
        candidates.push(i);
        mass += prob[i]!;
      }
    if (mass < p && floor > 0) continue;
    candidates.sort((a, b) => logits[b]! - logits[a]! || a - b);
    const keep = new Uint8Array(V);
    let above = 0;
    for (const i of candidates) {
      if (above >= p) break;
      keep[i] = 1;
      above += prob[i]!;
    }
    keep[candidates[0]!] = 1;
    for (let i = 0; i < V; ++i) if (!keep[i]) logits[i] = -Infinity;
    return;
  }
}

/**
 * Runs the processors in transformers' order on a copy of `logits`: repetition
 * penalty; then, unless greedy, temperature, top-k, top-p. Returns the processed
 * copy ([V]; removed tokens are -Infinity).
 */
export function processLogits(logits: Float32Array, context: readonly number[], s: SamplingSettings): Float32Array {
  const out = Float32Array.from(logits);
  applyRepetitionPenalty(out, context, s.repetitionPenalty);
  if (isGreedy(s)) return out;
  applyTemperature(out, s.temperature);
  applyTopK(out, s.topK);
  applyTopP(out, s.topP);
  return out;
}

export function isGreedy(s: SamplingSettings): boolean {
  return s.greedy || s.temperature === 0;
}

/** Index of the largest value; the first one on ties (as torch.argmax). */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; ++i) if (values[i]! > values[best]!) best = i;
  return best;
}

/**
 * Draws a token from softmax(logits) with the uniform `u` in [0, 1): walks the
 * tokens in id order and returns the first whose cumulative probability exceeds
 * u (the last possible token if rounding leaves u above the total).
 */
export function sampleFromLogits(logits: Float32Array, u: number): number {
  const max = maxOf(logits);
  if (max === -Infinity) return argmax(logits);
  let z = 0;
  for (let i = 0; i < logits.length; ++i) z += Math.exp(logits[i]! - max);
  const target = u * z;
  let cum = 0;
  let last = -1;
  for (let i = 0; i < logits.length; ++i) {
    const x = logits[i]!;
    if (!(x > -Infinity)) continue;
    cum += Math.exp(x - max);
    last = i;
    if (cum > target) return i;
  }
  return last;
}

function maxOf(values: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < values.length; ++i) if (values[i]! > m) m = values[i]!;
  return m;
}

// ---- the sampler ------------------------------------------------------------------------

/** Picks one token per call; owns the random stream of one generation. */
export class Sampler {
  readonly settings: SamplingSettings;
  private readonly random: SplitMix64;

  constructor(opts: SamplingOptions = {}) {
    this.settings = resolveSampling(opts);
    this.random = new SplitMix64(this.settings.seed);
  }

  get greedy(): boolean {
    return isGreedy(this.settings);
  }

  /** The next token for logits [V], given the ids seen so far (for the repetition penalty). */
  next(logits: Float32Array, context: readonly number[]): number {
    const processed = processLogits(logits, context, this.settings);
    if (this.greedy) return argmax(processed);
    return sampleFromLogits(processed, this.random.nextFloat());
  }
}
