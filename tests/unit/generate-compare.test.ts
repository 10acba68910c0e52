// Base against adapted on a real tiny model (same seed, adapter state restored,
// identical outputs for a fresh adapter, different ones once B is not zero,
// streaming, cancellation), a real tokenizer plugged in, and the renderers.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EngineInputError, EngineModel, PROJECTIONS, memoryStats } from '../../engine/api.ts';
import { ModelTokenizer } from '../../engine/data/tokenizer.ts';
import { TINY_VOCAB_SIZE } from '../../engine/model/tiny-tokenizer.ts';
import {
  compareOutputs,
  renderJson,
  renderMarkdown,
  renderSideBySide,
  wrapText,
  type CompareReport,
} from '../../engine/generate/compare.ts';
import { generateAll, type TextCodec } from '../../engine/generate/generate.ts';
import { rng, tinyModelDir } from './helpers/engine-fixtures.ts';

/** Printable ASCII as ids 0..95 (the tiny model's vocabulary). */
const ascii: TextCodec = {
  encode: (text) => [...text].map((c) => c.charCodeAt(0) - 32),
  decode: (ids) => String.fromCharCode(...ids.map((i) => i + 32)),
};

function randomizeB(model: EngineModel, name: string, seed: number, scale = 0.2) {
  const r = rng(seed);
  for (let l = 0; l < model.config.numLayers; ++l)
    for (const p of model.adapterInfo(name).targets) {
      const b = model.readAdapterTensor(name, l, p, 'B');
      for (let i = 0; i < b.length; ++i) b[i] = (r() * 2 - 1) * scale;
      model.writeAdapterTensor(name, l, p, 'B', b);
    }
}

const enabledStates = (model: EngineModel) => Object.fromEntries(model.adapterNames().map((n) => [n, model.adapterInfo(n).enabled]));
const PROMPTS = ['Hello, ', 'The cat', [5, 9, 13, 17]] as const;

