// Entry of the `lora-studio` command (bin/lora-studio.mjs calls main()).
// Exit status: 0 success; 1 user error (one message on stderr); 2 internal
// error (a short message naming a log file with the stack); 130 stopped by
// Ctrl-C (context.ts).
import { CommanderError } from 'commander';
import { CommandContext, EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, processIO, type CliIO } from './context.ts';
import { internalMessage, userMessage, writeErrorLog } from './failure.ts';
import { buildProgram } from './program.ts';

/** Runs `lora-studio <argv…>` (argv without node and the script) and resolves to the exit status. */
export async function main(argv: readonly string[], io: CliIO = processIO()): Promise<number> {
  const ctx = new CommandContext(io);
  const program = buildProgram(ctx);
  try {
    await ctx.withSigint(() => program.parseAsync([...argv], { from: 'user' }));
    return ctx.exitCode;
  } catch (e) {
    // Commander has already printed its usage error or help text.
    if (e instanceof CommanderError) return e.exitCode;
    const message = userMessage(e);
    if (message !== null) {
      ctx.failureHook?.({ kind: 'user', message, logPath: null });
      ctx.stderr.write(`lora-studio: ${message}\n`);
      return EXIT_USER_ERROR;
    }
    const logPath = writeErrorLog(e, argv, ctx.logDir);
    const text = internalMessage(e, logPath);
    ctx.failureHook?.({ kind: 'internal', message: text, logPath });
    ctx.stderr.write(`lora-studio: ${text}\n`);
    return EXIT_INTERNAL_ERROR;
  }
}
