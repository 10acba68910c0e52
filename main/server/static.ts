// The renderer build (dist/renderer) served as files. A path that names no
// file gets index.html, so the UI's own routes load; nothing outside the
// build folder is ever read. Without a build, a plain page says how to make one.
import { createReadStream, existsSync, statSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import path from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

export const NOT_BUILT_MESSAGE =
  'LoRA Studio\'s interface is not built yet. Run `npm run build:renderer`, then reload this page (keep the ?token=... part of the address).\n';

/** The file a URL path names inside root, or null when it would leave root or names no file. */
export function resolveStatic(root: string, urlPath: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  const file = path.resolve(root, '.' + path.posix.normalize('/' + decoded));
  if (file !== root && !file.startsWith(root + path.sep)) return null;
  try {
    return statSync(file).isFile() ? file : null;
  } catch {
    return null;
  }
}

export function serveStatic(root: string, urlPath: string, res: ServerResponse, headOnly: boolean): void {
  const index = path.join(root, 'index.html');
  if (!existsSync(index)) {
    res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(NOT_BUILT_MESSAGE);
    return;
  }
  const file = resolveStatic(root, urlPath) ?? index;
  const type = TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
  // Built assets have content hashes in their names; index.html must always be fresh.
  const cache = file === index ? 'no-store' : 'public, max-age=31536000, immutable';
  res.writeHead(200, { 'content-type': type, 'cache-control': cache, 'content-length': statSync(file).size });
  if (headOnly) res.end();
  else createReadStream(file).pipe(res);
}
