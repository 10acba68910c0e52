// The training run end to end on a tiny model and a small chat data set:
// learning, determinism, token-weighted accumulation, the held-out eval split,
// early stopping, stopping by AbortSignal and resuming exactly, QLoRA, and the
// files a run leaves.
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EngineModel } from '../../engine/api.ts';
import { loadPeftAdapter } from '../../engine/adapters/peft.ts';
import { UserError } from '../../engine/model/errors.ts';
import { paddedBatch } from '../../engine/data/packing.ts';
import { planData } from '../../engine/train/batches.ts';
import { evaluateLoss } from '../../engine/train/evaluate.ts';
import { resumeTraining, runTraining } from '../../engine/train/run.ts';
import { chatRecord, eventLog, fixtureConfig, trainFixture } from './helpers/train-fixtures.ts';

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('a training run', () => {
  it('learns the task: the loss of the last steps is far below the first', async () => {
    const f = await trainFixture();
    const log = eventLog();
    const r = await runTraining(fixtureConfig(f, 'out', { steps: 30 }), { onEvent: log.onEvent });
    assert.equal(r.reason, 'completed');
    assert.equal(r.losses.length, 30);
    const first = r.losses[0]!;
    const last = mean(r.losses.slice(-5));
    assert.ok(last < 0.4 * first, `loss fell from ${first} to ${last}; expected below 40% of the start`);
    // The events: start, one step event per step with its lr from the schedule, checkpoint, done.
    const [start] = log.of('start');
    assert.equal(start!.total_steps, 30);
    assert.equal(start!.train_examples, 24);
    const steps = log.of('step');
    assert.deepEqual(steps.map((s) => s.step), Array.from({ length: 30 }, (_, i) => i + 1));
    assert.deepEqual(steps.map((s) => s.loss), r.losses);
    assert.equal(steps[0]!.lr, 2e-2);
    assert.ok(steps[29]!.lr < steps[15]!.lr && steps[15]!.lr < steps[1]!.lr, 'cosine decay');
    for (const s of steps) {
      assert.ok(s.trained_tokens > 0 && s.grad_norm > 0 && Number.isFinite(s.loss));
      assert.ok(s.memory.peak_bytes > 0 && s.memory.categories.adapters > 0 && s.memory.categories.optimizer > 0 && s.memory.rss_bytes > 0);
    }
    const done = log.of('done')[0]!;
    assert.equal(done.reason, 'completed');
    assert.equal(done.adapter_path, path.join(f.dir, 'out', 'adapter'));
    assert.equal(done.checkpoint_path, path.join(f.dir, 'out', 'checkpoints', 'step-000030'));
    const run = JSON.parse(await readFile(path.join(f.dir, 'out', 'run.json'), 'utf8'));
    assert.equal(run.steps, 30);
    assert.deepEqual(run.losses, r.losses);

    // The adapter it wrote lowers the loss on the data against the base model.
    const base = await evaluateLoss({ model: f.model, data: f.data, method: 'lora', seqLen: 96 });
    const adapted = await evaluateLoss({ model: f.model, data: f.data, adapter: r.adapterPath, method: 'lora', seqLen: 96, batchSize: 3 });
    assert.equal(adapted.tokens, base.tokens);
    assert.equal(adapted.examples, 24);
    assert.ok(adapted.loss < 0.7 * base.loss, `eval loss ${adapted.loss} with the adapter, ${base.loss} without`);
    assert.ok(Math.abs(adapted.perplexity - Math.exp(adapted.loss)) < 1e-9 * adapted.perplexity);
  });

  it('the same seed gives the same loss curve; another seed another', async () => {
    const f = await trainFixture();
    const a = await runTraining(fixtureConfig(f, 'a', { steps: 6, dropout: 0.1 }));
    const b = await runTraining(fixtureConfig(f, 'b', { steps: 6, dropout: 0.1 }));
    const c = await runTraining(fixtureConfig(f, 'c', { steps: 6, dropout: 0.1, seed: 7 }));
    assert.deepEqual(b.losses, a.losses);
    assert.notDeepEqual(c.losses, a.losses);
  });

  it('accumulates token-weighted: batch 2 × 1 micro-batch equals batch 1 × 2 micro-batches', async () => {
    const f = await trainFixture();
    for (const batching of ['packed', 'padded', 'padding-free'] as const) {
      const one = await runTraining(fixtureConfig(f, `one-${batching}`, { steps: 5, dropout: 0, batching, batchSize: 2, gradAccum: 1 }));
      const two = await runTraining(fixtureConfig(f, `two-${batching}`, { steps: 5, dropout: 0, batching, batchSize: 1, gradAccum: 2 }));
      one.losses.forEach((l, i) => assert.ok(Math.abs(l - two.losses[i]!) < 1e-4 * l, `${batching} step ${i + 1}: ${l} vs ${two.losses[i]}`));
      // Not a mean of the two micro-batches' means: those differ where the micro-batches hold different numbers of tokens.
    }
  });

  it('holds the eval split out of training and evaluates token-weighted', async () => {
    const f = await trainFixture(20);
    const config = fixtureConfig(f, 'out', { steps: null, epochs: 1, evalSplit: 0.25, shuffle: true });
    const plan = await planData(config);
    const trainSet = new Set(plan.trainIndices);
    assert.equal(plan.evalIndices.length, 5);
    assert.ok(plan.evalIndices.every((i) => !trainSet.has(i)), 'held-out examples are not trained');
    assert.equal(trainSet.size + plan.evalIndices.length, 20);
    let trainTokens = 0;
    for (const i of plan.trainIndices) trainTokens += (await plan.train.exampleAt(i))!.trainedTokens;

    const log = eventLog();
    const r = await runTraining(config, { onEvent: log.onEvent });
    // One epoch trains exactly the trained tokens of the training examples.
    assert.equal(log.of('step').reduce((n, s) => n + s.trained_tokens, 0), trainTokens);
    assert.equal(log.of('start')[0]!.eval_examples, 5);
    const evals = log.of('eval');
    assert.equal(evals.length, 1, 'evaluated once, at the end');

    // Recompute: the final adapter, each held-out example alone.
    const model = await EngineModel.load(f.model, { method: 'lora' });
    try {
      await loadPeftAdapter(model, r.adapterPath, 'x');
      let lossSum = 0;
      let tokens = 0;
      const perExample: number[] = [];
      for (const i of plan.evalIndices) {
        const e = (await plan.train.exampleAt(i))!;
        const l = await model.evalLoss(paddedBatch([e], 0));
        lossSum += l.lossSum;
        tokens += l.tokens;
        perExample.push(l.lossSum / l.tokens);
      }
      assert.equal(evals[0]!.tokens, tokens);
      const weighted = lossSum / tokens;
      assert.ok(Math.abs(evals[0]!.eval_loss - weighted) < 1e-5 * weighted, `eval loss ${evals[0]!.eval_loss}, token-weighted ${weighted}`);
      assert.ok(Math.abs(mean(perExample) - weighted) > 1e-3 * weighted, `the data tells a token-weighted mean (${weighted}) from a mean of means (${mean(perExample)})`);
      assert.ok(Math.abs(evals[0]!.perplexity - Math.exp(evals[0]!.eval_loss)) < 1e-9 * evals[0]!.perplexity);
    } finally {
      model.dispose();
    }
  });

  it('stops early after `patience` evaluations without a new best', async () => {
    const f = await trainFixture();
    const log = eventLog();
    // A rate so small the eval loss cannot improve.
    const r = await runTraining(fixtureConfig(f, 'out', { steps: 40, lr: 1e-12, evalSplit: 0.2, evalEvery: 2, earlyStoppingPatience: 2 }), { onEvent: log.onEvent });
    assert.equal(r.reason, 'early-stopped');
    const evals = log.of('eval');
    assert.equal(evals.length, 3);
    assert.deepEqual(evals.map((e) => e.best), [true, false, false]);
    assert.equal(r.steps, 6);
    assert.equal(log.of('done')[0]!.reason, 'early-stopped');
    assert.equal(r.checkpointPath, path.join(f.dir, 'out', 'checkpoints', 'step-000006'));
  });

  it('an aborted run checkpoints its last step, says stopped, and resumes onto the uninterrupted curve', async () => {
    const f = await trainFixture();
    const over = { steps: 10, gradAccum: 2, dropout: 0.1, evalSplit: 0.2, evalEvery: 3, saveEvery: 4, keepCheckpoints: 2 };
    const whole = await runTraining(fixtureConfig(f, 'whole', over));

    for (const when of ['between steps', 'during a step'] as const) {
      const out = `stopped-${when.replace(/ /g, '-')}`;
      const controller = new AbortController();
      const log = eventLog();
      const r = await runTraining(fixtureConfig(f, out, over), {
        signal: controller.signal,
        onEvent: (e) => {
          log.onEvent(e);
          if (e.type === 'step' && e.step === 5) {
            if (when === 'between steps') controller.abort();
            else setImmediate(() => controller.abort()); // lands while step 6's micro-batches run
          }
        },
      });
      assert.equal(r.reason, 'stopped');
      assert.ok(r.steps === 5 || (when === 'during a step' && r.steps === 6), `stopped after step ${r.steps}`);
      assert.equal(log.of('done')[0]!.reason, 'stopped');
      assert.equal(r.checkpointPath, path.join(f.dir, out, 'checkpoints', `step-00000${r.steps}`));
      assert.deepEqual(r.losses, whole.losses.slice(0, r.steps));

      const resumed = eventLog();
      const rr = await resumeTraining(path.join(f.dir, out), { onEvent: resumed.onEvent });
      assert.equal(resumed.of('start')[0]!.resumed_from_step, r.steps);
      assert.equal(rr.reason, 'completed');
      assert.deepEqual(rr.losses, whole.losses, 'bit for bit the uninterrupted losses');
      assert.deepEqual(rr.evalLosses, whole.evalLosses);
      assert.deepEqual(resumed.of('step').map((s) => s.step)[0], r.steps + 1);
      // keepCheckpoints 2: only the two newest remain.
      assert.deepEqual(await readdir(path.join(f.dir, out, 'checkpoints')), ['step-000008', 'step-000010']);
    }
  });

  it('a resumed run refuses a changed setting that shapes the math, and extends when asked', async () => {
    const f = await trainFixture();
    const r = await runTraining(fixtureConfig(f, 'out', { steps: 4 }));
    await assert.rejects(resumeTraining(path.join(f.dir, 'out'), { overrides: { lr: 1e-3 } }), (e: unknown) => e instanceof UserError && /^--lr differs from the checkpoint \(0\.02 there, 0\.001 given\)/.test(e.message));
    await assert.rejects(resumeTraining(path.join(f.dir, 'out'), { overrides: { batchSize: 4 } }), /--batch differs from the checkpoint/);
    await assert.rejects(runTraining(fixtureConfig(f, 'out', { steps: 4 })), /already holds checkpoints of a run \(step-000004\); resume that run/);
    const longer = await resumeTraining(path.join(f.dir, 'out'), { overrides: { steps: 6, lr: 2e-2, saveEvery: 1 } });
    assert.equal(longer.steps, 6);
    assert.deepEqual(longer.losses.slice(0, 4), r.losses);
  });

  it('trains on a 4-bit (QLoRA) base', async () => {
    const f = await trainFixture();
    const r = await runTraining(fixtureConfig(f, 'out', { method: 'qlora', steps: 15 }));
    assert.equal(r.reason, 'completed');
    assert.ok(r.losses.every(Number.isFinite));
    assert.ok(mean(r.losses.slice(-3)) < 0.7 * r.losses[0]!, `QLoRA loss ${r.losses[0]} → ${mean(r.losses.slice(-3))}`);
    const q = await evaluateLoss({ model: f.model, data: f.data, adapter: r.adapterPath, method: 'qlora', seqLen: 96 });
    assert.ok(Number.isFinite(q.loss));
  });

  it('evaluates data with examples of every length and samples at checkpoints', async () => {
    const f = await trainFixture(8);
    const evalFile = path.join(f.dir, 'eval.jsonl');
    await writeFile(evalFile, [100, 101, 102].map(chatRecord).join('\n') + '\n');
    const log = eventLog();
    await runTraining(fixtureConfig(f, 'out', { steps: 4, saveEvery: 2, evalData: evalFile, evalEvery: 2, samplePrompts: ['Item 3: colour?'], sampleMaxTokens: 8 }), { onEvent: log.onEvent });
    assert.deepEqual(log.of('eval').map((e) => e.step), [2, 4]);
    const samples = log.of('sample');
    assert.deepEqual(samples.map((s) => s.step), [2, 4]);
    assert.ok(samples.every((s) => s.prompt === 'Item 3: colour?' && typeof s.output === 'string'));
    // Checkpoint events come before that step's samples.
    const order = log.events.filter((e) => e.type === 'checkpoint' || e.type === 'sample').map((e) => `${e.type}@${(e as { step: number }).step}`);
    assert.deepEqual(order, ['checkpoint@2', 'sample@2', 'checkpoint@4', 'sample@4']);
  });
  it('trains on plain text (shuffled token windows) and CSV files, for a number of epochs', async () => {
    const f = await trainFixture(4);
    const txt = path.join(f.dir, 'notes.txt');
    await writeFile(txt, Array.from({ length: 40 }, (_, i) => `Note ${i}: the colour of item ${i} is ${['red', 'blue'][i % 2]}.`).join('\n') + '\n');
    const log = eventLog();
    const r = await runTraining(fixtureConfig(f, 'txt', { data: txt, steps: null, epochs: 2, seqLen: 64, batching: 'padding-free' }), { onEvent: log.onEvent });
    const start = log.of('start')[0]!;
    assert.equal(r.steps, start.total_steps);
    assert.equal(r.steps, 2 * Math.ceil(start.train_examples / 2), 'two epochs of batch-2 micro-batches');
    const steps = log.of('step');
    assert.equal(steps.at(-1)!.epoch, 2);
    assert.ok(r.losses.at(-1)! < r.losses[0]!);

    const csv = path.join(f.dir, 'pairs.csv');
    await writeFile(csv, 'question,answer\n' + Array.from({ length: 10 }, (_, i) => `"Item ${i}, colour?",Colour ${['red', 'blue'][i % 2]}.`).join('\n') + '\n');
    const c = await runTraining(fixtureConfig(f, 'csv', { data: csv, columns: 'prompt=question,completion=answer', steps: 3, batching: 'padded' }));
    assert.equal(c.steps, 3);
  });

  it('stopped before it starts: resolves with reason stopped and no checkpoint', async () => {
    const f = await trainFixture(4);
    const log = eventLog();
    const r = await runTraining(fixtureConfig(f, 'out', { steps: 3 }), { signal: AbortSignal.abort(), onEvent: log.onEvent });
    assert.equal(r.reason, 'stopped');
    assert.equal(r.steps, 0);
    assert.equal(log.of('done')[0]!.reason, 'stopped');
    assert.equal(log.of('step').length, 0);
  });
  it('starts from an existing PEFT adapter with initAdapter', async () => {
    const f = await trainFixture();
    const first = await runTraining(fixtureConfig(f, 'first', { steps: 20 }));
    const next = await runTraining(fixtureConfig(f, 'next', { steps: 2, initAdapter: first.adapterPath }));
    assert.ok(next.losses[0]! < 0.6 * first.losses[0]!, `a trained start: ${next.losses[0]} vs ${first.losses[0]} from scratch`);
    await assert.rejects(runTraining(fixtureConfig(f, 'none', { steps: 2, initAdapter: path.join(f.dir, 'missing') })), (e: unknown) => e instanceof UserError && /adapter_config\.json is missing/.test(e.message));
  });
});
