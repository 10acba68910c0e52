// The sampler on handcrafted logits: each processor against transformers'
// definition, the order they run in, the seeded draws and option checks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EngineInputError } from '../../engine/api.ts';
import {
  Sampler,
  SplitMix64,
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  processLogits,
  resolveSampling,
  sampleFromLogits,
} from '../../engine/generate/sampler.ts';
import { rng } from './helpers/engine-fixtures.ts';

const f32 = (...v: number[]) => Float32Array.from(v);
const kept = (logits: Float32Array) => [...logits.keys()].filter((i) => logits[i]! > -Infinity);
const logOf = (...p: number[]) => Float32Array.from(p, Math.log);

function randomLogits(V: number, seed: number, spread = 4): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: V }, () => (r() * 2 - 1) * spread);
}

/** TopPLogitsWarper as transformers writes it: ascending sort, cumsum of softmax, drop where cum ≤ 1 - p, keep the top one. */
function topPReference(logits: Float32Array, p: number): number[] {
  const order = [...logits.keys()].sort((a, b) => logits[a]! - logits[b]! || b - a);
  const max = Math.max(...logits);
  const e = order.map((i) => Math.exp(logits[i]! - max));
  const z = e.reduce((a, b) => a + b, 0);
  const keep: number[] = [];
  let cum = 0;
  order.forEach((i, r) => {
    cum += e[r]! / z;
    if (cum > 1 - p || r === order.length - 1) keep.push(i);
  });
  return keep.sort((a, b) => a - b);
}

describe('sampling options', () => {
  it('keeps only the sampling fields', () => {
    assert.deepEqual(Object.keys(resolveSampling({ maxTokens: 3, stop: ['x'] } as object)).sort(), ['greedy', 'repetitionPenalty', 'seed', 'temperature', 'topK', 'topP']);
  });

  it('fills defaults and accepts the edges', () => {
    assert.deepEqual(resolveSampling(), { greedy: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 });
    assert.deepEqual(resolveSampling({ temperature: 0, topP: 1, topK: undefined, seed: 7 }), {
      greedy: false, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 7,
    });
  });

  const bad: [object, string][] = [
    [{ temperature: -0.1 }, 'temperature'],
    [{ temperature: Number.NaN }, 'temperature'],
    [{ topP: 0 }, 'topP'],
    [{ topP: 1.01 }, 'topP'],
    [{ topK: -1 }, 'topK'],
    [{ topK: 2.5 }, 'topK'],
    [{ repetitionPenalty: 0 }, 'repetitionPenalty'],
    [{ repetitionPenalty: -1 }, 'repetitionPenalty'],
    [{ seed: -1 }, 'seed'],
    [{ seed: 0.5 }, 'seed'],
    [{ greedy: 'yes' }, 'greedy'],
  ];
  for (const [opts, field] of bad)
    it(`refuses ${JSON.stringify(opts)} naming ${field}`, () => {
      assert.throws(
        () => new Sampler(opts),
        (e: unknown) => e instanceof EngineInputError && e.field === field && e.message.startsWith(`${field}: `),
      );
    });
});

describe('SplitMix64', () => {
  it('matches the reference splitmix64.c outputs', () => {
    const zero = new SplitMix64(0);
    assert.deepEqual([zero.nextU64(), zero.nextU64(), zero.nextU64()], [16294208416658607535n, 7960286522194355700n, 487617019471545679n]);
    const r = new SplitMix64(1234567);
    assert.deepEqual([r.nextU64(), r.nextU64(), r.nextU64()], [6457827717110365317n, 3203168211198807973n, 9817491932198370423n]);
  });

  it('gives uniforms in [0, 1) from the top 53 bits', () => {
    const r = new SplitMix64(0);
    assert.equal(r.nextFloat(), Number(16294208416658607535n >> 11n) / 2 ** 53);
    let sum = 0;
    for (let i = 0; i < 10000; ++i) {
      const u = r.nextFloat();
      assert.ok(u >= 0 && u < 1);
      sum += u;
    }
    assert.ok(Math.abs(sum / 10000 - 0.5) < 0.01);
  });
});

