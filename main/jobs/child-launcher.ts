// The engine process as a Node child process: engine-entry.ts forked through
// tsx, messages over the IPC channel. How it ended is typed for the job layer:
//   exit code 0 or an ordinary code          'exit'
//   killed by kill()                          'signal'
//   SIGKILL/SIGSEGV/SIGABRT/SIGBUS/SIGILL/SIGFPE from elsewhere, a fatal
//   out-of-memory (V8's "heap out of memory", the native allocator's
//   bad_alloc on stderr), or Node's fatal-error code 134  'crash'
// A SIGKILL that we did not send is most often the system's out-of-memory
// killer, and the reason says so.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { EngineExit, EngineProcess, FromEngine, ToEngine } from './engine-process.ts';

export const ENGINE_ENTRY = fileURLToPath(new URL('./engine-entry.ts', import.meta.url));
/** tsx's loader, resolved here so the child finds it whatever its working folder. */
const TSX_LOADER = import.meta.resolve('tsx');

const CRASH_SIGNALS = new Set(['SIGKILL', 'SIGSEGV', 'SIGABRT', 'SIGBUS', 'SIGILL', 'SIGFPE']);
/** Text on the child's stderr that means it died of memory exhaustion. */
const OOM_PATTERN = /heap out of memory|std::bad_alloc|Cannot allocate memory|out of memory/i;
/** Bytes of the child's stderr kept for the crash reason. */
const STDERR_KEEP = 64 * 1024;

/** Classifies how the engine process ended (exported for tests of the mapping). */
export function classifyExit(code: number | null, signal: string | null, killedByUs: boolean, stderr: string): EngineExit {
  const oom = OOM_PATTERN.test(stderr);
  if (signal !== null) {
    if (killedByUs) return { code, signal, reason: 'signal', detail: `the engine was stopped (${signal})` };
    if (oom) return { code, signal, reason: 'crash', detail: 'the engine ran out of memory' };
    if (signal === 'SIGKILL') return { code, signal, reason: 'crash', detail: 'the engine was killed (SIGKILL), most likely by the system because memory ran out' };
    if (CRASH_SIGNALS.has(signal)) return { code, signal, reason: 'crash', detail: `the engine crashed (${signal})` };
    return { code, signal, reason: 'signal', detail: `the engine was stopped (${signal})` };
  }
  if (code !== 0 && oom) return { code, signal, reason: 'crash', detail: 'the engine ran out of memory' };
  // 134 = 128 + SIGABRT: Node's fatal errors abort the process.
  if (code === 134) return { code, signal, reason: 'crash', detail: 'the engine crashed (SIGABRT)' };
  if (code !== 0 && code !== null) {
    const last = lastLine(stderr);
    return { code, signal, reason: 'exit', detail: `the engine exited with code ${code}${last ? `: ${last}` : ''}` };
  }
  return { code, signal, reason: 'exit' };
}

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  return (lines.at(-1) ?? '').slice(0, 500);
}

export interface ChildLauncherOptions {
  /** Script run in the child (default engine-entry.ts). */
  entry?: string;
  /** Node options for the child besides tsx (e.g. a heap limit). */
  execArgv?: string[];
  /** Extra environment for the child. */
  env?: NodeJS.ProcessEnv;
  /** Where the child's stderr goes besides the crash classification (default: the parent's stderr). */
  onStderr?: (chunk: string) => void;
}

/** An engine process that is a Node child: its OS process id too. */
export interface ChildEngineProcess extends EngineProcess {
  readonly pid: number | undefined;
}

/** Launches engine processes as Node children (tsx loads the TypeScript). */
export function nodeChildLauncher(opts: ChildLauncherOptions = {}): () => ChildEngineProcess {
  return () => new NodeChildEngine(opts);
}

class NodeChildEngine implements ChildEngineProcess {
  private readonly child: ChildProcess;
  private readonly messageListeners: Array<(m: FromEngine) => void> = [];
  private readonly exitListeners: Array<(e: EngineExit) => void> = [];
  private killedByUs = false;
  private stderr = '';
  private exited: EngineExit | null = null;

  constructor(opts: ChildLauncherOptions) {
    this.child = fork(opts.entry ?? ENGINE_ENTRY, [], {
      execArgv: ['--import', TSX_LOADER, ...(opts.execArgv ?? [])],
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      serialization: 'json',
    });
    const onStderr = opts.onStderr ?? ((chunk: string) => process.stderr.write(chunk));
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-STDERR_KEEP);
      onStderr(chunk);
    });
    this.child.on('message', (m) => {
      for (const l of this.messageListeners) l(m as FromEngine);
    });
    // A failed spawn reports 'error' and may never 'exit'.
    this.child.on('error', (err) => {
      if (this.child.pid !== undefined) return;
      this.finish({ code: null, signal: null, reason: 'crash', detail: `the engine could not be started (${err.message})` });
    });
    // 'close' comes after stderr is drained, so the classification sees all of it.
    this.child.on('close', (code, signal) => this.finish(classifyExit(code, signal, this.killedByUs, this.stderr)));
  }

  private finish(exit: EngineExit): void {
    if (this.exited) return;
    this.exited = exit;
    for (const l of this.exitListeners) l(exit);
  }

  send(message: ToEngine): void {
    if (this.exited || !this.child.connected) return; // the exit listeners report it
    this.child.send(message);
  }

  onMessage(listener: (message: FromEngine) => void): void {
    this.messageListeners.push(listener);
  }

  onExit(listener: (exit: EngineExit) => void): void {
    this.exitListeners.push(listener);
    if (this.exited) listener(this.exited);
  }

  kill(): void {
    if (this.exited) return;
    this.killedByUs = true;
    this.child.kill('SIGKILL');
  }

  get pid(): number | undefined {
    return this.child.pid;
  }
}
