// The run's data: which examples are trained and which held out, the order of
// each epoch, and the stream of micro-batches from any (epoch, position).
//
// Memory stays bounded for a file of any size: a pre-pass streams the file
// once and keeps only, per example, its token length (Int32, 4 bytes) and the
// indices of the trained and held-out examples (4 bytes each); epochs then read
// each example by its index (TrainingData.exampleAt: one seek).
//
//   n          usable examples (at least one trained token after truncation)
//   order(e)   epoch e's permutation of the trained examples (shuffle) or file order
//   position   how many examples of order(e) the finished micro-batches used
//
// Micro-batches (engine/data/packing.ts):
//   packed        batchSize rows of seqLen tokens; examples packed greedily in order
//   padding-free  batchSize examples concatenated into one row
//   padded        batchSize examples, one per row, padded to the longest
// The last micro-batch of an epoch may be short; rows never mix epochs.
// Greedy packing starts a row with the example that did not fit the previous
// one, so packing restarted at a row's first example rebuilds the same rows:
// a micro-batch boundary is fully described by (epoch, position).
import { CancelledError, type Batch } from '../api.ts';
import { DataError } from '../data/errors.ts';
import { batchTrainedTokens, Packer, packedBatch, paddedBatch, paddingFreeBatch, type PackedRow } from '../data/packing.ts';
import { TrainingData, type PassStats, type TokenizedExample } from '../data/pipeline.ts';
import { hashInts, shuffleInPlace, shuffleState, STREAM } from './rng.ts';
import type { TrainConfig } from './types.ts';

export interface DataPlan {
  train: TrainingData;
  /** Indices (TrainingData example indices) of the trained examples, in file order. */
  trainIndices: Int32Array;
  /** Token length of example i, by example index (0 for examples left out). */
  lengths: Int32Array;
  evalData: TrainingData | null;
  evalIndices: Int32Array;
  /** Counts of the pre-pass over the training file. */
  stats: PassStats & { skippedBadRecords: number };
}

async function usableExamples(data: TrainingData, signal?: AbortSignal): Promise<{ indices: Int32Array; lengths: Int32Array }> {
  let indices = new Int32Array(1024);
  let lengths = new Int32Array(1024);
  let n = 0;
  for await (const e of data.examples()) {
    if ((e.index & 1023) === 0 && signal?.aborted) throw new CancelledError('reading the data');
    if (e.trainedTokens === 0) continue;
    if (n === indices.length) {
      const grown = new Int32Array(n * 2);
      grown.set(indices);
      indices = grown;
    }
    indices[n++] = e.index;
    if (e.index >= lengths.length) {
      const grown = new Int32Array(Math.max(e.index + 1, lengths.length * 2));
      grown.set(lengths);
      lengths = grown;
    }
    lengths[e.index] = e.inputIds.length;
  }
  return { indices: indices.slice(0, n), lengths };
}

/** Opens the data, counts it, and splits off the evaluation examples (seeded). */
export async function planData(config: TrainConfig, signal?: AbortSignal): Promise<DataPlan> {
  const options = {
    maxSeqLen: config.seqLen,
    format: config.format,
    columns: config.columns ?? undefined,
    lossOn: config.lossOn,
    truncation: config.truncation,
    skipBadRecords: config.skipBadRecords,
  };
  const train = await TrainingData.open(config.model, config.data, options);
  const { indices: usable, lengths } = await usableExamples(train, signal);
  const stats = { ...train.stats, skippedBadRecords: train.dataset.badCount };
  if (usable.length === 0)
    throw new DataError(
      `${config.data}: no example has a trained token (${stats.examples} examples, ${stats.dropped} dropped as too long); ` +
        'check the format, --loss-on and --seq-len',
      config.data,
    );

  let trainIndices = usable;
  let evalData: TrainingData | null = null;
  let evalIndices: Int32Array = new Int32Array(0);
  if (config.evalData !== null) {
    evalData = await TrainingData.open(config.model, config.evalData, options);
    evalIndices = (await usableExamples(evalData, signal)).indices;
    if (evalIndices.length === 0)
      throw new DataError(`${config.evalData}: no evaluation example has a trained token; check --eval-data and --loss-on`, config.evalData);
  } else if (config.evalSplit > 0) {
    const held = Math.max(1, Math.round(config.evalSplit * usable.length));
    if (held >= usable.length)
      throw new DataError(
        `${config.data}: ${usable.length} usable example${usable.length === 1 ? '' : 's'} cannot be split ${config.evalSplit} for evaluation ` +
          'and still leave one to train on; add data, lower --eval-split or give --eval-data',
        config.data,
      );
    const picked = shuffleInPlace(usable.slice(), hashInts(config.seed, STREAM.SPLIT)).subarray(0, held);
    const isHeld = new Uint8Array(lengths.length); // 1 byte an example
    for (const i of picked) isHeld[i] = 1;
    evalData = train;
    evalIndices = picked.slice().sort();
    trainIndices = usable.filter((i) => isHeld[i] === 0);
  }
  return { train, trainIndices, lengths, evalData, evalIndices, stats };
}

