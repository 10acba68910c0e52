import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { once } from 'node:events';
import v8 from 'node:v8';
import vm from 'node:vm';
import { inspectData, renderSpans } from '../../engine/data/inspect.ts';
import { Dataset } from '../../engine/data/reader.ts';
import { createTinyModel } from '../../engine/model/tiny.ts';
import { withTempDir } from './helpers/model-fixtures.ts';

const FIXTURES = path.join(import.meta.dirname, 'fixtures', 'data');

// A real garbage collection before each heap reading, so it counts live memory only.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

async function writeLines(file: string, count: number, line: (i: number) => string): Promise<void> {
  const out = createWriteStream(file);
  for (let i = 0; i < count; i++) if (!out.write(line(i) + '\n')) await once(out, 'drain');
  out.end();
  await once(out, 'finish');
}

describe('streaming', () => {
  it('indexes and streams a 50k-line file in modest memory, and resumes from a record', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'big.jsonl');
      const filler = 'x'.repeat(200);
      await writeLines(file, 50_000, (i) =>
        i % 997 === 5 ? '' : JSON.stringify({ messages: [{ role: 'user', content: `q${i} ${filler}` }, { role: 'assistant', content: `a${i}` }] }),
      );
      gc();
      const before = process.memoryUsage().heapUsed;
      const ds = await Dataset.open(file);
      assert.equal(ds.count, 50_000 - 51); // blank lines are not records
      let n = 0;
      let peak = 0;
      for await (const r of ds.records()) {
        if (n % 10_000 === 0) {
          gc();
          peak = Math.max(peak, process.memoryUsage().heapUsed - before);
        }
        n++;
        assert.ok(r.example.kind === 'chat');
      }
      assert.equal(n, ds.count);
      // The file is ~12 MB; the index is 16 bytes a record (0.8 MB).
      assert.ok(peak < 4 * 1024 * 1024, `heap grew by ${peak} bytes`);

      const from = 31_234;
      const resumed = [];
      for await (const r of ds.records(from)) {
        resumed.push(r);
        if (resumed.length === 3) break;
      }
      const again = [];
      let k = 0;
      for await (const r of ds.records()) {
        if (k++ >= from) again.push(r);
        if (again.length === 3) break;
      }
      assert.deepEqual(resumed, again);
      assert.equal(resumed[0]!.index, from);
      const m = resumed[0]!.example.kind === 'chat' ? resumed[0]!.example.messages[1]!.content : '';
      assert.equal(m, `a${resumed[0]!.line - 1}`);
    });
  });
});

describe('inspectData', () => {
  it('reports format, counts, lengths, truncation, duplicates and the first example', async () => {
    await withTempDir(async (dir) => {
      const model = path.join(dir, 'model');
      await createTinyModel(model, { arch: 'qwen2', tokenizer: true });
      const file = path.join(dir, 'data.jsonl');
      const rec = (q: string, a: string) => JSON.stringify({ messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }] });
      // Token lengths: ChatML adds 21 tokens (4 specials, "user\n", "\n", "assistant\n", "\n") to the q and a bytes.
      const lines = [rec('Hi', 'Yo'), rec('Hi', 'Yo'), rec('A longer question here', 'ok'), rec('q', 'x'.repeat(100)), '{"messages": 3}'];
      await writeLines(file, lines.length, (i) => lines[i]!);
      await assert.rejects(inspectData(model, file), /data\.jsonl:5: "messages" must be an array/);
      const r = await inspectData(model, file, { skipBadRecords: true, maxSeqLen: 64 });
      assert.equal(r.format, 'chat');
      assert.equal(r.container, 'jsonl');
      assert.equal(r.records, 4);
      assert.equal(r.badRecords, 1);
      assert.equal(r.problems[0]!.line, 5);
      assert.equal(r.examples, 4);
      assert.equal(r.duplicates, 1);
      assert.deepEqual(r.length, { min: 25, mean: (25 + 25 + 45 + 122) / 4, p50: 25, p90: 122, p99: 122, max: 122 });
      assert.equal(r.truncated, 1);
      assert.equal(r.tokens.total, 25 + 25 + 45 + 64);
      assert.equal(r.tokens.trained, 3 + 3 + 3 + (64 - 20));
      assert.equal(r.noTrainedTokens, 0);
      assert.equal(r.chatTemplate, 'model');
      assert.deepEqual(r.firstExample!.spans, [
        { text: '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n', trained: false },
        { text: 'Yo<|im_end|>', trained: true },
        { text: '\n', trained: false },
      ]);
      assert.equal(r.firstExample!.rendered, '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n⟦Yo<|im_end|>⟧\n');
      assert.match(renderSpans(r.firstExample!.spans, { color: true }), /\x1b\[32mYo<\|im_end\|>\x1b\[39m/);
      assert.deepEqual(r.renderedExamples.map((e) => e.line), [1, 2, 3], 'the first three good examples are rendered');
      assert.deepEqual(r.renderedExamples[0], r.firstExample);
      assert.match(r.renderedExamples[2]!.rendered, /A longer question here/);

      const txt = await inspectData(model, path.join(FIXTURES, 'plain.txt'), { maxSeqLen: 32 });
      assert.equal(txt.format, 'txt');
      assert.equal(txt.examples, Math.ceil((86 + 1) / 32));
      assert.equal(txt.truncated, 0);
    });
  });
});