describe('comparing base and adapted outputs', () => {
  let model: EngineModel;
  before(async () => {
    model = await EngineModel.load(await tinyModelDir(), { method: 'lora' });
    model.addAdapter('fresh', { rank: 4, alpha: 8, targets: [...PROJECTIONS] });
    model.addAdapter('trained', { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj'], seed: 1 });
    randomizeB(model, 'trained', 7);
  });
  after(() => model.dispose());

  it('a fresh adapter (B = 0) gives the base outputs exactly, greedy or sampled', async () => {
    for (const sampling of [{ greedy: true }, { temperature: 1, topP: 0.95, seed: 4 }]) {
      const r = await compareOutputs(model, 'fresh', PROMPTS, { ...sampling, maxTokens: 12, eosTokenIds: [], tokenizer: ascii });
      assert.equal(r.entries.length, 3);
      for (const e of r.entries) {
        assert.deepEqual(e.adapted.tokens, e.base.tokens);
        assert.equal(e.adapted.text, e.base.text);
        assert.equal(e.base.tokens.length, 12);
        assert.equal(e.base.text, ascii.decode(e.base.tokens));
      }
      assert.deepEqual(r.entries.map((e) => e.prompt), ['Hello, ', 'The cat', ascii.decode([5, 9, 13, 17])]);
      assert.deepEqual(r.entries[0]!.promptIds, ascii.encode('Hello, '));
    }
  });

  it('an adapter with random B changes the outputs; each side equals a plain generation in that state', async () => {
    const opts = { temperature: 0.8, seed: 9, maxTokens: 16, eosTokenIds: [] };
    const r = await compareOutputs(model, 'trained', PROMPTS, { ...opts, tokenizer: ascii });
    assert.ok(r.entries.some((e) => e.base.text !== e.adapted.text), 'the adapter changes some output');
    const ids = ascii.encode('The cat');
    model.setAdapterEnabled('trained', false);
    model.setAdapterEnabled('fresh', false);
    const base = await generateAll(model, ids, opts);
    model.setAdapterEnabled('trained', true);
    const adapted = await generateAll(model, ids, opts);
    model.setAdapterEnabled('fresh', true);
    assert.deepEqual(r.entries[1]!.base.tokens, base.tokens);
    assert.deepEqual(r.entries[1]!.adapted.tokens, adapted.tokens);
    assert.deepEqual(r.sampling, { greedy: false, temperature: 0.8, topK: 0, topP: 1, repetitionPenalty: 1, seed: 9, maxTokens: 16 });
  });

  it('the base side turns every adapter off, the adapted side only the chosen one, and both are restored', async () => {
    model.setAdapterEnabled('fresh', false);
    model.setAdapterEnabled('trained', true);
    const state = enabledStates(model);
    const viaFresh = await compareOutputs(model, 'fresh', [[1, 2, 3]], { greedy: true, maxTokens: 10, eosTokenIds: [] });
    assert.deepEqual(enabledStates(model), state);
    model.setAdapterEnabled('trained', false);
    const pureBase = await generateAll(model, [1, 2, 3], { greedy: true, maxTokens: 10, eosTokenIds: [] });
    assert.deepEqual(viaFresh.entries[0]!.base.tokens, pureBase.tokens, 'the other adapter was off for the base run');
    assert.deepEqual(viaFresh.entries[0]!.adapted.tokens, pureBase.tokens, 'and for the adapted run');
    model.setAdapterEnabled('trained', true);
    model.setAdapterEnabled('fresh', true);
  });

  it('streams every token, base then adapted for each prompt', async () => {
    const events: string[] = [];
    const r = await compareOutputs(model, 'trained', ['ab', 'cd'], {
      greedy: true, maxTokens: 3, eosTokenIds: [], tokenizer: ascii,
      onToken: ({ prompt, side, token }) => events.push(`${prompt}:${side}:${token.index}`),
    });
    assert.deepEqual(events, ['base', 'adapted'].flatMap((s) => [0, 1, 2].map((t) => `0:${s}:${t}`)).concat(
      ['base', 'adapted'].flatMap((s) => [0, 1, 2].map((t) => `1:${s}:${t}`)),
    ));
    assert.equal(r.cancelled, false);
  });

  it('cancels, keeps what was done, restores the adapters and frees the caches', async () => {
    const state = enabledStates(model);
    const activations = memoryStats().current.activations;
    const ac = new AbortController();
    const r = await compareOutputs(model, 'trained', ['one', 'two', 'three'], {
      greedy: true, maxTokens: 8, eosTokenIds: [], tokenizer: ascii, signal: ac.signal,
      onToken: ({ prompt, side, token }) => {
        if (prompt === 1 && side === 'adapted' && token.index === 2) ac.abort();
      },
    });
    assert.equal(r.cancelled, true);
    assert.equal(r.entries.length, 2);
    assert.equal(r.entries[0]!.adapted.finishReason, 'length');
    assert.equal(r.entries[1]!.base.finishReason, 'length');
    assert.equal(r.entries[1]!.adapted.finishReason, 'cancelled');
    assert.equal(r.entries[1]!.adapted.tokens.length, 3);
    assert.deepEqual(enabledStates(model), state);
    assert.equal(memoryStats().current.activations, activations);

    const early = await compareOutputs(model, 'trained', ['x'], { signal: AbortSignal.abort(), tokenizer: ascii });
    assert.equal(early.entries[0]!.base.finishReason, 'cancelled');
    assert.equal(early.entries[0]!.adapted.finishReason, 'cancelled');
  });

  it('refuses unknown or merged adapters, text prompts without a tokenizer, and bad options', async () => {
    const state = enabledStates(model);
    const field = (name: string) => (e: unknown) => e instanceof EngineInputError && e.field === name;
    await assert.rejects(compareOutputs(model, 'nope', ['a'], { tokenizer: ascii }), field('adapterName'));
    await assert.rejects(compareOutputs(model, 'trained', [], { tokenizer: ascii }), field('prompts'));
    await assert.rejects(compareOutputs(model, 'trained', ['a']), field('prompts'));
    await assert.rejects(compareOutputs(model, 'trained', [[1, 2], [3, 96]]), field('prompts'));
    await assert.rejects(compareOutputs(model, 'trained', [''], { tokenizer: ascii }), field('prompts'));
    await assert.rejects(compareOutputs(model, 'trained', ['a'], { tokenizer: ascii, topP: 2 }), field('topP'));
    await assert.rejects(compareOutputs(model, 'trained', ['a'], { tokenizer: ascii, maxTokens: 0 }), field('maxTokens'));
    await model.mergeAdapter('fresh');
    try {
      await assert.rejects(compareOutputs(model, 'trained', ['a'], { tokenizer: ascii }), /'fresh' is merged/);
    } finally {
      await model.unmergeAdapter('fresh');
    }
    assert.deepEqual(enabledStates(model), state);
  });
});

describe('comparing with the model folder\'s own tokenizer', () => {
  it('encodes text prompts and decodes both outputs', async () => {
    const dir = await tinyModelDir({ tokenizer: true, vocabSize: TINY_VOCAB_SIZE });
    const model = await EngineModel.load(dir, { method: 'lora' });
    try {
      const tokenizer = await ModelTokenizer.load(dir);
      model.addAdapter('a', { rank: 2, alpha: 4, targets: ['o_proj'] });
      randomizeB(model, 'a', 3, 0.5);
      const r = await compareOutputs(model, 'a', ['hello world'], { seed: 1, maxTokens: 8, eosTokenIds: [], tokenizer });
      const e = r.entries[0]!;
      assert.deepEqual(e.promptIds, tokenizer.encode('hello world'));
      assert.equal(e.base.text, tokenizer.decode(e.base.tokens));
      assert.equal(e.adapted.text, tokenizer.decode(e.adapted.tokens));
    } finally {
      model.dispose();
    }
  });
});

// ---- renderers ----------------------------------------------------------------------

const REPORT: CompareReport = {
  adapter: 'style',
  sampling: { greedy: false, temperature: 0.7, topK: 40, topP: 0.9, repetitionPenalty: 1.1, seed: 3, maxTokens: 32 },
  entries: [
    {
      prompt: 'Write a haiku about autumn',
      promptIds: [1, 2, 3],
      base: { text: 'Leaves fall slowly\ndown', tokens: [4, 5], finishReason: 'eos', generatedTokens: 2, seconds: 0.5 },
      adapted: { text: 'Crimson maple | leaves drift on the cold river wind', tokens: [6, 7, 8], finishReason: 'length', generatedTokens: 3, seconds: 1.25 },
    },
    {
      prompt: null,
      promptIds: [9, 10],
      base: { text: null, tokens: [11, 12], finishReason: 'stop', generatedTokens: 2, seconds: 0.1 },
      adapted: { text: null, tokens: [13], finishReason: 'cancelled', generatedTokens: 1, seconds: 0.01 },
    },
  ],
  cancelled: true,
};

describe('renderers', () => {
  it('wraps at spaces, breaks long words, keeps newlines and hides control characters', () => {
    assert.deepEqual(wrapText('the quick brown fox', 9), ['the quick', 'brown fox']);
    assert.deepEqual(wrapText('abcdefghijk xy', 4), ['abcd', 'efgh', 'ijk', 'xy']);
    assert.deepEqual(wrapText('a\n\nb', 5), ['a', '', 'b']);
    assert.deepEqual(wrapText('', 5), ['']);
    assert.deepEqual(wrapText('a\tb\u0007c\r\nd', 20), ['a    b\uFFFDc', 'd']);
    assert.deepEqual(wrapText('ééé😀😀', 3), ['ééé', '😀😀']);
    assert.throws(() => wrapText('x', 0), (e: unknown) => e instanceof EngineInputError && e.field === 'width');
  });

  it('side by side: two columns that fit the width', () => {
    const text = renderSideBySide(REPORT, { width: 41 });
    const rule = `${'─'.repeat(19)}─┼─${'─'.repeat(19)}`;
    assert.equal(
      text,
      [
        'Base vs adapted: style',
        'temperature 0.7, top-k 40, top-p 0.9,',
        'repetition penalty 1.1, seed 3; at most',
        '32 tokens',
        '',
        'Prompt 1',
        'Write a haiku about autumn',
        'base                │ adapted: style',
        rule,
        'Leaves fall slowly  │ Crimson maple |',
        'down                │ leaves drift on the',
        '(eos, 2 tokens,     │ cold river wind',
        '0.50 s)             │ (length, 3 tokens,',
        '                    │ 1.25 s)',
        '',
        'Prompt 2',
        '[token ids] 9 10',
        'base                │ adapted: style',
        rule,
        '[token ids] 11 12   │ [token ids] 13',
        '(stop, 2 tokens,    │ (cancelled, 1',
        '0.10 s)             │ token, 0.01 s)',
        '',
        '(cancelled: later prompts were not run)',
        '',
      ].join('\n'),
    );
    for (const width of [20, 60, 100]) for (const line of renderSideBySide(REPORT, { width }).split('\n')) assert.ok([...line].length <= width, line);
  });

  it('Markdown: a section per prompt with a base | adapted table, text escaped', () => {
    assert.equal(
      renderMarkdown(REPORT),
      [
        '# Base vs adapted: style',
        '',
        'Sampling: temperature 0.7, top-k 40, top-p 0.9, repetition penalty 1.1, seed 3; at most 32 tokens.',
        '',
        '## Prompt 1',
        '',
        '> Write a haiku about autumn',
        '',
        '| Base | Adapted (style) |',
        '| --- | --- |',
        '| Leaves fall slowly<br>down | Crimson maple \\| leaves drift on the cold river wind |',
        '| *eos, 2 tokens, 0.50 s* | *length, 3 tokens, 1.25 s* |',
        '',
        '## Prompt 2',
        '',
        '> \\[token ids\\] 9 10',
        '',
        '| Base | Adapted (style) |',
        '| --- | --- |',
        '| \\[token ids\\] 11 12 | \\[token ids\\] 13 |',
        '| *stop, 2 tokens, 0.10 s* | *cancelled, 1 token, 0.01 s* |',
        '',
        '*Cancelled: later prompts were not run.*',
        '',
      ].join('\n'),
    );
    const tricky: CompareReport = { ...REPORT, cancelled: false, entries: [{ ...REPORT.entries[0]!, base: { ...REPORT.entries[0]!.base, text: '<b>*x*</b> & `y`' } }] };
    assert.ok(renderMarkdown(tricky).includes('| &lt;b&gt;\\*x\\*&lt;/b&gt; &amp; \\`y\\` |'));
  });

  it('JSON: the report with a format tag', () => {
    const parsed = JSON.parse(renderJson(REPORT)) as Record<string, unknown>;
    assert.deepEqual(parsed, { format: 'lora-studio-compare', version: 1, ...REPORT });
  });

  it('greedy settings read as greedy', () => {
    const greedy = { ...REPORT, sampling: { ...REPORT.sampling, greedy: true, repetitionPenalty: 1 } };
    assert.ok(renderMarkdown(greedy).includes('Sampling: greedy; at most 32 tokens.'));
  });
});
