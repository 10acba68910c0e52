// `lora-studio generate`: text from a prompt, with or without an adapter,
// streamed to stdout token by token as it is generated.
import type { Command } from 'commander';
import { generate, type GenerateResult } from '../../generate/generate.ts';
import { UserError } from '../../model/errors.ts';
import type { ModelTokenizer } from '../../data/tokenizer.ts';
import { EXIT_INTERRUPTED, type CommandContext } from '../context.ts';
import { eosIds, loadModel, loadTokenizer, methodOption, samplingOptions, samplingSettings, type Method, type SamplingFlags } from './shared.ts';

interface Flags extends SamplingFlags {
  model: string;
  adapter?: string;
  method: Method;
  prompt: string;
  system?: string;
  raw?: boolean;
  json?: boolean;
}

export function defineGenerate(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('generate')
    .summary('generate text from a prompt, with or without an adapter')
    .description(
      "Generates a reply to a prompt and streams it to stdout as it comes. The prompt goes through the model's " +
        'chat template as a user message (--raw: as plain text). Ctrl-C stops the generation.',
    )
    .requiredOption('--model <dir>', 'base model folder')
    .option('--adapter <dir>', 'PEFT adapter folder to apply (default: none, the base model)')
    .addOption(methodOption())
    .requiredOption('--prompt <text>', 'the prompt')
    .option('--system <text>', 'a system message before the prompt (default: none)')
    .option('--raw', 'use the prompt as plain text, without the chat template (default: off)');
  for (const o of samplingOptions()) cmd.addOption(o);
  cmd
    .option('--json', 'print one JSON object with the text, token ids and finish reason at the end instead of streaming (default: off)')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  lora-studio generate --model ./tiny --prompt "Hello"\n' +
        '  lora-studio generate --model ./tiny --adapter ./run/adapter --prompt "Hello" --temperature 0.7 --seed 1\n',
    )
    .action(async (flags: Flags) => {
      if (flags.prompt === '') throw new UserError('--prompt is empty; give the text to continue or reply to.');
      if (flags.raw && flags.system !== undefined) throw new UserError('--system needs the chat template; leave out --raw or --system.');
      const tokenizer = await loadTokenizer(flags.model);
      const promptIds = promptTokens(tokenizer, flags);
      const { model } = await loadModel(flags.model, flags.method, flags.adapter, ctx.signal);
      try {
        const { stop, ...sampling } = samplingSettings(flags);
        const it = generate(model, promptIds, {
          ...sampling,
          stop,
          eosTokenIds: eosIds(model, tokenizer),
          decode: (ids) => tokenizer.decode(ids, true),
          signal: ctx.signal,
        });
        let streamed = '';
        let step = await it.next();
        for (; !step.done; step = await it.next()) {
          if (!flags.json && step.value.text !== '') {
            ctx.stdout.write(step.value.text);
            streamed += step.value.text;
          }
        }
        const result: GenerateResult = step.value;
        const text = result.text ?? '';
        if (flags.json) {
          ctx.stdout.write(
            JSON.stringify({
              prompt: flags.prompt,
              text,
              tokens: result.tokens,
              finish_reason: result.finishReason,
              prompt_tokens: result.promptTokens,
              generated_tokens: result.generatedTokens,
              seconds: result.seconds,
            }) + '\n',
          );
        } else {
          ctx.stdout.write(`${text.slice(streamed.length)}\n`);
          const rate = result.seconds > 0 ? ` (${(result.generatedTokens / result.seconds).toFixed(1)} tok/s)` : '';
          ctx.stderr.write(`[${result.finishReason}: ${result.generatedTokens} tokens in ${result.seconds.toFixed(2)} s${rate}]\n`);
        }
        if (result.finishReason === 'cancelled') ctx.exitCode = EXIT_INTERRUPTED;
      } finally {
        model.dispose();
      }
    });
}

/** The prompt's token ids: through the chat template (with the assistant turn opened), or as plain text. */
export function promptTokens(tokenizer: ModelTokenizer, flags: { prompt: string; system?: string; raw?: boolean }): number[] {
  if (flags.raw) return tokenizer.encode(flags.prompt, true);
  const messages = [
    ...(flags.system !== undefined ? [{ role: 'system' as const, content: flags.system }] : []),
    { role: 'user' as const, content: flags.prompt },
  ];
  try {
    return tokenizer.encodeChatPrompt(messages);
  } catch (e) {
    throw new UserError(
      `the model's chat template refused the prompt (${(e as Error).message}); ` +
        `${flags.system !== undefined ? 'leave out --system, or ' : ''}use --raw to skip the template.`,
    );
  }
}
