// A local HTTP server that serves model repositories the way the Hugging Face
// hub does, for download tests:
//   GET  /api/models/<org>/<name>/revision/<rev>[?blobs=true]
//        → { id, sha, siblings: [{ rfilename, (blobs) size, blobId, lfs: { sha256, size, pointerSize } }] }
//   GET|HEAD /<org>/<name>/resolve/<rev>/<file>
//        LFS files: 302 to a second server (another origin, like the hub's CDN)
//        at /cdn/<sha256>, with X-Linked-Etag (quoted sha256),
//        X-Linked-Size and ETag; plain files: served here, ETag = git blob sha1.
//   GET  /cdn/<sha256>: the bytes, with Range (206 + Content-Range), Accept-Ranges, ETag.
// Gated repos answer 401 (X-Error-Code: GatedRepo) without the right Bearer
// token. Faults on demand: drop the connection after N bytes of a file, serve
// bytes that differ from the listed checksum, stall a file (for cancellation).
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HubRepoFile {
  name: string;
  content: Buffer;
  lfs?: boolean; // default: true for *.safetensors
}

export interface HubRepo {
  id: string; // org/name
  files: HubRepoFile[];
  token?: string; // gated: this Bearer token is required
}

export interface LoggedRequest {
  method: string;
  url: string;
  range: string | null;
  authorization: string | null;
}

export interface HubFaults {
  /** Drop the socket after this many body bytes of the file's CDN response, `times` times (default 1). */
  dropAfter?: { file: string; bytes: number; times?: number };
  /** Serve this file's bytes with the last byte flipped (listing and headers unchanged). */
  corrupt?: string;
  /** Send this many bytes of the file, then nothing more until the client goes away. */
  stall?: { file: string; bytes: number };
  /** Ignore Range headers (answer 200 with the whole file). */
  ignoreRange?: boolean;
  /** List this size (bytes) for the file instead of its real one. */
  claimSize?: { file: string; bytes: number };
  /** List file names only, even when asked for blobs (sizes and checksums then come from HEAD). */
  namesOnly?: boolean;
}

export interface HubServer {
  endpoint: string;
  requests: LoggedRequest[];
  faults: HubFaults;
  close(): Promise<void>;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const isLfs = (f: HubRepoFile) => f.lfs ?? f.name.endsWith('.safetensors');

export async function startHubServer(repos: HubRepo[], faults: HubFaults = {}): Promise<HubServer> {
  const requests: LoggedRequest[] = [];
  const byId = new Map(repos.map((r) => [r.id, r]));
  const blobs = new Map<string, { file: HubRepoFile }>();
  for (const repo of repos) for (const file of repo.files) if (isLfs(file)) blobs.set(sha256(file.content), { file });
  const state = { faults, drops: 0 };

  const sizeOf = (f: HubRepoFile) => (state.faults.claimSize?.file === f.name ? state.faults.claimSize.bytes : f.content.length);
  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    requests.push({ method: req.method ?? 'GET', url: url.pathname + url.search, range: req.headers.range ?? null, authorization: req.headers.authorization ?? null });
    const authorized = (repo: HubRepo) => !repo.token || req.headers.authorization === `Bearer ${repo.token}`;
    const gated = (repo: HubRepo) => {
      res.writeHead(401, { 'content-type': 'application/json', 'x-error-code': 'GatedRepo' });
      res.end(JSON.stringify({ error: `Access to model ${repo.id} is restricted. You must have access to it and be authenticated to access it. Please log in.` }));
    };
    const notFound = () => {
      res.writeHead(404, { 'content-type': 'application/json', 'x-error-code': 'RepoNotFound' });
      res.end(JSON.stringify({ error: 'Repository not found' }));
    };

    let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const repo = byId.get(decodeURIComponent(m[1]!));
      if (!repo) return notFound();
      if (!authorized(repo)) return gated(repo);
      const withBlobs = url.searchParams.get('blobs') === 'true' && !state.faults.namesOnly;
      const siblings = repo.files.map((f) =>
        withBlobs
          ? {
              rfilename: f.name,
              size: sizeOf(f),
              blobId: isLfs(f) ? createHash('sha1').update(f.name).digest('hex') : gitSha1(f.content),
              ...(isLfs(f) ? { lfs: { sha256: sha256(f.content), size: sizeOf(f), pointerSize: 134 } } : {}),
            }
          : { rfilename: f.name },
      );
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ id: repo.id, sha: 'c0ffee'.padEnd(40, '0'), siblings }));
    }

    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (m) {
      const repo = byId.get(decodeURIComponent(m[1]!));
      const file = repo?.files.find((f) => f.name === decodeURIComponent(m![3]!));
      if (!repo || !file) return notFound();
      if (!authorized(repo)) return gated(repo);
      if (isLfs(file)) {
        const hash = sha256(file.content);
        res.writeHead(302, {
          location: `${cdnOrigin}/cdn/${hash}?name=${encodeURIComponent(file.name)}`,
          'x-linked-etag': `"${hash}"`,
          'x-linked-size': String(file.content.length),
          etag: `"${createHash('sha1').update(file.name).digest('hex')}"`,
          'content-length': '0',
        });
        return res.end();
      }
      return serveBytes(req, res, file, `"${gitSha1(file.content)}"`);
    }

    m = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (m) {
      const blob = blobs.get(m[1]!);
      if (!blob) return notFound();
      return serveBytes(req, res, blob.file, `"${m[1]}"`);
    }
    notFound();
  };
  const server = http.createServer(handle);
  const cdn = http.createServer(handle);

  // The file's bytes (or the range asked for), with the faults applied.
  function serveBytes(req: http.IncomingMessage, res: http.ServerResponse, file: HubRepoFile, etag: string): void {
    let content = file.content;
    if (state.faults.corrupt === file.name) {
      content = Buffer.from(content);
      content[content.length - 1] = content[content.length - 1]! ^ 0xff;
    }
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range && !state.faults.ignoreRange) {
      start = Number(range[1]);
      if (start >= content.length) {
        res.writeHead(416, { 'content-range': `bytes */${content.length}` });
        return void res.end();
      }
    }
    const body = content.subarray(start);
    const headers: Record<string, string> = { 'accept-ranges': 'bytes', etag, 'content-length': String(body.length), 'content-type': 'application/octet-stream' };
    if (start > 0) headers['content-range'] = `bytes ${start}-${content.length - 1}/${content.length}`;
    res.writeHead(start > 0 ? 206 : 200, headers);
    if (req.method === 'HEAD') return void res.end();

    const drop = state.faults.dropAfter;
    if (drop && drop.file === file.name && state.drops < (drop.times ?? 1) && body.length > drop.bytes) {
      state.drops += 1;
      res.write(body.subarray(0, drop.bytes), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    const stall = state.faults.stall;
    if (stall && stall.file === file.name) {
      res.write(body.subarray(0, stall.bytes));
      return; // nothing more; the client's abort closes the socket
    }
    res.end(body);
  }

  await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
  const cdnOrigin = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    faults,
    close: async () => {
      for (const s of [server, cdn]) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    },
  };
}
