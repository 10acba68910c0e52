import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { DataError, type DataProblem } from '../../engine/data/errors.ts';
import type { Example } from '../../engine/data/formats.ts';
import { Dataset, type DatasetOptions } from '../../engine/data/reader.ts';
import { withTempDir } from './helpers/model-fixtures.ts';

const FIXTURES = path.join(import.meta.dirname, 'fixtures', 'data');
const fixture = (name: string) => path.join(FIXTURES, name);

async function readAll(file: string, opts: DatasetOptions = {}): Promise<{ ds: Dataset; records: { line: number; example: Example }[] }> {
  const ds = await Dataset.open(file, opts);
  const records = [];
  for await (const r of ds.records()) records.push({ line: r.line, example: r.example });
  return { ds, records };
}

async function expectDataError(promise: Promise<unknown>, lines: [number, RegExp][]): Promise<DataError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof DataError, `expected a DataError, got ${String(e)}`);
    for (const [line, pattern] of lines) {
      const p: DataProblem | undefined = (e as DataError).problems.find((q) => q.line === line);
      assert.ok(p, `no problem reported for line ${line}: ${e.message}`);
      assert.match(p.message, pattern);
      assert.ok(e.message.includes(`:${line}: `), `message does not name line ${line}: ${e.message}`);
    }
    return e;
  }
  assert.fail('expected a DataError');
}

describe('data formats', () => {
  it('reads chat JSONL (multi-turn, blank lines ignored)', async () => {
    const { ds, records } = await readAll(fixture('chat.jsonl'));
    assert.equal(ds.format, 'chat');
    assert.equal(ds.container, 'jsonl');
    assert.equal(ds.count, 2);
    assert.deepEqual(records.map((r) => r.line), [1, 3]);
    const first = records[0]!.example;
    assert.equal(first.kind, 'chat');
    assert.deepEqual(first.kind === 'chat' && first.messages.map((m) => m.role), ['system', 'user', 'assistant', 'user', 'assistant']);
  });

  it('reads an Alpaca JSON array as user/assistant turns', async () => {
    const { ds, records } = await readAll(fixture('alpaca.json'));
    assert.equal(ds.format, 'alpaca');
    assert.equal(ds.container, 'json');
    assert.deepEqual(records.map((r) => r.line), [2, 3]);
    assert.deepEqual(records[0]!.example, {
      kind: 'chat',
      messages: [
        { role: 'user', content: 'Add the numbers.\n\n2 and 3' },
        { role: 'assistant', content: '5' },
      ],
    });
    assert.deepEqual(records[1]!.example, { kind: 'chat', messages: [{ role: 'user', content: 'Say hi.' }, { role: 'assistant', content: 'Hi!' }] });
  });

  it('reads ShareGPT (from/value; human/gpt/system)', async () => {
    const { ds, records } = await readAll(fixture('sharegpt.jsonl'));
    assert.equal(ds.format, 'sharegpt');
    assert.deepEqual(records[0]!.example, {
      kind: 'chat',
      messages: [
        { role: 'system', content: 'Be kind.' },
        { role: 'user', content: 'Hello' },
        { role: 'assistant', content: 'Hi there.' },
      ],
    });
  });

  it('reads prompt/completion, text and pre-tokenized JSONL', async () => {
    const pc = await readAll(fixture('prompt-completion.jsonl'));
    assert.equal(pc.ds.format, 'prompt-completion');
    assert.deepEqual(pc.records[0]!.example, { kind: 'completion', prompt: 'The capital of France is', completion: ' Paris.' });
    const text = await readAll(fixture('text.jsonl'));
    assert.equal(text.ds.format, 'text');
    assert.deepEqual(text.records[1]!.example, { kind: 'text', text: 'Ünïcödé 🎉 text.' });
    const tokens = await readAll(fixture('tokens.jsonl'));
    assert.equal(tokens.ds.format, 'tokens');
    assert.deepEqual(tokens.records[0]!.example, { kind: 'tokens', inputIds: [1, 72, 105, 2], labels: [-100, -100, 105, 2] });
    assert.deepEqual(tokens.records[1]!.example, { kind: 'tokens', inputIds: [65, 66, 67], labels: null });
  });

  it('reads CSV with a column mapping, quoted fields spanning lines', async () => {
    const { ds, records } = await readAll(fixture('qa.csv'), { columns: 'prompt=question,completion=answer' });
    assert.equal(ds.container, 'csv');
    assert.equal(ds.format, 'prompt-completion');
    assert.deepEqual(records, [
      { line: 2, example: { kind: 'completion', prompt: 'What is 2+2?', completion: '4' } },
      { line: 3, example: { kind: 'completion', prompt: 'Say "hi", please', completion: 'Hi,\nthere' } },
    ]);
    const asText = await readAll(fixture('qa.csv'), { columns: { text: 'question' } });
    assert.equal(asText.ds.format, 'text');
    assert.deepEqual(asText.records[0]!.example, { kind: 'text', text: 'What is 2+2?' });
  });

  it('refuses CSV without a usable mapping, naming the columns', async () => {
    await assert.rejects(Dataset.open(fixture('qa.csv')), (e: Error) => e instanceof DataError && /--columns/.test(e.message) && /"question"/.test(e.message));
    await assert.rejects(Dataset.open(fixture('qa.csv'), { columns: 'prompt=q,completion=answer' }), /no column "q"/);
    await assert.rejects(Dataset.open(fixture('qa.csv'), { columns: 'question=prompt' }), /not a field/);
  });

  it('reads plain text line by line', async () => {
    const { ds, records } = await readAll(fixture('plain.txt'));
    assert.equal(ds.format, 'txt');
    assert.equal(ds.count, 2);
    assert.deepEqual(records[1]!.example, { kind: 'text', text: 'Pack my box with five dozen liquor jugs.\n' });
  });

  it('honours an explicit format and refuses records that do not match it', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'data.jsonl');
      await writeFile(file, '{"text": "a", "prompt": "p", "completion": "c"}\n');
      assert.equal((await Dataset.open(file)).format, 'prompt-completion');
      assert.equal((await Dataset.open(file, { format: 'text' })).format, 'text');
      await expectDataError(Dataset.open(file, { format: 'chat' }), [[1, /"messages" must be an array/]]);
      const unknown = path.join(dir, 'unknown.jsonl');
      await writeFile(unknown, '{"question": "a"}\n');
      await assert.rejects(Dataset.open(unknown), /cannot tell the data format: the first record has keys "question"/);
    });
  });
});