describe('logits processors', () => {
  it('repetition penalty divides positive and multiplies negative logits of context tokens, once each', () => {
    const l = f32(2, -2, 0, 1, 3);
    applyRepetitionPenalty(l, [0, 1, 2, 0, 0, 1], 2);
    assert.deepEqual([...l], [1, -4, 0, 1, 3]);
    const boost = f32(2, -2, 1);
    applyRepetitionPenalty(boost, [0, 1], 0.5); // < 1 encourages repeats
    assert.deepEqual([...boost], [4, -1, 1]);
  });

  it('repetition penalty makes a repeated token less likely than it was', () => {
    const l = f32(1.5, 1.4, 0.2);
    assert.equal(argmax(l), 0);
    applyRepetitionPenalty(l, [0], 1.2);
    assert.equal(argmax(l), 1);
  });

  it('temperature divides every logit', () => {
    const l = f32(2, -1, 0.5);
    applyTemperature(l, 0.5);
    assert.deepEqual([...l], [4, -2, 1]);
  });

  it('top-k keeps the k largest, and every token tied with the k-th', () => {
    const cases: [number[], number, number[]][] = [
      [[1, 3, 2, 0], 2, [1, 2]],
      [[1, 3, 2, 0], 1, [1]],
      [[1, 2, 2, 2], 2, [1, 2, 3]],
      [[1, 2, 0], 0, [0, 1, 2]],
      [[1, 2, 0], 5, [0, 1, 2]],
    ];
    for (const [logits, k, want] of cases) {
      const l = f32(...logits);
      applyTopK(l, k);
      assert.deepEqual(kept(l), want, `${logits} k=${k}`);
      for (const i of want) assert.equal(l[i], logits[i]);
    }
  });

  it('top-p keeps the smallest head of the ranking that reaches p (at least one token)', () => {
    const cases: [number, number[]][] = [
      [1e-9, [0]],
      [0.4, [0]],
      [0.7, [0, 1]],
      [0.81, [0, 1, 2]],
      [0.96, [0, 1, 2, 3]],
      [1, [0, 1, 2, 3]],
    ];
    for (const [p, want] of cases) {
      const l = logOf(0.5, 0.3, 0.15, 0.05);
      applyTopP(l, p);
      assert.deepEqual(kept(l), want, `p=${p}`);
    }
  });

  it('top-p matches transformers\' ascending-cumsum definition on random logits, large vocabularies included', () => {
    for (const [V, p, spread, seed] of [[10, 0.5, 2, 1], [1000, 0.9, 4, 2], [50000, 0.95, 0.5, 3], [50000, 0.3, 8, 4], [4000, 0.999, 1, 5]] as const) {
      const l = randomLogits(V, seed, spread);
      const want = topPReference(l, p);
      applyTopP(l, p);
      assert.deepEqual(kept(l), want, `V=${V} p=${p}`);
    }
  });
});

