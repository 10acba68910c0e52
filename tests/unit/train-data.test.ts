// Random access to training examples (TrainingData.exampleAt), which shuffled
// epochs read from: every example must equal the one the streaming pass gives,
// for record files and for plain-text windows (with and without overlap, with
// and without a BOS token).
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { TrainingData, type PipelineOptions, type TokenizedExample } from '../../engine/data/pipeline.ts';
import { createTinyModel } from '../../engine/model/tiny.ts';
import { withTempDir } from './helpers/model-fixtures.ts';

const LLAMA3_TEMPLATE =
  "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{%- endfor %}" +
  "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";

async function streamed(data: TrainingData): Promise<TokenizedExample[]> {
  const out: TokenizedExample[] = [];
  for await (const e of data.examples()) out.push(e);
  return out;
}

async function checkRandomAccess(modelDir: string, file: string, opts: PipelineOptions) {
  const data = await TrainingData.open(modelDir, file, opts);
  const all = await streamed(data);
  assert.ok(all.length > 2, `the fixture makes several examples (${all.length})`);
  const order = all.map((_, i) => i).reverse();
  for (const i of order) {
    const e = all[i]!;
    const r = await data.exampleAt(e.index);
    assert.ok(r, `example ${e.index} is there`);
    assert.deepEqual(Array.from(r.inputIds), Array.from(e.inputIds), `input ids of example ${e.index}`);
    assert.deepEqual(Array.from(r.labels), Array.from(e.labels), `labels of example ${e.index}`);
    assert.equal(r.trainedTokens, e.trainedTokens);
    assert.equal(r.truncated, e.truncated);
  }
  return { data, all };
}

describe('TrainingData.exampleAt', () => {
  it('gives the streamed example for JSONL and CSV records, and null for a dropped one', async () => {
    await withTempDir(async (dir) => {
      const model = path.join(dir, 'model');
      await createTinyModel(model, { arch: 'qwen2', tokenizer: true });
      const jsonl = path.join(dir, 'chat.jsonl');
      const recs = Array.from({ length: 9 }, (_, i) =>
        JSON.stringify({ messages: [{ role: 'user', content: `question ${i}` }, { role: 'assistant', content: 'answer '.repeat(1 + (i % 4)) }] }),
      );
      await writeFile(jsonl, recs.slice(0, 4).join('\n') + '\n\n' + recs.slice(4).join('\n') + '\n');
      await checkRandomAccess(model, jsonl, { maxSeqLen: 48 });
      const { data, all } = await checkRandomAccess(model, jsonl, { maxSeqLen: 48, truncation: 'drop' });
      const kept = new Set(all.map((e) => e.index));
      const dropped = [...Array(9).keys()].filter((i) => !kept.has(i));
      assert.ok(dropped.length > 0, 'some long examples are dropped');
      for (const i of dropped) assert.equal(await data.exampleAt(i), null);

      const csv = path.join(dir, 'pairs.csv');
      await writeFile(csv, 'prompt,completion\n' + Array.from({ length: 6 }, (_, i) => `"p ${i}, with a comma","line one\nline ${i}"`).join('\n') + '\n');
      await checkRandomAccess(model, csv, { maxSeqLen: 64 });
    });
  });

  it('gives the streamed window of a plain-text file, with overlap and with a BOS token', async () => {
    await withTempDir(async (dir) => {
      const chatml = path.join(dir, 'chatml');
      const llama3 = path.join(dir, 'llama3');
      await createTinyModel(chatml, { arch: 'qwen2', tokenizer: true });
      await createTinyModel(llama3, { arch: 'llama', tokenizer: { style: 'llama3', chatTemplate: LLAMA3_TEMPLATE } });
      const txt = path.join(dir, 'book.txt');
      const lines = Array.from({ length: 30 }, (_, i) => (i % 7 === 3 ? '' : `Line ${i} of the text, ${'word '.repeat(i % 5)}end.`));
      await writeFile(txt, lines.join('\n') + '\n');
      for (const model of [chatml, llama3])
        for (const [maxSeqLen, overlap] of [[32, 0], [40, 10], [24, 21], [17, 5]] as const) {
          await checkRandomAccess(model, txt, { maxSeqLen, overlap });
        }
    });
  });
});