describe('bad records', () => {
  it('lists each problem with file and line', async () => {
    const e = await expectDataError(Dataset.open(fixture('bad.jsonl'), { listProblems: 10 }), [
      [2, /broken JSON/],
      [3, /unknown role "wizard"; use one of system, user, assistant/],
      [4, /empty turn/],
      [5, /content must be a string, found a number/],
      [6, /"messages" must be an array/],
      [7, /no assistant turn/],
    ]);
    assert.equal(e.problemCount, 6);
    assert.ok(e.message.includes(`${fixture('bad.jsonl')}:2: `));
    assert.match(e.message, /skip bad records/);
  });

  it('lists the first five by default and counts the rest', async () => {
    const e = await expectDataError(Dataset.open(fixture('bad.jsonl')), []);
    assert.equal(e.problems.length, 5);
    assert.equal(e.problemCount, 6);
    assert.match(e.message, /and 1 more/);
  });

  it('skips bad records when asked, and counts them', async () => {
    const { ds, records } = await readAll(fixture('bad.jsonl'), { skipBadRecords: true });
    assert.equal(ds.count, 1);
    assert.equal(ds.badCount, 6);
    assert.equal(ds.problems[0]!.line, 2);
    assert.deepEqual(records.map((r) => r.line), [1]);
  });

  it('reports invalid UTF-8 with its line', async () => {
    await expectDataError(Dataset.open(fixture('bad-utf8.jsonl')), [[2, /invalid UTF-8 \(byte 15 of the line\)/]]);
    const { records } = await readAll(fixture('bad-utf8.jsonl'), { skipBadRecords: true });
    assert.deepEqual(records.map((r) => r.line), [1, 3]);
  });

  it('reports missing fields and wrong types (Alpaca)', async () => {
    await expectDataError(Dataset.open(fixture('bad-alpaca.jsonl')), [
      [2, /"output" must be a string, found a number/],
      [3, /"output" is empty/],
    ]);
  });

  it('reports bad pre-tokenized records and bad CSV rows', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'tok.jsonl');
      await writeFile(file, '{"input_ids": [1, 2]}\n{"input_ids": [1, -3]}\n{"input_ids": [1, 2], "labels": [1]}\n{"input_ids": [1.5]}\n');
      await expectDataError(Dataset.open(file), [
        [2, /"input_ids"\[1\] is -3/],
        [3, /same length/],
        [4, /"input_ids"\[0\] is 1.5/],
      ]);
      const csv = path.join(dir, 'rows.csv');
      await writeFile(csv, 'text,other\nfine,1\ntoo,many,fields\n"open quote,1\n');
      await expectDataError(Dataset.open(csv), [
        [3, /3 fields but the header has 2/],
        [4, /not closed/],
      ]);
    });
  });

  it('reports a broken JSON array item with its line', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'data.json');
      await writeFile(file, '[\n  {"text": "a"},\n  {"text": tru},\n  {"text": "c"}\n]\n');
      await expectDataError(Dataset.open(file), [[3, /broken JSON/]]);
    });
  });

  it('names the broken line when no line of the file is good', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'data.jsonl');
      await writeFile(file, '{"messages": [\n');
      await expectDataError(Dataset.open(file), [[1, /broken JSON/]]);
    });
  });
});
