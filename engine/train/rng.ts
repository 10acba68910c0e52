// The run's randomness, all derived from the seed by hashing, so any part of
// it can be recomputed at any step without replaying what came before:
//
//   eval split         permutation keyed by (seed, SPLIT)
//   epoch e's order    permutation keyed by (seed, SHUFFLE, e)
//   dropout masks      micro-batch m of optimizer step s: key (seed, DROPOUT, s, m)
//
// A checkpoint therefore stores the RNG state as these keys (rngState), and a
// resumed run checks that they are the ones it recomputes.

/** 32-bit mix of a list of integers (murmur3's finalizer over a running hash). */
export function hashInts(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    // Each value as two 32-bit halves, so integers up to 2^53 mix fully.
    for (const part of [v >>> 0, Math.floor(v / 0x100000000) >>> 0]) {
      h = Math.imul(h ^ part, 0x85ebca6b) >>> 0;
      h ^= h >>> 13;
      h = Math.imul(h, 0xc2b2ae35) >>> 0;
      h ^= h >>> 16;
    }
  }
  return h >>> 0;
}

export const STREAM = { SPLIT: 1, SHUFFLE: 2, DROPOUT: 3, ADAPTER: 4 } as const;

/** mulberry32: a 32-bit state, uniform floats in [0, 1). */
export function mulberry32(state: number): () => number {
  let a = state >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates shuffle of `items` in place, drawn from mulberry32(state). */
export function shuffleInPlace(items: Int32Array, state: number): Int32Array {
  const next = mulberry32(state);
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    const t = items[i]!;
    items[i] = items[j]!;
    items[j] = t;
  }
  return items;
}

/** PRNG state of epoch `epoch`'s shuffle (0-based epochs). */
export function shuffleState(seed: number, epoch: number): number {
  return hashInts(seed, STREAM.SHUFFLE, epoch);
}

/** Seed of the LoRA dropout masks of micro-batch `micro` (0-based) of optimizer step `step` (1-based). */
export function dropoutSeed(seed: number, step: number, micro: number): number {
  return hashInts(seed, STREAM.DROPOUT, step, micro);
}
