// `lora-studio train`: a LoRA or QLoRA training run. Flags map one to one onto
// TrainConfig (engine/train/config.ts checks them and fills in defaults); only
// the flags the user typed are passed on, so a resumed run keeps its stored
// settings except those given again.
//
// Output: a progress bar with eval, checkpoint and sample lines and a summary
// (render.ts), or with --json exactly one TrainEvent JSON object per line on
// stdout and nothing else there. Ctrl-C stops after a checkpoint and says how
// to resume (exit status 130); a second Ctrl-C quits at once.
import { type Command, Option } from 'commander';
import { PROJECTIONS } from '../../api.ts';
import { DATA_FORMATS } from '../../data/formats.ts';
import { resolveTrainConfig, TRAIN_DEFAULTS, TRAIN_FLAGS } from '../../train/config.ts';
import type { TrainConfig, TrainEvent, TrainResult } from '../../train/types.ts';
import { EXIT_INTERRUPTED, type CommandContext } from '../context.ts';
import { choiceOption, flagName, intOption, numberOption, parseNameList, repeatableOption } from '../flags.ts';
import { TrainView } from '../render.ts';
import { LOSS_ON_CHOICES } from './shared.ts';

type Field = Exclude<keyof TrainConfig, 'model' | 'data' | 'out'>;

/** One flag per TrainConfig field (its name from TRAIN_FLAGS), with the default shown in --help. */
function fieldOptions(): { field: Field; option: Option }[] {
  const d = TRAIN_DEFAULTS;
  const f = (field: Field, option: Option) => {
    if (flagName(option.flags) !== TRAIN_FLAGS[field]) throw new Error(`train: ${option.flags} is not the flag of ${field}`);
    return { field, option };
  };
  const int = (field: Field, arg: string, what: string, min: number, max?: number) =>
    f(field, intOption(`${TRAIN_FLAGS[field]} <${arg}>`, what, { min, max }).default(d[field]));
  const num = (field: Field, arg: string, what: string, min: number, max?: number) =>
    f(field, numberOption(`${TRAIN_FLAGS[field]} <${arg}>`, what, { min, max }).default(d[field]));
  const choice = (field: Field, arg: string, what: string, choices: readonly string[]) =>
    f(field, choiceOption(`${TRAIN_FLAGS[field]} <${arg}>`, what, choices).default(d[field]));
  return [
    // adapter
    choice('method', 'method', 'lora (16-bit base) or qlora (4-bit NF4 base)', ['lora', 'qlora']),
    int('rank', 'r', 'LoRA rank', 1, 4096),
    num('alpha', 'x', 'LoRA alpha; the update is scaled by alpha / rank', 0),
    num('dropout', 'p', 'dropout on the LoRA input', 0, 0.99),
    f('rslora', new Option('--rslora', 'rank-stabilised scaling alpha / sqrt(rank) (default: off)')),
    f(
      'targets',
      new Option('--targets <list>', `projections to adapt: comma list of ${PROJECTIONS.join(',')}, or all`)
        .argParser((v: string) => parseNameList('--targets', v, PROJECTIONS))
        .default(d.targets, 'all'),
    ),
    f('initAdapter', new Option('--init-adapter <peft-dir>', 'start from this PEFT adapter instead of a fresh one (default: fresh)')),
    // data
    choice('format', 'format', 'record format; auto detects it', ['auto', ...DATA_FORMATS]),
    f('columns', new Option('--columns <map>', 'CSV columns for the record fields, e.g. prompt=question,completion=answer (default: columns named like the fields)')),
    choice('lossOn', 'which', 'which tokens of a conversation are trained', LOSS_ON_CHOICES),
    int('seqLen', 'n', 'longest sequence in tokens', 2, 1 << 20),
    choice('truncation', 'how', 'longer examples: truncate (keep the start) or drop', ['truncate', 'drop']),
    f('skipBadRecords', new Option('--skip-bad-records', 'leave bad records out (counted) instead of refusing the file (default: off)')),
    choice('batching', 'how', 'packed (examples share rows), padding-free or padded', ['packed', 'padding-free', 'padded']),
    f('shuffle', new Option('--no-shuffle', 'keep the data order (default: shuffled with --seed)')),
    // optimisation
    num('lr', 'rate', 'peak learning rate', 0, 10),
    choice('schedule', 'schedule', 'learning-rate schedule after warmup', ['constant', 'linear', 'cosine']),
    int('warmupSteps', 'steps', 'linear warmup steps', 0),
    f('steps', intOption('--steps <n>', 'optimizer steps (default: 1 epoch when neither --steps nor --epochs is given)', { min: 1 }).conflicts('epochs')),
    f('epochs', intOption('--epochs <n>', 'passes over the data (default: 1 unless --steps is given)', { min: 1, max: 100000 })),
    int('batchSize', 'n', 'sequences per micro-batch', 1, 4096),
    int('gradAccum', 'n', 'micro-batches per optimizer step', 1, 1 << 16),
    num('weightDecay', 'x', 'AdamW weight decay', 0, 10),
    num('adamBeta1', 'x', 'AdamW beta1', 0, 1),
    num('adamBeta2', 'x', 'AdamW beta2', 0, 1),
    num('adamEps', 'x', 'AdamW epsilon', 0, 1),
    num('maxGradNorm', 'x', 'clip the gradient to this global norm; 0 turns clipping off', 0),
    int('seed', 'n', 'seed of initialisation, data order and dropout', 0, 0xffffffff),
    f('gradientCheckpointing', new Option('--no-gradient-checkpointing', 'keep all activations: faster, more memory (default: recompute per layer)')),
    // evaluation
    f('evalSplit', numberOption('--eval-split <fraction>', 'hold out this fraction of the data for evaluation', { min: 0, max: 0.5 }).default(d.evalSplit).conflicts('evalData')),
    f('evalData', new Option('--eval-data <file>', 'evaluation data file (default: none; see --eval-split)')),
    int('evalEvery', 'steps', 'evaluate every N steps; 0: only at the end', 0),
    int('earlyStoppingPatience', 'n', 'stop after N evaluations without a better eval loss; 0 turns it off', 0),
    // checkpoints and samples
    int('saveEvery', 'steps', 'checkpoint every N steps; 0: only at the end', 0),
    int('keepCheckpoints', 'n', 'keep the newest N checkpoints; 0 keeps all', 0),
    f('samplePrompts', repeatableOption('--sample-prompt <text>', 'generate from this prompt at each checkpoint')),
    int('sampleMaxTokens', 'n', 'tokens generated per sample', 1, 1 << 16),
  ];
}

