// Learning-rate schedules against values worked out by hand from the
// transformers formulas, and the run settings' defaults and error messages.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { PROJECTIONS } from '../../engine/api.ts';
import { UserError } from '../../engine/model/errors.ts';
import { resolveTrainConfig } from '../../engine/train/config.ts';
import { learningRate, lrMultiplier } from '../../engine/train/schedule.ts';
import type { Schedule } from '../../engine/train/types.ts';

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

describe('schedules', () => {
  // T = 10 steps, W = 2 warmup steps; step k uses the multiplier at s = k - 1.
  const table: Record<Schedule, number[]> = {
    // warmup 0/2, 1/2, then 1
    constant: [0, 0.5, 1, 1, 1, 1, 1, 1, 1, 1],
    // warmup, then (10 - s) / 8 for s = 2..9
    linear: [0, 0.5, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8],
    // warmup, then 0.5 (1 + cos(π (s - 2) / 8)) for s = 2..9
    cosine: [
      0, 0.5, 1,
      0.5 * (1 + Math.sqrt(2 + Math.SQRT2) / 2), // cos(π/8) = sqrt(2 + √2) / 2
      0.5 * (1 + Math.SQRT1_2), // cos(π/4)
      0.5 * (1 + Math.sqrt(2 - Math.SQRT2) / 2), // cos(3π/8)
      0.5, // cos(π/2) = 0
      0.5 * (1 - Math.sqrt(2 - Math.SQRT2) / 2),
      0.5 * (1 - Math.SQRT1_2),
      0.5 * (1 - Math.sqrt(2 + Math.SQRT2) / 2),
    ],
  };
  for (const [schedule, want] of Object.entries(table) as [Schedule, number[]][])
    it(`${schedule}: linear warmup from 0, then the transformers curve`, () => {
      want.forEach((m, i) => close(lrMultiplier({ schedule, warmupSteps: 2, totalSteps: 10 }, i + 1), m, `${schedule} step ${i + 1}`));
      close(learningRate({ schedule, lr: 2e-4, warmupSteps: 2, totalSteps: 10 }, 4), 2e-4 * want[3]!, `${schedule} lr at step 4`);
    });

  it('without warmup the first step trains at the full rate, and the rate never goes below 0', () => {
    for (const schedule of ['constant', 'linear', 'cosine'] as const) close(lrMultiplier({ schedule, warmupSteps: 0, totalSteps: 5 }, 1), 1, schedule);
    close(lrMultiplier({ schedule: 'linear', warmupSteps: 0, totalSteps: 4 }, 4), 1 / 4, 'linear last step');
    close(lrMultiplier({ schedule: 'linear', warmupSteps: 0, totalSteps: 4 }, 7), 0, 'linear past the end');
    close(lrMultiplier({ schedule: 'cosine', warmupSteps: 0, totalSteps: 4 }, 5), 0, 'cosine at the end');
    assert.throws(() => lrMultiplier({ schedule: 'constant', warmupSteps: 0, totalSteps: 4 }, 0), /count from 1/);
  });
});