/** Epoch `epoch`'s order of the trained examples. */
export function epochOrder(plan: DataPlan, config: TrainConfig, epoch: number): Int32Array {
  return config.shuffle ? shuffleInPlace(plan.trainIndices.slice(), shuffleState(config.seed, epoch)) : plan.trainIndices;
}

/** Micro-batches one epoch makes (packing simulated on the token lengths). */
export function microBatchesInEpoch(plan: DataPlan, config: TrainConfig, order: Int32Array): number {
  if (config.batching !== 'packed') return Math.ceil(order.length / config.batchSize);
  let rows = 0;
  let used = 0;
  for (const i of order) {
    const len = plan.lengths[i]!;
    if (used > 0 && used + len > config.seqLen) {
      rows++;
      used = 0;
    }
    used += len;
  }
  if (used > 0) rows++;
  return Math.ceil(rows / config.batchSize);
}

/** Optimizer steps of a run over config.epochs epochs (micro-batches run on across epoch ends). */
export function totalStepsForEpochs(plan: DataPlan, config: TrainConfig): number {
  let micro = 0;
  for (let e = 0; e < config.epochs!; e++) micro += microBatchesInEpoch(plan, config, epochOrder(plan, config, e));
  return Math.ceil(micro / config.gradAccum);
}

export interface MicroBatch {
  batch: Batch;
  trainedTokens: number;
  /** Where the next micro-batch starts. */
  epoch: number;
  position: number;
}

/** Micro-batches from (epoch, position) on; null after the last epoch (maxEpochs null: never). */
export class MicroBatchStream {
  private order: Int32Array;
  private packer: Packer | null = null;

  constructor(
    private readonly plan: DataPlan,
    private readonly config: TrainConfig,
    public epoch: number,
    public position: number,
    private readonly maxEpochs: number | null,
  ) {
    this.order = epochOrder(plan, config, epoch);
  }

  async next(): Promise<MicroBatch | null> {
    if (this.position >= this.order.length) this.nextEpoch();
    if (this.maxEpochs !== null && this.epoch >= this.maxEpochs) return null;
    const batch = this.config.batching === 'packed' ? await this.nextPacked() : await this.nextExamples();
    return { batch, trainedTokens: batchTrainedTokens(batch), epoch: this.epoch, position: this.position };
  }

  private nextEpoch(): void {
    this.epoch++;
    this.position = 0;
    this.packer = null;
    this.order = epochOrder(this.plan, this.config, this.epoch);
  }

  private async example(p: number): Promise<TokenizedExample> {
    const e = await this.plan.train.exampleAt(this.order[p]!);
    if (!e || e.trainedTokens === 0)
      throw new DataError(`${this.config.data}: example ${this.order[p]} changed since the run started; was the file edited while training?`, this.config.data);
    return e;
  }

  // Reads examples into the packer until batchSize rows are finished or the
  // epoch ends. `position` counts the examples in finished rows; the packer
  // may hold more (read up to readPos) for the next row.
  private readPos = 0;
  private async nextPacked(): Promise<Batch> {
    const { batchSize, seqLen } = this.config;
    if (!this.packer) {
      this.packer = new Packer(seqLen, this.plan.train.tokenizer.padTokenId);
      this.readPos = this.position;
    }
    const rows: PackedRow[] = [];
    while (rows.length < batchSize && this.readPos < this.order.length) {
      const full = this.packer.add(await this.example(this.readPos++));
      if (full) {
        rows.push(full);
        this.position += full.examples;
      }
    }
    if (rows.length < batchSize && this.readPos >= this.order.length) {
      const last = this.packer.flush();
      if (last) {
        rows.push(last);
        this.position += last.examples;
      }
    }
    return packedBatch(rows);
  }

  private async nextExamples(): Promise<Batch> {
    const end = Math.min(this.position + this.config.batchSize, this.order.length);
    const group: TokenizedExample[] = [];
    for (let p = this.position; p < end; p++) group.push(await this.example(p));
    this.position = end;
    return this.config.batching === 'padded' ? paddedBatch(group, this.plan.train.tokenizer.padTokenId) : paddingFreeBatch(group);
  }
}
