// The `lora-studio` command tree: one commander Command per subcommand, each
// defined in commands/<name>.ts. Commands are created with program.command() so
// they inherit the output routing and exitOverride set here.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import type { CommandContext } from './context.ts';
import { defineCompare } from './commands/compare.ts';
import { defineDemo } from './commands/demo.ts';
import { defineEstimate } from './commands/estimate.ts';
import { defineEval } from './commands/eval.ts';
import { defineExport } from './commands/export.ts';
import { defineFit } from './commands/fit.ts';
import { defineGenerate } from './commands/generate.ts';
import { defineInspectData } from './commands/inspect-data.ts';
import { defineMakeTinyModel } from './commands/make-tiny-model.ts';
import { defineTrain } from './commands/train.ts';

const EXAMPLES = `
Examples:
  lora-studio demo                                  train a tiny model end to end and compare
  lora-studio make-tiny-model ./tiny                a tiny random model to try things on
  lora-studio inspect-data --model ./tiny --data chat.jsonl
  lora-studio train --model ./tiny --data chat.jsonl --out ./run --steps 100
  lora-studio train --resume ./run                  continue a stopped run
  lora-studio eval --model ./tiny --adapter ./run/adapter --data test.jsonl
  lora-studio generate --model ./tiny --adapter ./run/adapter --prompt "Hello"
  lora-studio compare --model ./tiny --adapter ./run/adapter --prompts prompts.txt --out cmp.md
  lora-studio export --adapter ./run/adapter --to merged --model ./tiny --out ./merged

Exit status: 0 success, 1 bad input (flags, files), 2 internal error (a log
file is named), 130 stopped by Ctrl-C.
Run 'lora-studio <command> --help' for the flags of a command.
`;

/**
 * Test hook, for the tests of the exit status only: when LORA_STUDIO_CLI_TEST_CRASH
 * is set, every command fails with an internal error before doing anything, so
 * the tests can check the exit status 2 and the log file without a real bug.
 */
export const TEST_CRASH_ENV = 'LORA_STUDIO_CLI_TEST_CRASH';

export function buildProgram(ctx: CommandContext): Command {
  const program = new Command('lora-studio')
    .description('Fine-tune open large language models with LoRA and QLoRA on your own PC.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [command]', 'show help for a command')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.stdout.write(s),
      writeErr: (s) => ctx.stderr.write(s),
      outputError: (s, write) => write(`lora-studio: ${s.replace(/^error: /, '')}`),
    })
    .showHelpAfterError('(run with --help for the list of flags)')
    .addHelpText('after', EXAMPLES);

  defineMakeTinyModel(program, ctx);
  defineTrain(program, ctx);
  defineEval(program, ctx);
  defineGenerate(program, ctx);
  defineCompare(program, ctx);
  defineInspectData(program, ctx);
  defineExport(program, ctx);
  defineDemo(program, ctx);
  defineEstimate(program, ctx);
  defineFit(program, ctx);

  program.hook('preAction', () => {
    if (process.env[TEST_CRASH_ENV]) throw new Error(`crash requested by ${TEST_CRASH_ENV} (test hook)`);
  });
  return program;
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}
