// Shared pieces of the end-to-end tests: headless Chromium through
// playwright-core (the system's /usr/bin/chromium, never a downloaded one),
// the renderer build, a static file server for pages without a backend, and a
// screenshot helper writing to tests/e2e/screenshots/ (git-ignored).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';

export const repoRoot = resolve(import.meta.dirname, '..', '..');
export const rendererDist = join(repoRoot, 'dist', 'renderer');
export const screenshotDir = join(repoRoot, 'tests', 'e2e', 'screenshots');
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The reason to skip, or false when Chromium is there. */
export const skipWithoutChromium: string | false = existsSync(chromiumPath)
  ? false
  : `Chromium not found at ${chromiumPath}; install it (apt-get install -y chromium) or set CHROMIUM_PATH to run the UI tests`;

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Builds dist/renderer once per test process (vite build, ~10-30 s on two cores). */
let built = false;
export function buildRenderer(): void {
  if (built && existsSync(join(rendererDist, 'index.html'))) return;
  const result = spawnSync(process.execPath, [join(repoRoot, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--config', 'vite.config.ts', '--logLevel', 'warn'], {
    cwd: repoRoot,
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`vite build failed (exit ${result.status}):\n${result.stdout}\n${result.stderr}`);
  built = true;
}

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** Serves dist/renderer as plain files; every other request (e.g. POST /api/…) gets 404. */
export async function serveStatic(): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(rendererDist, path === '/' ? 'index.html' : path);
    if (request.method !== 'GET' || !file.startsWith(rendererDist) || !existsSync(file) || !statSync(file).isFile()) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    response.writeHead(200, { 'content-type': contentTypes[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  // closeAllConnections: the browser keeps connections open, which would hold close() forever.
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage: true });
}

/** Collects uncaught page errors so a test can assert the UI never threw. */
export function collectPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  return errors;
}
