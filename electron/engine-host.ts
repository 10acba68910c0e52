// The engine in an Electron utility process: an EngineLauncher for the job
// layer. Each launch forks the bundled engine entry (dist/electron/engine-entry.js,
// built from main/jobs/engine-entry.ts), which talks over process.parentPort.
// How the process ended comes from two Electron reports (its 'exit' code and
// app 'child-process-gone'); engine-child.ts joins them into one EngineExit.
import { app, utilityProcess, type Details } from 'electron';
import type { EngineLauncher, ToEngine } from '../main/jobs/engine-process.ts';
import { hostEngineChild, type EngineChildOptions, type HostedEngine } from './engine-child.ts';

export interface UtilityLauncherOptions extends EngineChildOptions {
  /** Absolute path of the bundled engine entry. */
  entry: string;
  /** The native addon to load (LORA_STUDIO_NATIVE); unset: the engine looks beside the app. */
  nativeAddon?: string;
}

let launches = 0;
/** Live engines by their utility-process service name (how child-process-gone names them). */
const live = new Map<string, HostedEngine>();
let goneListening = false;

function listenForGone(): void {
  if (goneListening) return;
  goneListening = true;
  app.on('child-process-gone', (_event, details: Details) => {
    if (details.type !== 'Utility' || details.serviceName === undefined) return;
    const engine = live.get(details.serviceName);
    engine?.reportGone({ reason: details.reason, exitCode: details.exitCode });
  });
}

export function utilityEngineLauncher(opts: UtilityLauncherOptions): EngineLauncher {
  return () => {
    listenForGone();
    launches += 1;
    const serviceName = `LoRA Studio engine ${launches}`;
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
    if (opts.nativeAddon) env.LORA_STUDIO_NATIVE = opts.nativeAddon;
    const proc = utilityProcess.fork(opts.entry, [], { serviceName, env, stdio: 'inherit' });
    const engine = hostEngineChild(
      {
        get pid() {
          return proc.pid;
        },
        postMessage: (message: ToEngine) => proc.postMessage(message),
        kill: () => {
          proc.kill();
        },
        onMessage: (listener) => proc.on('message', listener),
        // A utility process reports a code only; the signal, if any, comes with child-process-gone.
        onExit: (listener) => proc.once('exit', (code) => listener({ code, signal: null })),
      },
      opts,
    );
    live.set(serviceName, engine);
    engine.onExit(() => live.delete(serviceName));
    return engine;
  };
}