describe('processor order (transformers: penalty, temperature, top-k, top-p)', () => {
  it('the repetition penalty runs before top-k', () => {
    const s = resolveSampling({ repetitionPenalty: 2, topK: 1 });
    const logits = f32(2, 1.9, 0.5);
    assert.deepEqual(kept(processLogits(logits, [0], s)), [1], 'penalised token 0 falls out of the top 1');
    const reverse = f32(2, 1.9, 0.5);
    applyTopK(reverse, 1);
    applyRepetitionPenalty(reverse, [0], 2);
    assert.deepEqual(kept(reverse), [0], 'the other order would keep token 0');
  });

  it('temperature runs before top-p', () => {
    const s = resolveSampling({ temperature: 0.5, topP: 0.7 });
    assert.deepEqual(kept(processLogits(f32(2, 1, 0), [], s)), [0], 'sharpened: token 0 alone holds 0.87');
    const reverse = f32(2, 1, 0);
    applyTopP(reverse, 0.7);
    applyTemperature(reverse, 0.5);
    assert.deepEqual(kept(reverse), [0, 1], 'the other order keeps two tokens');
  });

  it('top-k runs before top-p, which renormalises what top-k left', () => {
    const s = resolveSampling({ topK: 2, topP: 0.5 });
    assert.deepEqual(kept(processLogits(logOf(0.4, 0.3, 0.2, 0.1), [], s)), [0], 'token 0 has 4/7 of the top two');
    const reverse = logOf(0.4, 0.3, 0.2, 0.1);
    applyTopP(reverse, 0.5);
    applyTopK(reverse, 2);
    assert.deepEqual(kept(reverse), [0, 1]);
  });

  it('penalty and temperature commute (a positive scale keeps each sign), so their order cannot show', () => {
    const a = f32(3, -1.5, 0.75, 0);
    applyRepetitionPenalty(a, [0, 1, 3], 2);
    applyTemperature(a, 0.5);
    const b = f32(3, -1.5, 0.75, 0);
    applyTemperature(b, 0.5);
    applyRepetitionPenalty(b, [0, 1, 3], 2);
    assert.deepEqual([...a], [...b]);
  });

  it('greedy applies only the penalty, then takes the first largest', () => {
    const s = resolveSampling({ greedy: true, temperature: 0.1, topK: 1, repetitionPenalty: 2 });
    assert.deepEqual([...processLogits(f32(3, 2, 2), [0], s)], [1.5, 2, 2]);
    assert.equal(new Sampler(s).next(f32(3, 2, 2), [0]), 1, 'ties go to the lower id');
    assert.equal(new Sampler({ temperature: 0 }).next(f32(0, 5, 1), []), 1);
  });
});

describe('drawing tokens', () => {
  it('inverse CDF over token ids', () => {
    const l = logOf(0.25, 0, 0.75);
    assert.equal(sampleFromLogits(l, 0), 0);
    assert.equal(sampleFromLogits(l, 0.2), 0);
    assert.equal(sampleFromLogits(l, 0.3), 2);
    assert.equal(sampleFromLogits(l, 1 - 2 ** -53), 2);
    assert.equal(sampleFromLogits(f32(-Infinity, 1, -Infinity), 0.99), 1);
  });

  it('frequencies follow the probabilities', () => {
    const probs = [0.1, 0.2, 0.3, 0.4];
    const sampler = new Sampler({ seed: 11 });
    const counts = [0, 0, 0, 0];
    const n = 20000;
    for (let i = 0; i < n; ++i) counts[sampler.next(logOf(...probs), [])]! += 1;
    counts.forEach((c, i) => assert.ok(Math.abs(c / n - probs[i]!) < 0.015, `token ${i}: ${c / n}`));
  });

  it('a seed fixes the sequence; another seed changes it', () => {
    const draw = (seed: number) => {
      const s = new Sampler({ seed, temperature: 1.3, topK: 40, topP: 0.95 });
      return Array.from({ length: 50 }, (_, i) => s.next(randomLogits(200, i), []));
    };
    assert.deepEqual(draw(5), draw(5));
    assert.notDeepEqual(draw(5), draw(6));
  });

  it('top-k 1 and a tiny top-p both equal greedy', () => {
    const greedy = new Sampler({ greedy: true });
    const k1 = new Sampler({ topK: 1, seed: 3 });
    const p0 = new Sampler({ topP: 1e-7, seed: 4 });
    for (let i = 0; i < 50; ++i) {
      const l = randomLogits(500, 100 + i);
      const g = greedy.next(l, []);
      assert.equal(k1.next(l, []), g);
      assert.equal(p0.next(l, []), g);
    }
  });
});
