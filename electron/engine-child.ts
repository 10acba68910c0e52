// The EngineProcess the job layer holds, over any child that can post
// messages and be killed (an Electron utility process in the app; the shape
// is small so it can be exercised with a Node child process too).
//
// Stopping: a 'stop' message asks the engine to end that job; if neither
// 'finished' nor 'failed' arrives for it within stopTimeoutMs the process is
// killed. kill() asks the process to end (SIGTERM) and, if it is still there
// after killTimeoutMs, ends it for certain (SIGKILL).
import type { EngineExit, EngineProcess, FromEngine, ToEngine } from '../main/jobs/engine-process.ts';
import { classifyEngineExit, type GoneReason } from './exit-reason.ts';

export interface EngineChild {
  readonly pid: number | undefined;
  postMessage(message: ToEngine): void;
  /** Ask the process to end. */
  kill(): void;
  onMessage(listener: (message: unknown) => void): void;
  onExit(listener: (exit: { code: number | null; signal: string | null }) => void): void;
}

export interface EngineChildOptions {
  /** Training answers a stop after writing a checkpoint, which can take a while on a big adapter. */
  stopTimeoutMs?: number; // default 60 000
  killTimeoutMs?: number; // default 5 000
  /** How long to wait after 'exit' for a child-process-gone report (Electron sends both, in either order). */
  goneGraceMs?: number; // default 250
  /** Messages that are not FromEngine (a bug in the engine side) go here. */
  onBadMessage?: (message: unknown) => void;
}

export interface HostedEngine extends EngineProcess {
  /** Electron's app 'child-process-gone' report for this process. */
  reportGone(gone: { reason: GoneReason; exitCode: number }): void;
  readonly exited: boolean;
}

function isFromEngine(m: unknown): m is FromEngine {
  if (typeof m !== 'object' || m === null) return false;
  const { type, jobId } = m as { type?: unknown; jobId?: unknown };
  return typeof jobId === 'string' && (type === 'event' || type === 'finished' || type === 'failed');
}

export function hostEngineChild(child: EngineChild, opts: EngineChildOptions = {}): HostedEngine {
  const stopTimeoutMs = opts.stopTimeoutMs ?? 60_000;
  const killTimeoutMs = opts.killTimeoutMs ?? 5_000;
  const goneGraceMs = opts.goneGraceMs ?? 250;
  const messageListeners: Array<(m: FromEngine) => void> = [];
  const exitListeners: Array<(e: EngineExit) => void> = [];
  const stopTimers = new Map<string, NodeJS.Timeout>();
  let killTimer: NodeJS.Timeout | undefined;
  let killRequested = false;
  let gone: { reason: GoneReason; exitCode: number } | undefined;
  let rawExit: { code: number | null; signal: string | null } | undefined;
  let graceTimer: NodeJS.Timeout | undefined;
  let result: EngineExit | undefined;

  const clearTimers = () => {
    for (const t of stopTimers.values()) clearTimeout(t);
    stopTimers.clear();
    if (killTimer) clearTimeout(killTimer);
    if (graceTimer) clearTimeout(graceTimer);
  };

  const finish = () => {
    if (result || !rawExit) return;
    clearTimers();
    result = classifyEngineExit({ ...rawExit, gone, killRequested });
    for (const l of exitListeners) l(result);
  };

  const forceKill = () => {
    const pid = child.pid;
    if (rawExit || pid === undefined) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone between the check and the kill
    }
  };

  const kill = () => {
    if (rawExit) return;
    killRequested = true;
    child.kill();
    if (!killTimer) killTimer = setTimeout(forceKill, killTimeoutMs);
  };

  child.onMessage((m) => {
    if (!isFromEngine(m)) {
      opts.onBadMessage?.(m);
      return;
    }
    if (m.type !== 'event') {
      const t = stopTimers.get(m.jobId);
      if (t) clearTimeout(t);
      stopTimers.delete(m.jobId);
    }
    for (const l of messageListeners) l(m);
  });

  child.onExit((exit) => {
    if (rawExit) return;
    rawExit = exit;
    if (gone) finish();
    else graceTimer = setTimeout(finish, goneGraceMs);
  });

  return {
    send(message) {
      // After the process has gone, messages are dropped: its exit is (or is about to be) reported to onExit.
      if (rawExit) return;
      child.postMessage(message);
      if (message.type === 'stop' && !stopTimers.has(message.jobId)) {
        stopTimers.set(message.jobId, setTimeout(kill, stopTimeoutMs));
      }
    },
    onMessage(listener) {
      messageListeners.push(listener);
    },
    onExit(listener) {
      exitListeners.push(listener);
      if (result) listener(result);
    },
    kill,
    reportGone(report) {
      if (gone) return;
      gone = report;
      if (rawExit) finish();
    },
    get exited() {
      return result !== undefined;
    },
  };
}
