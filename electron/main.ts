// Electron's main process: one window, locked down (security.ts), showing the
// renderer build from disk; the app's services (main/services.ts) run here and
// answer the window over one IPC channel; every training or comparison job
// runs the engine in a utility process (engine-host.ts).
//
// Layout at run time (this file is bundled to dist/electron/main.js):
//   dist/electron/preload.cjs, dist/electron/engine-entry.js   beside this file
//   dist/renderer/index.html                                  the UI
//   resources/native/lora_studio_native.node                  the engine addon, packaged app only
import { app, BrowserWindow, dialog, ipcMain, session, shell, type IpcMainInvokeEvent } from 'electron';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createServices } from '../main/services.ts';
import type { ApiReply } from './bridge.ts';
import { API_CHANNEL, EVENT_CHANNEL, type EventEnvelope } from './channels.ts';
import { utilityEngineLauncher } from './engine-host.ts';
import { isExternalUrlAllowed, isNavigationAllowed, secureWebPreferences, withContentSecurityPolicy } from './security.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const appRoot = path.resolve(here, '..', '..');
const rendererIndex = path.join(appRoot, 'dist', 'renderer', 'index.html');
const rendererUrl = pathToFileURL(rendererIndex).href;

type Services = ReturnType<typeof createServices>;

let win: BrowserWindow | null = null;
let services: Services | null = null;
let closed = false;

function lockDownSession(): void {
  const ses = session.defaultSession;
  ses.webRequest.onHeadersReceived((details, callback) => {
    callback({ responseHeaders: withContentSecurityPolicy(details.responseHeaders) });
  });
  // No camera, microphone, notifications, clipboard reads, ...: the app needs none.
  ses.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
  ses.setPermissionCheckHandler(() => false);
}

// Every web contents (the window, and anything it might try to create) stays on the renderer page.
app.on('web-contents-created', (_event, contents) => {
  contents.on('will-navigate', (event, url) => {
    if (!isNavigationAllowed(url, rendererUrl)) event.preventDefault();
  });
  contents.on('will-redirect', (event, url) => {
    if (!isNavigationAllowed(url, rendererUrl)) event.preventDefault();
  });
  contents.on('will-attach-webview', (event) => event.preventDefault());
  contents.setWindowOpenHandler(({ url }) => {
    // Links to the web open in the user's browser; the app never opens a second window.
    if (isExternalUrlAllowed(url)) void shell.openExternal(url);
    return { action: 'deny' };
  });
});

function fromOurWindow(event: IpcMainInvokeEvent): boolean {
  const frame = event.senderFrame;
  return (
    win !== null && !win.isDestroyed() && event.sender === win.webContents &&
    frame !== null && frame === win.webContents.mainFrame && isNavigationAllowed(frame.url, rendererUrl)
  );
}

function sendEvent(envelope: EventEnvelope): void {
  if (win && !win.isDestroyed()) win.webContents.send(EVENT_CHANNEL, envelope);
}

function createWindow(): void {
  win = new BrowserWindow({
    width: 1280,
    height: 840,
    minWidth: 900,
    minHeight: 600,
    title: 'LoRA Studio',
    show: false,
    backgroundColor: '#0f172a',
    webPreferences: secureWebPreferences(path.join(here, 'preload.cjs')),
  });
  win.once('ready-to-show', () => win?.show());
  win.on('closed', () => {
    win = null;
  });
  void win.loadFile(rendererIndex);
}

async function start(): Promise<void> {
  await app.whenReady();
  lockDownSession();
  const launcher = utilityEngineLauncher({
    entry: path.join(here, 'engine-entry.js'),
    nativeAddon: app.isPackaged ? path.join(process.resourcesPath, 'native', 'lora_studio_native.node') : undefined,
  });
  services = createServices({ appDataDir: app.getPath('userData'), launcher });
  const ready = services;
  ready.events.subscribe((message) => sendEvent(message));
  ipcMain.handle(API_CHANNEL, async (event, method: unknown, input: unknown): Promise<ApiReply> => {
    if (!fromOurWindow(event)) return { ok: false, error: { kind: 'invalid', message: 'Refused: the call did not come from the app window.' } };
    if (typeof method !== 'string') return { ok: false, error: { kind: 'invalid', message: 'The api method must be a string.' } };
    return ready.dispatch(method, input);
  });
  createWindow();
  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0) createWindow();
  });
}

// Clean shutdown: stop running jobs (their engines), then close the library, then quit.
app.on('before-quit', (event) => {
  if (closed || !services) return;
  event.preventDefault();
  const s = services;
  services = null;
  Promise.resolve()
    .then(() => s.close())
    .catch((err: unknown) => console.error('LoRA Studio: shutdown:', err))
    .finally(() => {
      closed = true;
      app.quit();
    });
});

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit();
});

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on('second-instance', () => {
    if (!win) return;
    if (win.isMinimized()) win.restore();
    win.focus();
  });
  start().catch((err: unknown) => {
    console.error('LoRA Studio could not start:', err);
    dialog.showErrorBox('LoRA Studio could not start', err instanceof Error ? err.message : String(err));
    app.exit(1);
  });
}
