import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IGNORE, type LossOn } from '../../engine/data/masks.ts';
import { TrainingData, type PipelineOptions, type TokenizedExample } from '../../engine/data/pipeline.ts';
import { ModelTokenizer } from '../../engine/data/tokenizer.ts';
import { createTinyModel } from '../../engine/model/tiny.ts';
import { TINY_SPECIAL_TOKENS as SPECIAL, TINY_VOCAB_SIZE } from '../../engine/model/tiny-tokenizer.ts';
import { withTempDir } from './helpers/model-fixtures.ts';

const FIXTURES = path.join(import.meta.dirname, 'fixtures', 'data');
const fixture = (name: string) => path.join(FIXTURES, name);

// Expected ids and labels from pieces: a string stands for its UTF-8 bytes
// (the tiny tokenizer's ids), a number for a special token.
type Piece = [string | number, boolean];
function expected(...pieces: Piece[]): { ids: number[]; labels: number[] } {
  const ids: number[] = [];
  const labels: number[] = [];
  for (const [p, trained] of pieces) {
    const part = typeof p === 'number' ? [p] : [...Buffer.from(p, 'utf8')];
    ids.push(...part);
    labels.push(...part.map((id) => (trained ? id : IGNORE)));
  }
  return { ids, labels };
}

const S = SPECIAL;
let chatml = '';
let llama3 = '';

async function all(modelDir: string, file: string, opts: Partial<PipelineOptions> = {}): Promise<{ data: TrainingData; examples: TokenizedExample[] }> {
  const data = await TrainingData.open(modelDir, file, { maxSeqLen: 4096, ...opts });
  const examples: TokenizedExample[] = [];
  for await (const e of data.examples()) examples.push(e);
  return { data, examples };
}

function assertExample(e: TokenizedExample | undefined, want: { ids: number[]; labels: number[] }, ignoreFirstLabel = false): void {
  assert.ok(e);
  assert.deepEqual([...e.inputIds], want.ids);
  const got = [...e.labels];
  if (ignoreFirstLabel) got[0] = want.labels[0]!; // labels[0] is never scored
  assert.deepEqual(got, want.labels);
}

