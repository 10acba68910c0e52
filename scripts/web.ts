// Browser mode: `npm run web [-- --port N] [--app-data <dir>]`.
// Runs the app's services in this Node process behind the server on
// 127.0.0.1, with the engine in child processes, and prints the address (with
// this launch's token) to open. From another machine, forward the port over
// SSH (ssh -L 8765:127.0.0.1:8765 host) and open the printed address there.
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { nodeChildLauncher } from '../main/jobs/child-launcher.ts';
import { startWebServer } from '../main/server/server.ts';
import { createServices } from '../main/services.ts';

/** Where Electron keeps the desktop app's data ("userData"), so both modes share one library. */
function defaultAppDataDir(): string {
  const name = 'LoRA Studio';
  if (process.platform === 'win32') return path.join(process.env.APPDATA ?? path.join(os.homedir(), 'AppData', 'Roaming'), name);
  if (process.platform === 'darwin') return path.join(os.homedir(), 'Library', 'Application Support', name);
  return path.join(process.env.XDG_CONFIG_HOME ?? path.join(os.homedir(), '.config'), name);
}

function portNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('give a port from 1 to 65535 (0 picks a free one)');
  return n;
}

const program = new Command('web')
  .description('Serve LoRA Studio to a browser on this machine (127.0.0.1 only)')
  .option('--port <n>', 'port to listen on (default: a free one)', portNumber, 0)
  .option('--app-data <dir>', 'app data folder: library, adapters, runs', defaultAppDataDir())
  .option('--renderer <dir>', 'the renderer build to serve', path.resolve(import.meta.dirname, '..', 'dist', 'renderer'))
  .parse();
const opts = program.opts<{ port: number; appData: string; renderer: string }>();

const services = createServices({ appDataDir: opts.appData, launcher: nodeChildLauncher() });
const server = await startWebServer({ dispatch: services.dispatch, events: services.events, port: opts.port, rendererDir: opts.renderer }).catch((err: Error) => {
  services.close();
  console.error(`Cannot start the server: ${err.message}`);
  process.exit(1);
});

console.log(`LoRA Studio is running (app data: ${path.resolve(opts.appData)}).`);
console.log(`Open ${server.url}`);
console.log('The address holds this launch\'s access token: keep it to yourself. Press Ctrl+C to stop.');

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  services.close(); // stops engine processes (their runs keep their last checkpoint)
  void server.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
