// Shared by the training-run tests: a tiny chat model and a small chat data
// set on disk, and run configurations over them.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createTinyModel } from '../../../engine/model/tiny.ts';
import { resolveTrainConfig } from '../../../engine/train/config.ts';
import type { TrainConfig, TrainEvent } from '../../../engine/train/types.ts';
import { tempDir } from './engine-fixtures.ts';

/** A chat record: the assistant names a colour by a fixed rule, so there is something to learn. */
export function chatRecord(i: number): string {
  const colours = ['red', 'green', 'blue', 'amber', 'violet', 'teal'];
  const question = `Item ${i}${' please'.repeat(i % 4)}: colour?`;
  const answer = `Colour ${colours[i % colours.length]}.` + ' Yes.'.repeat(i % 5);
  return JSON.stringify({ messages: [{ role: 'user', content: question }, { role: 'assistant', content: answer }] });
}

// Large enough that the frozen output layer can express confident predictions.
const INIT_STD = 0.25;

export interface TrainFixture {
  dir: string;
  model: string;
  data: string;
}

/** A tiny ChatML model with the byte-level tokenizer and `count` chat records (lengths vary with i). */
export async function trainFixture(count = 24, arch: 'llama' | 'qwen2' = 'llama'): Promise<TrainFixture> {
  const dir = await tempDir('lora-studio-train-');
  const model = path.join(dir, 'model');
  await createTinyModel(model, { arch, tokenizer: true, hiddenSize: 48, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, seed: 3, initStd: INIT_STD });
  const data = path.join(dir, 'chat.jsonl');
  await writeFile(data, Array.from({ length: count }, (_, i) => chatRecord(i)).join('\n') + '\n');
  return { dir, model, data };
}

/** A run config over the fixture: small, fast settings unless overridden. */
export function fixtureConfig(f: TrainFixture, out: string, over: Partial<TrainConfig> = {}): TrainConfig {
  return resolveTrainConfig({
    model: f.model,
    data: f.data,
    out: path.join(f.dir, out),
    rank: 4,
    alpha: 8,
    seqLen: 96,
    lr: 2e-2,
    steps: 12,
    batchSize: 2,
    ...over,
  });
}

/** Collects a run's events. */
export function eventLog(): { events: TrainEvent[]; onEvent: (e: TrainEvent) => void; of<T extends TrainEvent['type']>(type: T): Extract<TrainEvent, { type: T }>[] } {
  const events: TrainEvent[] = [];
  return {
    events,
    onEvent: (e) => events.push(e),
    of: <T extends TrainEvent['type']>(type: T) => events.filter((e): e is Extract<TrainEvent, { type: T }> => e.type === type),
  };
}
