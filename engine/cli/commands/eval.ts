// `lora-studio eval`: the mean loss and perplexity of a model (with or without
// an adapter) over the trained tokens of a dataset, as training measures it.
import type { Command } from 'commander';
import { TRAIN_DEFAULTS } from '../../train/config.ts';
import type { CommandContext } from '../context.ts';
import { intOption } from '../flags.ts';
import { renderEvalResult } from '../render.ts';
import { dataOptions, methodOption, type DataFlags, type Method } from './shared.ts';

interface Flags extends DataFlags {
  model: string;
  adapter?: string;
  method: Method;
  data: string;
  batch: number;
  json?: boolean;
}

export function defineEval(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('eval')
    .summary('measure loss and perplexity on a dataset, with or without an adapter')
    .description(
      'Computes the mean cross-entropy over the trained tokens of a dataset (the tokens a training run ' +
        'would train on) and its perplexity, exp(loss).',
    )
    .requiredOption('--model <dir>', 'base model folder')
    .option('--adapter <dir>', 'PEFT adapter folder (default: none, the base model)')
    .addOption(methodOption())
    .requiredOption('--data <file>', 'evaluation data: .jsonl, .json, .csv/.tsv or .txt');
  for (const o of dataOptions()) cmd.addOption(o);
  cmd
    .addOption(intOption('--batch <n>', 'sequences per forward pass', { min: 1, max: 4096 }).default(TRAIN_DEFAULTS.batchSize))
    .option('--json', 'print one JSON object: loss, perplexity, tokens, examples (default: off)')
    .addHelpText('after', '\nExample:\n  lora-studio eval --model ./tiny --adapter ./run/adapter --data test.jsonl\n')
    .action(async (flags: Flags) => {
      const { evaluateLoss } = await import('../../train/evaluate.ts');
      const result = await evaluateLoss({
        model: flags.model,
        data: flags.data,
        adapter: flags.adapter ?? null,
        method: flags.method,
        seqLen: flags.seqLen,
        batchSize: flags.batch,
        format: flags.format,
        columns: flags.columns ?? null,
        lossOn: flags.lossOn,
        signal: ctx.signal,
      });
      if (flags.json) ctx.stdout.write(JSON.stringify(result) + '\n');
      else ctx.stdout.write(renderEvalResult(result));
    });
}
