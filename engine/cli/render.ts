// Terminal rendering shared by the commands (and reusable by the app and the
// tests): the training progress bar and event lines, the data report, the
// evaluation result, and number formats.
//
// The training view: on a terminal, one progress bar line kept at the bottom
// (cli-progress), with eval, checkpoint and sample lines printed above it; on
// anything else (a pipe, a file, a test's collector) plain lines, a step line
// about every 5% of the run, so a log stays short.
import cliProgress from 'cli-progress';
import pc from 'picocolors';
import { formatProblem } from '../data/errors.ts';
import { renderSpans, type DataReport } from '../data/inspect.ts';
import type { TrainEvent } from '../train/types.ts';
import type { Output } from './context.ts';

type Colors = ReturnType<typeof pc.createColors>;
type EventOf<T extends TrainEvent['type']> = Extract<TrainEvent, { type: T }>;

// ---- number formats ----------------------------------------------------------------

/** 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

/** Seconds → "42s", "3m 05s", "2h 07m". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A loss with 4 decimals; null as "–". */
export function formatLoss(loss: number | null | undefined): string {
  return loss === null || loss === undefined || !Number.isFinite(loss) ? '–' : loss.toFixed(4);
}

function formatRate(tokensPerSecond: number): string {
  return tokensPerSecond >= 1000 ? `${(tokensPerSecond / 1000).toFixed(1)}k tok/s` : `${Math.round(tokensPerSecond)} tok/s`;
}

