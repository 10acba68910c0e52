// Generation with the KV cache on a real tiny model (greedy against full
// recomputation, seeds, EOS, max tokens, stop strings, cancellation, freeing
// the cache), and the streaming of text on a scripted model.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EngineInputError, EngineModel, KvCache, memoryStats } from '../../engine/api.ts';
import type { ModelConfig } from '../../engine/model/config.ts';
import { generate, generateAll, type GeneratedToken, type GenerationModel } from '../../engine/generate/generate.ts';
import { argmax } from '../../engine/generate/sampler.ts';
import { tinyModelDir } from './helpers/engine-fixtures.ts';

const PROMPT = [5, 9, 13, 17];
const bytes = (ids: number[]) => String.fromCharCode(...ids);
const activations = () => memoryStats().current.activations;

/** The greedy chain by a full forward pass over the whole sequence for every token (no cache reuse). */
async function greedyByFullPasses(model: EngineModel, prompt: number[], n: number): Promise<number[]> {
  const ids = [...prompt];
  for (let i = 0; i < n; ++i) {
    const cache = model.createCache(1, ids.length);
    try {
      ids.push(argmax(await model.forward(cache, ids)));
    } finally {
      cache.dispose();
    }
  }
  return ids.slice(prompt.length);
}

function maxRepeats(ids: number[]): number {
  const counts = new Map<number, number>();
  for (const t of ids) counts.set(t, (counts.get(t) ?? 0) + 1);
  return Math.max(...counts.values());
}

