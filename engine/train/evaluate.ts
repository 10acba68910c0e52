// Evaluation loss: the token-weighted mean cross-entropy over every trained
// token of a data set (sum of the per-token losses / trained tokens, not a
// mean of per-batch means), and its perplexity exp(loss). The training run's
// periodic evaluation and `lora-studio eval` share evaluateExamples().
//
// Batches are `batchSize` examples right-padded to the longest of them (pad
// labels -100, so padding adds nothing); evaluation has no dropout.
import { EngineModel } from '../api.ts';
import { loadPeftAdapter } from '../adapters/peft.ts';
import { DataError } from '../data/errors.ts';
import type { DataFormat } from '../data/formats.ts';
import type { LossOn } from '../data/masks.ts';
import { paddedBatch } from '../data/packing.ts';
import { TrainingData, type TokenizedExample } from '../data/pipeline.ts';
import { checkTrainField, TRAIN_DEFAULTS } from './config.ts';

export interface EvalTotals {
  /** Sum of the cross-entropy over trained tokens (nats). */
  lossSum: number;
  tokens: number;
  examples: number;
}

export interface EvalResult {
  /** Token-weighted mean cross-entropy (nats per trained token). */
  loss: number;
  perplexity: number;
  tokens: number;
  examples: number;
}

/** Loss sums over `examples` (those without a trained token are skipped), in batches of `batchSize`. */
export async function evaluateExamples(
  model: EngineModel,
  examples: AsyncIterable<TokenizedExample | null>,
  opts: { batchSize: number; padId: number; signal?: AbortSignal },
): Promise<EvalTotals> {
  const totals: EvalTotals = { lossSum: 0, tokens: 0, examples: 0 };
  let group: TokenizedExample[] = [];
  const flush = async () => {
    if (group.length === 0) return;
    const r = await model.evalLoss(paddedBatch(group, opts.padId), { signal: opts.signal });
    totals.lossSum += r.lossSum;
    totals.tokens += r.tokens;
    totals.examples += group.length;
    group = [];
  };
  for await (const e of examples) {
    if (!e || e.trainedTokens === 0) continue;
    group.push(e);
    if (group.length === opts.batchSize) await flush();
  }
  await flush();
  return totals;
}

export function evalResultOf(t: EvalTotals): EvalResult {
  const loss = t.tokens > 0 ? t.lossSum / t.tokens : Number.NaN;
  return { loss, perplexity: Math.exp(loss), tokens: t.tokens, examples: t.examples };
}

export interface EvaluateLossOptions {
  model: string;
  data: string;
  /** A PEFT adapter folder applied on top of the base; none evaluates the base model. */
  adapter?: string | null;
  method: 'lora' | 'qlora';
  seqLen?: number;
  batchSize?: number;
  format?: string;
  columns?: string | null;
  lossOn?: string;
  signal?: AbortSignal;
}

/** Mean loss and perplexity of a model (and adapter) over a data file's trained tokens. */
export async function evaluateLoss(opts: EvaluateLossOptions): Promise<EvalResult> {
  const method = checkTrainField('method', opts.method);
  const seqLen = checkTrainField('seqLen', opts.seqLen ?? TRAIN_DEFAULTS.seqLen);
  const batchSize = checkTrainField('batchSize', opts.batchSize ?? TRAIN_DEFAULTS.batchSize);
  const format = checkTrainField('format', opts.format ?? 'auto') as DataFormat | 'auto';
  const columns = checkTrainField('columns', opts.columns ?? null);
  const lossOn = checkTrainField('lossOn', opts.lossOn ?? TRAIN_DEFAULTS.lossOn) as LossOn;
  const data = await TrainingData.open(opts.model, opts.data, { maxSeqLen: seqLen, format, columns: columns ?? undefined, lossOn });
  const model = await EngineModel.load(opts.model, { method, signal: opts.signal });
  try {
    if (opts.adapter) await loadPeftAdapter(model, opts.adapter, 'eval');
    const totals = await evaluateExamples(model, data.examples(), { batchSize, padId: data.tokenizer.padTokenId, signal: opts.signal });
    if (totals.tokens === 0)
      throw new DataError(
        `${opts.data}: no example has a trained token (with loss on ${lossOn}); check the format and --loss-on`,
        opts.data,
      );
    return evalResultOf(totals);
  } finally {
    model.dispose();
  }
}