function oneLine(text: string, max = 120): string {
  // Control characters would move the terminal cursor; they show as U+FFFD.
  const flat = text.replace(/\s+/g, ' ').trim().replace(/[\u0000-\u001f\u007f-\u009f]/g, '\uFFFD');
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

// ---- training ------------------------------------------------------------------------

/** The step line's fields, shared by the bar and the plain lines. */
export function describeStep(e: EventOf<'step'>, evalLoss: number | null): string {
  return [
    `loss ${formatLoss(e.loss)}`,
    `eval ${formatLoss(evalLoss)}`,
    formatRate(e.tokens_per_second),
    `ETA ${formatDuration(e.eta_seconds)}`,
    `mem ${formatBytes(e.memory.peak_bytes)}`,
  ].join(' │ ');
}

export interface TrainViewOptions {
  color?: boolean;
  /** A live progress bar (needs a terminal). Default: out.isTTY. */
  bar?: boolean;
}

/** Turns the TrainEvent stream into the human view of `lora-studio train`. */
export class TrainView {
  private readonly c: Colors;
  private readonly useBar: boolean;
  private multi: cliProgress.MultiBar | null = null;
  private bar: cliProgress.SingleBar | null = null;
  private totalSteps = 0;
  private lastEvalLoss: number | null = null;
  private lastStep: EventOf<'step'> | null = null;

  constructor(
    private readonly out: Output,
    opts: TrainViewOptions = {},
  ) {
    this.c = pc.createColors(opts.color ?? false);
    this.useBar = opts.bar ?? out.isTTY === true;
  }

  handle(e: TrainEvent): void {
    switch (e.type) {
      case 'start':
        this.totalSteps = e.total_steps;
        for (const line of describeStart(e)) this.line(line);
        this.startBar(e.resumed_from_step ?? 0);
        break;
      case 'step':
        this.totalSteps = e.total_steps;
        this.lastStep = e;
        if (this.bar) this.bar.update(e.step, { text: describeStep(e, this.lastEvalLoss) });
        else if (this.plainStepDue(e.step)) this.line(`step ${e.step}/${e.total_steps} │ ${describeStep(e, this.lastEvalLoss)}`);
        break;
      case 'eval':
        this.lastEvalLoss = e.eval_loss;
        this.line(
          `step ${e.step}: eval loss ${formatLoss(e.eval_loss)}, perplexity ${e.perplexity.toFixed(2)} over ${e.tokens} tokens` +
            (e.best ? this.c.green(' (best so far)') : ''),
        );
        break;
      case 'checkpoint':
        this.line(this.c.dim(`step ${e.step}: checkpoint written to ${e.path}`));
        break;
      case 'sample':
        this.line(`step ${e.step}: sample for ${this.c.bold(JSON.stringify(oneLine(e.prompt, 60)))} → ${oneLine(e.output)}`);
        break;
      case 'done':
        this.stopBar();
        for (const line of describeDone(e, this.c)) this.line(line);
        break;
      case 'error':
        this.stopBar();
        break;
    }
  }

  /** A line of text above the bar (or a plain line). */
  note(text: string): void {
    this.line(text);
  }

  /** Stops the bar (safe to call more than once), e.g. before an error message. */
  close(): void {
    this.stopBar();
  }

  private plainStepDue(step: number): boolean {
    const every = Math.max(1, Math.round(this.totalSteps / 20));
    return step === 1 || step === this.totalSteps || step % every === 0;
  }

  private line(text: string): void {
    if (this.multi) this.multi.log(`${text}\n`);
    else this.out.write(`${text}\n`);
  }

  private startBar(from: number): void {
    if (!this.useBar || this.bar || this.totalSteps <= 0) return;
    const width = 24;
    this.multi = new cliProgress.MultiBar({
      stream: this.out as unknown as NodeJS.WritableStream,
      hideCursor: true,
      clearOnComplete: false,
      gracefulExit: false,
      linewrap: false,
      format: (_options, params, payload: { text?: string }) => {
        const done = Math.round(params.progress * width);
        const bar = '█'.repeat(done) + '░'.repeat(width - done);
        return `step ${params.value}/${params.total} ${this.c.cyan(bar)} ${payload.text ?? ''}`;
      },
    });
    this.bar = this.multi.create(this.totalSteps, from, { text: 'starting…' });
  }

  private stopBar(): void {
    if (!this.multi) return;
    if (this.bar && this.lastStep) this.bar.update(this.lastStep.step, { text: describeStep(this.lastStep, this.lastEvalLoss) });
    this.multi.stop();
    this.multi = null;
    this.bar = null;
  }
}

export function describeStart(e: EventOf<'start'>): string[] {
  const c = e.config;
  const lines = [
    `${e.resumed_from_step !== null ? `Resuming from step ${e.resumed_from_step}: ` : ''}training a ${c.method === 'qlora' ? 'QLoRA' : 'LoRA'} adapter ` +
      `(rank ${c.rank}, alpha ${c.alpha}, ${c.targets.join(', ')}) on ${c.model}`,
    `${e.train_examples} training examples from ${c.data}, ${e.eval_examples} for evaluation; ${e.total_steps} optimizer steps ` +
      `of ${c.batchSize} × ${c.gradAccum} sequences of up to ${c.seqLen} tokens`,
  ];
  const notes: string[] = [];
  if (e.truncated > 0) notes.push(`${e.truncated} truncated to ${c.seqLen} tokens`);
  if (e.dropped > 0) notes.push(`${e.dropped} dropped as too long`);
  if (e.no_trained_tokens > 0) notes.push(`${e.no_trained_tokens} without a trained token`);
  if (e.skipped_bad_records > 0) notes.push(`${e.skipped_bad_records} bad records skipped`);
  if (notes.length > 0) lines.push(`Data: ${notes.join(', ')}.`);
  lines.push(`Output: ${c.out}`);
  return lines;
}

export function describeDone(e: EventOf<'done'>, c: Colors = pc.createColors(false)): string[] {
  const head =
    e.reason === 'completed'
      ? c.green(`Done: ${e.step} steps in ${formatDuration(e.elapsed_seconds)}.`)
      : e.reason === 'early-stopped'
        ? c.green(`Stopped early at step ${e.step} (the eval loss stopped improving), ${formatDuration(e.elapsed_seconds)}.`)
        : c.yellow(`Stopped at step ${e.step} after ${formatDuration(e.elapsed_seconds)}.`);
  return [
    head,
    `  train loss ${formatLoss(e.train_loss)}, eval loss ${formatLoss(e.eval_loss)}`,
    `  adapter:    ${e.adapter_path}`,
    `  checkpoint: ${e.checkpoint_path}`,
    `  peak memory ${formatBytes(e.memory.peak_bytes)} (engine), ${formatBytes(e.memory.rss_bytes)} (process)`,
  ];
}

// ---- data report ---------------------------------------------------------------------

/** The human view of inspectData's report, first example included. */
export function renderDataReport(r: DataReport, opts: { color?: boolean } = {}): string {
  const pct = (a: number, b: number) => (b === 0 ? '0%' : `${((100 * a) / b).toFixed(1)}%`);
  const L = r.length;
  const lines = [
    `Data:        ${r.file} (${r.format}, ${r.container})`,
    `Records:     ${r.records} good${r.badRecords > 0 ? `, ${r.badRecords} bad (skipped)` : ''}`,
    `Examples:    ${r.examples} (sequence length ${r.maxSeqLen})`,
    `Tokens:      ${r.tokens.total} in all, ${r.tokens.trained} trained (${pct(r.tokens.trained, r.tokens.total)})`,
    `Length:      min ${L.min}, mean ${L.mean.toFixed(1)}, p50 ${L.p50}, p90 ${L.p90}, p99 ${L.p99}, max ${L.max} tokens`,
    `Truncated:   ${r.truncated}; dropped: ${r.dropped}; without a trained token: ${r.noTrainedTokens}; duplicates: ${r.duplicates}`,
    `Template:    ${r.chatTemplate === 'model' ? "the model's chat template" : 'none in the model; the ChatML fallback'}`,
  ];
  for (const p of r.problems) lines.push(`  skipped ${formatProblem(p)}`);
  if (r.firstExample) {
    const how = opts.color ? 'trained text in green' : 'trained text in ⟦ ⟧';
    lines.push('', `First example (line ${r.firstExample.line}, ${r.firstExample.tokens} tokens; ${how}):`);
    lines.push(renderSpans(r.firstExample.spans, { color: opts.color }));
  }
  return lines.join('\n') + '\n';
}

// ---- evaluation ----------------------------------------------------------------------

export interface EvalResult {
  loss: number;
  perplexity: number;
  tokens: number;
  examples: number;
}

export function renderEvalResult(r: EvalResult): string {
  return `loss ${formatLoss(r.loss)}\nperplexity ${r.perplexity.toFixed(4)}\n(${r.tokens} trained tokens in ${r.examples} examples)\n`;
}

// ---- a counter bar (export) ------------------------------------------------------------

/** "<label> [███░░] done/total name" on a terminal; silent elsewhere. */
export class CountBar {
  private bar: cliProgress.SingleBar | null = null;

  constructor(
    private readonly out: Output,
    private readonly label: string,
  ) {}

  update(done: number, total: number, name: string): void {
    if (this.out.isTTY !== true) return;
    if (!this.bar) {
      this.bar = new cliProgress.SingleBar({
        stream: this.out as unknown as NodeJS.WritableStream,
        format: `${this.label} {bar} {value}/{total} {name}`,
        hideCursor: true,
        gracefulExit: false,
        linewrap: false,
      });
      this.bar.start(total, done, { name });
    } else this.bar.update(done, { name });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
