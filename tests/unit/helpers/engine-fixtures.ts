// Shared fixtures of the engine tests: temp folders, tiny models on disk and a
// small synthetic task.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { createTinyModel, type TinyModelOptions } from '../../../engine/model/tiny.ts';
import { mulberry32 } from '../../../engine/train/rng.ts';

const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

export async function tempDir(prefix = 'lora-studio-test-'): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export async function tinyModelDir(opts: Partial<TinyModelOptions> = {}): Promise<string> {
  const dir = path.join(await tempDir(), 'model');
  await createTinyModel(dir, { arch: 'llama', hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, vocabSize: 96, seed: 1, ...opts });
  return dir;
}

/** A deterministic PRNG (mulberry32) for test data. */
export const rng = mulberry32;

/**
 * The synthetic task: each sequence is an arithmetic progression s, s+step,
 * s+2·step, ... (mod vocab) from a random start; every token after the first
 * is trained. A model that learned it predicts each next token exactly.
 */
export function progressionBatch(random: () => number, batch: number, seq: number, modulus: number, step = 3) {
  const ids = new Int32Array(batch * seq);
  for (let b = 0; b < batch; ++b) {
    const start = Math.floor(random() * modulus);
    for (let t = 0; t < seq; ++t) ids[b * seq + t] = (start + t * step) % modulus;
  }
  const labels = Int32Array.from(ids);
  for (let b = 0; b < batch; ++b) labels[b * seq] = -100;
  return { inputIds: ids, labels, batch, seq };
}

/** Trained tokens of a batch under the shift-by-one convention. */
export function trainedTokens(labels: Int32Array, batch: number, seq: number): number {
  let n = 0;
  for (let b = 0; b < batch; ++b) for (let t = 1; t < seq; ++t) if (labels[b * seq + t] !== -100) ++n;
  return n;
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; ++i) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