describe('tokenizer and masks', () => {
  let root = '';
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'lora-studio-data-'));
    chatml = (await createTinyModel(path.join(root, 'chatml'), { arch: 'qwen2', tokenizer: true })).dir;
    const template = (await readFile(fixture('llama3-template.jinja'), 'utf8')).trimEnd();
    llama3 = (await createTinyModel(path.join(root, 'llama3'), { arch: 'llama', tokenizer: { style: 'llama3', chatTemplate: template } })).dir;
  });
  after(() => rm(root, { recursive: true, force: true }));

  it('the tiny tokenizer round-trips UTF-8 and sizes the model', async () => {
    const tok = await ModelTokenizer.load(chatml);
    const text = 'Héllo wörld 🎉 日本語\n\t<|im_start|>x';
    const ids = tok.encode(text);
    assert.equal(ids.length, Buffer.byteLength('Héllo wörld 🎉 日本語\n\tx') + 1);
    assert.equal(tok.decode(ids), text);
    assert.equal(tok.vocabSize, 266);
    const config = JSON.parse(await readFile(path.join(chatml, 'config.json'), 'utf8'));
    assert.equal(config.vocab_size, TINY_VOCAB_SIZE);
    assert.equal(config.eos_token_id, S['<|im_end|>']);
    const generation = JSON.parse(await readFile(path.join(chatml, 'generation_config.json'), 'utf8'));
    assert.deepEqual(generation.eos_token_id, [S['<|im_end|>'], S['<|endoftext|>']]);
    assert.equal(tok.eosTokenId, S['<|im_end|>']);
    assert.equal(tok.padTokenId, S['<|endoftext|>']);
    assert.equal(tok.addsBos, false);
    const l3 = await ModelTokenizer.load(llama3);
    assert.equal(l3.addsBos, true);
    assert.deepEqual(l3.encode('a', true), [S['<|begin_of_text|>'], 97]);
  });

  const chatmlMultiTurn = (lossOn: LossOn) => {
    const a = lossOn === 'assistant';
    const all = lossOn === 'all';
    return expected(
      [S['<|im_start|>'], all], ['system\nBe brief.', all], [S['<|im_end|>'], all], ['\n', all],
      [S['<|im_start|>'], all], ['user\nHi', all], [S['<|im_end|>'], all], ['\n', all],
      [S['<|im_start|>'], all], ['assistant\n', all], ['Hello!', a || all], [S['<|im_end|>'], a || all], ['\n', all],
      [S['<|im_start|>'], all], ['user\n2+2?', all], [S['<|im_end|>'], all], ['\n', all],
      [S['<|im_start|>'], all], ['assistant\n', all], ['4', true], [S['<|im_end|>'], true], ['\n', all],
    );
  };

  for (const lossOn of ['assistant', 'last-assistant', 'all'] as const) {
    it(`chat, ChatML template, loss on ${lossOn}: masks token by token`, async () => {
      const { examples } = await all(chatml, fixture('chat.jsonl'), { lossOn });
      assertExample(examples[0], chatmlMultiTurn(lossOn));
    });
  }

  it('chat, Llama-3 style template: BOS once, assistant content + <|eot_id|> trained', async () => {
    const { examples } = await all(llama3, fixture('chat.jsonl'));
    const h = (role: string): Piece[] => [[S['<|start_header_id|>'], false], [role, false], [S['<|end_header_id|>'], false], ['\n\n', false]];
    assertExample(
      examples[1],
      expected([S['<|begin_of_text|>'], false], ...h('user'), ['Name a colour.', false], [S['<|eot_id|>'], false], ...h('assistant'), ['Blue.', true], [S['<|eot_id|>'], true]),
    );
    assert.equal([...examples[0]!.inputIds].filter((t) => t === S['<|begin_of_text|>']).length, 1);
  });

  it('Alpaca and ShareGPT are masked like chat', async () => {
    const alpaca = await all(chatml, fixture('alpaca.json'));
    assertExample(
      alpaca.examples[0],
      expected(
        [S['<|im_start|>'], false], ['user\nAdd the numbers.\n\n2 and 3', false], [S['<|im_end|>'], false], ['\n', false],
        [S['<|im_start|>'], false], ['assistant\n', false], ['5', true], [S['<|im_end|>'], true], ['\n', false],
      ),
    );
    const sharegpt = await all(llama3, fixture('sharegpt.jsonl'));
    const h = (role: string): Piece[] => [[S['<|start_header_id|>'], false], [role, false], [S['<|end_header_id|>'], false], ['\n\n', false]];
    assertExample(
      sharegpt.examples[0],
      expected(
        [S['<|begin_of_text|>'], false], ...h('system'), ['Be kind.', false], [S['<|eot_id|>'], false],
        ...h('user'), ['Hello', false], [S['<|eot_id|>'], false], ...h('assistant'), ['Hi there.', true], [S['<|eot_id|>'], true],
      ),
    );
  });

  it('prompt/completion: prompt untrained, completion and EOS trained; BOS as the tokenizer adds it', async () => {
    const plain = await all(chatml, fixture('prompt-completion.jsonl'));
    assertExample(plain.examples[0], expected(['The capital of France is', false], [' Paris.', true], [S['<|im_end|>'], true]));
    const withBos = await all(llama3, fixture('prompt-completion.jsonl'));
    assertExample(withBos.examples[1], expected([S['<|begin_of_text|>'], false], ['1, 2, 3,', false], [' 4', true], [S['<|eot_id|>'], true]));
    const everything = await all(chatml, fixture('prompt-completion.jsonl'), { lossOn: 'all' });
    assertExample(everything.examples[1], expected(['1, 2, 3,', true], [' 4', true], [S['<|im_end|>'], true]));
  });

  it('CSV rows are masked like their record format', async () => {
    const { examples } = await all(chatml, fixture('qa.csv'), { columns: 'prompt=question,completion=answer' });
    assertExample(examples[1], expected(['Say "hi", please', false], ['Hi,\nthere', true], [S['<|im_end|>'], true]));
  });

  it('text: all tokens trained, ends with EOS', async () => {
    const { examples } = await all(llama3, fixture('text.jsonl'));
    assertExample(examples[1], expected([S['<|begin_of_text|>'], false], ['Ünïcödé 🎉 text.', true], [S['<|eot_id|>'], true]));
  });

  it('pre-tokenized examples are used exactly as given', async () => {
    const { examples } = await all(llama3, fixture('tokens.jsonl'));
    assert.deepEqual([...examples[0]!.inputIds], [1, 72, 105, 2]);
    assert.deepEqual([...examples[0]!.labels], [-100, -100, 105, 2]);
    assert.deepEqual([...examples[1]!.inputIds], [65, 66, 67]);
    assert.deepEqual([...examples[1]!.labels], [65, 66, 67]);
  });

  it('a model without a chat template uses the ChatML fallback', async () => {
    await withTempDir(async (dir) => {
      await createTinyModel(dir, { arch: 'llama', tokenizer: { chatTemplate: null } });
      const tok = await ModelTokenizer.load(dir);
      assert.equal(tok.chatTemplate.isFallback, true);
      const { examples } = await all(dir, fixture('chat.jsonl'));
      assertExample(
        examples[1],
        expected(
          [S['<|im_start|>'], false], ['user\nName a colour.', false], [S['<|im_end|>'], false], ['\n', false],
          [S['<|im_start|>'], false], ['assistant\n', false], ['Blue.', true], [S['<|im_end|>'], true], ['\n', false],
        ),
      );
    });
  });

  it('truncation is counted, or over-long examples dropped', async () => {
    const cut = await all(chatml, fixture('chat.jsonl'), { maxSeqLen: 20 });
    assert.equal(cut.data.stats.truncated, 2);
    assert.ok(cut.examples.every((e) => e.truncated && e.inputIds.length === 20 && e.fullLength > 20));
    assert.equal(cut.data.stats.noTrainedTokens, 2); // the answers lie past token 20
    const dropped = await all(chatml, fixture('chat.jsonl'), { maxSeqLen: 60, truncation: 'drop' });
    assert.equal(dropped.examples.length, 1);
    assert.equal(dropped.data.stats.dropped, 1);
    assert.equal(dropped.data.stats.truncated, 0);
  });

  it('plain text becomes windows of the sequence length, overlaps trained once', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'book.txt');
      const text = 'abcdefghij\nklmnopqrst\nuvwxyz\n'; // 29 bytes + EOS = 30 tokens
      await writeFile(file, text);
      const tokens = [...Buffer.from(text), S['<|im_end|>']];
      const plain = await all(chatml, file, { maxSeqLen: 8 });
      assert.deepEqual(plain.examples.map((e) => [...e.inputIds]), [tokens.slice(0, 8), tokens.slice(8, 16), tokens.slice(16, 24), tokens.slice(24)]);
      const overlapped = await all(chatml, file, { maxSeqLen: 8, overlap: 3 });
      const starts = overlapped.examples.map((e) => e.inputIds[0]);
      assert.deepEqual(starts, [0, 5, 10, 15, 20, 25].map((i) => tokens[i]));
      for (const [k, e] of overlapped.examples.entries()) {
        assert.deepEqual([...e.inputIds], tokens.slice(5 * k, 5 * k + 8));
        if (k > 0) assert.deepEqual([...e.labels].slice(0, 3), [IGNORE, IGNORE, IGNORE]);
        assert.deepEqual([...e.labels].slice(k > 0 ? 3 : 0), [...e.inputIds].slice(k > 0 ? 3 : 0));
      }
      // Every token is trained exactly once (window 0's first token is never scored).
      const trained = overlapped.examples.reduce((s, e) => s + e.trainedTokens, 0);
      assert.equal(trained, tokens.length - 1);
      // Resume from window 3.
      const resumed: number[][] = [];
      for await (const e of overlapped.data.examples(3)) resumed.push([...e.inputIds]);
      assert.deepEqual(resumed, overlapped.examples.slice(3).map((e) => [...e.inputIds]));
    });
  });
});