interface RunFlags {
  model?: string;
  data?: string;
  out?: string;
  resume?: string;
  json?: boolean;
}

export function defineTrain(program: Command, ctx: CommandContext): void {
  const fields = fieldOptions();
  const cmd = program
    .command('train')
    .summary('train a LoRA or QLoRA adapter on a dataset')
    .description(
      'Trains a LoRA (or QLoRA) adapter on a base model. Writes checkpoints and the final adapter ' +
        '(PEFT layout) under --out. Ctrl-C stops after writing a checkpoint (exit status 130); ' +
        'continue with --resume. A second Ctrl-C quits at once.',
    )
    .option('--model <dir>', 'base model folder (Hugging Face layout); required unless --resume')
    .option('--data <file>', 'training data (.jsonl, .json, .csv/.tsv, .txt); required unless --resume')
    .option('--out <dir>', 'output folder: checkpoints/, adapter/, run.json; required unless --resume');
  for (const { option } of fields) cmd.addOption(option);
  cmd
    .option('--resume <dir>', 'continue a stopped run from a checkpoint folder or its output folder (flags given override its settings)')
    .option('--json', 'one JSON event per line on stdout (start, step, eval, checkpoint, sample, done, error) (default: off)')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  lora-studio train --model ./tiny --data chat.jsonl --out ./run --steps 200 --eval-split 0.1 --eval-every 50\n' +
        '  lora-studio train --model ./model --method qlora --rank 16 --data data.csv --columns prompt=q,completion=a --out ./run\n' +
        '  lora-studio train --resume ./run --steps 400      continue, to 400 steps in all\n',
    )
    .action(async (flags: RunFlags, command: Command) => {
      // Only what the user typed: defaults are filled in by resolveTrainConfig,
      // or come from the checkpoint when resuming.
      const given: Partial<TrainConfig> = {};
      for (const { field, option } of fields) {
        const key = option.attributeName();
        if (command.getOptionValueSource(key) === 'cli') (given as Record<string, unknown>)[field] = command.getOptionValue(key);
      }
      await runTrainCommand(ctx, flags, given);
    });
}

async function runTrainCommand(ctx: CommandContext, flags: RunFlags, given: Partial<TrainConfig>): Promise<void> {
  const json = flags.json === true;
  const view = json ? null : new TrainView(ctx.stdout, { color: ctx.color(ctx.stdout) });
  const info = json ? ctx.stderr : ctx.stdout;
  let outDir: string | null = null;
  let sawError = false;
  const onEvent = (e: TrainEvent) => {
    if (e.type === 'start') outDir = e.config.out;
    if (e.type === 'error') sawError = true;
    if (json) ctx.stdout.write(JSON.stringify(e) + '\n');
    else view!.handle(e);
  };
  ctx.failureHook = (f) => {
    view?.close();
    if (json && !sawError) ctx.stdout.write(JSON.stringify({ type: 'error', kind: f.kind, message: f.message, log_path: f.logPath } satisfies TrainEvent) + '\n');
  };
  ctx.onInterrupt(() => {
    const text = 'Stopping after the next checkpoint… (press Ctrl-C again to quit at once and lose the steps since the last checkpoint)';
    if (view) view.note(text);
    else ctx.stderr.write(`${text}\n`);
  });

  // Loaded here, not at the top, so `lora-studio --help` starts fast.
  const { resumeTraining, runTraining } = await import('../../train/run.ts');
  let result: TrainResult;
  if (flags.resume !== undefined) {
    for (const k of ['model', 'data', 'out'] as const) if (flags[k] !== undefined) (given as Record<string, unknown>)[k] = flags[k];
    result = await resumeTraining(flags.resume, { signal: ctx.signal, onEvent, overrides: given });
  } else {
    const config = resolveTrainConfig({ ...given, model: flags.model ?? '', data: flags.data ?? '', out: flags.out ?? '' });
    ctx.logDir = config.out;
    result = await runTraining(config, { signal: ctx.signal, onEvent });
  }
  view?.close();
  if (result.reason === 'stopped') {
    const from = outDir ?? result.checkpointPath;
    info.write(`Stopped at step ${result.steps}; checkpoint: ${result.checkpointPath}\nResume with: lora-studio train --resume ${shellQuote(from)}\n`);
    if (ctx.interrupted) ctx.exitCode = EXIT_INTERRUPTED;
  }
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