describe('generation on a tiny model', () => {
  let model: EngineModel;
  let chain: number[]; // the greedy continuation of PROMPT, 24 tokens, without EOS
  before(async () => {
    model = await EngineModel.load(await tinyModelDir(), { method: 'lora' });
    chain = (await generateAll(model, PROMPT, { greedy: true, maxTokens: 24, eosTokenIds: [] })).tokens;
  });
  after(() => model.dispose());

  it('greedy with the cache equals the argmax chain of full forward passes', async () => {
    assert.deepEqual(chain, await greedyByFullPasses(model, PROMPT, 24));
    const r = await generateAll(model, PROMPT, { temperature: 0, maxTokens: 24, eosTokenIds: [] });
    assert.deepEqual(r.tokens, chain, 'temperature 0 is greedy');
    assert.equal(r.finishReason, 'length');
    assert.equal(r.promptTokens, PROMPT.length);
    assert.equal(r.generatedTokens, 24);
    assert.ok(r.seconds > 0);
    assert.equal(r.text, null);
  });

  it('a seed reproduces a sampled sequence exactly; another seed changes it', async () => {
    const run = (seed: number) => generateAll(model, PROMPT, { seed, temperature: 1, maxTokens: 20, eosTokenIds: [] });
    const a = await run(1);
    assert.deepEqual((await run(1)).tokens, a.tokens);
    assert.notDeepEqual((await run(2)).tokens, a.tokens);
    assert.notDeepEqual(a.tokens, chain.slice(0, 20), 'sampling at temperature 1 leaves the greedy path');
  });

  it('top-k 1 and a tiny top-p generate the greedy chain', async () => {
    for (const opts of [{ topK: 1, seed: 3 }, { topP: 1e-6, seed: 4 }, { topK: 1, topP: 0.5, temperature: 2, seed: 5 }])
      assert.deepEqual((await generateAll(model, PROMPT, { ...opts, maxTokens: 24, eosTokenIds: [] })).tokens, chain, JSON.stringify(opts));
  });

  it('the repetition penalty spreads the greedy chain over more tokens', async () => {
    const plain = await generateAll(model, PROMPT, { greedy: true, maxTokens: 40, eosTokenIds: [] });
    const penalised = await generateAll(model, PROMPT, { greedy: true, repetitionPenalty: 1.5, maxTokens: 40, eosTokenIds: [] });
    assert.ok(maxRepeats(penalised.tokens) < maxRepeats(plain.tokens), `${maxRepeats(penalised.tokens)} < ${maxRepeats(plain.tokens)}`);
  });

  it('stops at an EOS id, which stays in tokens but not in the text', async () => {
    const k = chain.findIndex((t, i) => i >= 3 && chain.indexOf(t) === i);
    assert.ok(k > 0, 'the chain has a token that first appears after position 3');
    const eos = chain[k]!;
    const r = await generateAll(model, PROMPT, { greedy: true, maxTokens: 24, eosTokenIds: [eos, 95], decode: bytes });
    assert.equal(r.finishReason, 'eos');
    assert.deepEqual(r.tokens, chain.slice(0, k + 1));
    assert.equal(r.text, bytes(chain.slice(0, k)));
  });

  it('stops at max tokens', async () => {
    for (const n of [1, 2, 7]) {
      const r = await generateAll(model, PROMPT, { greedy: true, maxTokens: n, eosTokenIds: [] });
      assert.equal(r.finishReason, 'length');
      assert.deepEqual(r.tokens, chain.slice(0, n));
    }
  });

  it('stops at a stop string on the decoded text and strips it', async () => {
    const k = chain.findIndex((_, i) => i >= 3 && bytes(chain).indexOf(bytes(chain.slice(i, i + 2))) === i);
    assert.ok(k > 0);
    const stop = bytes(chain.slice(k, k + 2));
    const pieces: string[] = [];
    const r = await generateAll(model, PROMPT, {
      greedy: true, maxTokens: 24, eosTokenIds: [], decode: bytes, stop: ['never-produced', stop],
      onToken: (t) => pieces.push(t.text),
    });
    assert.equal(r.finishReason, 'stop');
    assert.deepEqual(r.tokens, chain.slice(0, k + 2));
    assert.equal(r.text, bytes(chain.slice(0, k)));
    assert.equal(pieces.join(''), r.text);
  });

  it('cancels through the AbortSignal and frees the cache', async () => {
    const before = activations();
    const ac = new AbortController();
    const seen: GeneratedToken[] = [];
    const r = await generateAll(model, PROMPT, {
      greedy: true, maxTokens: 24, eosTokenIds: [], signal: ac.signal,
      onToken: (t) => {
        seen.push(t);
        if (t.index === 2) ac.abort();
      },
    });
    assert.equal(r.finishReason, 'cancelled');
    assert.deepEqual(r.tokens, chain.slice(0, 3));
    assert.deepEqual(seen.map((t) => t.id), r.tokens);
    assert.equal(activations(), before, 'the KV cache is freed');

    const already = await generateAll(model, PROMPT, { signal: AbortSignal.abort(), maxTokens: 5 });
    assert.equal(already.finishReason, 'cancelled');
    assert.deepEqual(already.tokens, []);
    assert.equal(activations(), before);
  });

  it('cancels a forward pass in flight', async () => {
    const big = await EngineModel.load(await tinyModelDir({ hiddenSize: 256, intermediateSize: 1024, numLayers: 4, maxPositionEmbeddings: 8192 }), { method: 'lora' });
    try {
      const before = activations();
      const ac = new AbortController();
      const prompt = Array.from({ length: 4000 }, (_, i) => (i * 7) % 96);
      const pending = generateAll(big, prompt, { maxTokens: 4, eosTokenIds: [], signal: ac.signal });
      setTimeout(() => ac.abort(), 5);
      const r = await pending;
      assert.equal(r.finishReason, 'cancelled');
      assert.ok(r.tokens.length < 4);
      assert.equal(activations(), before);
    } finally {
      big.dispose();
    }
  });

  it('frees the cache when the loop breaks early or the decoder throws', async () => {
    const before = activations();
    const got: number[] = [];
    for await (const t of generate(model, PROMPT, { greedy: true, maxTokens: 24, eosTokenIds: [] })) {
      got.push(t.id);
      if (got.length === 4) {
        assert.ok(activations() > before, 'the cache is held while generating');
        break;
      }
    }
    assert.deepEqual(got, chain.slice(0, 4));
    assert.equal(activations(), before);
    let calls = 0;
    const failing = (ids: number[]) => {
      if (++calls === 3) throw new Error('decoder failed');
      return bytes(ids);
    };
    await assert.rejects(generateAll(model, PROMPT, { greedy: true, maxTokens: 10, eosTokenIds: [], decode: failing }), /decoder failed/);
    assert.equal(activations(), before);
  });

  it('keeps prompt and generation within the model context', async () => {
    const small = await EngineModel.load(await tinyModelDir({ maxPositionEmbeddings: 16 }), { method: 'lora' });
    try {
      const r = await generateAll(small, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], { maxTokens: 100, eosTokenIds: [] });
      assert.equal(r.finishReason, 'length');
      assert.equal(r.tokens.length, 6);
      await assert.rejects(generateAll(small, new Array(16).fill(3)), (e: unknown) => e instanceof EngineInputError && e.field === 'promptIds');
    } finally {
      small.dispose();
    }
  });

  it('refuses bad arguments, naming the field, before allocating anything', async () => {
    const before = activations();
    const bad: [number[], object, string][] = [
      [[], {}, 'promptIds'],
      [[1, 96], {}, 'promptIds'],
      [[1, -1], {}, 'promptIds'],
      [[1.5], {}, 'promptIds'],
      [PROMPT, { maxTokens: 0 }, 'maxTokens'],
      [PROMPT, { maxTokens: 2.5 }, 'maxTokens'],
      [PROMPT, { stop: ['x'] }, 'stop'],
      [PROMPT, { stop: [''], decode: bytes }, 'stop'],
      [PROMPT, { eosTokenIds: [-1] }, 'eosTokenIds'],
      [PROMPT, { decode: 'bytes' }, 'decode'],
      [PROMPT, { temperature: -1 }, 'temperature'],
      [PROMPT, { topP: 0 }, 'topP'],
      [PROMPT, { topK: -2 }, 'topK'],
      [PROMPT, { repetitionPenalty: 0 }, 'repetitionPenalty'],
    ];
    for (const [prompt, opts, field] of bad)
      await assert.rejects(generateAll(model, prompt, opts), (e: unknown) => e instanceof EngineInputError && e.field === field, `${JSON.stringify(opts)} → ${field}`);
    assert.equal(activations(), before);
  });
});

