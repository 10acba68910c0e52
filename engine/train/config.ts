// A training run's settings: defaults for what the user left out, and checks
// of everything, with errors that name the setting as the user typed it (the
// command-line flag, e.g. "--lr") and say what to do.
//
// Each field has a zod schema and a phrase for what it must be; the first
// failing field gives "<flag> must be <phrase>, got <value>". Paths are made
// absolute, so a checkpoint's stored config still points at the same files
// when a run is resumed from another folder.
import path from 'node:path';
import { z } from 'zod';
import { PROJECTIONS } from '../api.ts';
import { DATA_FORMATS } from '../data/formats.ts';
import { UserError } from '../model/errors.ts';
import type { TrainConfig } from './types.ts';

/** The command-line flag of each setting (the name errors use). */
export const TRAIN_FLAGS: Record<keyof TrainConfig, string> = {
  model: '--model',
  data: '--data',
  out: '--out',
  method: '--method',
  rank: '--rank',
  alpha: '--alpha',
  dropout: '--dropout',
  rslora: '--rslora',
  targets: '--targets',
  initAdapter: '--init-adapter',
  format: '--format',
  columns: '--columns',
  lossOn: '--loss-on',
  seqLen: '--seq-len',
  truncation: '--truncation',
  skipBadRecords: '--skip-bad-records',
  batching: '--batching',
  shuffle: '--no-shuffle',
  lr: '--lr',
  schedule: '--schedule',
  warmupSteps: '--warmup',
  steps: '--steps',
  epochs: '--epochs',
  batchSize: '--batch',
  gradAccum: '--grad-accum',
  weightDecay: '--weight-decay',
  adamBeta1: '--adam-beta1',
  adamBeta2: '--adam-beta2',
  adamEps: '--adam-eps',
  maxGradNorm: '--max-grad-norm',
  seed: '--seed',
  gradientCheckpointing: '--no-gradient-checkpointing',
  evalSplit: '--eval-split',
  evalData: '--eval-data',
  evalEvery: '--eval-every',
  earlyStoppingPatience: '--early-stopping',
  saveEvery: '--save-every',
  keepCheckpoints: '--keep-checkpoints',
  samplePrompts: '--sample-prompt',
  sampleMaxTokens: '--sample-max-tokens',
};

export const TRAIN_DEFAULTS: Omit<TrainConfig, 'model' | 'data' | 'out'> = {
  method: 'lora',
  rank: 16,
  alpha: 32,
  dropout: 0.05,
  rslora: false,
  targets: [...PROJECTIONS],
  initAdapter: null,
  format: 'auto',
  columns: null,
  lossOn: 'assistant',
  seqLen: 512,
  truncation: 'truncate',
  skipBadRecords: false,
  batching: 'packed',
  shuffle: true,
  lr: 2e-4,
  schedule: 'cosine',
  warmupSteps: 0,
  steps: null,
  epochs: null, // 1 when steps is not set either
  batchSize: 1,
  gradAccum: 1,
  weightDecay: 0,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamEps: 1e-8,
  maxGradNorm: 1,
  seed: 42,
  gradientCheckpointing: true,
  evalSplit: 0,
  evalData: null,
  evalEvery: 0,
  earlyStoppingPatience: 0,
  saveEvery: 0,
  keepCheckpoints: 3,
  samplePrompts: [],
  sampleMaxTokens: 64,
};

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
const path_ = z.string().min(1);
const oneOf = <T extends string>(values: readonly T[]) => z.enum(values as [T, ...T[]]);
const list = (values: readonly string[]) => values.map((v) => `'${v}'`).join(', ');

