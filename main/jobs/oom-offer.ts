// What to offer when a training run fails for lack of memory: the next
// smaller settings, one step down the estimate's ladders (engine/estimate/fit.ts)
// in this order:
//   1. a shorter sequence length (the next rung of SEQ_LADDER below the run's)
//   2. a smaller micro-batch (the next rung of BATCH_LADDER), with gradAccum
//      raised so the sequences per optimizer step stay the same
//   3. QLoRA (a 4-bit base) when the run used LoRA
//   4. a smaller rank (the next rung of RANK_LADDER)
// A resumed run cannot change any of these: resumeTraining refuses every
// setting outside RESUME_OVERRIDABLE, because each changes the steps already
// taken. So the offer is a NEW run, initialised from the failed run's last
// checkpoint (its adapter weights, via initAdapter) and trained for the steps
// that were left; its optimizer state and schedule start afresh, and the offer
// says so. A smaller rank cannot start from an adapter of the old rank, so
// that rung starts a fresh adapter, and says that too.
import { BATCH_LADDER, RANK_LADDER, SEQ_LADDER } from '../../engine/estimate/fit.ts';
import type { TrainConfig } from '../../engine/train/types.ts';

export interface OomOffer {
  /** The one setting changed, as the settings panel names it. */
  change: 'seqLen' | 'batchSize' | 'method' | 'rank';
  /** The settings of the new run (out is left to the job manager). */
  config: Omit<TrainConfig, 'out'>;
  /** In words: what changes and what the new run keeps. */
  explanation: string;
}

const below = (ladder: readonly number[], value: number): number | undefined => ladder.find((v) => v < value);

/**
 * The offer for a run that ran out of memory at `stepsDone` of `totalSteps`,
 * with its last checkpoint at `checkpoint` (null: none was written); null when
 * no setting can get smaller.
 */
export function oomOffer(config: TrainConfig, checkpoint: string | null, stepsDone: number, totalSteps: number | null): OomOffer | null {
  const { out: _out, ...rest } = config;
  const remaining = totalSteps !== null && config.epochs === null ? Math.max(1, totalSteps - stepsDone) : null;
  const length = remaining !== null ? { steps: remaining, epochs: null } : {};
  const from = checkpoint
    ? `starts from the adapter of the last checkpoint (step ${stepsDone}) and trains ${remaining !== null ? `the ${remaining} steps that were left` : `for ${config.epochs} epochs`}; ` +
      'its optimizer state and learning-rate schedule start afresh, because a resumed run cannot change this setting'
    : 'starts from the beginning (no checkpoint was written before memory ran out)';
  const keepAdapter = { ...length, initAdapter: checkpoint ?? config.initAdapter };

  const seq = below(SEQ_LADDER, config.seqLen);
  if (seq !== undefined)
    return { change: 'seqLen', config: { ...rest, ...keepAdapter, seqLen: seq }, explanation: `Sequence length ${config.seqLen} → ${seq}: longer examples are cut (or dropped, per the truncation setting). The new run ${from}.` };
  const batch = below(BATCH_LADDER, config.batchSize);
  if (batch !== undefined) {
    const gradAccum = Math.ceil((config.batchSize * config.gradAccum) / batch);
    return {
      change: 'batchSize',
      config: { ...rest, ...keepAdapter, batchSize: batch, gradAccum },
      explanation: `Batch ${config.batchSize} → ${batch} with gradient accumulation ${config.gradAccum} → ${gradAccum}, so each optimizer step still sees about as many sequences. The new run ${from}.`,
    };
  }
  if (config.method === 'lora')
    return { change: 'method', config: { ...rest, ...keepAdapter, method: 'qlora' }, explanation: `QLoRA: the base model is held in 4 bits instead of 16. The new run ${from}.` };
  const rank = below(RANK_LADDER, config.rank);
  if (rank !== undefined)
    return {
      change: 'rank',
      config: { ...rest, initAdapter: null, rank, alpha: (config.alpha / config.rank) * rank },
      explanation: `Rank ${config.rank} → ${rank} (alpha scaled to keep alpha/rank). A rank-${config.rank} adapter cannot seed a rank-${rank} one, so the new run starts a fresh adapter and trains the full length again.`,
    };
  return null;
}
