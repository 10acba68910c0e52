// The engine end to end on tiny models written to disk in the Hugging Face
// layout: adapters on/off/merged, gradients against finite differences,
// checkpointing, accumulation, learning a task, LoRA vs QLoRA, cancellation,
// memory accounting and the KV cache.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CancelledError, EngineModel, PROJECTIONS, memoryStats, type Projection } from '../../engine/api.ts';
import { maxAbsDiff, progressionBatch, rng, tinyModelDir, trainedTokens } from './helpers/engine-fixtures.ts';

const ALL = [...PROJECTIONS];

async function logitsOf(model: EngineModel, ids: Int32Array, batch: number): Promise<Float32Array> {
  const cache = model.createCache(batch, ids.length / batch);
  try {
    return await model.forward(cache, ids, { allPositions: true });
  } finally {
    cache.dispose();
  }
}

/** Sets every B of an adapter to small random values so it changes the output. */
function randomizeB(model: EngineModel, name: string, seed: number, scale = 0.05) {
  const r = rng(seed);
  const info = model.adapterInfo(name);
  for (let l = 0; l < model.config.numLayers; ++l)
    for (const p of info.targets) {
      const b = model.readAdapterTensor(name, l, p, 'B');
      for (let i = 0; i < b.length; ++i) b[i] = (r() * 2 - 1) * scale;
      model.writeAdapterTensor(name, l, p, 'B', b);
    }
}

async function gradients(model: EngineModel, name: string, batch: ReturnType<typeof progressionBatch>, checkpointing: boolean, gradScale: number) {
  await model.trainStep({ ...batch, gradScale }, { checkpointing });
  const out = new Map<string, Float32Array>();
  for (let l = 0; l < model.config.numLayers; ++l)
    for (const p of model.adapterInfo(name).targets) {
      out.set(`${l}.${p}.A`, model.readAdapterTensor(name, l, p, 'gradA'));
      out.set(`${l}.${p}.B`, model.readAdapterTensor(name, l, p, 'gradB'));
    }
  model.zeroGrad();
  return out;
}

describe('adapters on a bf16 base', () => {
  it('a disabled adapter gives the base output bit for bit; enabled it changes it', async () => {
    const model = await EngineModel.load(await tinyModelDir(), { method: 'lora' });
    try {
      const ids = progressionBatch(rng(1), 2, 12, 96).inputIds;
      const base = await logitsOf(model, ids, 2);
      model.addAdapter('a', { rank: 4, alpha: 8, targets: ALL });
      const fresh = await logitsOf(model, ids, 2);
      assert.equal(maxAbsDiff(fresh, base), 0, 'a fresh adapter (B = 0) changes nothing');
      randomizeB(model, 'a', 2);
      const adapted = await logitsOf(model, ids, 2);
      assert.ok(maxAbsDiff(adapted, base) > 1e-3, 'the adapter changes the logits');
      model.setAdapterEnabled('a', false);
      const off = await logitsOf(model, ids, 2);
      assert.deepEqual(Buffer.from(off.buffer), Buffer.from(base.buffer), 'adapter off = base, bit for bit');
    } finally {
      model.dispose();
    }
  });

  it('merged output equals unmerged within bf16 rounding, and unmerge restores the base', async () => {
    for (const method of ['f32', 'lora'] as const) {
      const model = await EngineModel.load(await tinyModelDir({ dtype: 'F32' }), { method });
      try {
        const ids = progressionBatch(rng(3), 2, 10, 96).inputIds;
        const base = await logitsOf(model, ids, 2);
        model.addAdapter('a', { rank: 8, alpha: 16, targets: ALL, seed: 4 });
        randomizeB(model, 'a', 5);
        const unmerged = await logitsOf(model, ids, 2);
        await model.mergeAdapter('a');
        assert.equal(model.adapterInfo('a').merged, true);
        const merged = await logitsOf(model, ids, 2);
        const tol = method === 'f32' ? 2e-5 : 3e-2;
        assert.ok(maxAbsDiff(merged, unmerged) < tol, `${method}: merged vs unmerged differ by ${maxAbsDiff(merged, unmerged)}`);
        await model.unmergeAdapter('a');
        model.setAdapterEnabled('a', false);
        const restored = await logitsOf(model, ids, 2);
        assert.ok(maxAbsDiff(restored, base) < tol, `${method}: unmerged base differs by ${maxAbsDiff(restored, base)}`);
      } finally {
        model.dispose();
      }
    }
  });

  it('refuses to merge into a 4-bit base', async () => {
    const model = await EngineModel.load(await tinyModelDir(), { method: 'qlora' });
    try {
      model.addAdapter('a', { rank: 4, alpha: 8, targets: ['q_proj'] });
      await assert.rejects(model.mergeAdapter('a'), /16-bit base/);
    } finally {
      model.dispose();
    }
  });

  it('several named adapters sit on one base and add up', async () => {
    const model = await EngineModel.load(await tinyModelDir({ dtype: 'F32' }), { method: 'f32' });
    try {
      const ids = progressionBatch(rng(6), 1, 9, 96).inputIds;
      model.addAdapter('x', { rank: 4, alpha: 4, targets: ['q_proj', 'v_proj'], seed: 1 });
      model.addAdapter('y', { rank: 2, alpha: 4, targets: ['down_proj'], seed: 2 });
      randomizeB(model, 'x', 7);
      randomizeB(model, 'y', 8);
      assert.deepEqual(model.adapterNames(), ['x', 'y']);
      const both = await logitsOf(model, ids, 1);
      model.setAdapterEnabled('y', false);
      const onlyX = await logitsOf(model, ids, 1);
      model.setAdapterEnabled('x', false);
      model.setAdapterEnabled('y', true);
      const onlyY = await logitsOf(model, ids, 1);
      assert.ok(maxAbsDiff(both, onlyX) > 1e-4 && maxAbsDiff(both, onlyY) > 1e-4);
      model.removeAdapter('x');
      assert.deepEqual(model.adapterNames(), ['y']);
      assert.throws(() => model.setAdapterEnabled('x', true), /no adapter named 'x'/);
    } finally {
      model.dispose();
    }
  });
});