// Each field: its schema and what it must be (the error's phrase).
const FIELDS: { [K in keyof TrainConfig]: { schema: z.ZodType; must: string } } = {
  model: { schema: path_, must: 'a model folder' },
  data: { schema: path_, must: 'a data file' },
  out: { schema: path_, must: 'an output folder' },
  method: { schema: oneOf(['lora', 'qlora']), must: "'lora' or 'qlora'" },
  rank: { schema: int(1, 4096), must: 'an integer from 1 to 4096 (8-64 is usual)' },
  alpha: { schema: z.number().positive().max(1e6), must: 'a positive number (often twice the rank)' },
  dropout: { schema: z.number().min(0).max(0.99), must: 'a number from 0 to 0.99 (0.05 is usual)' },
  rslora: { schema: z.boolean(), must: 'true or false' },
  targets: { schema: z.array(oneOf(PROJECTIONS)).min(1), must: `a list of one or more of ${PROJECTIONS.join(', ')} (or all)` },
  initAdapter: { schema: path_.nullable(), must: 'a PEFT adapter folder' },
  format: { schema: oneOf(['auto', ...DATA_FORMATS]), must: `one of ${list(['auto', ...DATA_FORMATS])}` },
  columns: { schema: z.string().min(1).nullable(), must: 'a column mapping such as prompt=question,completion=answer' },
  lossOn: { schema: oneOf(['assistant', 'all', 'last-assistant']), must: "'assistant', 'all' or 'last-assistant'" },
  seqLen: { schema: int(2, 1 << 20), must: 'an integer of at least 2 tokens (512-2048 is usual)' },
  truncation: { schema: oneOf(['truncate', 'drop']), must: "'truncate' or 'drop'" },
  skipBadRecords: { schema: z.boolean(), must: 'true or false' },
  batching: { schema: oneOf(['packed', 'padding-free', 'padded']), must: "'packed', 'padding-free' or 'padded'" },
  shuffle: { schema: z.boolean(), must: 'true or false' },
  lr: { schema: z.number().positive().max(10), must: 'a positive number of at most 10 (1e-4 to 3e-4 is usual for LoRA)' },
  schedule: { schema: oneOf(['constant', 'linear', 'cosine']), must: "'constant', 'linear' or 'cosine'" },
  warmupSteps: { schema: int(0), must: 'a whole number of optimizer steps, 0 or more' },
  steps: { schema: int(1).nullable(), must: 'a whole number of optimizer steps, 1 or more' },
  epochs: { schema: int(1, 100000).nullable(), must: 'a whole number of passes over the data, 1 or more' },
  batchSize: { schema: int(1, 4096), must: 'a whole number of sequences, 1 or more' },
  gradAccum: { schema: int(1, 1 << 16), must: 'a whole number of micro-batches, 1 or more' },
  weightDecay: { schema: z.number().min(0).max(10), must: 'a number from 0 to 10 (0 or 0.01 is usual)' },
  adamBeta1: { schema: z.number().min(0).lt(1), must: 'a number in [0, 1) (0.9 is usual)' },
  adamBeta2: { schema: z.number().min(0).lt(1), must: 'a number in [0, 1) (0.999 is usual)' },
  adamEps: { schema: z.number().positive().max(1), must: 'a positive number of at most 1 (1e-8 is usual)' },
  maxGradNorm: { schema: z.number().min(0).max(1e9), must: 'a number, 0 or more (0 turns clipping off; 1 is usual)' },
  seed: { schema: int(0, 0xffffffff), must: 'a whole number from 0 to 4294967295' },
  gradientCheckpointing: { schema: z.boolean(), must: 'true or false' },
  evalSplit: { schema: z.number().min(0).max(0.5), must: 'a fraction from 0 to 0.5 (0.05 or 0.1 is usual)' },
  evalData: { schema: path_.nullable(), must: 'a data file' },
  evalEvery: { schema: int(0), must: 'a whole number of optimizer steps, 0 or more (0: only at the end)' },
  earlyStoppingPatience: { schema: int(0), must: 'a whole number of evaluations, 0 or more (0 turns it off)' },
  saveEvery: { schema: int(0), must: 'a whole number of optimizer steps, 0 or more (0: only at the end)' },
  keepCheckpoints: { schema: int(0), must: 'a whole number, 0 or more (0 keeps all)' },
  samplePrompts: { schema: z.array(z.string().min(1)), must: 'a list of non-empty prompts' },
  sampleMaxTokens: { schema: int(1, 1 << 16), must: 'a whole number of tokens, 1 or more' },
};

