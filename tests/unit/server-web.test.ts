// Browser mode's server, started for real on a free port of 127.0.0.1 with
// the real services behind it (temp app data): the token on HTTP and on the
// WebSocket, the Host check, the loopback-only binding, the CSP, the renderer
// files, and events arriving over the WebSocket.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { nodeChildLauncher } from '../../main/jobs/child-launcher.ts';
import { startWebServer, CONTENT_SECURITY_POLICY, type WebServer } from '../../main/server/server.ts';
import { createServices, type Services } from '../../main/services.ts';

const roots: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lora-studio-web-'));
  roots.push(dir);
  return dir;
}

interface Reply { status: number; headers: Record<string, string | string[] | undefined>; body: string }
function http(port: number, opts: { path: string; method?: string; headers?: Record<string, string>; body?: string; host?: string }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: opts.host ?? '127.0.0.1', port, path: opts.path, method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}
const call = (s: WebServer, method: string, input: unknown, token: string | null = s.token) =>
  http(s.port, {
    path: `/api/${method}`, method: 'POST', body: JSON.stringify(input),
    headers: { 'content-type': 'application/json', ...(token !== null ? { authorization: `Bearer ${token}` } : {}) },
  });

/** Opens a WebSocket; resolves with the socket once open, or with the HTTP status that refused it. */
function openSocket(url: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket } | { status: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0 });
      ws.terminate();
    });
    ws.once('error', (err) => reject(err));
  });
}

