// Why the engine process ended, in the job layer's terms: 'exit' (it returned
// a code), 'signal' (the app stopped it), 'crash' (a native fault, out of
// memory, or killed by the system). Electron reports a utility process's end
// twice: the process's 'exit' event (a code only) and app 'child-process-gone'
// (a reason); a Node child process reports a code or a signal.
import type { EngineExit } from '../main/jobs/engine-process.ts';

/** app 'child-process-gone' details.reason (Electron). */
export type GoneReason =
  | 'clean-exit' | 'abnormal-exit' | 'killed' | 'crashed' | 'oom' | 'launch-failed' | 'integrity-failure' | 'memory-eviction';

export interface RawExit {
  code: number | null;
  signal: string | null;
  /** From app 'child-process-gone', when Electron reported it. */
  gone?: { reason: GoneReason; exitCode: number };
  /** The app asked the process to end (kill or a stop that timed out). */
  killRequested: boolean;
}

const FAULT_SIGNALS = new Set(['SIGSEGV', 'SIGBUS', 'SIGILL', 'SIGFPE', 'SIGABRT', 'SIGSYS', 'SIGTRAP']);

export function classifyEngineExit(raw: RawExit): EngineExit {
  const { code, signal, gone, killRequested } = raw;
  const base = { code: code ?? gone?.exitCode ?? null, signal };
  switch (gone?.reason) {
    case 'oom':
      return { ...base, reason: 'crash', detail: 'the engine ran out of memory' };
    case 'crashed':
      return { ...base, reason: 'crash', detail: `the engine crashed (a native fault, exit code ${gone.exitCode})` };
    case 'launch-failed':
      return { ...base, reason: 'crash', detail: `the engine process could not start (launch error ${gone.exitCode})` };
    case 'integrity-failure':
      return { ...base, reason: 'crash', detail: 'the engine process failed its code integrity check' };
    case 'memory-eviction':
      return { ...base, reason: 'crash', detail: 'the system reclaimed the engine\'s memory (memory pressure)' };
    case 'killed':
      return killRequested
        ? { ...base, reason: 'signal', detail: 'stopped by the app' }
        : { ...base, reason: 'crash', detail: 'the engine was killed by the system (often because memory ran out)' };
    default:
      break;
  }
  if (signal !== null) {
    if (FAULT_SIGNALS.has(signal)) return { ...base, reason: 'crash', detail: `the engine crashed (a native fault, ${signal})` };
    if (killRequested) return { ...base, reason: 'signal', detail: 'stopped by the app' };
    if (signal === 'SIGKILL') {
      return { ...base, reason: 'crash', detail: 'the engine was killed by the system (often because memory ran out)' };
    }
    return { ...base, reason: 'signal', detail: `the engine was ended by ${signal}` };
  }
  if (killRequested && code !== 0) return { ...base, reason: 'signal', detail: 'stopped by the app' };
  return code === 0 || code === null
    ? { ...base, reason: 'exit' }
    : { ...base, reason: 'exit', detail: `the engine exited with code ${code}` };
}