const KEYS = Object.keys(FIELDS) as (keyof TrainConfig)[];

function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return JSON.stringify(v);
  return String(v);
}

/** A setting the user gave that cannot be used; `field` is the TrainConfig key, `flag` its flag. */
export class TrainConfigError extends UserError {
  constructor(
    readonly field: keyof TrainConfig | string,
    message: string,
  ) {
    super(message);
  }
}

/** Checks one field; throws a TrainConfigError naming its flag. */
export function checkTrainField<K extends keyof TrainConfig>(key: K, value: unknown): TrainConfig[K] {
  const f = FIELDS[key];
  if (!f.schema.safeParse(value).success)
    throw new TrainConfigError(key, `${TRAIN_FLAGS[key]} must be ${f.must}, got ${shown(value)}`);
  return value as TrainConfig[K];
}

/** Fills in defaults and checks every setting and their combinations. */
export function resolveTrainConfig(input: Partial<TrainConfig> & { model: string; data: string; out: string }): TrainConfig {
  if (input === null || typeof input !== 'object') throw new TrainConfigError('config', 'the training settings must be an object');
  for (const k of Object.keys(input))
    if (!(k in FIELDS)) throw new TrainConfigError(k, `unknown training setting '${k}'; known: ${KEYS.join(', ')}`);
  const merged: Record<string, unknown> = { model: undefined, data: undefined, out: undefined, ...TRAIN_DEFAULTS };
  for (const [k, v] of Object.entries(input)) if (v !== undefined) merged[k] = v;
  for (const k of ['model', 'data', 'out'] as const)
    if (merged[k] === undefined || merged[k] === '') throw new TrainConfigError(k, `${TRAIN_FLAGS[k]} is required`);
  for (const k of KEYS) checkTrainField(k, merged[k]);
  const c = merged as unknown as TrainConfig;

  if (c.steps !== null && c.epochs !== null)
    throw new TrainConfigError('steps', '--steps and --epochs cannot both be set: train for a number of optimizer steps or of passes over the data, not both');
  const epochs = c.steps === null && c.epochs === null ? 1 : c.epochs;
  const hasEval = c.evalData !== null || c.evalSplit > 0;
  if (c.earlyStoppingPatience > 0 && !hasEval)
    throw new TrainConfigError('earlyStoppingPatience', '--early-stopping needs evaluation data: set --eval-split (e.g. 0.1) or --eval-data');
  if (c.earlyStoppingPatience > 0 && c.evalEvery === 0)
    throw new TrainConfigError('earlyStoppingPatience', '--early-stopping needs evaluations during the run: set --eval-every (e.g. 50)');
  if (c.evalEvery > 0 && !hasEval)
    throw new TrainConfigError('evalEvery', '--eval-every needs evaluation data: set --eval-split (e.g. 0.1) or --eval-data');
  if (c.steps !== null && c.warmupSteps > c.steps)
    throw new TrainConfigError('warmupSteps', `--warmup (${c.warmupSteps}) is longer than the run (--steps ${c.steps}); use fewer warmup steps`);

  const abs = (p: string | null) => (p === null ? null : path.resolve(p));
  return {
    ...c,
    model: path.resolve(c.model),
    data: path.resolve(c.data),
    out: path.resolve(c.out),
    initAdapter: abs(c.initAdapter),
    evalData: abs(c.evalData),
    epochs,
    targets: PROJECTIONS.filter((p) => c.targets.includes(p)),
    samplePrompts: [...c.samplePrompts],
  };
}