describe('gradients', () => {
  it('match finite differences of the loss on a whole tiny model (fp32 base)', async () => {
    for (const arch of ['llama', 'qwen2', 'qwen3'] as const) {
      const model = await EngineModel.load(await tinyModelDir({ arch, dtype: 'F32', headDim: arch === 'qwen3' ? 24 : undefined, tie: arch === 'qwen2' }), { method: 'f32' });
      try {
        model.addAdapter('a', { rank: 3, alpha: 6, targets: ALL, seed: 9 });
        randomizeB(model, 'a', 10, 0.1);
        const batch = progressionBatch(rng(11), 2, 7, 96);
        batch.labels[3] = -100;
        const tokens = trainedTokens(batch.labels, 2, 7);
        const grads = await gradients(model, 'a', batch, true, 1 / tokens);
        const loss = async () => {
          const r = await model.evalLoss(batch);
          return r.lossSum / r.tokens;
        };
        // Probe the largest-gradient coordinates of a few tensors.
        const probes: Array<[number, Projection, 'A' | 'B']> = [[0, 'q_proj', 'A'], [0, 'k_proj', 'B'], [1, 'v_proj', 'A'], [1, 'o_proj', 'B'], [0, 'gate_proj', 'A'], [1, 'up_proj', 'B'], [1, 'down_proj', 'A'], [0, 'down_proj', 'B']];
        for (const [l, p, which] of probes) {
          const g = grads.get(`${l}.${p}.${which}`)!;
          const order = [...g.keys()].sort((i, j) => Math.abs(g[j]!) - Math.abs(g[i]!)).slice(0, 2);
          for (const i of order) {
            const w = model.readAdapterTensor('a', l, p, which);
            const orig = w[i]!;
            const h = 1e-2;
            w[i] = orig + h;
            model.writeAdapterTensor('a', l, p, which, w);
            const up = await loss();
            w[i] = orig - h;
            model.writeAdapterTensor('a', l, p, which, w);
            const down = await loss();
            w[i] = orig;
            model.writeAdapterTensor('a', l, p, which, w);
            const fd = (up - down) / (2 * h);
            const err = Math.abs(fd - g[i]!);
            assert.ok(err <= 2e-4 + 0.03 * Math.abs(fd), `${arch} layer ${l} ${p} ${which}[${i}]: analytic ${g[i]} vs finite difference ${fd}`);
          }
        }
      } finally {
        model.dispose();
      }
    }
  });

  it('are the same with and without activation checkpointing, and accumulate token-weighted', async () => {
    const model = await EngineModel.load(await tinyModelDir({ dtype: 'F32' }), { method: 'f32' });
    try {
      model.addAdapter('a', { rank: 4, alpha: 8, targets: ALL, seed: 3 });
      randomizeB(model, 'a', 4);
      const batch = progressionBatch(rng(12), 2, 9, 96);
      batch.labels.fill(-100, 9, 14); // row 1 has fewer trained tokens than row 0
      const total = trainedTokens(batch.labels, 2, 9);
      const withCkpt = await gradients(model, 'a', batch, true, 1 / total);
      const without = await gradients(model, 'a', batch, false, 1 / total);
      // The same two rows as two micro-batches, each scaled by 1/total tokens.
      const row = (r: number) => ({ inputIds: batch.inputIds.slice(r * 9, r * 9 + 9), labels: batch.labels.slice(r * 9, r * 9 + 9), batch: 1, seq: 9, gradScale: 1 / total });
      await model.trainStep(row(0));
      await model.trainStep(row(1));
      for (const [key, g] of withCkpt) {
        assert.ok(maxAbsDiff(g, without.get(key)!) < 1e-6, `${key}: checkpointing changes the gradient`);
        const [l, p, which] = key.split('.') as [string, Projection, 'A' | 'B'];
        const acc = model.readAdapterTensor('a', Number(l), p, which === 'A' ? 'gradA' : 'gradB');
        assert.ok(maxAbsDiff(g, acc) < 1e-6, `${key}: accumulated micro-batches differ from one batch`);
      }
    } finally {
      model.dispose();
    }
  });
});

