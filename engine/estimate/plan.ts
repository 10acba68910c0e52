// The engine's own allocation plan of one training step, from a model's shape
// alone (no weights loaded): the native core computes it from the same layout
// functions the model allocates by (engine/native/src/model/memory_plan.h),
// so the estimate is the engine's arithmetic, not a parallel guess.
import { nativeConfig, PROJECTIONS, type Projection } from '../api.ts';
import type { ModelConfig } from '../model/config.ts';
import { UserError } from '../model/errors.ts';
import { loadNative, type NativeMemoryPlan, type NativeModelShape } from '../native/binding.ts';

export type TrainMethod = 'lora' | 'qlora';

export interface PlanInput {
  config: ModelConfig;
  /** lora: bf16 base; qlora: NF4 base (embeddings and output projection stay bf16). */
  method: TrainMethod | 'f32';
  rank: number;
  targets: readonly Projection[];
  seqLen: number;
  batch: number;
  /** Activation checkpointing (recompute each layer in backward). */
  checkpointing: boolean;
  /** Examples packed into rows (attention segments). Default false. */
  packed?: boolean;
  /** CPU threads whose per-thread scratch is counted; default: the engine's. */
  threads?: number;
}

export type MemoryPlan = NativeMemoryPlan;

/** An estimate input the engine cannot use; the message names the field. */
export class EstimateInputError extends UserError {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
  }
}

function checkInt(field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new EstimateInputError(field, `expected a whole number from ${min} to ${max}, got ${String(v)}`);
  return v;
}

/** Bit p set for each target projection p (q, k, v, o, gate, up, down). */
export function targetMask(targets: readonly Projection[]): number {
  if (!Array.isArray(targets) || targets.length === 0)
    throw new EstimateInputError('targets', `choose at least one of ${PROJECTIONS.join(', ')}`);
  let mask = 0;
  for (const t of targets) {
    const p = PROJECTIONS.indexOf(t);
    if (p < 0) throw new EstimateInputError('targets', `'${String(t)}' is not a projection; use ${PROJECTIONS.join(', ')}`);
    mask |= 1 << p;
  }
  return mask;
}

/** Peak bytes per category of one training step (trainStep + optimizerStep). */
export function planTrainingMemory(input: PlanInput): MemoryPlan {
  const { config: c } = input;
  const format = input.method === 'lora' ? 'bf16' : input.method === 'qlora' ? 'nf4' : input.method === 'f32' ? 'f32' : null;
  if (!format) throw new EstimateInputError('method', `'${String(input.method)}' is not a method; use lora or qlora`);
  const rank = checkInt('rank', input.rank, 1, 4096);
  const seq = checkInt('seq-len', input.seqLen, 1, 1 << 20);
  const batch = checkInt('batch', input.batch, 1, 4096);
  if (batch * seq > 1 << 24) throw new EstimateInputError('batch', `batch × seq-len is ${batch * seq} tokens; the engine takes at most ${1 << 24} per micro-batch`);
  if (format === 'nf4') {
    const qd = c.numHeads * c.headDim, kvd = c.numKvHeads * c.headDim;
    const sizes = [qd * c.hiddenSize, kvd * c.hiddenSize, c.intermediateSize * c.hiddenSize];
    if (sizes.some((n) => n % 64 !== 0))
      throw new EstimateInputError('method', 'QLoRA needs every projection to hold a multiple of 64 weights (NF4 blocks); this shape does not, use lora');
  }
  const spec = {
    config: nativeConfig(c),
    format: format as 'bf16' | 'nf4' | 'f32',
    adapters: [{ rank, targetMask: targetMask(input.targets) }],
    batch,
    seq,
    checkpointing: !!input.checkpointing,
    packed: !!input.packed,
    ...(input.threads !== undefined ? { threads: checkInt('threads', input.threads, 1, 1024) } : {}),
  };
  return loadNative().planMemory(spec);
}
