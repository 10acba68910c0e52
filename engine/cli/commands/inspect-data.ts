// `lora-studio inspect-data`: what a dataset looks like to the model before
// training: counts, token lengths, truncation, and the first example with the
// trained tokens marked.
import type { Command } from 'commander';
import { inspectData } from '../../data/inspect.ts';
import type { CommandContext } from '../context.ts';
import { renderDataReport } from '../render.ts';
import { dataOptions, type DataFlags } from './shared.ts';

interface Flags extends DataFlags {
  model: string;
  data: string;
  skipBadRecords?: boolean;
  json?: boolean;
}

export function defineInspectData(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('inspect-data')
    .summary('show how a dataset is tokenized and which tokens are trained')
    .description(
      'Reads a dataset with the model\'s tokenizer and chat template and reports records, token ' +
        'lengths, truncation and duplicates, then prints the first example with the trained text marked.',
    )
    .requiredOption('--model <dir>', 'model folder (its tokenizer and chat template are used)')
    .requiredOption('--data <file>', 'dataset: .jsonl, .json, .csv/.tsv or .txt');
  for (const o of dataOptions()) cmd.addOption(o);
  cmd
    .option('--skip-bad-records', 'leave bad records out (counted and listed) instead of refusing the file (default: off)')
    .option('--json', 'print the report as one JSON object (default: off)')
    .addHelpText('after', '\nExample:\n  lora-studio inspect-data --model ./tiny --data chat.jsonl --seq-len 512\n')
    .action(async (flags: Flags) => {
      const report = await inspectData(flags.model, flags.data, {
        format: flags.format,
        columns: flags.columns,
        maxSeqLen: flags.seqLen,
        lossOn: flags.lossOn,
        skipBadRecords: flags.skipBadRecords === true,
      });
      if (flags.json) ctx.stdout.write(JSON.stringify(report, null, 2) + '\n');
      else ctx.stdout.write(renderDataReport(report, { color: ctx.color(ctx.stdout) }));
    });
}