// ---- streaming text, on a model that plays a script ----------------------------------

/** A model whose next token is always the next id of `script` (one-hot logits). */
function scriptedModel(script: number[], eosTokenIds: number[] = [2]): GenerationModel & { disposed: number } {
  const V = 256;
  let step = 0;
  const m = {
    disposed: 0,
    config: { vocabSize: V, maxPositionEmbeddings: 1000, eosTokenIds } as ModelConfig,
    createCache(batch: number, capacity: number): KvCache {
      const handle = {
        length: 0,
        capacity,
        reset() { handle.length = 0; },
        truncate(n: number) { handle.length = Math.min(handle.length, n); },
        dispose() { m.disposed++; },
      };
      return new KvCache(handle, batch);
    },
    async forward(cache: KvCache, tokens: Int32Array | readonly number[]): Promise<Float32Array> {
      const handle = cache.handle as { length: number };
      assert.ok(handle.length + tokens.length <= cache.capacity, 'within the cache capacity');
      handle.length += tokens.length;
      const logits = new Float32Array(V);
      logits[script[step++] ?? 0] = 10;
      return logits;
    },
  };
  return m as unknown as GenerationModel & { disposed: number };
}

const ids = (s: string) => [...s].map((c) => c.charCodeAt(0));

describe('streaming text', () => {
  it('holds back text that may begin a stop string, and releases it when it does not', async () => {
    const pieces: string[] = [];
    const model = scriptedModel(ids('ab<c<EN>x<END>tail'));
    const r = await generateAll(model, [1], { maxTokens: 50, decode: bytes, stop: ['<END>'], onToken: (t) => pieces.push(t.text) });
    assert.equal(r.finishReason, 'stop');
    assert.equal(r.text, 'ab<c<EN>x');
    assert.deepEqual(pieces, ['a', 'b', '', '<c', '', '', '', '<EN>', 'x', '', '', '', '', '']);
    assert.equal(model.disposed, 1);
  });

  it('holds back an incomplete character', async () => {
    // ids 200 then 201 decode to 'é'; 200 alone to U+FFFD.
    const decode = (list: number[]) => bytes(list).replace(/\u00c8\u00c9/g, 'é').replace(/\u00c8$/, '\uFFFD');
    const pieces: string[] = [];
    const r = await generateAll(scriptedModel([104, 200, 201, 105]), [1], { maxTokens: 4, decode, onToken: (t) => pieces.push(t.text) });
    assert.deepEqual(pieces, ['h', '', 'é', 'i']);
    assert.equal(r.text, 'héi');
  });

  it('gives the held-back text in the result when the generation ends another way', async () => {
    const pieces: string[] = [];
    const r = await generateAll(scriptedModel(ids('ok<EN')), [1], { maxTokens: 5, decode: bytes, stop: ['<END>'], onToken: (t) => pieces.push(t.text) });
    assert.equal(r.finishReason, 'length');
    assert.equal(pieces.join(''), 'ok');
    assert.equal(r.text, 'ok<EN');
  });

  it('uses the model\'s EOS ids by default; [] turns them off', async () => {
    const r = await generateAll(scriptedModel([65, 66, 2, 67]), [1], { maxTokens: 10, decode: bytes });
    assert.equal(r.finishReason, 'eos');
    assert.deepEqual(r.tokens, [65, 66, 2]);
    assert.equal(r.text, 'AB');
    const off = await generateAll(scriptedModel([65, 66, 2, 67]), [1], { maxTokens: 4, eosTokenIds: [] });
    assert.deepEqual(off.tokens, [65, 66, 2, 67]);
    const first = await generateAll(scriptedModel([2]), [1], { maxTokens: 4, decode: bytes });
    assert.deepEqual([first.finishReason, first.text], ['eos', '']);
  });
});