describe('browser-mode server', () => {
  let services: Services;
  let server: WebServer;
  let rendererDir: string;
  before(async () => {
    const appData = tempDir();
    rendererDir = path.join(tempDir(), 'renderer');
    mkdirSync(path.join(rendererDir, 'assets'), { recursive: true });
    writeFileSync(path.join(rendererDir, 'index.html'), '<!doctype html><title>LoRA Studio</title>');
    writeFileSync(path.join(rendererDir, 'assets', 'app-1234.js'), 'console.log(1)');
    writeFileSync(path.join(path.dirname(rendererDir), 'secret.txt'), 'outside the build');
    // Downloads go to a closed local port: they fail at once, without touching the network.
    services = createServices({ appDataDir: appData, launcher: nodeChildLauncher(), hfCacheDir: path.join(appData, 'none'), hubEndpoint: 'http://127.0.0.1:9' });
    server = await startWebServer({ dispatch: services.dispatch, events: services.events, rendererDir });
  });
  after(async () => {
    await server.close();
    services.close();
    for (const dir of roots) rmSync(dir, { recursive: true, force: true });
  });

  it('listens on 127.0.0.1 only, and refuses to listen anywhere else', async () => {
    assert.equal(server.address, '127.0.0.1');
    assert.match(server.url, new RegExp(`^http://127\\.0\\.0\\.1:${server.port}/\\?token=[0-9a-f]{64}$`));
    await assert.rejects(startWebServer({ dispatch: services.dispatch, events: services.events, host: '0.0.0.0' }), /127\.0\.0\.1 only/);
    const other = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
    if (other) await assert.rejects(http(server.port, { path: '/', host: other.address }), /ECONNREFUSED/);
  });

  it('gives each launch a new 32-byte token', async () => {
    const second = await startWebServer({ dispatch: services.dispatch, events: services.events, rendererDir });
    try {
      assert.notEqual(second.token, server.token);
      assert.equal(Buffer.from(second.token, 'hex').length, 32);
    } finally {
      await second.close();
    }
  });

  it('refuses /api without the token or with a wrong one (401), and answers with the right one', async () => {
    assert.equal((await call(server, 'system.appData', {}, null)).status, 401);
    assert.equal((await call(server, 'system.appData', {}, 'wrong')).status, 401);
    const nearly = server.token.slice(0, -1) + (server.token.endsWith('0') ? '1' : '0');
    assert.equal((await call(server, 'system.appData', {}, nearly)).status, 401);
    const ok = await call(server, 'system.appData', {});
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(ok.body).libraryFile, services.library.file);
  });

  it('sorts errors by status: invalid 400 naming the field, user 422', async () => {
    const invalid = await call(server, 'shelf.rename', { id: 'x', name: 7 });
    assert.equal(invalid.status, 400);
    assert.equal(JSON.parse(invalid.body).error.field, 'name');
    const user = await call(server, 'shelf.rename', { id: 'no-such-adapter', name: 'x' });
    assert.equal(user.status, 422);
    assert.equal(JSON.parse(user.body).error.kind, 'user');
    const notJson = await http(server.port, { path: '/api/shelf.list', method: 'POST', body: '{', headers: { authorization: `Bearer ${server.token}` } });
    assert.equal(notJson.status, 400);
  });

  it('refuses a Host that is not 127.0.0.1 or localhost (DNS rebinding)', async () => {
    const evil = await http(server.port, { path: '/api/system.appData', method: 'POST', body: '{}', headers: { host: `evil.example:${server.port}`, authorization: `Bearer ${server.token}` } });
    assert.equal(evil.status, 403);
    assert.equal((await http(server.port, { path: '/', headers: { host: 'evil.example' } })).status, 403);
    assert.equal((await http(server.port, { path: '/', headers: { host: `localhost:${server.port}` } })).status, 200);
  });

  it('serves the renderer with the CSP, falls back to index.html, and never reads outside the build', async () => {
    const page = await http(server.port, { path: `/?token=${server.token}` });
    assert.equal(page.status, 200);
    assert.match(page.body, /LoRA Studio/);
    assert.equal(page.headers['content-security-policy'], CONTENT_SECURITY_POLICY);
    assert.match(CONTENT_SECURITY_POLICY, /default-src 'self'/);
    assert.match(CONTENT_SECURITY_POLICY, /connect-src 'self' ws:\/\/127\.0\.0\.1:\*/);
    assert.equal(page.headers['referrer-policy'], 'no-referrer');
    const asset = await http(server.port, { path: '/assets/app-1234.js' });
    assert.equal(asset.body, 'console.log(1)');
    assert.match(String(asset.headers['content-type']), /javascript/);
    const route = await http(server.port, { path: '/shelf/abc' });
    assert.match(route.body, /LoRA Studio/);
    for (const p of ['/../secret.txt', '/%2e%2e/secret.txt', '/assets/..%2f..%2fsecret.txt']) {
      const r = await http(server.port, { path: p });
      assert.doesNotMatch(r.body, /outside the build/, p);
    }
  });

  it('says plainly when the renderer is not built', async () => {
    const bare = await startWebServer({ dispatch: services.dispatch, events: services.events, rendererDir: path.join(tempDir(), 'missing') });
    try {
      const r = await http(bare.port, { path: '/' });
      assert.equal(r.status, 503);
      assert.match(r.body, /npm run build:renderer/);
    } finally {
      await bare.close();
    }
  });

  it('refuses the WebSocket without the right token (401) or with a bad Host (403)', async () => {
    const base = `ws://127.0.0.1:${server.port}/events`;
    assert.deepEqual(await openSocket(base), { status: 401 });
    assert.deepEqual(await openSocket(`${base}?token=wrong`), { status: 401 });
    assert.deepEqual(await openSocket(`${base}?token=${server.token}`, { host: 'evil.example' }), { status: 403 });
  });

  it('delivers events over the WebSocket with the right token', async () => {
    const opened = await openSocket(`ws://127.0.0.1:${server.port}/events?token=${server.token}`);
    assert.ok('ws' in opened);
    const ws = opened.ws;
    try {
      const received = new Promise<unknown>((resolve) => ws.once('message', (data) => resolve(JSON.parse(String(data)))));
      // A real download from a hub that is not there: its state changes arrive as 'download' events.
      const started = await call(server, 'models.startDownload', { repo: 'org/model' });
      assert.equal(started.status, 200);
      const message = (await received) as { channel: string; payload: { repo: string; downloadId: string } };
      assert.equal(message.channel, 'download');
      assert.equal(message.payload.repo, 'org/model');
      assert.equal(message.payload.downloadId, JSON.parse(started.body).downloadId);
    } finally {
      ws.close();
    }
  });
});