describe('resolveTrainConfig', () => {
  const base = { model: 'm', data: 'd.jsonl', out: 'o' };

  it('fills in the documented defaults and makes paths absolute', () => {
    const c = resolveTrainConfig(base);
    assert.equal(c.model, path.resolve('m'));
    assert.equal(c.out, path.resolve('o'));
    assert.deepEqual(c.targets, [...PROJECTIONS]);
    assert.equal(c.epochs, 1);
    assert.equal(c.steps, null);
    const picked = (({ method, rank, alpha, dropout, rslora, format, lossOn, seqLen, truncation, batching, shuffle, lr, schedule, warmupSteps, batchSize, gradAccum, weightDecay, adamBeta1, adamBeta2, adamEps, maxGradNorm, seed, gradientCheckpointing, evalSplit, evalEvery, earlyStoppingPatience, saveEvery, keepCheckpoints, samplePrompts, sampleMaxTokens }) =>
      ({ method, rank, alpha, dropout, rslora, format, lossOn, seqLen, truncation, batching, shuffle, lr, schedule, warmupSteps, batchSize, gradAccum, weightDecay, adamBeta1, adamBeta2, adamEps, maxGradNorm, seed, gradientCheckpointing, evalSplit, evalEvery, earlyStoppingPatience, saveEvery, keepCheckpoints, samplePrompts, sampleMaxTokens }))(c);
    assert.deepEqual(picked, {
      method: 'lora', rank: 16, alpha: 32, dropout: 0.05, rslora: false, format: 'auto', lossOn: 'assistant', seqLen: 512, truncation: 'truncate',
      batching: 'packed', shuffle: true, lr: 2e-4, schedule: 'cosine', warmupSteps: 0, batchSize: 1, gradAccum: 1, weightDecay: 0, adamBeta1: 0.9,
      adamBeta2: 0.999, adamEps: 1e-8, maxGradNorm: 1, seed: 42, gradientCheckpointing: true, evalSplit: 0, evalEvery: 0, earlyStoppingPatience: 0,
      saveEvery: 0, keepCheckpoints: 3, samplePrompts: [], sampleMaxTokens: 64,
    });
    assert.equal(resolveTrainConfig({ ...base, steps: 30 }).epochs, null);
    assert.deepEqual(resolveTrainConfig({ ...base, targets: ['v_proj', 'q_proj'] }).targets, ['q_proj', 'v_proj']);
  });

  // Each bad setting: the message names the flag the user typed, and shows what was given or what to do.
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ lr: -1 }, /^--lr must be a positive number.*got -1$/],
    [{ lr: 'fast' }, /^--lr must be .* got "fast"$/],
    [{ rank: 0 }, /^--rank must be an integer from 1 to 4096.*got 0$/],
    [{ rank: 2.5 }, /^--rank must be .*got 2\.5$/],
    [{ alpha: 0 }, /^--alpha must be a positive number/],
    [{ dropout: 1 }, /^--dropout must be a number from 0 to 0\.99/],
    [{ targets: [] }, /^--targets must be a list of one or more of q_proj/],
    [{ targets: ['qkv'] }, /^--targets .*got \["qkv"\]$/],
    [{ method: 'full' }, /^--method must be 'lora' or 'qlora', got "full"$/],
    [{ schedule: 'step' }, /^--schedule must be 'constant', 'linear' or 'cosine'/],
    [{ batching: 'dynamic' }, /^--batching must be/],
    [{ lossOn: 'user' }, /^--loss-on must be/],
    [{ seqLen: 1 }, /^--seq-len must be an integer of at least 2/],
    [{ batchSize: 0 }, /^--batch must be/],
    [{ gradAccum: -2 }, /^--grad-accum must be/],
    [{ adamBeta2: 1 }, /^--adam-beta2 must be a number in \[0, 1\)/],
    [{ adamEps: 0 }, /^--adam-eps must be a positive number/],
    [{ maxGradNorm: -1 }, /^--max-grad-norm must be/],
    [{ seed: -5 }, /^--seed must be a whole number/],
    [{ evalSplit: 0.6 }, /^--eval-split must be a fraction from 0 to 0\.5.*got 0\.6$/],
    [{ warmupSteps: -1 }, /^--warmup must be/],
    [{ format: 'yaml' }, /^--format must be one of 'auto', 'chat'/],
    [{ samplePrompts: [''] }, /^--sample-prompt must be a list of non-empty prompts/],
    [{ steps: 10, epochs: 2 }, /--steps and --epochs cannot both be set/],
    [{ steps: 5, warmupSteps: 10 }, /--warmup \(10\) is longer than the run \(--steps 5\)/],
    [{ earlyStoppingPatience: 3 }, /--early-stopping needs evaluation data: set --eval-split/],
    [{ earlyStoppingPatience: 3, evalSplit: 0.1 }, /--early-stopping needs evaluations during the run: set --eval-every/],
    [{ evalEvery: 10 }, /--eval-every needs evaluation data/],
    [{ learningRate: 1 }, /unknown training setting 'learningRate'/],
    [{ model: '' }, /--model is required/],
  ];
  for (const [input, message] of bad)
    it(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => resolveTrainConfig({ ...base, ...input } as Parameters<typeof resolveTrainConfig>[0]),
        (e: unknown) => e instanceof UserError && message.test(e.message),
      );
    });

  it('accepts the edges of each range', () => {
    resolveTrainConfig({ ...base, evalSplit: 0.5, evalEvery: 5, earlyStoppingPatience: 2, dropout: 0, maxGradNorm: 0, adamBeta1: 0, keepCheckpoints: 0, epochs: 3 });
    resolveTrainConfig({ ...base, evalData: 'e.jsonl', evalEvery: 1, earlyStoppingPatience: 1 });
  });
});