/** Trains adapter 'a' on the progression task (mod 24); returns the loss of every step. */
async function trainProgression(model: EngineModel, steps: number, lr: number, seed: number): Promise<number[]> {
  model.addAdapter('a', { rank: 8, alpha: 16, targets: ALL, seed });
  const random = rng(seed);
  const losses: number[] = [];
  for (let s = 0; s < steps; ++s) {
    const batch = progressionBatch(random, 4, 16, 24);
    const tokens = trainedTokens(batch.labels, 4, 16);
    const r = await model.trainStep({ ...batch, gradScale: 1 / tokens, dropoutSeed: s });
    losses.push(r.lossSum / r.tokens);
    await model.optimizerStep({ lr, weightDecay: 0 });
  }
  return losses;
}

describe('training', () => {
  it('a tiny model learns a synthetic task with LoRA, and QLoRA follows the same curve', async () => {
    // initStd 0.25 gives the random base confident, non-uniform outputs, as a
    // real model has; the adapter must overrule them.
    const dir = await tinyModelDir({ seed: 21, initStd: 0.25 });
    const lora = await EngineModel.load(dir, { method: 'lora' });
    const qlora = await EngineModel.load(dir, { method: 'qlora' });
    try {
      const steps = 40;
      const a = await trainProgression(lora, steps, 1e-2, 5);
      const b = await trainProgression(qlora, steps, 1e-2, 5);
      const tail = (xs: number[]) => xs.slice(-5).reduce((s, x) => s + x, 0) / 5;
      assert.ok(a[0]! > 3, `initial LoRA loss ${a[0]}`);
      assert.ok(tail(a) < 0.3, `LoRA loss after ${steps} steps is ${tail(a)}, want < 0.3`);
      assert.ok(tail(b) < 0.3, `QLoRA loss after ${steps} steps is ${tail(b)}, want < 0.3`);
      // The curves agree: mean gap over all steps below 0.3 nats (NF4 perturbs the base).
      const gap = a.reduce((s, x, i) => s + Math.abs(x - b[i]!), 0) / steps;
      assert.ok(gap < 0.3, `LoRA and QLoRA curves differ by ${gap} nats on average`);
    } finally {
      lora.dispose();
      qlora.dispose();
    }
  });

  it('the same seed gives the same loss curve (dropout on)', async () => {
    const dir = await tinyModelDir({ seed: 22 });
    const run = async () => {
      const m = await EngineModel.load(dir, { method: 'lora' });
      try {
        m.addAdapter('a', { rank: 4, alpha: 8, dropout: 0.1, targets: ALL, seed: 1 });
        const random = rng(1);
        const out: number[] = [];
        for (let s = 0; s < 4; ++s) {
          const batch = progressionBatch(random, 2, 12, 96);
          const r = await m.trainStep({ ...batch, gradScale: 1 / trainedTokens(batch.labels, 2, 12), dropoutSeed: 100 + s });
          out.push(r.lossSum);
          await m.optimizerStep({ lr: 1e-2 });
        }
        return out;
      } finally {
        m.dispose();
      }
    };
    assert.deepEqual(await run(), await run());
  });
});

