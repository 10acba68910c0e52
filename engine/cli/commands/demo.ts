// `lora-studio demo`: makes a tiny model, trains an adapter on the bundled
// demo data and prints base against adapted outputs (engine/demo/demo.ts).
import type { Command } from 'commander';
import { EXIT_INTERRUPTED, type CommandContext } from '../context.ts';

export function defineDemo(program: Command, ctx: CommandContext): void {
  program
    .command('demo')
    .summary('train a tiny model end to end and show base vs adapted outputs')
    .description('Makes a tiny model, trains an adapter on the bundled demo data, and prints the comparison. Takes well under a minute on a laptop.')
    .option('--work-dir <dir>', 'keep the model, run and comparison in this folder (default: a temporary folder)')
    .option('--json', 'print JSON instead of text (default: off)')
    .addHelpText('after', '\nExample:\n  lora-studio demo --work-dir ./demo\n')
    .action(async (flags: { workDir?: string; json?: boolean }) => {
      const { runDemo } = await import('../../demo/demo.ts');
      await runDemo({ workDir: flags.workDir, json: flags.json === true, write: (text: string) => ctx.stdout.write(text), signal: ctx.signal });
      if (ctx.interrupted) ctx.exitCode = EXIT_INTERRUPTED;
    });
}
