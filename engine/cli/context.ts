// What a command runs with: where its output goes, whether it may colour it,
// and the AbortSignal that Ctrl-C fires.
//
// Output is a plain `write(text)` sink so tests can run `main()` in-process and
// see every write; by default it is the process's stdout and stderr.
//
// Ctrl-C (SIGINT): the first press aborts the signal, so the running command
// stops cleanly (training writes a checkpoint first); a second press exits at
// once with status 130 (128 + SIGINT, the shell convention for an interrupted
// program). A command that stopped because of the first press also ends with
// status 130.

/** A text sink: process.stdout / process.stderr, or a test's collector. */
export interface Output {
  write(text: string): unknown;
  /** True when the sink is a terminal (progress bars, colours). */
  isTTY?: boolean;
  /** Terminal width in characters, where known. */
  columns?: number;
}

export interface CliIO {
  stdout: Output;
  stderr: Output;
}

export const EXIT_OK = 0;
/** Bad input: a flag, a file, a model folder. One message on stderr, no stack. */
export const EXIT_USER_ERROR = 1;
/** A bug in LoRA Studio: a short message on stderr, the stack in a log file. */
export const EXIT_INTERNAL_ERROR = 2;
/** Stopped by Ctrl-C (128 + SIGINT). */
export const EXIT_INTERRUPTED = 130;

export class CommandContext {
  /** Set by a command that ends with something other than success without throwing. */
  exitCode = EXIT_OK;
  /** Where the full report of an internal error goes (e.g. the training run's folder); null: the OS temp folder. */
  logDir: string | null = null;
  /** Sees a failure before main() prints it (train --json turns it into an 'error' event). */
  failureHook: ((failure: { kind: 'user' | 'internal'; message: string; logPath: string | null }) => void) | null = null;
  private readonly controller = new AbortController();
  private interruptNotice: (() => void) | null = null;

  constructor(readonly io: CliIO) {}

  get stdout(): Output {
    return this.io.stdout;
  }

  get stderr(): Output {
    return this.io.stderr;
  }

  /** Fired by the first Ctrl-C. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get interrupted(): boolean {
    return this.controller.signal.aborted;
  }

  /** Colour only on a terminal, and never when NO_COLOR is set (no-color.org). */
  color(out: Output): boolean {
    return out.isTTY === true && !process.env.NO_COLOR;
  }

  /** What to tell the user on the first Ctrl-C (default: "stopping"). */
  onInterrupt(notice: () => void): void {
    this.interruptNotice = notice;
  }

  /** The first Ctrl-C's effect; exposed so the signal handler and tests share one path. */
  interrupt(): void {
    if (this.controller.signal.aborted) return;
    if (this.interruptNotice) this.interruptNotice();
    else this.stderr.write('\nStopping… (press Ctrl-C again to quit at once)\n');
    this.controller.abort();
  }

  /**
   * Routes SIGINT to this context while `run` runs: first press interrupt(),
   * second press exit(130) at once. Returns run's result.
   */
  async withSigint<T>(run: () => Promise<T>): Promise<T> {
    const onSigint = () => {
      if (!this.controller.signal.aborted) this.interrupt();
      else {
        this.stderr.write('\nQuitting.\n');
        process.exit(EXIT_INTERRUPTED);
      }
    };
    process.on('SIGINT', onSigint);
    try {
      return await run();
    } finally {
      process.off('SIGINT', onSigint);
    }
  }
}

export function processIO(): CliIO {
  return { stdout: process.stdout, stderr: process.stderr };
}
