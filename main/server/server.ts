// Browser mode: the contract over HTTP + WebSocket on 127.0.0.1 only.
//
//   POST /api/<method>      JSON input → 200 JSON output, or { error } with
//                            400 (invalid) / 422 (user) / 500 (internal)
//                            needs "Authorization: Bearer <token>"
//   GET  /events?token=...   WebSocket upgrade; every event as { channel, payload }
//   GET  anything else       the renderer build (dist/renderer)
//
// Every request needs a Host of 127.0.0.1 or localhost (DNS rebinding);
// /api and /events also need the launch's token (401 otherwise; compared in
// constant time). Every response carries the same Content-Security-Policy as
// the Electron window, and no referrer, so the token in the page's address is
// never sent elsewhere.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Dispatch } from '../api/dispatch.ts';
import type { ApiEvents } from '../api/events.ts';
import type { ApiError } from '../api/contract.ts';
import { bearerToken, hostAllowed, newToken, tokenMatches } from './auth.ts';
import { serveStatic } from './static.ts';

// The Electron window's policy (electron/security.ts), plus the WebSocket back to this server.
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "connect-src 'self' ws://127.0.0.1:* ws://localhost:*",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const BASE_HEADERS: Record<string, string> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/** Largest request body, bytes (a call's input is small JSON). */
const MAX_BODY_BYTES = 8 << 20;
const LOOPBACK = '127.0.0.1';

export interface WebServerOptions {
  dispatch: Dispatch;
  events: ApiEvents;
  /** The renderer build to serve (default <repo>/dist/renderer). */
  rendererDir?: string;
  /** 0 (default): a free port. */
  port?: number;
  /** Only '127.0.0.1' is accepted; anything else is refused. */
  host?: string;
  /** Fixed token (tests); default: 32 new random bytes. */
  token?: string;
}

export interface WebServer {
  /** The address listened on: always 127.0.0.1. */
  readonly address: string;
  readonly port: number;
  readonly token: string;
  /** http://127.0.0.1:<port>/?token=<token>: the address to open. */
  readonly url: string;
  close(): Promise<void>;
}

const STATUS: Record<ApiError['kind'], number> = { invalid: 400, user: 422, internal: 500 };

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...BASE_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

function refuse(res: ServerResponse, status: number, message: string): void {
  sendJson(res, status, { error: { kind: 'invalid', message } satisfies ApiError });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Writes a plain HTTP refusal on a socket that asked to upgrade, and closes it. */
function refuseUpgrade(socket: Duplex, status: number, reason: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${reason.length}\r\n\r\n${reason}`);
}

export async function startWebServer(opts: WebServerOptions): Promise<WebServer> {
  const host = opts.host ?? LOOPBACK;
  if (host !== LOOPBACK)
    throw new Error(`Browser mode listens on ${LOOPBACK} only (asked for ${host}); reach it from another machine through an SSH tunnel.`);
  const token = opts.token ?? newToken();
  const rendererDir = path.resolve(opts.rendererDir ?? path.join(import.meta.dirname, '..', '..', 'dist', 'renderer'));
  let port = 0;

  const handleApi = async (req: IncomingMessage, res: ServerResponse, method: string) => {
    if (!tokenMatches(token, bearerToken(req.headers.authorization))) return refuse(res, 401, 'The access token is missing or wrong. Open the address `npm run web` printed.');
    if (req.method !== 'POST') return refuse(res, 405, `Use POST for /api/${method}.`);
    let input: unknown;
    try {
      const text = await readBody(req);
      input = text.trim() ? JSON.parse(text) : {};
    } catch (err) {
      return refuse(res, 400, `The body of /api/${method} must be JSON of at most ${MAX_BODY_BYTES} bytes (${(err as Error).message}).`);
    }
    const result = await opts.dispatch(method, input);
    if (result.ok) sendJson(res, 200, result.output ?? null);
    else sendJson(res, STATUS[result.error.kind], { error: result.error });
  };

  const server: Server = createServer((req, res) => {
    if (!hostAllowed(req.headers.host, port)) return refuse(res, 403, 'This server answers only to 127.0.0.1 or localhost.');
    const url = new URL(req.url ?? '/', `http://${LOOPBACK}`);
    if (url.pathname.startsWith('/api/')) {
      handleApi(req, res, decodeURIComponent(url.pathname.slice('/api/'.length))).catch((err) => {
        console.error('browser mode: a request failed', err);
        if (!res.headersSent) refuse(res, 500, 'The request failed inside LoRA Studio; the details are in the log.');
        else res.end();
      });
      return;
    }
    if (url.pathname === '/events') return refuse(res, 426, 'Connect to /events with a WebSocket.');
    if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(res, 405, 'Only GET and HEAD are served here.');
    for (const [k, v] of Object.entries(BASE_HEADERS)) res.setHeader(k, v);
    serveStatic(rendererDir, url.pathname, res, req.method === 'HEAD');
  });

  const sockets = new WebSocketServer({ noServer: true, maxPayload: 64 << 10 });
  const clients = new Set<WebSocket>();
  const unsubscribe = opts.events.subscribe((message) => {
    const text = JSON.stringify(message);
    for (const ws of clients) if (ws.readyState === ws.OPEN) ws.send(text);
  });

  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', `http://${LOOPBACK}`);
    if (!hostAllowed(req.headers.host, port)) return refuseUpgrade(socket, 403, 'Forbidden');
    if (url.pathname !== '/events') return refuseUpgrade(socket, 404, 'Not Found');
    if (!tokenMatches(token, url.searchParams.get('token'))) return refuseUpgrade(socket, 401, 'Unauthorized');
    sockets.handleUpgrade(req, socket, head, (ws) => {
      clients.add(ws);
      ws.on('close', () => clients.delete(ws));
      ws.on('error', () => clients.delete(ws));
      // The channel is one-way: anything the page sends is ignored.
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, LOOPBACK, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  port = bound.port;

  return {
    address: bound.address,
    port,
    token,
    url: `http://${LOOPBACK}:${port}/?token=${token}`,
    close: () =>
      new Promise<void>((resolve) => {
        unsubscribe();
        for (const ws of clients) ws.terminate();
        sockets.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
