// The training run's contract: its configuration, the events it emits, and
// what it returns. The CLI (`lora-studio train`), the desktop app's job layer
// and the tests all drive `runTraining` (engine/train/run.ts) through these
// types; the JSON event lines of `lora-studio train --json` are exactly
// `TrainEvent` objects, one per line.
//
// Event fields are snake_case: they are a wire format read by other programs.
import type { Projection } from '../api.ts';
import type { DataFormat } from '../data/formats.ts';
import type { LossOn } from '../data/masks.ts';
import type { MemoryCategory } from '../native/binding.ts';

export type Schedule = 'constant' | 'linear' | 'cosine';
/** How micro-batches are built (engine/data/packing.ts). */
export type Batching = 'packed' | 'padding-free' | 'padded';

/** A complete, validated run configuration; stored in every checkpoint. */
export interface TrainConfig {
  /** Base model folder (Hugging Face layout). */
  model: string;
  /** Training data file. */
  data: string;
  /** Output folder: checkpoints/, adapter/ (the final adapter), run.json. */
  out: string;
  method: 'lora' | 'qlora';

  // Adapter
  rank: number;
  alpha: number;
  dropout: number;
  rslora: boolean;
  targets: Projection[];
  /** Start from this PEFT adapter folder instead of a fresh initialisation. */
  initAdapter: string | null;

  // Data
  format: DataFormat | 'auto';
  /** CSV column mapping, e.g. "prompt=question,completion=answer". */
  columns: string | null;
  lossOn: LossOn;
  seqLen: number;
  truncation: 'truncate' | 'drop';
  skipBadRecords: boolean;
  batching: Batching;
  shuffle: boolean;

  // Optimisation
  lr: number;
  schedule: Schedule;
  /** Linear warmup from 0 to lr over this many optimizer steps. */
  warmupSteps: number;
  /** Exactly one of steps / epochs is set. */
  steps: number | null;
  epochs: number | null;
  /** Sequences (rows) per micro-batch. */
  batchSize: number;
  gradAccum: number;
  weightDecay: number;
  adamBeta1: number;
  adamBeta2: number;
  adamEps: number;
  /** 0 turns clipping off. */
  maxGradNorm: number;
  seed: number;
  /** Activation checkpointing (recompute per layer in backward). */
  gradientCheckpointing: boolean;

  // Evaluation
  /** Fraction of the data held out for evaluation (ignored when evalData is set). */
  evalSplit: number;
  evalData: string | null;
  /** Evaluate every N optimizer steps (0: only at the end). */
  evalEvery: number;
  /** Stop after this many evaluations without a new best eval loss (0: off). */
  earlyStoppingPatience: number;

  // Checkpoints and samples
  /** Checkpoint every N optimizer steps (0: only at the end). */
  saveEvery: number;
  /** Keep the newest N step checkpoints (0: keep all). */
  keepCheckpoints: number;
  /** Prompts generated from at each checkpoint ('sample' events). */
  samplePrompts: string[];
  sampleMaxTokens: number;
}

/** Memory as the engine measured it: bytes per allocation category and in total. */
export interface MemoryReport {
  peak_bytes: number;
  categories: Record<MemoryCategory, number>;
  /** Resident set size of the process, bytes. */
  rss_bytes: number;
}

export type TrainEvent =
  | {
      type: 'start';
      time: string;
      config: TrainConfig;
      total_steps: number;
      train_examples: number;
      eval_examples: number;
      /** Examples cut at seqLen / left out (truncation 'drop') / without a trained token. */
      truncated: number;
      dropped: number;
      no_trained_tokens: number;
      skipped_bad_records: number;
      resumed_from_step: number | null;
    }
  | {
      type: 'step';
      step: number;
      total_steps: number;
      epoch: number;
      loss: number;
      lr: number;
      grad_norm: number;
      /** Trained (label != -100) tokens of this optimizer step. */
      trained_tokens: number;
      tokens_per_second: number;
      elapsed_seconds: number;
      eta_seconds: number;
      memory: MemoryReport;
    }
  | { type: 'eval'; step: number; eval_loss: number; perplexity: number; tokens: number; best: boolean }
  | { type: 'checkpoint'; step: number; path: string }
  | { type: 'sample'; step: number; prompt: string; output: string }
  | {
      type: 'done';
      reason: 'completed' | 'early-stopped' | 'stopped';
      step: number;
      adapter_path: string;
      checkpoint_path: string;
      train_loss: number | null;
      eval_loss: number | null;
      elapsed_seconds: number;
      memory: MemoryReport;
    }
  | { type: 'error'; kind: 'user' | 'internal'; message: string; log_path: string | null };

export interface TrainResult {
  reason: 'completed' | 'early-stopped' | 'stopped';
  steps: number;
  /** The final adapter in PEFT layout. */
  adapterPath: string;
  /** The last checkpoint written. */
  checkpointPath: string;
  /** Loss of every optimizer step, index = step - 1 (resumed runs include the earlier steps). */
  losses: number[];
  evalLosses: { step: number; loss: number }[];
}

export interface RunOptions {
  /** Aborting stops the run cleanly after writing a checkpoint ('done' with reason 'stopped'). */
  signal?: AbortSignal;
  onEvent?: (event: TrainEvent) => void;
}