describe('engine calls', () => {
  it('a cancelled training step rejects with CancelledError and the model stays usable', async () => {
    const model = await EngineModel.load(await tinyModelDir({ hiddenSize: 128, intermediateSize: 384, numLayers: 4 }), { method: 'lora' });
    try {
      model.addAdapter('a', { rank: 8, alpha: 16, targets: ALL });
      const batch = progressionBatch(rng(1), 8, 128, 96);
      const controller = new AbortController();
      let ticks = 0;
      const timer = setInterval(() => ++ticks, 1);
      const step = model.trainStep(batch, { signal: controller.signal });
      setTimeout(() => controller.abort(), 5);
      await assert.rejects(step, CancelledError);
      clearInterval(timer);
      assert.ok(ticks > 0, 'the event loop kept running during the step');
      const ok = await model.trainStep({ ...batch, batch: 1, seq: 16, inputIds: batch.inputIds.slice(0, 16), labels: batch.labels.slice(0, 16) });
      assert.ok(ok.tokens === 15);
      const aborted = new AbortController();
      aborted.abort();
      await assert.rejects(model.evalLoss(batch, { signal: aborted.signal }), CancelledError);
    } finally {
      model.dispose();
    }
  });

  it('rejects bad arguments with the field named', async () => {
    const model = await EngineModel.load(await tinyModelDir(), { method: 'lora' });
    try {
      assert.throws(() => model.addAdapter('a', { rank: 0, alpha: 8, targets: ALL }), /rank/);
      assert.throws(() => model.addAdapter('a', { rank: 4, alpha: 8, targets: ['lm_head' as Projection] }), /targets: 'lm_head'/);
      assert.throws(() => model.addAdapter('bad name!', { rank: 4, alpha: 8, targets: ALL }), /name/);
      model.addAdapter('a', { rank: 4, alpha: 8, targets: ['q_proj'] });
      assert.throws(() => model.addAdapter('a', { rank: 4, alpha: 8, targets: ALL }), /already exists/);
      await assert.rejects(model.trainStep({ inputIds: [1, 2, 3], labels: [1, 2], batch: 1, seq: 3 }), /labels: expected 3 values/);
      await assert.rejects(model.trainStep({ inputIds: [1, 2, 300], labels: [1, 2, 3], batch: 1, seq: 3 }), /inputIds: value 2 is 300/);
      await assert.rejects(model.optimizerStep({ lr: -1 }), /lr/);
      assert.throws(() => model.readAdapterTensor('a', 0, 'v_proj'), /does not adapt v_proj/);
    } finally {
      model.dispose();
    }
  });

  it('counts memory per category, and frees it all on dispose', async () => {
    const before = memoryStats();
    const model = await EngineModel.load(await tinyModelDir(), { method: 'qlora' });
    model.addAdapter('a', { rank: 8, alpha: 16, targets: ALL });
    const batch = progressionBatch(rng(2), 2, 32, 96);
    await model.trainStep(batch);
    await model.optimizerStep({ lr: 1e-3 });
    const s = memoryStats();
    assert.ok(s.current.base > before.current.base && s.current.base === before.current.base + model.baseBytes());
    for (const cat of ['adapters', 'gradients', 'optimizer'] as const) assert.ok(s.current[cat] > before.current[cat], cat);
    assert.ok(s.peak.activations > 0 && s.peak.workspace > 0);
    assert.equal(s.current.activations, before.current.activations, 'activations are freed after the step');
    model.dispose();
    const end = memoryStats();
    // GEMM scratch is kept per worker thread between calls (counted as
    // workspace), so which threads grew it depends on scheduling; everything
    // the model owned must be back to where it was.
    for (const cat of ['base', 'adapters', 'gradients', 'optimizer', 'activations'] as const) {
      assert.equal(end.current[cat], before.current[cat], cat);
    }
    assert.ok(end.current.workspace <= end.peak.workspace);
  });

  it('the KV cache gives the same logits token by token as the whole sequence at once', async () => {
    for (const method of ['lora', 'qlora'] as const) {
      const model = await EngineModel.load(await tinyModelDir({ arch: 'qwen3', headDim: 16 }), { method });
      try {
        model.addAdapter('a', { rank: 4, alpha: 8, targets: ALL });
        randomizeB(model, 'a', 3);
        const ids = progressionBatch(rng(4), 1, 10, 96).inputIds;
        const full = await logitsOf(model, ids, 1);
        const cache = model.createCache(1, 10);
        const V = 96;
        await model.forward(cache, ids.slice(0, 6));
        for (let t = 6; t < 10; ++t) {
          const step = await model.forward(cache, ids.slice(t, t + 1));
          assert.ok(maxAbsDiff(step, full.slice(t * V, (t + 1) * V)) < 1e-4, `${method} position ${t}`);
        }
        assert.equal(cache.length, 10);
        await assert.rejects(model.forward(cache, [1]), /cache holds 10 positions/);
        cache.dispose();
      } finally {
        model.dispose();
      }
    }
  });
});
